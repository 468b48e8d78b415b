/**
 * What the image-file commands share: the main-area panel that shows an image
 * beside what the server extension answered about it (with copy, "Insert as
 * code" and retry buttons), and the registration of a file-browser command that
 * opens such a panel plus the command that writes its notebook code.
 *
 * "Caption with CapRL" (caption.ts) and "Extract table with CapRL" (table.ts)
 * are each one subclass of `ImageResultView` and one `addImageCommands` call.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { Contents } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { CapRLClient } from './api';
import { node } from './widgets/shared/dom';

/** The file types the commands are enabled on. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  '.png',
  '.jpg',
  '.jpeg',
  '.webp',
  '.gif',
  '.bmp',
  '.tif',
  '.tiff'
]);

export function isImagePath(path: string): boolean {
  return IMAGE_EXTENSIONS.has(PathExt.extname(path).toLowerCase());
}

/**
 * `imagePath` (relative to the Jupyter root) as a Python string literal that a
 * notebook at `notebookPath` can open: the kernel runs in the notebook's folder.
 */
export function pathLiteral(imagePath: string, notebookPath: string): string {
  const relative = PathExt.relative(PathExt.dirname(notebookPath), imagePath);
  // A JSON string is a valid Python string literal.
  return JSON.stringify(relative);
}

export function button(label: string, title: string): HTMLButtonElement {
  const el = node('button', 'jp-caprl-Button', { type: 'button', title });
  el.textContent = label;
  return el;
}

/** `model · 1.23 s · stopped: length · from the store`, the facts every reply carries. */
export function describeReply(
  reply: {
    model: string | null;
    latency_s: number | null;
    finish_reason: string | null;
    cached: boolean;
  },
  extra: string[] = []
): string {
  const parts: string[] = [];
  if (reply.model !== null) {
    parts.push(reply.model);
  }
  if (reply.latency_s !== null) {
    parts.push(`${reply.latency_s.toFixed(2)} s`);
  }
  parts.push(...extra);
  if (reply.finish_reason !== null && reply.finish_reason !== 'stop') {
    parts.push(`stopped: ${reply.finish_reason}`);
  }
  if (reply.cached) {
    parts.push('from the store');
  }
  return parts.join(' · ');
}

/**
 * One image file and the server extension's answer about it.
 *
 * Every element carries a shared `jp-caprl-ImageView-*` class (the styling)
 * and one under the subclass's own prefix, e.g. `jp-caprl-Caption-text`.
 * Subclasses say what to ask (`request`), how to show it (`render`, `clear`)
 * and what "Copy" copies (`copyText`).
 */
export abstract class ImageResultView<T> extends Widget {
  constructor(options: ImageResultView.IOptions, spec: ImageResultView.ISpec) {
    super();
    this.path = options.path;
    this._spec = spec;
    this.addClass('jp-caprl-ImageView');
    this.addClass(spec.prefix);

    const figure = this.element('figure', 'figure');
    const image = this.element('img', 'image');
    image.alt = this.path;
    void options.contents.getDownloadUrl(this.path).then(url => {
      image.src = url;
    });
    const path = this.element('figcaption', 'path');
    path.textContent = this.path;
    figure.append(image, path);

    this.message = this.element('p', 'text');
    this.message.setAttribute('aria-live', 'polite');
    this.content = this.element('div', 'content');
    this.meta = this.element('p', 'meta');
    this.meta.classList.add('jp-caprl-Muted');

    this._copy = button(spec.copyLabel, spec.copyTitle);
    this._copy.addEventListener('click', () => {
      Clipboard.copyToSystem(this.copyText());
      this.meta.dataset.copied = 'true';
    });
    const insert = button('Insert as code', spec.insertTitle);
    insert.addEventListener('click', () => {
      const args = { path: this.path };
      if (!options.commands.isEnabled(spec.insertCommand, args)) {
        Notification.warning(
          'Open a notebook first: "Insert as code" adds a cell to it.',
          { autoClose: 5000 }
        );
        return;
      }
      void options.commands.execute(spec.insertCommand, args);
    });
    this._retry = button('Retry', spec.retryTitle);
    this._retry.addEventListener('click', () => {
      void this.run();
    });
    const actions = this.element('div', 'actions');
    actions.append(this._copy, insert, this._retry);

    const body = this.element('div', 'body');
    body.append(this.message, this.content, this.meta, actions);
    this.node.append(figure, body);
  }

  /** The image's path, relative to the Jupyter root. */
  readonly path: string;

  /** Ask the server extension and show its answer (or its error) when it arrives. */
  async run(): Promise<void> {
    this.clear();
    this._setState('pending');
    this.message.textContent = this._spec.pendingText;
    this.meta.textContent = '';
    delete this.meta.dataset.copied;
    try {
      const reply = await this.request();
      if (this.isDisposed) {
        return;
      }
      this.message.textContent = '';
      this.render(reply);
      this._setState('done');
    } catch (error) {
      if (this.isDisposed) {
        return;
      }
      this.clear();
      this.message.textContent =
        error instanceof Error ? error.message : String(error);
      this._setState('error');
    }
  }

  /** The call to the server extension. */
  protected abstract request(): Promise<T>;

  /** Show a reply: `message`, `content` and `meta` are the subclass's to fill. */
  protected abstract render(reply: T): void;

  /** Forget the last reply (before a new request, or on an error). */
  protected abstract clear(): void;

  /** What the copy button puts on the clipboard. */
  protected abstract copyText(): string;

  /** A new element with the shared class `jp-caprl-ImageView-<part>` and `<prefix>-<part>`. */
  protected element<K extends keyof HTMLElementTagNameMap>(
    tag: K,
    part: string
  ): HTMLElementTagNameMap[K] {
    return node(tag, `jp-caprl-ImageView-${part} ${this._spec.prefix}-${part}`);
  }

