/**
 * The extraction review's row list: every row's label and status, virtualised (only the visible
 * items exist), with the current row kept in view.
 */

import { node, setText } from '../shared/dom';
import { countOf } from '../shared/model';
import { ReviewModel, statusOf } from './protocol';

const LIST_ROW_H = 28; // px; extraction.css gives .xr-item exactly this height
const LIST_BUFFER = 6; // list items kept beyond the visible ones

interface IItem {
  el: HTMLElement;
  text: HTMLElement;
  mark: HTMLElement;
}

export class RowList {
  readonly el = node('div', 'xr-list', { 'data-testid': 'row-list', role: 'listbox', 'aria-label': 'Rows' });

  /** `current()` is the row shown; `go(id)` shows another. */
  constructor(
    private readonly _model: ReviewModel,
    private readonly _current: () => number,
    private readonly _go: (id: number) => void
  ) {
    this.el.append(this._sizer);
    this.el.addEventListener('scroll', () => this.schedule(false), { passive: true });
    this._resizer.observe(this.el);
  }

  /** Redraws on the next frame; `reveal` first scrolls the current row into view. */
  schedule(reveal: boolean): void {
    if (reveal) {
      const list = this.el;
      const top = this._current() * LIST_ROW_H;
      if (top < list.scrollTop) list.scrollTop = top;
      else if (top + LIST_ROW_H > list.scrollTop + list.clientHeight && list.clientHeight > 0) {
        list.scrollTop = top + LIST_ROW_H - list.clientHeight;
      }
    }
    if (!this._frame) this._frame = requestAnimationFrame(() => this._render());
  }

  dispose(): void {
    if (this._frame) cancelAnimationFrame(this._frame);
    this._resizer.disconnect();
  }

  private _render(): void {
    this._frame = 0;
    const list = this.el;
    const n = countOf(this._model.get('total'));
    this._sizer.style.height = `${n * LIST_ROW_H}px`;
    const labels = this._model.get('labels') || [];
    const failed = new Set(this._model.get('failed_ids') || []);
    const current = this._current();
    const first = Math.max(0, Math.floor(list.scrollTop / LIST_ROW_H) - LIST_BUFFER);
    const last = Math.min(
      n,
      Math.ceil((list.scrollTop + (list.clientHeight || 400)) / LIST_ROW_H) + LIST_BUFFER
    );
    for (const [id, item] of this._items) {
      if (id < first || id >= last) {
        item.el.remove();
        this._items.delete(id);
      }
    }
    for (let id = first; id < last; id++) {
      const item = this._items.get(id) || this._item(id);
      const rowStatus = statusOf(this._model, id);
      const label = labels[id];
      item.el.setAttribute('data-status', rowStatus);
      setText(item.text, label === undefined || label === '' ? `Row ${id}` : label);
      item.el.title = `${label ?? id}: ${rowStatus}${failed.has(id) ? ', failed' : ''}`;
      item.mark.hidden = !failed.has(id);
      const isCurrent = id === current;
      item.el.classList.toggle('is-current', isCurrent);
      item.el.setAttribute('aria-selected', String(isCurrent));
    }
  }

  private _item(id: number): IItem {
    const el = node('div', 'xr-item', { 'data-testid': 'row-item', role: 'option', 'data-id': String(id) });
    el.style.transform = `translateY(${id * LIST_ROW_H}px)`;
    const dot = node('span', 'xr-dot');
    const text = node('span', 'xr-item-label');
    const mark = node('span', 'xr-item-failed');
    mark.textContent = 'failed';
    el.append(dot, text, mark);
    el.addEventListener('click', () => this._go(id));
    this.el.append(el);
    const item = { el, text, mark };
    this._items.set(id, item);
    return item;
  }

  private _frame = 0;
  private readonly _sizer = node('div', 'xr-list-sizer');
  private readonly _items = new Map<number, IItem>(); // id -> item element
  private readonly _resizer = new ResizeObserver(() => this.schedule(false));
}
