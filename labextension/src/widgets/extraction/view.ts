/**
 * The extraction review's view of one row: toolbar (title, counts, navigation), the image
 * (click to zoom), and the row's badges, source, error, editor and review actions.
 */

// prettier-ignore
import { badgeClass, button, formatInt, hasError, isMissing, node, setMediaMessage, setText, stepButtons } from '../shared/dom';
import { countOf } from '../shared/model';
import { Drafts, ImageCache } from './drafts';
import { Editor } from './editor';
import { RowList } from './list';
import { ReviewStatus } from '../shared/review';
import { COUNT_KEYS, CountKey, IRow, ReviewModel } from './protocol';

/** What the view needs from the rest of the widget. */
export interface IViewContext {
  model: ReviewModel;
  root: HTMLElement;
  drafts: Drafts;
  images: ImageCache;
  pending: ReadonlySet<number>;
  editor: Editor;
  list: RowList;
  current(): number;
  row(): IRow | undefined;
}

/** What the view's buttons do. */
export interface IViewActions {
  prev(): void;
  next(): void;
  nextUnreviewed(): void;
  review(status: ReviewStatus): void;
  save(): void;
  discard(): void;
}

export class ReviewView {
  readonly toolbar = node('div', 'xr-toolbar');
  readonly media = node('div', 'caprl-media xr-media', { 'data-testid': 'media' });
  readonly side = node('div', 'caprl-side xr-side');

  constructor(private readonly _ctx: IViewContext) {
    const counts = node('div', 'xr-counts', { 'data-testid': 'counts', 'aria-live': 'polite' });
    for (const key of COUNT_KEYS) {
      const item = node('span', `xr-count xr-count--${key}`, { 'data-testid': `count-${key}` });
      const number = node('span', 'xr-count-n');
      const label = node('span', 'xr-count-label');
      label.textContent = key;
      item.append(node('span', 'xr-dot'), number, label);
      this._counts.set(key, { item, number });
      counts.append(item);
    }
    const nav = node('div', 'xr-nav');
    nav.append(this._prev, this._position, this._next, this._nextOpen);
    this.toolbar.append(this._title, counts, nav);

    this.media.append(this._img, this._mediaMsg);
    this.media.title = 'Click to zoom';
    this.media.addEventListener('click', () => {
      this._zoomed = !this._zoomed;
      this.media.title = this._zoomed ? 'Click to fit' : 'Click to zoom';
      this.renderImage();
    });
    this._img.addEventListener('error', () => this._img.removeAttribute('src'));

    const head = node('div', 'xr-head');
    this._failedBadge.textContent = 'failed';
    this._unsaved.textContent = 'unsaved edits';
    head.append(this._label, this._status, this._failedBadge, this._unsaved);
    const a = this._actions;
    a.el.append(a.accept, a.reject, a.reset, node('span', 'xr-spacer'), a.discard, a.save);
    const { editor } = this._ctx;
    this.side.append(head, this._source, this._error, editor.el, editor.emptyTable, a.el);
  }

  /** Wires the buttons to what they do. */
  bind(actions: IViewActions): void {
    const a = this._actions;
    this._prev.addEventListener('click', () => actions.prev());
    this._next.addEventListener('click', () => actions.next());
    this._nextOpen.addEventListener('click', () => actions.nextUnreviewed());
    a.accept.addEventListener('click', () => actions.review('accepted'));
    a.reject.addEventListener('click', () => actions.review('rejected'));
    a.reset.addEventListener('click', () => actions.review('unreviewed'));
    a.save.addEventListener('click', () => actions.save());
    a.discard.addEventListener('click', () => actions.discard());
  }

  renderToolbar(): void {
    const { model } = this._ctx;
    setText(this._title, model.get('title') || '');
    const c = model.get('counts') || {};
    for (const [key, { item, number }] of this._counts) {
      setText(number, formatInt(c[key]));
      item.hidden = key === 'failed' && !c[key];
    }
    const n = countOf(model.get('total'));
    const current = this._ctx.current();
    setText(this._position, n ? `${formatInt(current + 1)} / ${formatInt(n)}` : '0 / 0');
    this._prev.disabled = current <= 0;
    this._next.disabled = current >= n - 1;
    this._nextOpen.disabled = !((c.unreviewed || 0) > 0);
  }

