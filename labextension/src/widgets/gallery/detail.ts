/**
 * The gallery's detail pane: the large image beside the row's caption, metadata and review
 * actions, with an editor for the caption. Python owns review semantics, so a row acted on is
 * only marked pending until the `row` message with the outcome arrives.
 */

import {
  badgeClass,
  button,
  formatInt,
  hasError,
  imageUrl,
  isMissing,
  node,
  setMediaMessage,
  setText,
  stepButtons
} from '../shared/dom';
import { isSaveChord } from '../shared/keys';
import { ReviewStatus } from '../shared/review';
import { Buffers, countOf } from '../shared/model';
import { GridView } from './grid';
import { GalleryModel, IDetailMessage, send } from './protocol';
import { notesOf, notesTitle, renderScore } from './scores';
import { CHUNK, RowCache, ThumbCache } from './state';

interface IDetail {
  pos: number;
  id: number | null;
  editing: boolean;
  imageUrl: string | null;
  imageError: string | null;
}

/** What the pane needs from the rest of the view. */
export interface IDetailContext {
  model: GalleryModel;
  root: HTMLElement;
  rows: RowCache;
  thumbs: ThumbCache;
  pending: Set<number>;
  grid: GridView;
}

export class DetailPane {
  readonly el = node('div', 'cg-detail', {
    'data-testid': 'detail',
    role: 'dialog',
    'aria-modal': 'false',
    'aria-label': 'Image detail',
    tabindex: '-1'
  });

  constructor(private readonly _ctx: IDetailContext) {
    this.el.hidden = true;
    const media = node('div', 'caprl-media cg-detail-media');
    media.append(this._img, this._mediaMsg);

    const head = node('div', 'cg-detail-head');
    const nav = node('div', 'cg-detail-nav');
    const [prev, next] = [this._prev, this._next];
    const close = button('close', '\u00d7', {
      variant: 'icon',
      label: 'Close detail',
      hint: 'Close (Esc)'
    });
    nav.append(prev, this._position, next, close);
    head.append(this._label, nav);

    const badges = node('div', 'cg-badges cg-detail-badges');
    this._failed.textContent = 'failed';
    this._editedMark.textContent = '\u270e by reviewer';
    badges.append(this._status, this._score, this._failed, this._editedMark, this._source);
    this._notes.append(this._notesTitle, this._notesList);

    const summary = node('summary');
    summary.textContent = 'Model caption';
    this._original.append(summary, this._originalText);

    const actions = node('div', 'cg-actions');
    const opts = (variant: string, hint: string): { variant: string; hint: string; parent: HTMLElement } => ({
      variant,
      hint,
      parent: actions
    });
    const accept = button('accept', 'Accept', opts('accept', 'Accept (A)'));
    const reject = button('reject', 'Reject', opts('reject', 'Reject (R)'));
    const edit = button('edit', 'Edit', { hint: 'Edit caption (E)', parent: actions });
    const reset = button('reset', 'Reset', { hint: 'Back to unreviewed (U)', parent: actions });
    const save = button('save', 'Save', opts('primary', 'Save (Ctrl+Enter)'));
    const cancel = button('cancel', 'Cancel', { hint: 'Cancel (Esc)', parent: actions });
    actions.append(this._hint);
    this._actions = { accept, reject, edit, reset, save, cancel };

    const side = node('div', 'caprl-side cg-detail-side');
    side.append(
      head,
      badges,
      this._error,
      this._caption,
      this._original,
      this._editor,
      this._notes,
      this._meta,
      actions
    );
    this.el.append(media, side);

    prev.addEventListener('click', () => this.step(-1));
    next.addEventListener('click', () => this.step(1));
    close.addEventListener('click', () => this.close(true));
    accept.addEventListener('click', () => this.review('accepted'));
    reject.addEventListener('click', () => this.review('rejected'));
    reset.addEventListener('click', () => this.review('unreviewed'));
    edit.addEventListener('click', () => this.startEdit());
    save.addEventListener('click', () => this.saveEdit());
    cancel.addEventListener('click', () => this.cancelEdit());
    this._editor.addEventListener('keydown', ev => {
      if (isSaveChord(ev)) {
        ev.preventDefault();
        this.saveEdit();
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        this.cancelEdit();
      }
      ev.stopPropagation();
    });
    this._img.addEventListener('error', () => this._img.removeAttribute('src'));
  }

