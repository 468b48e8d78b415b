/**
 * "Caption with CapRL" for image files: the file-browser context-menu command,
 * the main-area panel that shows the image and its caption, and "Insert as
 * code", which writes the caprl_nb call for that file into the current notebook.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { imageIcon } from '@jupyterlab/ui-components';

import { CapRLClient, ICaptionReply } from './api';
import { CommandIDs } from './commands';
import {
  addImageCommands,
  describeReply,
  IImageCommandOptions,
  ImageResultView,
  pathLiteral
} from './imagepanel';

/**
 * The notebook code that captions `imagePath` (relative to the Jupyter root)
 * from a notebook at `notebookPath` with the `df.caprl` accessor, as the README
 * does: the kernel runs in the notebook's folder.
 */
export function captionCode(imagePath: string, notebookPath: string): string {
  const path = pathLiteral(imagePath, notebookPath);
  return [
    'import pandas as pd',
    'import caprl_nb  # registers df.caprl',
    '',
    `df = pd.DataFrame({"image": [${path}]})`,
    'df["caption"] = df.caprl.caption("image")',
    'df'
  ].join('\n');
}

/** One image and its caption. */
export class CaptionView extends ImageResultView<ICaptionReply> {
  constructor(options: ImageResultView.IOptions) {
    super(options, {
      prefix: 'jp-caprl-Caption',
      pendingText: 'Captioning…',
      copyLabel: 'Copy',
      copyTitle: 'Copy the caption to the clipboard',
      retryTitle: 'Ask for the caption again',
      insertTitle:
        'Add a cell to the current notebook that captions this file with caprl_nb',
      insertCommand: CommandIDs.insertCaptionCode
    });
    this._client = options.client;
  }

  protected request(): Promise<ICaptionReply> {
    return this._client.caption(this.path);
  }

  protected render(reply: ICaptionReply): void {
    this._caption = reply.caption;
    this.message.textContent = reply.caption;
    const tokens =
      reply.completion_tokens === null
        ? []
        : [`${reply.completion_tokens} tokens`];
    this.meta.textContent = describeReply(reply, tokens);
  }

  protected clear(): void {
    this._caption = '';
  }

  protected copyText(): string {
    return this._caption;
  }

  private readonly _client: CapRLClient;
  private _caption = '';
}

/** Register `captionFile` and `insertCaptionCode`, and the file browser's context-menu item. */
export function addCaptionCommands(
  app: JupyterFrontEnd,
  options: IImageCommandOptions
): void {
  addImageCommands(app, options, {
    command: CommandIDs.captionFile,
    label: 'Caption with CapRL',
    caption:
      'Caption the image with the CapRL model the Jupyter server is set up for',
    icon: imageIcon,
    insertCommand: CommandIDs.insertCaptionCode,
    insertLabel: 'Insert CapRL Caption Code',
    insertCaption:
      'Add a cell that captions the file with caprl_nb to the current notebook',
    namespace: 'caprl-caption',
    tabPrefix: 'Caption',
    rank: 60,
    create: options => new CaptionView(options),
    code: captionCode
  });
}
