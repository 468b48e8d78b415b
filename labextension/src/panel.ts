/**
 * The CapRL side panel: the model server's details and throughput, the store's
 * recent results, the settings the server extension uses, and the docs.
 *
 * Every string the server sends is written with `textContent`.
 */
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import { LabIcon } from '@jupyterlab/ui-components';

import { CapRLClient, IRecentResult, ISettingsReply } from './api';
import { CommandIDs, ICON_ID } from './commands';
import {
  StatusModel,
  StatusView,
  createDot,
  paintDot,
  shortModelName,
  stateLabel
} from './status';
import { node } from './widgets/shared/dom';

/** Where to read about CapRL. */
export const DOCS_URL = 'https://github.com/InternLM/CapRL';

/** How many of the store's results the panel lists. */
const RECENT_LIMIT = 10;

/** JupyterLab's own command that opens the Settings Editor. */
const OPEN_SETTINGS_EDITOR = 'settingeditor:open';

export const caprlIcon = new LabIcon({
  name: ICON_ID,
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-6l-4 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm0 2v9h8v1.2L13.2 15H20V6H4z"/>' +
    '<path d="M6 13l3-4 2 2.5L13.5 8 18 13z"/>' +
    '</g></svg>'
});

/** The settings the user chose in JupyterLab, as the panel shows them. */
export interface ILabSettings {
  baseUrl: string;
  model: string;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const el = node(tag, className);
  if (text !== undefined) {
    el.textContent = text;
  }
  return el;
}

function section(title: string): {
  root: HTMLElement;
  body: HTMLElement;
} {
  const root = element('section', 'jp-caprl-Panel-section');
  root.append(element('h3', 'jp-caprl-Panel-sectionTitle', title));
  const body = element('div', 'jp-caprl-Panel-sectionBody');
  root.append(body);
  return { root, body };
}

/** A `<dl>` of label/value rows; values are text. */
function facts(rows: ReadonlyArray<[string, string]>): HTMLDListElement {
  const list = element('dl', 'jp-caprl-Facts');
  for (const [label, value] of rows) {
    list.append(element('dt', '', label), element('dd', '', value));
  }
  return list;
}

function orDash(value: string | number | null): string {
  return value === null || value === '' ? '—' : String(value);
}

function timeOf(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toLocaleString();
}

/** The panel's headline: state and model, or why there is none. */
function headline(view: StatusView): string {
  switch (view.kind) {
    case 'loading':
      return 'Checking…';
    case 'unavailable':
      return 'Unavailable';
    case 'reply': {
      const state = stateLabel(view.reply.state);
      const label = state.charAt(0).toUpperCase() + state.slice(1);
      return view.reply.model === null
        ? label
        : `${label} · ${shortModelName(view.reply.model)}`;
    }
  }
}

/** The right-hand side panel. */
export class CapRLPanel extends Widget {
  constructor(options: CapRLPanel.IOptions) {
    super();
    this._client = options.client;
    this._commands = options.commands;
    this._status = options.status;
    this.id = 'jp-caprl-panel';
    this.addClass('jp-caprl-Panel');
    this.title.icon = caprlIcon;
    this.title.caption = 'CapRL';

    const header = element('header', 'jp-caprl-Panel-header');
    header.append(this._dot, this._headline);
    const refresh = element(
      'button',
      'jp-caprl-Button jp-mod-minimal',
      'Refresh'
    );
    refresh.type = 'button';
    refresh.title = 'Ask the server for its status and recent results now';
    refresh.addEventListener('click', () => {
      void this._commands.execute(CommandIDs.refreshStatus);
    });
    header.append(refresh);

    const title = element('h2', 'jp-caprl-Panel-title', 'CapRL');
    this.node.append(
      title,
      header,
      this._message,
      this._server.root,
      this._throughput.root,
      this._recent.root,
      this._settings.root,
      this._docs()
    );
    this._message.setAttribute('role', 'status');

    this._status.changed.connect(this._onStatus, this);
    this._renderStatus(this._status.view);
  }

  /** Show the settings as chosen in JupyterLab. */
  set labSettings(value: ILabSettings) {
    this._labSettings = value;
    this._renderSettings();
  }

  /** Show what the server extension answered to the settings push. */
  showServerSettings(reply: ISettingsReply | null, error: string | null): void {
    this._serverSettings = reply;
    this._settingsError = error;
    this._renderSettings();
  }