  renderRow(): void {
    const { root, pending, editor, list } = this._ctx;
    const row = this._ctx.row();
    const a = this._actions;
    this.renderToolbar();
    list.schedule(true);
    const loading = !row;
    for (const b of [a.accept, a.reject, a.reset]) b.disabled = loading;
    this.side.classList.toggle('is-loading', loading);
    if (!row) {
      setText(this._label, 'Loading\u2026');
      for (const el of [this._status, this._failedBadge, this._error, editor.el, editor.emptyTable]) {
        el.hidden = true;
      }
      this._unsaved.hidden = true;
      a.save.disabled = true;
      a.discard.hidden = true;
      setText(this._source, '');
      this.renderImage();
      return;
    }
    root.setAttribute('data-status', String(row.status));
    this.side.classList.toggle('is-pending', pending.has(row.id));
    setText(this._label, row.label === '' ? `Row ${row.id}` : row.label);
    this._status.hidden = false;
    this._status.className = badgeClass(row.status);
    setText(this._status, row.status);
    const failed = hasError(row.error);
    this._failedBadge.hidden = !failed;
    this._error.hidden = !failed;
    setText(this._error, failed ? row.error : '');
    setText(this._source, row.source);
    this._source.title = isMissing(row.source) ? '' : String(row.source);
    editor.el.hidden = false;
    if (this._shownId !== row.id) {
      this._shownId = row.id;
      editor.el.scrollTop = 0;
    }
    editor.fill();
    this.renderImage();
  }

  /** The unsaved-edits badge, the save / discard buttons and the accept button's wording. */
  renderDirty(): void {
    const row = this._ctx.row();
    const dirty = this._ctx.drafts.isDirty(row);
    const a = this._actions;
    this._unsaved.hidden = !dirty;
    a.save.disabled = !dirty || Boolean(row && this._ctx.pending.has(row.id));
    a.discard.hidden = !dirty;
    a.accept.textContent = dirty ? 'Save & accept' : 'Accept';
    this._ctx.root.classList.toggle('is-dirty', dirty);
  }

  renderImage(): void {
    const current = this._ctx.current();
    const img = this._img;
    const shown = this._ctx.images.get(current);
    const url = shown?.url;
    if (url) {
      if (img.getAttribute('src') !== url) img.src = url;
      img.hidden = false;
      img.setAttribute('data-id', String(current));
      this._ctx.images.touch(current); // most recently shown
    } else {
      img.removeAttribute('src');
      img.removeAttribute('data-id');
      img.hidden = true;
    }
    const error = shown?.error;
    let message = '';
    if (!isMissing(error)) message = `Image unavailable: ${error}`;
    else if (!url) message = 'Loading image\u2026';
    setMediaMessage(this._mediaMsg, message, !isMissing(error));
    this.media.classList.toggle('is-zoomed', this._zoomed && Boolean(url));
  }

  private _zoomed = false;
  private _shownId: number | null = null; // the row whose values the editor holds
  private readonly _counts = new Map<CountKey, { item: HTMLElement; number: HTMLElement }>();
  private readonly _title = node('div', 'xr-title', { 'data-testid': 'title' });
  private readonly _stepButtons = stepButtons('row');
  private readonly _prev = this._stepButtons[0];
  private readonly _next = this._stepButtons[1];
  private readonly _position = node('span', 'xr-position', { 'data-testid': 'position' });
  private readonly _nextOpen = button('next-unreviewed', 'Next unreviewed', {
    hint: 'Next unreviewed row (N)'
  });
  private readonly _img = node('img', 'xr-img', { alt: '', 'data-testid': 'image', draggable: 'false' });
  private readonly _mediaMsg = node('p', 'xr-media-msg', { 'data-testid': 'image-message' });
  private readonly _label = node('h3', 'xr-label', { 'data-testid': 'label' });
  private readonly _status = node('span', 'caprl-badge', { 'data-testid': 'status' });
  private readonly _failedBadge = node('span', 'caprl-badge caprl-badge--failed');
  private readonly _unsaved = node('span', 'caprl-mark xr-unsaved', { 'data-testid': 'unsaved' });
  private readonly _source = node('div', 'xr-source', { 'data-testid': 'source' });
  private readonly _error = node('p', 'caprl-error xr-error', { 'data-testid': 'error', role: 'alert' });
  private readonly _actions = {
    el: node('div', 'xr-actions'),
    accept: button('accept', 'Accept', {
      variant: 'accept',
      hint: 'Accept (A); with unsaved edits, saves them'
    }),
    reject: button('reject', 'Reject', { variant: 'reject', hint: 'Reject (R); drops unsaved edits' }),
    reset: button('reset', 'Reset', { hint: 'Back to unreviewed (U); drops the edit' }),
    discard: button('discard', 'Discard', { hint: 'Discard unsaved edits' }),
    save: button('save', 'Save edits', { variant: 'primary', hint: 'Save edits (Ctrl+Enter)' })
  };
}
