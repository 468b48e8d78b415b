/**
 * caprl_nb extraction review: the browser half of the anywidget `ExtractionReview` (contract:
 * the docstring of caprl_nb/widgets/extraction.py), bundled by esbuild into
 * caprl_nb/widgets/static/extraction.js.
 *
 * Shows one row at a time: the image beside an editable form of fields or an editable grid for
 * a chart table (editor.ts), keeps the reviewer's unsaved draft per row (drafts.ts), and reports
 * what the user did. Python owns review semantics (an edit is an accepted correction; equal
 * values accept); the view marks the row pending until its `row` answer arrives.
 */

import { node } from '../shared/dom';
import { captureKeys, consume, isSaveChord, isTyping, keyName } from '../shared/keys';
import { countOf, IRenderProps, IWidgetModule, Listeners, setTrait } from '../shared/model';
import { NoticeBar } from '../shared/notice';
import { REVIEW_KEYS, ReviewStatus } from '../shared/review';
import { keyHints, widgetRoot } from '../shared/root';
import { Drafts, ImageCache } from './drafts';
import { Editor } from './editor';
import { RowList } from './list';
import { dispatch, IReviewTraits, IRow, send } from './protocol';
import { ReviewView } from './view';

const FOOTER =
  '\u2190 \u2192 rows  \u00b7  A accept  \u00b7  R reject  \u00b7  U reset  \u00b7  N next unreviewed  ' +
  '\u00b7  Ctrl+Enter saves  \u00b7  Esc leaves a field';

function render({ model, el }: IRenderProps<IReviewTraits>): () => void {
  const listeners = new Listeners(model);
  const rows = new Map<number, IRow>(); // id -> Row (as Python sent it)
  const images = new ImageCache();
  const drafts = new Drafts(model);
  const pending = new Set<number>(); // ids with a review/edit sent and no answer yet
  let current = Number(model.get('current')) || 0;
  const total = (): number => countOf(model.get('total'));
  const currentRow = (): IRow | undefined => rows.get(current);

  const root = widgetRoot('caprl-xreview', { 'data-testid': 'caprl-extraction-review', tabindex: '0' });
  const notice = new NoticeBar('The review reported an error.');
  const list = new RowList(model, () => current, id => {
    go(id);
    root.focus({ preventScroll: true });
  });
  const editor = new Editor(model, drafts, currentRow, () => view.renderDirty());
  const view = new ReviewView({
    model,
    root,
    drafts,
    images,
    pending,
    editor,
    list,
    current: () => current,
    row: currentRow
  });
  const body = node('div', 'xr-body');
  body.append(list.el, view.media, view.side);
  root.append(view.toolbar, notice.el, body, keyHints('xr-footer', FOOTER));
  el.append(root);

  // ---- navigation ---------------------------------------------------------------------------
  function request(id: number): void {
    if (id >= 0 && id < total() && !rows.has(id)) send.row(model, id);
  }

  function go(id: number): void {
    const n = total();
    if (n === 0) return;
    id = Math.min(n - 1, Math.max(0, id));
    if (id === current) return;
    current = id;
    setTrait(model, 'current', id); // Python answers with the row and its image
    view.renderRow();
    request(id + 1);
    request(id - 1);
  }

  function nextUnreviewed(): void {
    const statuses = model.get('statuses') || '';
    const n = total();
    for (let k = 1; k <= n; k++) {
      const id = (current + k) % n;
      if (statuses.charAt(id) === 'u') {
        go(id);
        return;
      }
    }
  }

  // ---- review actions -----------------------------------------------------------------------
  function review(status: ReviewStatus): void {
    const row = currentRow();
    if (!row) return;
    if (status === 'accepted' && drafts.isDirty(row)) {
      saveEdit();
      return;
    }
    drafts.delete(row.id);
    pending.add(row.id);
    send.review(model, row.id, status);
    view.renderRow();
  }

  function saveEdit(): void {
    const row = currentRow();
    if (!row || !drafts.isDirty(row) || pending.has(row.id)) return;
    pending.add(row.id);
    if (drafts.isTable()) send.editTable(model, row.id, drafts.savedTable(row.id));
    else send.editFields(model, row.id, drafts.changedFields(row));
    view.renderRow();
  }

  function discardEdit(): void {
    const row = currentRow();
    if (!row) return;
    drafts.delete(row.id);
    view.renderRow();
  }

  view.bind({
    prev: () => go(current - 1),
    next: () => go(current + 1),
    nextUnreviewed,
    review,
    save: saveEdit,
    discard: discardEdit
  });

  // ---- keyboard -----------------------------------------------------------------------------
  function onKeyDown(ev: KeyboardEvent): void {
    if (ev.defaultPrevented) return;
    if (isTyping(ev.target)) {
      if (isSaveChord(ev)) {
        ev.preventDefault();
        saveEdit();
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        if (ev.target instanceof HTMLElement) ev.target.blur();
        root.focus({ preventScroll: true });
      }
      ev.stopPropagation(); // typing `a` in a cell is text, not a notebook shortcut
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = keyName(ev);
    const moves: Record<string, number> = {
      ArrowLeft: current - 1,
      ArrowRight: current + 1,
      Home: 0,
      End: total() - 1
    };
    if (key in moves) go(moves[key]);
    else if (REVIEW_KEYS[key]) review(REVIEW_KEYS[key]);
    else if (key === 'n') nextUnreviewed();
    else return;
    consume(ev);
  }
  listeners.defer(captureKeys(root, onKeyDown));

  // ---- messages -----------------------------------------------------------------------------
  listeners.on('msg:custom', (content, buffers) =>
    dispatch(content, buffers, {
      row: row => {
        rows.set(row.id, row);
        if (pending.delete(row.id)) drafts.delete(row.id); // the answer to a review or an edit
        if (row.id === current) view.renderRow();
        else list.schedule(false);
      },
      image: (msg, bufs) => {
        if (images.add(msg, bufs || [], current) && msg.id === current) view.renderImage();
      },
      error: (message, id) => {
        // a refused review/edit gets no `row` answer; the reviewer's draft stays
        if (id !== null) pending.delete(id);
        else pending.clear();
        notice.show(message);
        view.renderRow();
      }
    })
  );
  listeners.on('change:current', () => {
    const id = Number(model.get('current')) || 0;
    if (id === current) return;
    current = id;
    view.renderRow();
    request(id + 1);
  });
  listeners.on('change:counts', () => view.renderToolbar());
  listeners.on('change:title', () => view.renderToolbar());
  for (const trait of ['statuses', 'labels', 'failed_ids']) {
    listeners.on(`change:${trait}`, () => list.schedule(false));
  }
  listeners.on('change:fields', () => {
    editor.resetForm();
    editor.fill();
  });

  view.renderRow();
  if (total() > 0) {
    send.row(model, current);
    request(current + 1);
  }

  return () => {
    list.dispose();
    listeners.dispose();
    images.dispose();
    root.remove();
  };
}

const extraction: IWidgetModule<IReviewTraits> = { render };
export default extraction;