  /** Whether the pane is open. */
  get isOpen(): boolean {
    return this._detail !== null;
  }

  /** The position shown, or null when closed. */
  get pos(): number | null {
    return this._detail ? this._detail.pos : null;
  }

  /** The row id shown, or null (closed, or its row is still loading). */
  get id(): number | null {
    return this._detail ? this._detail.id : null;
  }

  open(pos: number): void {
    if (pos < 0 || pos >= this._count()) return;
    this.el.hidden = false;
    this._ctx.root.classList.add('has-detail');
    this.show(pos);
    this.el.focus({ preventScroll: true });
  }

  show(pos: number): void {
    const { model, rows } = this._ctx;
    const row = rows.at(pos);
    const previous = this._detail;
    const detail: IDetail = { pos, id: row ? row.id : null, editing: false, imageUrl: null, imageError: null };
    this._detail = detail;
    if (previous && previous.id === detail.id) {
      detail.imageUrl = previous.imageUrl;
      detail.imageError = previous.imageError;
    } else {
      if (previous && previous.imageUrl) URL.revokeObjectURL(previous.imageUrl);
      if (row) send.detail(model, row.id);
    }
    if (!row) rows.request(pos - CHUNK / 2, pos + CHUNK / 2, this._count());
    this.render();
    this.renderImage();
  }

  /** A `rows` answer filled [start, end): show the row the pane was waiting for. */
  rowsArrived(start: number, end: number): void {
    const detail = this._detail;
    if (detail && detail.id === null && detail.pos >= start && detail.pos < end) this.show(detail.pos);
  }

  render(): void {
    const detail = this._detail;
    if (!detail) return;
    const { rows, pending } = this._ctx;
    const row = detail.id === null ? undefined : rows.byId(detail.id);
    const n = this._count();
    const a = this._actions;
    setText(this._position, `${formatInt(detail.pos + 1)} / ${formatInt(n)}`);
    this._prev.disabled = detail.pos <= 0;
    this._next.disabled = detail.pos >= n - 1;
    for (const b of [a.accept, a.reject, a.edit, a.reset]) b.disabled = !row;
    this.el.classList.toggle('is-editing', detail.editing);
    this._editor.hidden = !detail.editing;
    a.save.hidden = !detail.editing;
    a.cancel.hidden = !detail.editing;
    a.edit.hidden = detail.editing;
    setText(this._hint, detail.editing ? 'Ctrl+Enter saves \u00b7 Esc cancels' : '');
    if (!row) {
      setText(this._label, 'Loading\u2026');
      setText(this._caption, '');
      for (const el of [
        this._caption,
        this._error,
        this._original,
        this._status,
        this._failed,
        this._editedMark,
        this._score,
        this._notes
      ]) {
        el.hidden = true;
      }
      setText(this._source, '');
      this.el.classList.remove('has-notes');
      this._meta.replaceChildren();
      return;
    }
    this.el.setAttribute('data-id', String(row.id));
    this.el.classList.toggle('is-pending', pending.has(row.id));
    this.el.setAttribute('data-status', String(row.status));
    setText(this._label, row.label || `Row ${row.id}`);
    setText(this._source, row.source);
    this._source.title = isMissing(row.source) ? '' : String(row.source);
    this._status.hidden = false;
    this._status.className = badgeClass(row.status);
    setText(this._status, row.status);
    const failed = hasError(row.error);
    const edited = !isMissing(row.edited);
    this._failed.hidden = !failed;
    this._editedMark.hidden = !edited;
    this._error.hidden = !failed;
    setText(this._error, failed ? row.error : '');
    const text = edited ? row.edited : row.caption;
    this._caption.hidden = detail.editing || isMissing(text);
    setText(this._caption, text);
    this._original.hidden = detail.editing || !edited || isMissing(row.caption);
    setText(this._originalText, row.caption);
    renderScore(this._score, row.score, failed);
    this._renderNotes(notesOf(row));
    this._renderMeta([['row', row.id], ...Object.entries(row.meta || {})]);
  }

