/**
 * The gallery's toolbar: title, search, sort, the "score below" threshold (when the gallery has a
 * score column), the row count and the status filter chips.
 */

import { formatInt, node, setText } from '../shared/dom';
import { countOf, Listeners, setTrait } from '../shared/model';
import { GalleryModel, IGalleryTraits, STATUSES, StatusFilter } from './protocol';

const SEARCH_DEBOUNCE_MS = 200;
const THRESHOLD_DEBOUNCE_MS = 300;

function titleCase(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

export class Toolbar {
  readonly el = node('div', 'cg-toolbar');

  constructor(
    private readonly _model: GalleryModel,
    uid: string,
    listeners: Listeners<IGalleryTraits>
  ) {
    const model = this._model;
    const search = this._search;
    search.value = model.get('query') || '';
    const chipBox = node('div', 'cg-chips', { role: 'group', 'aria-label': 'Filter by status' });
    for (const status of STATUSES) {
      const chip = node('button', `cg-chip cg-chip--${status}`, {
        type: 'button',
        'data-testid': `filter-${status}`,
        'data-status': status
      });
      const label = node('span', 'cg-chip-label');
      label.textContent = titleCase(status);
      const count = node('span', 'cg-chip-count');
      chip.append(label, count);
      chip.addEventListener('click', () => setTrait(model, 'status_filter', status));
      this._chips.set(status, { chip, count });
      chipBox.append(chip);
    }
    const sortBox = node('div', 'cg-sort');
    const sortLabel = node('label', 'cg-sort-label', { for: `${uid}-sort` });
    sortLabel.textContent = 'Sort';
    this._sortSelect.id = `${uid}-sort`;
    sortBox.append(sortLabel, this._sortSelect, this._dirButton);
    const threshold = this._threshold;
    const thresholdLabel = node('label', 'cg-sort-label', { for: `${uid}-score-below` });
    thresholdLabel.textContent = 'Score below';
    threshold.id = `${uid}-score-below`;
    const clear = this._thresholdClear;
    clear.textContent = '\u00d7';
    this._scoreBox.append(thresholdLabel, threshold, clear);
    const top = node('div', 'cg-toolbar-row');
    top.append(this._title, search, sortBox, this._scoreBox, this._count);
    this.el.append(top, chipBox);

    search.addEventListener('input', () => {
      clearTimeout(this._searchTimer);
      this._searchTimer = window.setTimeout(() => {
        this._searchTimer = 0;
        if ((model.get('query') || '') !== search.value) setTrait(model, 'query', search.value);
      }, SEARCH_DEBOUNCE_MS);
    });
    this._sortSelect.addEventListener('change', () => setTrait(model, 'sort_by', this._sortSelect.value));
    threshold.addEventListener('input', () => {
      clearTimeout(this._thresholdTimer);
      this._thresholdTimer = window.setTimeout(() => this._saveThreshold(), THRESHOLD_DEBOUNCE_MS);
    });
    threshold.addEventListener('change', () => this._saveThreshold());
    threshold.addEventListener('keydown', ev => {
      if (ev.key === 'Enter') this._saveThreshold();
    });
    clear.addEventListener('click', () => {
      threshold.value = '';
      this._saveThreshold();
    });
    listeners.defer(() => clearTimeout(this._thresholdTimer));
    this._dirButton.addEventListener('click', () =>
      setTrait(model, 'sort_descending', !model.get('sort_descending'))
    );
    listeners.defer(() => clearTimeout(this._searchTimer));

    const render = {
      title: () => this._renderTitle(),
      chips: () => this._renderChips(),
      sort: () => this._renderSort(),
      count: () => this._renderCount(),
      score: () => this._renderThreshold()
    };
    listeners.on('change:title', render.title);
    listeners.on('change:counts', render.chips);
    listeners.on('change:status_filter', render.chips);
    listeners.on('change:sort_options', render.sort);
    listeners.on('change:sort_by', render.sort);
    listeners.on('change:sort_descending', render.sort);
    listeners.on('change:query', () => this._renderQuery());
    listeners.on('change:total', render.count);
    listeners.on('change:score_column', render.score);
    listeners.on('change:score_span', render.score);
    listeners.on('change:score_below', render.score);
    listeners.on('change:notes_label', render.score);
    for (const draw of Object.values(render)) draw();
  }

  /** Redraws the "n of total" count (the view's size changed). */
  renderCount(): void {
    this._renderCount();
  }

  private _renderTitle(): void {
    setText(this._title, this._model.get('title') || '');
    this._title.hidden = !this._model.get('title');
  }

  private _renderChips(): void {
    const counts = this._model.get('counts') || {};
    const active = this._model.get('status_filter') || 'all';
    for (const [status, { chip, count }] of this._chips) {
      // A review count is absent while Python still reads the stored decisions of a large gallery.
      setText(count, counts[status] === undefined ? '\u2026' : formatInt(counts[status]));
      chip.classList.toggle('is-active', status === active);
      chip.setAttribute('aria-pressed', String(status === active));
    }
  }

  private _renderSort(): void {
    const select = this._sortSelect;
    const options = ['', ...(this._model.get('sort_options') || [])];
    const have = Array.from(select.options, o => o.value);
    if (have.length !== options.length || have.some((v, i) => v !== options[i])) {
      select.replaceChildren(
        ...options.map(value => {
          const option = node('option');
          option.value = value;
          option.textContent = value === '' ? 'original order' : value;
          return option;
        })
      );
    }
    select.value = this._model.get('sort_by') || '';
    const descending = Boolean(this._model.get('sort_descending'));
    const dir = this._dirButton;
    dir.textContent = descending ? '\u2193 desc' : '\u2191 asc';
    dir.setAttribute('aria-pressed', String(descending));
    dir.title = descending ? 'Descending: click for ascending' : 'Ascending: click for descending';
  }

  private _renderCount(): void {
    const n = countOf(this._model.get('view_count'));
    setText(this._count, `${formatInt(n)} of ${formatInt(this._model.get('total'))}`);
  }

  /** Sends the threshold typed so far: a number, or null (empty) for every score. */
  private _saveThreshold(): void {
    clearTimeout(this._thresholdTimer);
    this._thresholdTimer = 0;
    const text = this._threshold.value.trim();
    const value = text === '' ? null : Number(text);
    if (value !== null && !Number.isFinite(value)) return; // half-typed: wait for a number
    if ((this._model.get('score_below') ?? null) !== value) setTrait(this._model, 'score_below', value);
  }

  private _renderThreshold(): void {
    const model = this._model;
    const column = model.get('score_column') || '';
    this._scoreBox.hidden = column === '';
    const notes = model.get('notes_label') || '';
    const hint = notes ? `Search captions, sources and ${notes}` : 'Search captions and sources';
    this._search.placeholder = hint;
    this._search.setAttribute('aria-label', hint);
    if (!column) return;
    const span = model.get('score_span') || [];
    const [low, high] = [Number(span[0]), Number(span[1])];
    const input = this._threshold;
    if (Number.isFinite(low) && Number.isFinite(high) && high > low) {
      input.min = String(low);
      input.max = String(high);
      input.step = String(Number(((high - low) / 20).toPrecision(2)));
    }
    input.title = `Show only rows whose ${column} is below this (empty: every row)`;
    const value = model.get('score_below');
    const shown = value === null || value === undefined ? '' : String(value);
    const typed = input.value.trim() === '' ? null : Number(input.value);
    // leave what the user is typing alone unless Python set another value
    if (!this._thresholdTimer && typed !== (value ?? null)) input.value = shown;
    this._thresholdClear.hidden = shown === '';
    this._scoreBox.classList.toggle('is-active', shown !== '');
  }

  private _renderQuery(): void {
    const query = this._model.get('query') || '';
    if (!this._searchTimer && this._search.value !== query) this._search.value = query;
  }

  private _searchTimer = 0;
  private _thresholdTimer = 0;
  private readonly _scoreBox = node('div', 'cg-sort cg-score-filter', { 'data-testid': 'score-filter' });
  private readonly _threshold = node('input', 'cg-select cg-threshold', {
    type: 'number',
    inputmode: 'decimal',
    placeholder: 'any',
    'data-testid': 'score-below'
  });
  private readonly _thresholdClear = node('button', 'cg-dir cg-threshold-clear', {
    type: 'button',
    'data-testid': 'score-clear',
    title: 'Show every score',
    'aria-label': 'Clear the score threshold'
  });
  private readonly _chips = new Map<StatusFilter, { chip: HTMLButtonElement; count: HTMLSpanElement }>();
  private readonly _title = node('div', 'cg-title');
  private readonly _search = node('input', 'cg-search', {
    type: 'search',
    placeholder: 'Search captions and sources',
    'aria-label': 'Search captions and sources',
    'data-testid': 'search',
    spellcheck: 'false'
  });
  private readonly _sortSelect = node('select', 'cg-select', { 'data-testid': 'sort' });
  private readonly _dirButton = node('button', 'cg-dir', { type: 'button', 'data-testid': 'sort-direction' });
  private readonly _count = node('span', 'cg-count', { 'data-testid': 'count', 'aria-live': 'polite' });
}
