/**
 * The gallery's virtualised grid: the scroll container is as tall as every row of the view, but
 * only the visible grid rows (plus one) exist as cards, recycled while scrolling.
 *
 * Browsers cap an element's height (Chromium near 33.5 million px, Firefox near 17.9 million),
 * which a million rows pass; beyond MAX_SCROLL_PX the sizer stays at that height and the scroll
 * position maps linearly onto the full height ("virtual" offsets), so every row stays reachable.
 */

import { node } from '../shared/dom';
import { countOf } from '../shared/model';
import { Card } from './card';
import { GalleryModel } from './protocol';
import { RowCache, THUMB_RETRY_MS, ThumbCache } from './state';

const PREFETCH_ROWS = 4; // grid rows fetched beyond the visible ones
const DOM_BUFFER_ROWS = 1; // grid rows kept as cards beyond the visible ones
const MAX_CARDS = 40; // buffer rows are dropped before the card count passes this

// Card geometry in px; gallery.css lays the card out to exactly this height.
const GAP = 12;
const PAD = 8;
const MIN_CARD_TEXT_WIDTH = 150;
const BADGES_H = 20;
const CAPTION_LINES = 4;
const LINE_H = 17;
const FOOT_H = 16;
const INNER_GAP = 6;
const BORDER = 1; // the card's border (the status stripe is drawn inside it)
const MAX_SCROLL_PX = 8_000_000; // tallest sizer; a taller view is scrolled through a scale

interface IGeometry {
  width: number;
  cols: number;
  cardW: number;
  cardH: number;
  rowH: number;
}

/** What the grid needs from the rest of the view. */
export interface IGridContext {
  model: GalleryModel;
  root: HTMLElement;
  uid: string;
  rows: RowCache;
  thumbs: ThumbCache;
  pending: ReadonlySet<number>;
  /** A card was clicked: focus it and open its detail. */
  open(pos: number): void;
}

export class GridView {
  readonly el = node('div', 'cg-grid', {
    'data-testid': 'grid',
    tabindex: '0',
    role: 'listbox',
    'aria-label': 'Images'
  });
  focusedPos = 0;

  constructor(private readonly _ctx: IGridContext) {
    this._empty.textContent = 'No rows match the search and filter.';
    this.el.append(this._sizer, this._empty);
    this.el.addEventListener('scroll', () => this.schedule(), { passive: true });
    this.el.addEventListener('focus', () => {
      const card = this._cards.get(this.focusedPos);
      if (!card) this.setFocus(this._cards.size ? Math.min(...this._cards.keys()) : 0, false);
    });
    this._resizer.observe(this.el);
  }

  /** Redraws on the next animation frame, then runs `then`. */
  schedule(then?: () => void): void {
    if (then) this._afterUpdate.push(then);
    if (!this._frame) this._frame = requestAnimationFrame(() => this._update());
  }

  /** The thumbnail size changed: measure again and refill every card. */
  invalidate(): void {
    this._geometry = null;
    for (const card of this._cards.values()) card.row = null;
    this.schedule();
  }

  /** Back to the top: a new view. */
  reset(): void {
    this.focusedPos = 0;
    this.el.scrollTop = 0;
    this.schedule();
  }

  /** Columns per grid row, and positions per page, for keyboard moves. */
  pageSteps(): { cols: number; page: number } {
    const g = this._geometry;
    if (!g) return { cols: 1, page: 1 };
    return { cols: g.cols, page: Math.max(1, Math.floor(this.el.clientHeight / g.rowH)) * g.cols };
  }

  /** Row ids on a card now. */
  shownIds(): Set<number> {
    const shown = new Set<number>();
    for (const card of this._cards.values()) if (card.row) shown.add(card.row.id);
    return shown;
  }

  setFocus(pos: number, scroll: boolean): void {
    const n = countOf(this._ctx.model.get('view_count'));
    if (n === 0) return;
    this.focusedPos = Math.min(n - 1, Math.max(0, pos));
    if (scroll) this.scrollTo(this.focusedPos);
    this.schedule();
  }

  scrollTo(pos: number): void {
    const g = this._measure();
    const rowTop = GAP + Math.floor(pos / g.cols) * g.rowH;
    const rowBottom = rowTop + g.cardH;
    const top = this._virtualTop();
    const height = this.el.clientHeight;
    if (rowTop < top) this._setVirtualTop(rowTop - GAP);
    else if (rowBottom > top + height) this._setVirtualTop(rowBottom - height + GAP);
  }

  dispose(): void {
    if (this._frame) cancelAnimationFrame(this._frame);
    clearTimeout(this._settleTimer);
    this._resizer.disconnect();
  }

  private _measure(): IGeometry {
    const width = this.el.clientWidth;
    if (this._geometry && this._geometry.width === width) return this._geometry;
    const thumb = Math.min(512, Math.max(48, Number(this._ctx.model.get('thumb_size')) || 160));
    this._ctx.root.style.setProperty('--cg-thumb', `${thumb}px`);
    const minW = Math.max(thumb, MIN_CARD_TEXT_WIDTH) + 2 * PAD;
    const avail = Math.max(minW, width - 2 * GAP);
    const cols = Math.max(1, Math.floor((avail + GAP) / (minW + GAP)));
    const cardW = Math.floor((avail - (cols - 1) * GAP) / cols);
    const text = BADGES_H + INNER_GAP + CAPTION_LINES * LINE_H + INNER_GAP + FOOT_H;
    const cardH = 2 * (PAD + BORDER) + thumb + INNER_GAP + text;
    this._geometry = { width, cols, cardW, cardH, rowH: cardH + GAP };
    for (const card of this._cards.values()) card.layoutPos = undefined;
    return this._geometry;
  }

