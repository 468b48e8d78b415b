/**
 * The extraction review's wire contract (the docstring of caprl_nb/widgets/extraction.py;
 * conventions as caprl_nb/widgets/PROTOCOL.md). Python owns the values, their types and the
 * review state; `current` is the row shown, and Python answers a change of it with the row and
 * its image.
 */

import { ReviewStatus, rowOf, sendReview } from '../shared/review';
import { Buffers, IWidgetModel, messageOf } from '../shared/model';

export type FieldKind = 'integer' | 'number' | 'boolean' | 'string' | 'json';

export const COUNT_KEYS = ['unreviewed', 'accepted', 'rejected', 'edited', 'failed'] as const;
export type CountKey = (typeof COUNT_KEYS)[number];

/** `statuses` carries one letter per row. */
const STATUS_OF: Readonly<Record<string, string>> = {
  u: 'unreviewed',
  a: 'accepted',
  r: 'rejected',
  e: 'edited'
};

export interface IField {
  name: string;
  kind?: FieldKind;
}

export interface IReviewTraits {
  mode: string;
  title: string;
  total: number;
  fields: IField[];
  labels: string[];
  failed_ids: number[];
  statuses: string;
  counts: Partial<Record<CountKey | 'all', number>>;
  current: number;
}

export type ReviewModel = IWidgetModel<IReviewTraits>;

/** A table as Python sends it (cells of any JSON type). */
export interface ITable {
  columns?: unknown[];
  rows?: unknown[][];
}

/** A field form's values ({field: value}) or a chart's table. */
export type Values = Record<string, unknown> & ITable;

export interface IRow {
  id: number;
  label: string;
  source: string;
  status: string;
  error: string | null;
  values: Values | null;
  edited: Values | null;
  kinds?: string[];
}

export interface IImageMessage {
  type: 'image';
  id: number;
  mime?: string;
  width?: number;
  height?: number;
  error?: string | null;
}

export interface IReviewHandlers {
  row(row: IRow): void;
  image(msg: IImageMessage, buffers: Buffers): void;
  error(message: unknown, id: number | null): void;
}

/** Routes one `msg:custom` content to its handler; anything unknown is dropped. */
export function dispatch(content: unknown, buffers: Buffers, on: IReviewHandlers): void {
  const msg = messageOf(content);
  if (!msg) return;
  if (msg.type === 'row') {
    const row = rowOf<IRow>(msg);
    if (row) on.row(row);
  } else if (msg.type === 'image') {
    const image = msg as IImageMessage;
    if (image.id !== null && image.id !== undefined) on.image(image, buffers);
  } else if (msg.type === 'error') {
    const error = msg as { message?: unknown; id?: number | null };
    on.error(error.message, error.id ?? null);
  }
}

/** The review status of row `id`, from the `statuses` letters. */
export function statusOf(model: ReviewModel, id: number): string {
  const letter = (model.get('statuses') || '').charAt(id);
  return STATUS_OF[letter] || 'unreviewed';
}

/** The messages the front end sends. */
export const send = {
  row(model: ReviewModel, id: number): void {
    model.send({ type: 'row', id });
  },
  review(model: ReviewModel, id: number, status: ReviewStatus): void {
    sendReview(model, id, status);
  },
  editFields(model: ReviewModel, id: number, values: Record<string, string>): void {
    model.send({ type: 'edit', id, values });
  },
  editTable(model: ReviewModel, id: number, table: ITableText | undefined): void {
    model.send({ type: 'edit', id, table });
  }
};

/** A table as the editor holds it: every cell as text. */
export interface ITableText {
  columns: string[];
  rows: string[][];
}
