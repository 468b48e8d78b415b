/**
 * The extraction review's client-side state: the reviewer's unsaved drafts per row (as text,
 * compared against what Python sent), and decoded images kept as a bounded set of object URLs.
 */

import { asText, imageUrl, isMissing } from '../shared/dom';
import { Buffers } from '../shared/model';
import { IImageMessage, IRow, ITable, ITableText, ReviewModel } from './protocol';

const MAX_IMAGES = 8; // decoded images kept as object URLs, least recently shown dropped first

export type FieldText = Record<string, string>;

/** A table's cells as text, or null when there is no table. */
export function tableText(table: ITable | null | undefined): ITableText | null {
  if (!table) return null;
  return {
    columns: (table.columns || []).map(asText),
    rows: (table.rows || []).map(r => r.map(asText))
  };
}

/** Unsaved edits by row id: field texts or a table, as the reviewer left them. */
export class Drafts {
  constructor(private readonly _model: ReviewModel) {}

  isTable(): boolean {
    return this._model.get('mode') === 'table';
  }

  has(id: number): boolean {
    return this._fields.has(id) || this._tables.has(id);
  }

  delete(id: number): void {
    this._fields.delete(id);
    this._tables.delete(id);
  }

  /** The form's texts: the reviewer's edit if any, else the model's values. */
  baseFields(row: IRow): FieldText {
    return this._fieldTexts(row.edited || row.values || {});
  }

  /** The model's own values as texts (what a change is marked against). */
  modelFields(row: IRow): FieldText {
    return this._fieldTexts(row.values || {});
  }

  /** The texts the form shows: the draft, else the base. */
  fields(row: IRow): FieldText {
    return this._fields.get(row.id) || this.baseFields(row);
  }

  setField(row: IRow, name: string, value: string): void {
    const draft = this.fields(row);
    draft[name] = value;
    this._fields.set(row.id, draft);
  }

  /** The changed fields only (what an `edit` sends). */
  changedFields(row: IRow): FieldText {
    const draft = this._fields.get(row.id);
    if (!draft) return {};
    const base = this.baseFields(row);
    const changed: FieldText = {};
    for (const [name, text] of Object.entries(draft)) if (text !== base[name]) changed[name] = text;
    return changed;
  }

  baseTable(row: IRow): ITableText | null {
    return tableText(row.edited || row.values);
  }

  /** The table the grid shows: the draft, else the base (null: no table). */
  table(row: IRow): ITableText | null {
    return this._tables.get(row.id) || this.baseTable(row);
  }

  /** The row's table draft, started from the base on first edit. */
  tableDraft(row: IRow): ITableText {
    let draft = this._tables.get(row.id);
    if (!draft) {
      draft = this.baseTable(row) || { columns: [], rows: [] };
      this._tables.set(row.id, draft);
    }
    return draft;
  }

  savedTable(id: number): ITableText | undefined {
    return this._tables.get(id);
  }

  /** Whether the row has edits that differ from what was saved. */
  isDirty(row: IRow | undefined): boolean {
    if (!row || !this.has(row.id)) return false;
    if (!this.isTable()) return Object.keys(this.changedFields(row)).length > 0;
    return JSON.stringify(this._tables.get(row.id)) !== JSON.stringify(this.baseTable(row));
  }

  private _fieldTexts(values: Record<string, unknown>): FieldText {
    const out: FieldText = {};
    for (const field of this._model.get('fields') || []) out[field.name] = asText(values[field.name]);
    return out;
  }

  private readonly _fields = new Map<number, FieldText>();
  private readonly _tables = new Map<number, ITableText>();
}

export interface IImage {
  url?: string;
  width?: number;
  height?: number;
  error?: string;
}

/** Decoded images by row id; insertion order is recency. */
export class ImageCache {
  get(id: number): IImage | undefined {
    return this._images.get(id);
  }

  /** Marks row `id`'s image most recently shown. */
  touch(id: number): void {
    const entry = this._images.get(id);
    if (!entry) return;
    this._images.delete(id);
    this._images.set(id, entry);
  }

  /** Stores an `image` answer; returns false when it carried nothing to store. */
  add(msg: IImageMessage, buffers: Buffers, current: number): boolean {
    const old = this._images.get(msg.id);
    if (!isMissing(msg.error)) {
      this._images.set(msg.id, { error: String(msg.error) });
    } else if (buffers[0]) {
      const url = imageUrl(buffers[0], msg.mime);
      this._images.delete(msg.id);
      this._images.set(msg.id, { url, width: msg.width, height: msg.height });
    } else {
      return false;
    }
    const oldUrl = old?.url;
    if (oldUrl && msg.id !== current) URL.revokeObjectURL(oldUrl);
    else if (oldUrl) queueMicrotask(() => URL.revokeObjectURL(oldUrl));
    for (const [id, entry] of this._images) {
      if (this._images.size <= MAX_IMAGES) break;
      if (id === current) continue;
      this._images.delete(id);
      if (entry.url) URL.revokeObjectURL(entry.url);
    }
    return true;
  }

  dispose(): void {
    for (const entry of this._images.values()) if (entry.url) URL.revokeObjectURL(entry.url);
    this._images.clear();
  }

  private readonly _images = new Map<number, IImage>();
}
