/**
 * The extraction review's editors: a form of typed fields, or an editable grid for a chart's
 * table. Each shows the reviewer's draft and marks what differs from the model's answer.
 */

import { button, node, setText } from '../shared/dom';
import { Drafts, tableText } from './drafts';
import { FieldKind, IRow, ITableText, ReviewModel } from './protocol';

const KIND_LABEL: Readonly<Record<FieldKind, string>> = {
  integer: 'integer',
  number: 'number',
  boolean: 'true/false',
  string: 'text',
  json: 'JSON'
};

type FieldInput = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

interface IFormField {
  input: FieldInput;
  original: HTMLElement;
  row: HTMLElement;
}

interface IGrid {
  el: HTMLElement;
  headRow: HTMLTableRowElement;
  tbody: HTMLTableSectionElement;
  head: HTMLInputElement[];
  rows: HTMLInputElement[][];
}

/** `model: <value>` for a changed value's tooltip, with empty spelled out. */
function modelSaid(was: string): string {
  return `model: ${was === '' ? '(empty)' : was}`;
}

function fieldInput(kind: string): FieldInput {
  if (kind === 'boolean') {
    const select = node('select', 'xr-input');
    for (const [value, text] of [['', '\u2014'], ['true', 'true'], ['false', 'false']]) {
      const option = node('option');
      option.value = value;
      option.textContent = text;
      select.append(option);
    }
    return select;
  }
  if (kind === 'json') {
    return node('textarea', 'xr-input xr-input--json', { rows: '2', spellcheck: 'false' });
  }
  const input = node('input', 'xr-input', { type: 'text', spellcheck: kind === 'string' ? 'true' : 'false' });
  if (kind === 'integer' || kind === 'number') {
    input.setAttribute('inputmode', kind === 'integer' ? 'numeric' : 'decimal');
    input.classList.add('xr-input--num');
  }
  return input;
}

export class Editor {
  readonly el = node('div', 'xr-editor', { 'data-testid': 'editor' });
  readonly emptyTable = node('p', 'xr-empty', { 'data-testid': 'no-table' });

  /**
   * `current()` is the row shown; `changed()` redraws the unsaved-edits state after the
   * reviewer typed.
   */
  constructor(
    private readonly _model: ReviewModel,
    private readonly _drafts: Drafts,
    private readonly _current: () => IRow | undefined,
    private readonly _changed: () => void
  ) {
    this.emptyTable.textContent = 'No table for this row.';
  }

  /** The fields changed: build the form again on the next fill. */
  resetForm(): void {
    this._form = null;
  }

  /** Shows the current row's draft (or values) in the form or the grid. */
  fill(): void {
    const row = this._current();
    if (!row) return;
    if (this._drafts.isTable()) this._fillGrid(row);
    else this._fillForm(row);
    this._changed();
  }

  private _fillForm(row: IRow): void {
    if (!this._form) {
      const built = this._buildForm();
      this._form = built.inputs;
      this.el.replaceChildren(built.el);
    }
    const values = this._drafts.fields(row);
    const original = this._drafts.modelFields(row);
    for (const [name, parts] of this._form) {
      const text = values[name] ?? '';
      if (parts.input.value !== text) parts.input.value = text;
      const differs = text !== original[name];
      parts.row.classList.toggle('is-changed', differs);
      parts.original.hidden = !differs;
      setText(parts.original, differs ? modelSaid(original[name]) : '');
    }
    this.emptyTable.hidden = true;
  }

  private _fillGrid(row: IRow): void {
    if (!this._grid) {
      this._grid = this._buildGrid();
      this.el.replaceChildren(this._grid.el);
    }
    const grid = this._grid;
    const data = this._drafts.table(row);
    this.emptyTable.hidden = data !== null;
    grid.el.hidden = data === null;
    if (!data) return;
    this._ensureGridShape(grid, data.columns.length, data.rows.length);
    data.columns.forEach((text, c) => {
      if (grid.head[c].value !== text) grid.head[c].value = text;
    });
    data.rows.forEach((cells, r) => {
      cells.forEach((text, c) => {
        const input = grid.rows[r][c];
        if (input.value !== text) input.value = text;
      });
    });
    const kinds = row.kinds || [];
    grid.head.forEach((_input, c) => {
      const numeric = kinds[c] === 'integer' || kinds[c] === 'number';
      for (const cells of grid.rows) cells[c].classList.toggle('xr-cell--num', numeric);
    });
    this._markCells();
  }

  /** Marks the grid's cells that differ from the model's table, with its value as tooltip. */
  private _markCells(): void {
    const row = this._current();
    const grid = this._grid;
    if (!row || !grid) return;
    const original = tableText(row.values) || { columns: [], rows: [] };
    grid.rows.forEach((cells, r) => {
      cells.forEach((input, c) => {
        const was = original.rows[r] ? original.rows[r][c] : undefined;
        const differs = was === undefined || input.value !== was;
        input.classList.toggle('is-changed', differs);
        input.title = differs ? (was === undefined ? 'added' : modelSaid(was)) : '';
      });
    });
    grid.head.forEach((input, c) => {
      const was = original.columns[c];
      const differs = was === undefined || input.value !== was;
      input.classList.toggle('is-changed', differs);
      input.title = differs ? `model: ${was === undefined ? '(none)' : was}` : '';
    });
  }