  /** Full height of the view's rows, and the scale from scroll position to it (1 below the cap). */
  private _scale(): number {
    const height = this.el.clientHeight;
    if (this._fullHeight <= MAX_SCROLL_PX || MAX_SCROLL_PX <= height) return 1;
    return (this._fullHeight - height) / (MAX_SCROLL_PX - height);
  }

  /** The scroll position in the full height of the rows. */
  private _virtualTop(): number {
    return this.el.scrollTop * this._scale();
  }

  private _setVirtualTop(top: number): void {
    this.el.scrollTop = Math.max(0, top) / this._scale();
  }

  private _update(): void {
    this._frame = 0;
    const { model, rows, thumbs, pending, uid } = this._ctx;
    const n = countOf(model.get('view_count'));
    this._empty.hidden = n > 0;
    if (this.el.clientWidth === 0) return; // not laid out yet; the ResizeObserver calls back
    const g = this._measure();
    const totalRows = Math.ceil(n / g.cols);
    this._fullHeight = totalRows ? GAP + totalRows * g.rowH : 0;
    this._sizer.style.height = `${Math.min(this._fullHeight, MAX_SCROLL_PX)}px`;
    const top = this._virtualTop();
    // Cards sit at their full-height offset less this shift (0 unless the view passes the cap).
    const shift = Math.round(top - this.el.scrollTop);
    if (shift !== this._shift) {
      this._shift = shift;
      for (const card of this._cards.values()) card.layoutPos = undefined;
    }
    const height = this.el.clientHeight;
    const firstVisible = Math.floor(Math.max(0, top - GAP) / g.rowH);
    const lastVisible = Math.max(firstVisible, Math.floor(Math.max(0, top + height - GAP - 1) / g.rowH));
    let buffer = DOM_BUFFER_ROWS;
    while (buffer > 0 && (lastVisible - firstVisible + 1 + 2 * buffer) * g.cols > MAX_CARDS) buffer--;
    const r0 = Math.max(0, firstVisible - buffer);
    const r1 = Math.min(totalRows - 1, lastVisible + buffer);
    const p0 = r0 * g.cols;
    const p1 = Math.min(n, (r1 + 1) * g.cols);

    for (const [pos, card] of this._cards) {
      if (pos >= p0 && pos < p1) continue;
      this._cards.delete(pos);
      card.el.remove();
      card.gridPos = undefined;
      this._spare.push(card);
    }
    const fresh: HTMLElement[] = [];
    const sortBy = model.get('sort_by') || '';
    const notesLabel = model.get('notes_label') || '';
    let painted = false;
    for (let pos = p0; pos < p1; pos++) {
      let card = this._cards.get(pos);
      if (!card) {
        card = this._spare.pop() || new Card(c => this._onCardClick(c));
        card.layoutPos = undefined;
        this._cards.set(pos, card);
        fresh.push(card.el);
      }
      if (card.layoutPos !== pos) {
        const r = Math.floor(pos / g.cols);
        const c = pos % g.cols;
        const style = card.el.style;
        style.transform = `translate(${GAP + c * (g.cardW + GAP)}px, ${GAP + r * g.rowH - shift}px)`;
        style.width = `${g.cardW}px`;
        style.height = `${g.cardH}px`;
        card.el.id = `${uid}-card-${pos}`;
        card.layoutPos = pos;
      }
      const row = rows.at(pos);
      card.fill(pos, row, thumbs, sortBy, notesLabel);
      if (row) painted = true;
      card.el.classList.toggle('is-pending', Boolean(row && pending.has(row.id)));
      const focused = pos === this.focusedPos;
      card.el.classList.toggle('is-focused', focused);
      card.el.setAttribute('aria-selected', String(focused));
    }
    if (fresh.length) this.el.append(...fresh);
    this._spare.length = Math.min(this._spare.length, MAX_CARDS);
    if (n > 0 && this.focusedPos < n) {
      this.el.setAttribute('aria-activedescendant', `${uid}-card-${this.focusedPos}`);
    } else this.el.removeAttribute('aria-activedescendant');

    rows.request(p0, p1, n); // what is on screen first
    rows.request(p0 - PREFETCH_ROWS * g.cols, p1 + PREFETCH_ROWS * g.cols, n);
    rows.evict((p0 + p1) >> 1);
    clearTimeout(this._settleTimer);
    this._settleTimer = window.setTimeout(() => {
      const count = countOf(model.get('view_count'));
      rows.retryMissingThumbs(p0, p1, count, id => thumbs.has(id));
    }, THUMB_RETRY_MS);

    if (painted && !this._firstPaint) {
      this._firstPaint = true;
      requestAnimationFrame(() => {
        this._ctx.root.setAttribute('data-first-paint-ms', (performance.now() - this._t0).toFixed(1));
      });
    }
    for (const fn of this._afterUpdate.splice(0)) fn();
  }

  private _onCardClick(card: Card): void {
    if (card.gridPos === undefined) return;
    this.setFocus(card.gridPos, false);
    this.el.focus({ preventScroll: true });
    this._ctx.open(card.gridPos);
  }

  private readonly _t0 = performance.now();
  private readonly _sizer = node('div', 'cg-sizer');
  private readonly _empty = node('div', 'cg-empty');
  private readonly _cards = new Map<number, Card>(); // pos -> card in the grid
  private readonly _spare: Card[] = []; // detached cards ready for reuse
  private readonly _afterUpdate: Array<() => void> = [];
  private readonly _resizer = new ResizeObserver(() => this.schedule());
  private _geometry: IGeometry | null = null;
  private _fullHeight = 0;
  private _shift = 0;
  private _frame = 0;
  private _settleTimer = 0;
  private _firstPaint = false;
}
