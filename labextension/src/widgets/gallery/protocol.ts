/**
 * The gallery's wire contract (caprl_nb/widgets/PROTOCOL.md): its traits, the rows Python sends
 * and the messages each side sends. Python owns the data, filtering, sorting, review state and
 * thumbnails; the front end renders what it is sent and reports what the user did.
 */

import { ReviewStatus, rowOf, sendReview } from '../shared/review';
import { Buffers, IWidgetModel, messageOf } from '../shared/model';

export const STATUSES = ['all', 'unreviewed', 'accepted', 'rejected', 'edited', 'failed'] as const;
export type StatusFilter = (typeof STATUSES)[number];

export interface IGalleryTraits {
  title: string;
  total: number;
  counts: Partial<Record<StatusFilter, number>>;
  status_filter: StatusFilter;
  query: string;
  sort_by: string;
  sort_descending: boolean;
  sort_options: string[];
  thumb_size: number;
  view_count: number;
  view_version: number;
  /** The score column's name ("" when the gallery has none); Python scores, sorts and filters. */
  score_column: string;
  /** [lowest, highest] score, for the threshold control's range. */
  score_span: number[];
  /** What the notes are called ("failed questions"; "" when the gallery has no notes column). */
  notes_label: string;
  /** Keep the rows scored below this (null: every row). */
  score_below: number | null;
}

export type GalleryModel = IWidgetModel<IGalleryTraits>;

/** A row's score as Python formats it; `band` picks the colour (`none`: the row has no score). */
export interface IScore {
  value: number | null;
  text: string;
  band: 'low' | 'mid' | 'high' | 'none';
}

export interface IRow {
  id: number;
  pos: number;
  label: string;
  source: string;
  caption: string | null;
  edited: string | null;
  status: string;
  error: string | null;
  meta?: Record<string, string>;
  score?: IScore | null;
  notes?: string[];
}

export interface IRowsMessage {
  type: 'rows';
  version: number;
  start: number;
  rows: IRow[];
}

export interface IThumbsMessage {
  type: 'thumbs';
  ids: number[];
  mime?: string;
}

export interface IDetailMessage {
  type: 'detail';
  id: number;
  mime?: string;
  error?: string | null;
}

/** What Python sends, as the handlers in index.ts take it. */
export interface IGalleryHandlers {
  rows(msg: IRowsMessage): void;
  row(row: IRow): void;
  thumbs(msg: IThumbsMessage, buffers: Buffers): void;
  detail(msg: IDetailMessage, buffers: Buffers): void;
  error(message: unknown): void;
}

/** Routes one `msg:custom` content to its handler; anything unknown is dropped. */
export function dispatch(content: unknown, buffers: Buffers, on: IGalleryHandlers): void {
  const msg = messageOf(content);
  if (!msg) return;
  if (msg.type === 'rows') on.rows(msg as IRowsMessage);
  else if (msg.type === 'row') {
    const row = rowOf<IRow>(msg);
    if (row) on.row(row);
  } else if (msg.type === 'thumbs') on.thumbs(msg as IThumbsMessage, buffers);
  else if (msg.type === 'detail') on.detail(msg as IDetailMessage, buffers);
  else if (msg.type === 'error') on.error((msg as { message?: unknown }).message);
}

/** The messages the front end sends. */
export const send = {
  window(model: GalleryModel, version: number, start: number, end: number): void {
    model.send({ type: 'window', version, start, end });
  },
  review(model: GalleryModel, id: number, status: ReviewStatus): void {
    sendReview(model, id, status);
  },
  edit(model: GalleryModel, id: number, caption: string): void {
    model.send({ type: 'edit', id, caption });
  },
  detail(model: GalleryModel, id: number): void {
    model.send({ type: 'detail', id });
  }
};