  /** One line of text: "Captioning…", the caption itself, or the error. */
  protected readonly message: HTMLParagraphElement;
  /** Below the message: what a subclass shows beyond text (a table). */
  protected readonly content: HTMLDivElement;
  /** Provenance: model, latency, tokens. */
  protected readonly meta: HTMLParagraphElement;

  private _setState(state: 'pending' | 'done' | 'error'): void {
    this.node.dataset.state = state;
    this._copy.disabled = state !== 'done';
    this._retry.hidden = state !== 'error';
    this.message.classList.toggle('jp-caprl-Error', state === 'error');
  }

  private readonly _spec: ImageResultView.ISpec;
  private readonly _copy: HTMLButtonElement;
  private readonly _retry: HTMLButtonElement;
}

export namespace ImageResultView {
  /** What the application hands every view. */
  export interface IOptions {
    path: string;
    client: CapRLClient;
    contents: Contents.IManager;
    commands: CommandRegistry;
  }

  /** What tells one kind of view from another. */
  export interface ISpec {
    /** The view's own class and the prefix of its parts, e.g. `jp-caprl-Caption`. */
    prefix: string;
    pendingText: string;
    copyLabel: string;
    copyTitle: string;
    retryTitle: string;
    insertTitle: string;
    /** The command "Insert as code" runs with `{ path }`. */
    insertCommand: string;
  }
}

/** What the image commands need from the application. */
export interface IImageCommandOptions {
  client: CapRLClient;
  browserFactory: IFileBrowserFactory | null;
  notebooks: INotebookTracker | null;
}

/** One file-browser command that opens an `ImageResultView`, and its insert-code command. */
export interface IImageCommandSpec {
  /** Opens the panel; args `{ path?: string }`, else the browser's selection. */
  command: string;
  label: string;
  caption: string;
  icon: LabIcon;
  /** Adds the notebook code for a file; args `{ path: string }`. */
  insertCommand: string;
  insertLabel: string;
  insertCaption: string;
  /** The tracker's namespace, and the panels' id prefix. */
  namespace: string;
  /** The tab's label: `<tabPrefix>: <file name>`. */
  tabPrefix: string;
  /** The context-menu item's rank. */
  rank: number;
  create(options: ImageResultView.IOptions): ImageResultView<unknown>;
  /** The cell's code for the image at `imagePath` from a notebook at `notebookPath`. */
  code(imagePath: string, notebookPath: string): string;
}

/** Register `spec.command`, `spec.insertCommand` and the file browser's context-menu item. */
export function addImageCommands(
  app: JupyterFrontEnd,
  options: IImageCommandOptions,
  spec: IImageCommandSpec
): void {
  const { commands, serviceManager, shell } = app;
  const contents = serviceManager.contents;
  const tracker = new WidgetTracker<MainAreaWidget<ImageResultView<unknown>>>(
    { namespace: spec.namespace }
  );

  /** The paths the command acts on: its `path` arg, else the browser's selection. */
  const targets = (args: ReadonlyPartialJSONObject): string[] => {
    if (typeof args.path === 'string') {
      return [args.path];
    }
    const browser = options.browserFactory?.tracker.currentWidget;
    if (!browser) {
      return [];
    }
    return Array.from(browser.selectedItems())
      .filter(item => item.type !== 'directory')
      .map(item => item.path);
  };

  const open = (path: string): void => {
    const local = contents.localPath(path);
    const existing = tracker.find(widget => widget.content.path === local);
    if (existing) {
      shell.activateById(existing.id);
      return;
    }
    const content = spec.create({
      path: local,
      client: options.client,
      contents,
      commands
    });
    const widget = new MainAreaWidget({ content });
    widget.id = `jp-${spec.namespace}-${++Private.counter}`;
    widget.title.label = `${spec.tabPrefix}: ${PathExt.basename(local)}`;
    widget.title.caption = local;
    widget.title.icon = spec.icon;
    widget.title.closable = true;
    void tracker.add(widget);
    shell.add(widget, 'main');
    shell.activateById(widget.id);
    void content.run();
  };

  commands.addCommand(spec.command, {
    label: spec.label,
    caption: spec.caption,
    icon: spec.icon,
    isEnabled: args => {
      const paths = targets(args);
      return paths.length > 0 && paths.every(isImagePath);
    },
    execute: args => {
      for (const path of targets(args).filter(isImagePath)) {
        open(path);
      }
    }
  });

  commands.addCommand(spec.insertCommand, {
    label: spec.insertLabel,
    caption: spec.insertCaption,
    isEnabled: () => !!options.notebooks?.currentWidget,
    execute: async args => {
      const panel = options.notebooks?.currentWidget;
      if (!panel || typeof args.path !== 'string') {
        return;
      }
      await panel.context.ready;
      const notebook = panel.content;
      // Fill an empty active cell (a new notebook's first one), else add one below it.
      if (notebook.activeCell?.model.sharedModel.getSource().trim() !== '') {
        NotebookActions.insertBelow(notebook);
      }
      NotebookActions.changeCellType(notebook, 'code');
      const cell = notebook.activeCell;
      if (cell) {
        cell.model.sharedModel.setSource(
          spec.code(
            contents.localPath(args.path),
            contents.localPath(panel.context.path)
          )
        );
      }
      shell.activateById(panel.id);
    }
  });

  app.contextMenu.addItem({
    command: spec.command,
    selector: '.jp-DirListing-item[data-isdir="false"]',
    rank: spec.rank
  });
}

namespace Private {
  export let counter = 0;
}
