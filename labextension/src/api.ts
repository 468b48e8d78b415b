/**
 * The REST API of caprl_nb's Jupyter server extension, typed.
 *
 * Everything the extension shows comes from these calls: the Python side owns
 * captioning, the store and the model-server settings; this module only asks.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * What the server extension says about the model server. `no-model`: it is up
 * but serves several models, none called `caprl`, and none was chosen (`models`
 * lists them; `error` says where to choose one).
 */
export type ServerState = 'up' | 'down' | 'busy' | 'no-model';

/** `GET /caprl/status` */
export interface IStatusReply {
  state: ServerState;
  base_url: string;
  model: string | null;
  root: string | null;
  vllm_version: string | null;
  max_model_len: number | null;
  requests_running: number | null;
  requests_waiting: number | null;
  tokens_per_s: number | null;
  /** The models the server serves; null when it did not answer. */
  models: string[] | null;
  /** `results` is null while another process holds the store and it was never counted. */
  store: { path: string; results: number | null };
  error: string | null;
  checked_at: number;
}

/** `POST /caprl/caption` */
export interface ICaptionReply {
  path: string;
  caption: string;
  cached: boolean;
  model: string;
  latency_s: number;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  finish_reason: string | null;
  server_version: string | null;
  base_url: string;
}

/** One cell of an extracted table: numbers stay numbers, a missing value is null. */
export type TableCell = string | number | boolean | null;

/** `POST /caprl/extract-table`: the chart's data, x column first. */
export interface IExtractTableReply {
  path: string;
  title: string;
  x_label: string;
  y_label: string;
  units: string;
  columns: string[];
  rows: TableCell[][];
  cached: boolean;
  model: string | null;
  latency_s: number | null;
  finish_reason: string | null;
}

/** One stored result in `GET /caprl/recent`. */
export interface IRecentResult {
  input: string;
  text: string;
  model: string;
  task: string;
  created_at: number;
}

/** `GET /caprl/recent` */
export interface IRecentReply {
  results: IRecentResult[];
}

/** `GET` and `POST /caprl/settings`; the API key itself never travels. */
export interface ISettingsReply {
  base_url: string;
  model: string | null;
  has_api_key: boolean;
}

/**
 * The body of `POST /caprl/settings`. `null` puts a setting back to the Jupyter
 * server's own; a base URL other than that one is refused (403) unless the
 * server's admin allows it, and is then sent no API key.
 */
export interface ISettingsUpdate {
  base_url?: string | null;
  model?: string | null;
}

/** Shown when the server has no `/caprl` routes at all. */
export const EXTENSION_MISSING = 'CapRL server extension not enabled';

/**
 * A failed call. `message` is the server extension's own error text where it
 * sent one (it says what to do); `status` is the HTTP status, 0 when the Jupyter
 * server could not be reached.
 */
export class CapRLRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly fromExtension: boolean
  ) {
    super(message);
    this.name = 'CapRLRequestError';
  }

  /** True when the Jupyter server answered but has no CapRL routes. */
  get extensionMissing(): boolean {
    return this.status === 404 && !this.fromExtension;
  }
}

function errorText(body: unknown): string | null {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const error = (body as { error: unknown }).error;
    if (typeof error === 'string' && error.length > 0) {
      return error;
    }
  }
  return null;
}

/**
 * Call the server extension at `<baseUrl>/caprl/<endPoint>`, as the extension
 * template's `requestAPI` does, and decode its JSON reply.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const [route, query] = endPoint.split('?', 2);
  const url =
    URLExt.join(settings.baseUrl, 'caprl', route) +
    (query === undefined ? '' : `?${query}`);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CapRLRequestError(
      `The Jupyter server did not answer (${reason}). Is it still running?`,
      0,
      false
    );
  }

  const text = await response.text();
  let body: unknown = null;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }

  if (!response.ok) {
    const message = errorText(body);
    if (message !== null) {
      throw new CapRLRequestError(message, response.status, true);
    }
    if (response.status === 404) {
      throw new CapRLRequestError(EXTENSION_MISSING, 404, false);
    }
    throw new CapRLRequestError(
      `CapRL request failed: HTTP ${response.status} ${response.statusText}`,
      response.status,
      false
    );
  }
  if (body === null) {
    throw new CapRLRequestError(
      `CapRL server extension sent no JSON for ${endPoint}`,
      response.status,
      true
    );
  }
  return body as T;
}

/** The calls the front end makes, bound to one Jupyter server. */
export class CapRLClient {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  status(): Promise<IStatusReply> {
    return requestAPI<IStatusReply>('status', {}, this.serverSettings);
  }

  caption(path: string): Promise<ICaptionReply> {
    return requestAPI<ICaptionReply>(
      'caption',
      { method: 'POST', body: JSON.stringify({ path }) },
      this.serverSettings
    );
  }

  extractTable(path: string): Promise<IExtractTableReply> {
    return requestAPI<IExtractTableReply>(
      'extract-table',
      { method: 'POST', body: JSON.stringify({ path }) },
      this.serverSettings
    );
  }

  recent(limit: number): Promise<IRecentReply> {
    return requestAPI<IRecentReply>(
      `recent?limit=${encodeURIComponent(String(limit))}`,
      {},
      this.serverSettings
    );
  }

  settings(): Promise<ISettingsReply> {
    return requestAPI<ISettingsReply>('settings', {}, this.serverSettings);
  }

  updateSettings(update: ISettingsUpdate): Promise<ISettingsReply> {
    return requestAPI<ISettingsReply>(
      'settings',
      { method: 'POST', body: JSON.stringify(update) },
      this.serverSettings
    );
  }
}
