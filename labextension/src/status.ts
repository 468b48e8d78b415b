/**
 * The CapRL status: one poller shared by the status-bar item and the side panel.
 *
 * `GET /caprl/status` every `pollInterval` seconds while the page is visible;
 * when the model server is down or the server extension cannot be reached the
 * poll backs off (Lumino's `Poll`), up to a minute between tries.
 */
import { CommandRegistry } from '@lumino/commands';
import { IDisposable } from '@lumino/disposable';
import { IPoll, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import {
  CapRLClient,
  CapRLRequestError,
  IStatusReply,
  ServerState
} from './api';
import { CommandIDs } from './commands';

/** What the front end knows about the server right now. */
export type StatusView =
  | { readonly kind: 'loading' }
  | { readonly kind: 'reply'; readonly reply: IStatusReply }
  | {
      readonly kind: 'unavailable';
      readonly message: string;
      readonly extensionMissing: boolean;
    };

/** The slowest the poll gets while backing off, in milliseconds. */
const MAX_BACKOFF_MS = 60_000;

function frequency(seconds: number): IPoll.Frequency {
  const interval = Math.max(1, seconds) * 1000;
  return {
    interval,
    backoff: true,
    max: Math.max(MAX_BACKOFF_MS, interval)
  };
}

/** Polls `/caprl/status` and tells listeners whenever it learns something. */
export class StatusModel implements IDisposable {
  constructor(
    private readonly _client: CapRLClient,
    pollSeconds: number
  ) {
    this._poll = new Poll<void, unknown>({
      factory: () => this._check(),
      frequency: frequency(pollSeconds),
      name: 'CapRL status',
      standby: 'when-hidden'
    });
  }

  /** The latest view; `loading` until the first answer. */
  get view(): StatusView {
    return this._view;
  }

  /** Emits the new view after every poll. */
  get changed(): ISignal<this, StatusView> {
    return this._changed;
  }

  /** Seconds between polls while the server is up. */
  set pollSeconds(seconds: number) {
    this._poll.frequency = frequency(seconds);
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Poll now; resolves once the answer is in `view`. */
  async refresh(): Promise<void> {
    await this._poll.refresh();
    await this._poll.tick;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _check(): Promise<void> {
    let reply: IStatusReply;
    try {
      reply = await this._client.status();
    } catch (error) {
      this._set({
        kind: 'unavailable',
        message: error instanceof Error ? error.message : String(error),
        extensionMissing:
          error instanceof CapRLRequestError && error.extensionMissing
      });
      // A rejected poll backs off.
      throw error;
    }
    this._set({ kind: 'reply', reply });
    if (reply.state === 'down') {
      throw new Error('The CapRL model server is down');
    }
  }

  private _set(view: StatusView): void {
    this._view = view;
    this._changed.emit(view);
  }

  private readonly _poll: Poll<void, unknown>;
  private _view: StatusView = { kind: 'loading' };
  private readonly _changed = new Signal<this, StatusView>(this);
}

/** The colour class of a view's dot: up, busy, down, or unknown. */
export function dotState(view: StatusView): ServerState | 'unknown' {
  return view.kind === 'reply' ? view.reply.state : 'unknown';
}

/** A state in words: `up`, `busy`, `down`, or `no model chosen`. */
export function stateLabel(state: ServerState): string {
  return state === 'no-model' ? 'no model chosen' : state;
}

/** `Qwen/CapRL-3B` or `/models/CapRL-3B` -> `CapRL-3B`. */
export function shortModelName(model: string): string {
  const parts = model.split('/').filter(part => part.length > 0);
  return parts.length > 0 ? parts[parts.length - 1] : model;
}

/** One line that sums up a view, as the status bar shows it. */
export function summary(view: StatusView): string {
  switch (view.kind) {
    case 'loading':
      return 'CapRL …';
    case 'unavailable':
      return view.extensionMissing ? view.message : 'CapRL unavailable';
    case 'reply': {
      const { reply } = view;
      const parts = [`CapRL ${stateLabel(reply.state)}`];
      if (reply.model !== null) {
        parts.push(shortModelName(reply.model));
      }
      if (reply.requests_running !== null || reply.requests_waiting !== null) {
        parts.push(
          `${reply.requests_running ?? 0} running, ${reply.requests_waiting ?? 0} waiting`
        );
      }
      return parts.join(' · ');
    }
  }
}

/** The longer text behind the status-bar item's tooltip. */
export function tooltip(view: StatusView): string {
  switch (view.kind) {
    case 'loading':
      return 'Asking the CapRL server extension for its status…';
    case 'unavailable':
      return view.message;
    case 'reply': {
      const { reply } = view;
      const lines = [
        reply.state === 'no-model'
          ? `CapRL model server up at ${reply.base_url}, no model chosen`
          : `CapRL model server ${reply.state} at ${reply.base_url}`
      ];
      if (reply.error !== null) {
        lines.push(reply.error);
      }
      lines.push('Click for the CapRL panel');
      return lines.join('\n');
    }
  }
}

/** A coloured dot: `jp-caprl-dot jp-mod-<state>`. */
export function createDot(): HTMLSpanElement {
  const dot = document.createElement('span');
  dot.className = 'jp-caprl-dot';
  return dot;
}

export function paintDot(dot: HTMLElement, view: StatusView): void {
  dot.className = `jp-caprl-dot jp-mod-${dotState(view)}`;
}

/** The status-bar item: dot, state, model, running/waiting; a click opens the panel. */
export class StatusItem extends Widget {
  constructor(
    private readonly _model: StatusModel,
    commands: CommandRegistry
  ) {
    super();
    this.addClass('jp-caprl-StatusItem');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.append(this._dot, this._label);
    this._label.className = 'jp-caprl-StatusItem-label';
    const open = (): void => {
      void commands.execute(CommandIDs.openPanel);
    };
    this.node.addEventListener('click', open);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        open();
      }
    });
    _model.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    const view = this._model.view;
    paintDot(this._dot, view);
    this._label.textContent = summary(view);
    this.node.title = tooltip(view);
    this.node.dataset.state = dotState(view);
  }

  private readonly _dot = createDot();
  private readonly _label = document.createElement('span');
}
