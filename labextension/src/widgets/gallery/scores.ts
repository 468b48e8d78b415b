/**
 * A row's score and notes (`caption_score` and `failed_questions` from verify), as the card and
 * the detail pane show them. Python formats the score and picks its band; this only draws it,
 * as text, with the band as a data attribute that gallery.css colours.
 */

import { setText } from '../shared/dom';
import { IRow, IScore } from './protocol';

const BANDS: ReadonlyArray<IScore['band']> = ['low', 'mid', 'high', 'none'];

/** Shows `score` in `el` ("score 0.60", or "no score"); hides `el` when there is none to show. */
export function renderScore(el: HTMLElement, score: IScore | null | undefined, hideUnscored = false): void {
  const unscored = !score || typeof score !== 'object' || score.value === null || score.value === undefined;
  if (!score || typeof score !== 'object' || (unscored && hideUnscored)) {
    el.hidden = true;
    el.removeAttribute('data-band');
    return;
  }
  const band = BANDS.includes(score.band) ? score.band : 'none';
  el.hidden = false;
  el.setAttribute('data-band', band);
  setText(el, unscored ? 'no score' : `score ${String(score.text)}`);
  el.title = unscored ? 'This row has no score' : `Score ${String(score.text)} (${band})`;
}

/** The row's notes (failed questions) as strings; anything else is dropped. */
export function notesOf(row: IRow): string[] {
  return Array.isArray(row.notes) ? row.notes.filter((n): n is string => typeof n === 'string') : [];
}

/** "2 failed questions", "1 failed question" (as caprl_nb.widgets.export.notes_title). */
export function notesTitle(count: number, label: string): string {
  const noun = count === 1 && label.endsWith('s') ? label.slice(0, -1) : label;
  return `${count} ${noun || 'notes'}`;
}