  renderImage(): void {
    const detail = this._detail;
    if (!detail) return;
    const img = this._img;
    const url = detail.imageUrl || (detail.id !== null ? this._ctx.thumbs.peek(detail.id) : undefined);
    img.setAttribute('data-kind', detail.imageUrl ? 'full' : 'thumb');
    if (url) {
      if (img.getAttribute('src') !== url) img.src = url;
      img.hidden = false;
    } else {
      img.removeAttribute('src');
      img.hidden = true;
    }
    let message = '';
    if (detail.imageError !== null) message = `Image unavailable: ${detail.imageError}`;
    else if (!detail.imageUrl && detail.id !== null) message = url ? '' : 'Loading image\u2026';
    setMediaMessage(this._mediaMsg, message, detail.imageError !== null);
  }

  /** Thumbnails arrived for `ids`: the pane may be waiting for one of them. */
  thumbsArrived(ids: number[]): void {
    const detail = this._detail;
    if (detail && detail.id !== null && ids.includes(detail.id) && !detail.imageUrl) this.renderImage();
  }

  /** The large image (or why there is none) arrived. */
  onDetail(msg: IDetailMessage, buffers: Buffers): void {
    const detail = this._detail;
    if (!detail || msg.id !== detail.id) return;
    if (!isMissing(msg.error)) {
      detail.imageError = String(msg.error);
    } else if (buffers[0]) {
      if (detail.imageUrl) URL.revokeObjectURL(detail.imageUrl);
      detail.imageUrl = imageUrl(buffers[0], msg.mime);
      detail.imageError = null;
    }
    this.renderImage();
  }

  step(delta: number): void {
    const detail = this._detail;
    if (!detail) return;
    const pos = Math.min(this._count() - 1, Math.max(0, detail.pos + delta));
    if (pos === detail.pos) return;
    this._ctx.grid.setFocus(pos, true);
    this.show(pos);
  }

  close(refocus: boolean): void {
    if (!this._detail && this.el.hidden) return;
    this._release();
    this.el.hidden = true;
    this._ctx.root.classList.remove('has-detail');
    if (refocus) {
      const grid = this._ctx.grid;
      grid.scrollTo(grid.focusedPos);
      grid.schedule();
      grid.el.focus({ preventScroll: true });
    }
  }

  /** Reviews the row at `pos` (the pane's own row when not given). */
  review(status: ReviewStatus, pos: number | null = this.pos): void {
    const { model, rows, pending, grid } = this._ctx;
    const row = pos === null ? undefined : rows.at(pos);
    if (!row) return;
    pending.add(row.id);
    send.review(model, row.id, status);
    this.render();
    grid.schedule();
  }

  startEdit(): void {
    const detail = this._detail;
    const row = detail ? this._ctx.rows.at(detail.pos) : undefined;
    if (!detail || !row) return;
    detail.editing = true;
    this._editor.value = !isMissing(row.edited) ? row.edited : row.caption || '';
    this.render();
    this._editor.focus();
  }

  saveEdit(): void {
    const detail = this._detail;
    if (!detail || !detail.editing) return;
    const { model, rows, pending, grid } = this._ctx;
    const row = rows.at(detail.pos);
    detail.editing = false;
    if (row) {
      pending.add(row.id);
      send.edit(model, row.id, this._editor.value);
      grid.schedule();
    }
    this.render();
    this.el.focus({ preventScroll: true });
  }

  cancelEdit(): void {
    const detail = this._detail;
    if (!detail || !detail.editing) return;
    detail.editing = false;
    this.render();
    this.el.focus({ preventScroll: true });
  }

