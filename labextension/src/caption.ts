/**
 * "Caption with CapRL" for image files: the file-browser context-menu command,
 * the main-area panel that shows the image and its caption, and "Insert as
 * code", which writes the caprl_nb call for that file into the current notebook.
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
import { imageIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { CapRLClient, ICaptionReply } from './api';
import { CommandIDs } from './commands';

/** The file types the command is enabled on. */
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
 * The notebook code that captions `imagePath` (relative to the Jupyter root)
 * from a notebook at `notebookPath`: the kernel runs in the notebook's folder.
 */
export function captionCode(imagePath: string, notebookPath: string): string {
  const relative = PathExt.relative(PathExt.dirname(notebookPath), imagePath);
  // A JSON string is a valid Python string literal.
  return `import caprl_nb\n\ncaprl_nb.caption([${JSON.stringify(relative)}])`;
}

function button(label: string, title: string): HTMLButtonElement {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = 'jp-caprl-Button';
  node.textContent = label;
  node.title = title;
  return node;
}

function describe(reply: ICaptionReply): string {
  const parts = [reply.model, `${reply.latency_s.toFixed(2)} s`];
  if (reply.completion_tokens !== null) {
    parts.push(`${reply.completion_tokens} tokens`);
  }
  if (reply.finish_reason !== null && reply.finish_reason !== 'stop') {
    parts.push(`stopped: ${reply.finish_reason}`);
  }
  if (reply.cached) {
    parts.push('from the store');
  }
  return parts.join(' · ');
}

/** One image and its caption. */
export class CaptionView extends Widget {
  constructor(options: CaptionView.IOptions) {
    super();
    this.path = options.path;
    this._client = options.client;
    this.addClass('jp-caprl-Caption');

    const figure = document.createElement('figure');
    figure.className = 'jp-caprl-Caption-figure';
    const image = document.createElement('img');
    image.className = 'jp-caprl-Caption-image';
    image.alt = this.path;
    void options.contents.getDownloadUrl(this.path).then(url => {
      image.src = url;
    });
    const path = document.createElement('figcaption');
    path.className = 'jp-caprl-Caption-path';
    path.textContent = this.path;
    figure.append(image, path);

    this._text.className = 'jp-caprl-Caption-text';
    this._text.setAttribute('aria-live', 'polite');
    this._meta.className = 'jp-caprl-Caption-meta jp-caprl-Muted';

    this._copy.addEventListener('click', () => {
      Clipboard.copyToSystem(this._caption);
      this._meta.dataset.copied = 'true';
    });
    this._insert.addEventListener('click', () => {
      if (
        !options.commands.isEnabled(CommandIDs.insertCaptionCode, {
          path: this.path
        })
      ) {
        Notification.warning(
          'Open a notebook first: "Insert as code" adds a cell to it.',
          {
            autoClose: 5000
          }
        );
        return;
      }
      void options.commands.execute(CommandIDs.insertCaptionCode, {
        path: this.path
      });
    });
    this._retry.addEventListener('click', () => {
      void this.run();
    });
    const actions = document.createElement('div');
    actions.className = 'jp-caprl-Caption-actions';
    actions.append(this._copy, this._insert, this._retry);

    const body = document.createElement('div');
    body.className = 'jp-caprl-Caption-body';
    body.append(this._text, this._meta, actions);
    this.node.append(figure, body);
  }

  /** The image's path, relative to the Jupyter root. */
  readonly path: string;

  /** Ask the server extension for the caption and show it when it arrives. */
  async run(): Promise<void> {
    this._caption = '';
    this._setState('pending');
    this._text.textContent = 'Captioning…';
    this._meta.textContent = '';
    delete this._meta.dataset.copied;
    try {
      const reply = await this._client.caption(this.path);
      if (this.isDisposed) {
        return;
      }
      this._caption = reply.caption;
      this._text.textContent = reply.caption;
      this._meta.textContent = describe(reply);
      this._setState('done');
    } catch (error) {
      if (this.isDisposed) {
        return;
      }
      this._text.textContent =
        error instanceof Error ? error.message : String(error);
      this._setState('error');
    }
  }

  private _setState(state: 'pending' | 'done' | 'error'): void {
    this.node.dataset.state = state;
    this._copy.disabled = state !== 'done';
    this._retry.hidden = state !== 'error';
    this._text.classList.toggle('jp-caprl-Error', state === 'error');
  }

  private readonly _client: CapRLClient;
  private _caption = '';
  private readonly _text = document.createElement('p');
  private readonly _meta = document.createElement('p');
  private readonly _copy = button('Copy', 'Copy the caption to the clipboard');
  private readonly _insert = button(
    'Insert as code',
    'Add a cell to the current notebook that captions this file with caprl_nb'
  );
  private readonly _retry = button('Retry', 'Ask for the caption again');
}

export namespace CaptionView {
  export interface IOptions {
    path: string;
    client: CapRLClient;
    contents: Contents.IManager;
    commands: CommandRegistry;
  }
}

/** What the caption commands need from the application. */
export interface ICaptionCommandOptions {
  client: CapRLClient;
  browserFactory: IFileBrowserFactory | null;
  notebooks: INotebookTracker | null;
}

/** Register `captionFile` and `insertCaptionCode`, and the file browser's context-menu item. */
export function addCaptionCommands(
  app: JupyterFrontEnd,
  options: ICaptionCommandOptions
): void {
  const { commands, serviceManager, shell } = app;
  const contents = serviceManager.contents;
  const tracker = new WidgetTracker<MainAreaWidget<CaptionView>>({
    namespace: 'caprl-caption'
  });

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
    const content = new CaptionView({
      path: local,
      client: options.client,
      contents,
      commands
    });
    const widget = new MainAreaWidget({ content });
    widget.id = `jp-caprl-caption-${++Private.counter}`;
    widget.title.label = `Caption: ${PathExt.basename(local)}`;
    widget.title.caption = local;
    widget.title.icon = imageIcon;
    widget.title.closable = true;
    void tracker.add(widget);
    shell.add(widget, 'main');
    shell.activateById(widget.id);
    void content.run();
  };

  commands.addCommand(CommandIDs.captionFile, {
    label: 'Caption with CapRL',
    caption:
      'Caption the image with the CapRL model the Jupyter server is set up for',
    icon: imageIcon,
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

  commands.addCommand(CommandIDs.insertCaptionCode, {
    label: 'Insert CapRL Caption Code',
    caption:
      'Add a cell that captions the file with caprl_nb to the current notebook',
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
          captionCode(
            contents.localPath(args.path),
            contents.localPath(panel.context.path)
          )
        );
      }
      shell.activateById(panel.id);
    }
  });

  app.contextMenu.addItem({
    command: CommandIDs.captionFile,
    selector: '.jp-DirListing-item[data-isdir="false"]',
    rank: 60
  });
}

namespace Private {
  export let counter = 0;
}