  dispose(): void {
    this._status.changed.disconnect(this._onStatus, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this._loadRecent();
  }

  private _onStatus(_: StatusModel, view: StatusView): void {
    this._renderStatus(view);
    if (view.kind === 'reply' && this.isVisible) {
      const results = view.reply.store.results;
      if (results !== this._recentCount) {
        void this._loadRecent();
      }
    }
  }

  private _renderStatus(view: StatusView): void {
    paintDot(this._dot, view);
    this._headline.textContent = headline(view);
    this.node.dataset.state =
      view.kind === 'reply' ? view.reply.state : view.kind;
    const reachable = view.kind === 'reply';
    for (const part of [this._server, this._throughput, this._recent]) {
      part.root.hidden = !reachable;
    }
    this._renderSettings();

    if (view.kind !== 'reply') {
      this._message.textContent =
        view.kind === 'loading' ? 'Asking the server extension…' : view.message;
      this._message.hidden = false;
      return;
    }

    const { reply } = view;
    this._message.textContent = reply.error ?? '';
    this._message.hidden = reply.error === null;
    this._server.body.replaceChildren(
      facts([
        ['State', stateLabel(reply.state)],
        ['URL', reply.base_url],
        ['Model', reply.model === null ? '—' : shortModelName(reply.model)],
        ['Served', reply.models ? reply.models.join(', ') || '—' : '—'],
        ['Model path', orDash(reply.root)],
        ['vLLM', orDash(reply.vllm_version)],
        ['Max length', orDash(reply.max_model_len)],
        ['Checked', timeOf(reply.checked_at)]
      ])
    );
    this._throughput.body.replaceChildren(
      facts([
        ['Running', orDash(reply.requests_running)],
        ['Waiting', orDash(reply.requests_waiting)],
        [
          'Tokens/s',
          reply.tokens_per_s === null ? '—' : reply.tokens_per_s.toFixed(1)
        ],
        ['Store', reply.store.path],
        ['Results', orDash(reply.store.results)]
      ])
    );
  }

  private async _loadRecent(): Promise<void> {
    if (this._status.view.kind !== 'reply') {
      return;
    }
    this._recentCount = this._status.view.reply.store.results;
    try {
      const { results } = await this._client.recent(RECENT_LIMIT);
      this._renderRecent(results);
    } catch (error) {
      this._recent.body.replaceChildren(
        element(
          'p',
          'jp-caprl-Error',
          error instanceof Error ? error.message : String(error)
        )
      );
    }
  }

  private _renderRecent(results: IRecentResult[]): void {
    if (results.length === 0) {
      this._recent.body.replaceChildren(
        element('p', 'jp-caprl-Muted', 'Nothing captioned yet.')
      );
      return;
    }
    const list = element('ol', 'jp-caprl-Recent');
    for (const result of results) {
      const item = element('li', 'jp-caprl-Recent-item');
      const head = element('div', 'jp-caprl-Recent-head');
      // `input` is the store's own description of the image; shown as it is.
      const name = element('span', 'jp-caprl-Recent-input', result.input);
      const meta = element(
        'span',
        'jp-caprl-Muted',
        `${result.task} · ${shortModelName(result.model)} · ${timeOf(result.created_at)}`
      );
      head.append(name, meta);
      const text = element('p', 'jp-caprl-Recent-text', result.text);
      text.title = result.text;
      item.append(head, text);
      list.append(item);
    }
    this._recent.body.replaceChildren(list);
  }

  private _renderSettings(): void {
    const lab = this._labSettings;
    const server = this._serverSettings;
    const rows: [string, string][] = [
      ['Base URL', lab.baseUrl === '' ? 'server default' : lab.baseUrl],
      ['Model', lab.model === '' ? 'server default' : lab.model]
    ];
    if (server !== null) {
      rows.push(
        ['Server uses', server.base_url],
        ['Server model', server.model ?? 'the one it serves'],
        ['API key', server.has_api_key ? 'set on the server' : 'none']
      );
    }
    const children: HTMLElement[] = [facts(rows)];
    // An unreachable extension is already the panel's headline message.
    if (this._settingsError !== null && this._status.view.kind === 'reply') {
      children.push(element('p', 'jp-caprl-Error', this._settingsError));
    }
    const edit = element('button', 'jp-caprl-Button', 'Edit settings…');
    edit.type = 'button';
    edit.addEventListener('click', () => {
      void this._commands.execute(OPEN_SETTINGS_EDITOR, { query: 'CapRL' });
    });
    children.push(edit);
    this._settings.body.replaceChildren(...children);
  }

  private _docs(): HTMLElement {
    const { root, body } = section('Docs');
    const link = element(
      'a',
      'jp-caprl-Link',
      'CapRL on GitHub: models, prompts, paper'
    );
    link.href = DOCS_URL;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    body.append(link);
    return root;
  }

  private readonly _client: CapRLClient;
  private readonly _commands: CommandRegistry;
  private readonly _status: StatusModel;
  private readonly _dot = createDot();
  private readonly _headline = element('span', 'jp-caprl-Panel-headline');
  private readonly _message = element('p', 'jp-caprl-Panel-message');
  private readonly _server = section('Model server');
  private readonly _throughput = section('Throughput');
  private readonly _recent = section('Recent results');
  private readonly _settings = section('Settings');
  private _recentCount: number | null = -1;
  private _labSettings: ILabSettings = { baseUrl: '', model: '' };
  private _serverSettings: ISettingsReply | null = null;
  private _settingsError: string | null = null;
}

export namespace CapRLPanel {
  export interface IOptions {
    client: CapRLClient;
    commands: CommandRegistry;
    status: StatusModel;
  }
}
