/**
 * One card of the gallery's grid: thumbnail, status badges, caption or error, label and source.
 * Cards are recycled while scrolling, so a card remembers what it shows and skips unchanged work.
 */

import { badgeClass, hasError, isMissing, node, setText } from '../shared/dom';
import { IRow } from './protocol';
import { notesOf, notesTitle, renderScore } from './scores';
import { ThumbCache } from './state';

export class Card {
  readonly el = node('div', 'cg-card', { role: 'option' });
  /** The grid position the card is laid out at (undefined: lay it out again). */
  layoutPos: number | undefined = undefined;
  /** The position whose row the card shows (undefined while it is spare). */
  gridPos: number | undefined = undefined;
  /** The row shown: a row, undefined (a placeholder) or null (nothing yet: always refill). */
  row: IRow | undefined | null = null;

  constructor(onClick: (card: Card) => void) {
    this._thumbBox.append(this._img, this._score, this._notes);
    const badges = node('div', 'cg-badges');
    this._failed.textContent = 'failed';
    this._editedMark.textContent = '\u270e by reviewer';
    badges.append(this._status, this._failed, this._editedMark);
    this._foot.append(this._label, this._source);
    this.el.append(this._thumbBox, badges, this._caption, this._error, this._foot);
    this.el.addEventListener('click', () => onClick(this));
  }

  /** Shows `row` at `pos` (undefined: a placeholder while the row loads). */
  fill(pos: number, row: IRow | undefined, thumbs: ThumbCache, sortBy: string, notesLabel: string): void {
    this.gridPos = pos;
    if (this.row === row && this._notesLabel === notesLabel) {
      const url = row ? thumbs.peek(row.id) : undefined;
      if (this._thumb !== url) this._setThumb(url);
      return;
    }
    this.row = row;
    this._notesLabel = notesLabel;
    if (!row) {
      this._fillPlaceholder();
      return;
    }
    const card = this.el;
    const failed = hasError(row.error);
    const edited = !isMissing(row.edited);
    const text = edited ? row.edited : row.caption;
    card.classList.remove('is-placeholder');
    card.classList.toggle('is-failed', failed);
    card.setAttribute('data-testid', 'card');
    card.setAttribute('data-id', String(row.id));
    card.setAttribute('data-status', String(row.status));
    card.setAttribute('aria-label', String(row.label || row.source || `row ${row.id}`));
    this._status.className = badgeClass(row.status);
    setText(this._status, row.status);
    this._failed.hidden = !failed;
    this._editedMark.hidden = !edited;
    setText(this._caption, text);
    this._caption.hidden = failed && (isMissing(text) || text === '');
    setText(this._error, failed ? row.error : '');
    this._error.hidden = !failed;
    this._error.title = failed ? String(row.error) : '';
    setText(this._label, row.label);
    setText(this._source, row.source);
    this._source.title = isMissing(row.source) ? '' : String(row.source);
    renderScore(this._score, row.score, failed);
    const notes = notesOf(row);
    this._notes.hidden = notes.length === 0;
    setText(this._notes, notes.length ? notesTitle(notes.length, notesLabel) : '');
    this._notes.title = notes.join('\n'); // the list itself is in the detail pane
    // the sort column's value, drawn by CSS (content: attr(...)), which only ever shows text
    const sortValue = sortBy && row.meta ? row.meta[sortBy] : undefined;
    if (!isMissing(sortValue) && sortValue !== '') {
      this._foot.setAttribute('data-sortval', `${sortBy} ${sortValue}`);
    } else this._foot.removeAttribute('data-sortval');
    this._setThumb(thumbs.take(row.id));
  }

  private _fillPlaceholder(): void {
    const card = this.el;
    card.classList.add('is-placeholder');
    card.classList.remove('is-failed');
    card.setAttribute('data-testid', 'placeholder');
    card.removeAttribute('data-id');
    card.removeAttribute('data-status');
    card.removeAttribute('aria-label');
    for (const el of [this._caption, this._error, this._label, this._source, this._status]) {
      el.textContent = '';
    }
    this._foot.removeAttribute('data-sortval');
    renderScore(this._score, null);
    this._notes.hidden = true;
    this._failed.hidden = true;
    this._editedMark.hidden = true;
    this._error.hidden = true;
    this._caption.hidden = false;
    this._setThumb(undefined);
  }

  private _setThumb(url: string | undefined): void {
    this._thumb = url;
    if (url) this._img.src = url;
    else this._img.removeAttribute('src');
    this._thumbBox.classList.toggle('has-img', Boolean(url));
  }

  private _thumb: string | undefined = undefined;
  private _notesLabel = '';
  private readonly _score = node('span', 'cg-score cg-card-score', { 'data-testid': 'score' });
  private readonly _notes = node('span', 'cg-card-notes', { 'data-testid': 'notes-count' });
  private readonly _thumbBox = node('div', 'cg-thumb');
  private readonly _img = node('img', 'cg-thumb-img', {
    alt: '',
    decoding: 'async',
    draggable: 'false'
  });
  private readonly _status = node('span', 'caprl-badge');
  private readonly _failed = node('span', 'caprl-badge caprl-badge--failed');
  private readonly _editedMark = node('span', 'caprl-mark cg-edited-mark', {
    title: 'Caption edited by a reviewer'
  });
  private readonly _caption = node('p', 'cg-caption', { 'data-testid': 'caption' });
  private readonly _error = node('p', 'cg-error', { 'data-testid': 'error' });
  private readonly _foot = node('div', 'cg-foot');
  private readonly _label = node('span', 'cg-label');
  private readonly _source = node('span', 'cg-source');
}