  /** Keys while the pane is open; returns whether the key was the pane's. */
  onKey(key: string, reviewKeys: Readonly<Record<string, ReviewStatus>>): boolean {
    if (key === 'Escape') this.close(true);
    else if (key === 'ArrowLeft') this.step(-1);
    else if (key === 'ArrowRight') this.step(1);
    else if (reviewKeys[key]) this.review(reviewKeys[key]);
    else if (key === 'e') this.startEdit();
    else return false;
    return true;
  }

  dispose(): void {
    this._release();
  }

  private _release(): void {
    if (this._detail && this._detail.imageUrl) URL.revokeObjectURL(this._detail.imageUrl);
    this._detail = null;
  }

  /** The row's notes (failed questions) as a list beside the caption; kept while editing. */
  private _renderNotes(notes: string[]): void {
    this._notes.hidden = notes.length === 0;
    this.el.classList.toggle('has-notes', notes.length > 0);
    const label = this._ctx.model.get('notes_label') || '';
    setText(this._notesTitle, notes.length ? notesTitle(notes.length, label) : '');
    const signature = JSON.stringify(notes);
    if (this._notesSignature === signature) return;
    this._notesSignature = signature;
    this._notesList.replaceChildren(
      ...notes.map(text => {
        const item = node('li', 'cg-detail-note');
        item.textContent = text;
        return item;
      })
    );
  }

  private _renderMeta(entries: Array<[string, unknown]>): void {
    const signature = JSON.stringify(entries);
    if (this._metaSignature === signature) return;
    this._metaSignature = signature;
    const items: HTMLElement[] = [];
    for (const [key, value] of entries) {
      const dt = node('dt');
      dt.textContent = String(key);
      const dd = node('dd');
      dd.textContent = isMissing(value) ? '' : String(value);
      items.push(dt, dd);
    }
    this._meta.replaceChildren(...items);
  }

  private _count(): number {
    return countOf(this._ctx.model.get('view_count'));
  }

  private _detail: IDetail | null = null;
  private _metaSignature = '';
  private _notesSignature = '';
  private readonly _actions: Record<'accept' | 'reject' | 'edit' | 'reset' | 'save' | 'cancel', HTMLButtonElement>;
  private readonly _img = node('img', 'cg-detail-img', { alt: '', 'data-testid': 'detail-image' });
  private readonly _mediaMsg = node('p', 'cg-detail-media-msg');
  private readonly _label = node('h3', 'cg-detail-label', { 'data-testid': 'detail-label' });
  private readonly _position = node('span', 'cg-detail-pos');
  private readonly _prevNext = stepButtons('image');
  private readonly _prev = this._prevNext[0];
  private readonly _next = this._prevNext[1];
  private readonly _status = node('span', 'caprl-badge');
  private readonly _failed = node('span', 'caprl-badge caprl-badge--failed');
  private readonly _editedMark = node('span', 'caprl-mark cg-edited-mark');
  private readonly _source = node('span', 'cg-detail-source', { 'data-testid': 'detail-source' });
  private readonly _error = node('p', 'caprl-error cg-detail-error', { 'data-testid': 'detail-error', role: 'alert' });
  private readonly _caption = node('div', 'cg-detail-caption', { 'data-testid': 'detail-caption', tabindex: '0' });
  private readonly _original = node('details', 'cg-detail-original');
  private readonly _originalText = node('div', 'cg-detail-original-text');
  private readonly _editor = node('textarea', 'cg-editor', {
    'data-testid': 'editor',
    'aria-label': 'Edit caption',
    spellcheck: 'true'
  });
  private readonly _meta = node('dl', 'cg-meta');
  private readonly _score = node('span', 'cg-score', { 'data-testid': 'detail-score' });
  private readonly _notes = node('section', 'cg-detail-notes', { 'data-testid': 'detail-notes' });
  private readonly _notesTitle = node('h4', 'cg-detail-notes-title');
  private readonly _notesList = node('ul', 'cg-detail-notes-list');
  private readonly _hint = node('span', 'cg-actions-hint');
}
