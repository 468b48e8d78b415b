/**
 * What the two review widgets share of the wire contract: a row's review decision, the keys that
 * make it, the message that sends it, and the `row` answer that settles it.
 */

import { IWidgetModel } from './model';

/** A review decision. Python owns what it means (an edit is an accepted correction, ...). */
export type ReviewStatus = 'accepted' | 'rejected' | 'unreviewed';

/** The review keys: A accepts, R rejects, U resets. */
export const REVIEW_KEYS: Readonly<Record<string, ReviewStatus>> = {
  a: 'accepted',
  r: 'rejected',
  u: 'unreviewed'
};

/** `{"type": "review", "id": id, "status": status}`; Python answers with the row. */
export function sendReview<T>(model: IWidgetModel<T>, id: number, status: ReviewStatus): void {
  model.send({ type: 'review', id, status });
}

/** The `row` of a `{"type": "row", "row": Row}` message, or null when it has no id. */
export function rowOf<R extends { id: number }>(msg: object): R | null {
  const row = (msg as { row?: R | null }).row;
  return row && row.id !== null && row.id !== undefined ? row : null;
}