  private _buildForm(): { el: HTMLElement; inputs: Map<string, IFormField> } {
    const table = node('table', 'xr-form', { 'data-testid': 'fields' });
    const tbody = node('tbody');
    const inputs = new Map<string, IFormField>();
    for (const field of this._model.get('fields') || []) {
      const name = String(field.name);
      const kind = String(field.kind || 'string');
      const tr = node('tr', 'xr-field', { 'data-field': name });
      const th = node('th', 'xr-field-name', { scope: 'row' });
      const nameEl = node('span', 'xr-field-label');
      nameEl.textContent = name;
      const kindEl = node('span', 'xr-field-kind');
      kindEl.textContent = KIND_LABEL[kind as FieldKind] || kind;
      th.append(nameEl, kindEl);
      const td = node('td', 'xr-field-value');
      const input = fieldInput(kind);
      input.setAttribute('data-testid', 'field-input');
      input.setAttribute('data-field', name);
      input.setAttribute('aria-label', name);
      input.addEventListener('input', () => this._onFieldInput(name, input.value));
      input.addEventListener('change', () => this._onFieldInput(name, input.value));
      const original = node('div', 'xr-original', { 'data-testid': 'field-original' });
      td.append(input, original);
      tr.append(th, td);
      tbody.append(tr);
      inputs.set(name, { input, original, row: tr });
    }
    table.append(tbody);
    return { el: table, inputs };
  }

  private _buildGrid(): IGrid {
    const wrap = node('div', 'xr-grid-wrap');
    const table = node('table', 'xr-grid', { 'data-testid': 'table' });
    const thead = node('thead');
    const headRow = node('tr');
    thead.append(headRow);
    const tbody = node('tbody');
    table.append(thead, tbody);
    const addRow = button('add-row', '+ Add row', { variant: 'small' });
    addRow.addEventListener('click', () => {
      const row = this._current();
      if (!row) return;
      const draft = this._drafts.tableDraft(row);
      draft.rows.push(draft.columns.map(() => ''));
      this.fill();
      const last = this._grid?.rows[this._grid.rows.length - 1];
      if (last && last[0]) last[0].focus();
    });
    wrap.append(table, addRow);
    return { el: wrap, headRow, tbody, head: [], rows: [] };
  }

  private _ensureGridShape(grid: IGrid, nCols: number, nRows: number): void {
    if (grid.head.length !== nCols) {
      grid.headRow.replaceChildren();
      grid.head = [];
      const corner = node('th', 'xr-corner');
      corner.textContent = '#';
      grid.headRow.append(corner);
      for (let c = 0; c < nCols; c++) {
        const th = node('th');
        const input = node('input', 'xr-cell xr-cell--head', {
          type: 'text',
          'data-testid': 'header-cell',
          'data-col': String(c),
          'aria-label': `Column ${c + 1} name`,
          spellcheck: 'false'
        });
        input.addEventListener('input', () => {
          const row = this._current();
          if (!row) return;
          this._drafts.tableDraft(row).columns[c] = input.value;
          this._changed();
        });
        th.append(input);
        grid.headRow.append(th);
        grid.head.push(input);
      }
      grid.headRow.append(node('th', 'xr-corner'));
      grid.tbody.replaceChildren();
      grid.rows = [];
    }
    while (grid.rows.length > nRows) {
      grid.rows.pop();
      grid.tbody.lastChild?.remove();
    }
    while (grid.rows.length < nRows) grid.rows.push(this._gridRow(grid, grid.rows.length, nCols));
  }

  private _gridRow(grid: IGrid, r: number, nCols: number): HTMLInputElement[] {
    const tr = node('tr', 'xr-grid-row');
    const num = node('th', 'xr-rownum', { scope: 'row' });
    num.textContent = String(r + 1);
    tr.append(num);
    const cells: HTMLInputElement[] = [];
    for (let c = 0; c < nCols; c++) {
      const td = node('td');
      const input = node('input', 'xr-cell', {
        type: 'text',
        'data-testid': 'cell',
        'data-row': String(r),
        'data-col': String(c),
        'aria-label': `Row ${r + 1}, column ${c + 1}`,
        spellcheck: 'false'
      });
      input.addEventListener('input', () =>
        this._onTableInput(draft => {
          if (draft.rows[r]) draft.rows[r][c] = input.value;
        })
      );
      input.addEventListener('keydown', ev => {
        if (ev.key === 'Enter' && !ev.ctrlKey && !ev.metaKey) {
          ev.preventDefault();
          const below = grid.rows[r + (ev.shiftKey ? -1 : 1)];
          if (below && below[c]) below[c].focus();
        }
      });
      td.append(input);
      tr.append(td);
      cells.push(input);
    }
    const tdRemove = node('td', 'xr-remove-cell');
    const remove = button('remove-row', '\u00d7', {
      variant: 'ghost',
      label: `Remove row ${r + 1}`,
      hint: 'Remove row'
    });
    remove.addEventListener('click', () => {
      const row = this._current();
      if (!row) return;
      this._drafts.tableDraft(row).rows.splice(r, 1);
      this.fill();
    });
    tdRemove.append(remove);
    tr.append(tdRemove);
    grid.tbody.append(tr);
    return cells;
  }

  private _onFieldInput(name: string, value: string): void {
    const row = this._current();
    if (!row) return;
    this._drafts.setField(row, name, value);
    this.fill();
  }

  private _onTableInput(edit: (draft: ITableText) => void): void {
    const row = this._current();
    if (!row) return;
    edit(this._drafts.tableDraft(row));
    this._markCells();
    this._changed();
  }

  private _form: Map<string, IFormField> | null = null;
  private _grid: IGrid | null = null;
}
