/**
 * "Extract table with CapRL" for image files of charts: the file-browser
 * context-menu command, the main-area panel that shows the image beside the
 * chart's title, axes, units and data table (`POST /caprl/extract-table`, which
 * runs `caprl_nb.extract.chart_table`), "Copy as CSV", and "Insert as code".
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { tableRowsIcon } from '@jupyterlab/ui-components';

import { CapRLClient, IExtractTableReply, TableCell } from './api';
import { CommandIDs } from './commands';
import {
  addImageCommands,
  describeReply,
  IImageCommandOptions,
  ImageResultView,
  pathLiteral
} from './imagepanel';

/**
 * The notebook code that reads the chart at `imagePath` (relative to the
 * Jupyter root) from a notebook at `notebookPath`.
 */
export function chartTableCode(
  imagePath: string,
  notebookPath: string
): string {
  const path = pathLiteral(imagePath, notebookPath);
  return `import caprl_nb.extract\n\ncaprl_nb.extract.chart_table([${path}])`;
}

function csvField(cell: TableCell): string {
  const text = cell === null ? '' : String(cell);
  const quote = /[",\r\n]|^\s|\s$/.test(text);
  return quote ? `"${text.replace(/"/g, '""')}"` : text;
}

/** RFC 4180 CSV: a header line, then one line per row; a missing value is an empty field. */
export function toCsv(columns: string[], rows: TableCell[][]): string {
  return [columns, ...rows]
    .map(row => row.map(csvField).join(','))
    .join('\r\n');
}

function text<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  content: string,
  className = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className !== '') {
    node.className = className;
  }
  return node;
}

/** The chart's facts as a definition list; an empty one reads "none". */
function facts(reply: IExtractTableReply): HTMLDListElement {
  const list = document.createElement('dl');
  list.className = 'jp-caprl-Facts jp-caprl-Table-facts';
  const entries: [string, string][] = [
    ['Title', reply.title],
    ['x axis', reply.x_label],
    ['y axis', reply.y_label],
    ['Units', reply.units]
  ];
  for (const [name, value] of entries) {
    const dd = text('dd', value === '' ? 'none' : value);
    dd.classList.toggle('jp-caprl-Muted', value === '');
    list.append(text('dt', name), dd);
  }
  return list;
}

/** The table as an HTML <table>; every string goes in as textContent. */
function grid(reply: IExtractTableReply): HTMLTableElement {
  const table = document.createElement('table');
  table.className = 'jp-caprl-Table-grid';
  const head = table.createTHead().insertRow();
  for (const column of reply.columns) {
    const th = text('th', column);
    th.scope = 'col';
    head.append(th);
  }
  const body = table.createTBody();
  for (const row of reply.rows) {
    const tr = body.insertRow();
    row.forEach((cell, index) => {
      const td: HTMLTableCellElement = text(
        index === 0 ? 'th' : 'td',
        cell === null ? '—' : String(cell)
      );
      if (index === 0) {
        td.scope = 'row';
      }
      if (cell === null) {
        td.classList.add('jp-caprl-Muted');
        td.title = 'no value';
      } else if (typeof cell === 'number') {
        td.classList.add('jp-mod-number');
      }
      tr.append(td);
    });
  }
  return table;
}

/** One chart image and the table read from it. */
export class TableView extends ImageResultView<IExtractTableReply> {
  constructor(options: ImageResultView.IOptions) {
    super(options, {
      prefix: 'jp-caprl-Table',
      pendingText: 'Reading the chart…',
      copyLabel: 'Copy as CSV',
      copyTitle: 'Copy the table to the clipboard as CSV',
      retryTitle: 'Ask for the table again',
      insertTitle:
        'Add a cell to the current notebook that reads this chart with caprl_nb.extract.chart_table',
      insertCommand: CommandIDs.insertTableCode
    });
    this._client = options.client;
  }

  protected request(): Promise<IExtractTableReply> {
    return this._client.extractTable(this.path);
  }

  protected render(reply: IExtractTableReply): void {
    this._csv = toCsv(reply.columns, reply.rows);
    if (reply.rows.length === 0) {
      this.message.textContent =
        'The model found no data points in this chart.';
    }
    const scroller = document.createElement('div');
    scroller.className = 'jp-caprl-Table-scroller';
    scroller.append(grid(reply));
    this.content.replaceChildren(facts(reply), scroller);
    const size = `${reply.rows.length} × ${reply.columns.length}`;
    this.meta.textContent = describeReply(reply, [size]);
  }

  protected clear(): void {
    this._csv = '';
    this.content.replaceChildren();
  }

  protected copyText(): string {
    return this._csv;
  }

  private readonly _client: CapRLClient;
  private _csv = '';
}

/** Register `extractTable` and `insertTableCode`, and the file browser's context-menu item. */
export function addTableCommands(
  app: JupyterFrontEnd,
  options: IImageCommandOptions
): void {
  addImageCommands(app, options, {
    command: CommandIDs.extractTable,
    label: 'Extract table with CapRL',
    caption:
      "Read the chart in the image into a table with the Jupyter server's CapRL model",
    icon: tableRowsIcon,
    insertCommand: CommandIDs.insertTableCode,
    insertLabel: 'Insert CapRL Chart Table Code',
    insertCaption:
      'Add a cell that reads the chart with caprl_nb.extract.chart_table to the current notebook',
    namespace: 'caprl-table',
    tabPrefix: 'Table',
    rank: 61,
    create: options => new TableView(options),
    code: chartTableCode
  });
}
