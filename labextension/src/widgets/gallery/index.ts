/**
 * caprl_nb gallery: the browser half of the anywidget `Gallery` (contract:
 * caprl_nb/widgets/PROTOCOL.md), bundled by esbuild into caprl_nb/widgets/static/gallery.js.
 *
 * Python owns the data, filtering, sorting, review state and thumbnails; this module renders
 * what it is sent and reports what the user did. The grid is virtualised (grid.ts); rows are
 * fetched in `window` chunks and cached per `view_version`, thumbnails arrive later as binary
 * buffers (state.ts); the detail pane shows one row large (detail.ts).
 */

import { node } from '../shared/dom';
import { captureKeys, consume, isTyping, keyName } from '../shared/keys';
import { countOf, IRenderProps, IWidgetModule, Listeners } from '../shared/model';
import { NoticeBar } from '../shared/notice';
import { REVIEW_KEYS } from '../shared/review';
import { keyHints, widgetRoot } from '../shared/root';
import { DetailPane } from './detail';
import { GridView } from './grid';
import { dispatch, IGalleryTraits } from './protocol';
import { RowCache, ThumbCache } from './state';
import { Toolbar } from './toolbar';

const FOOTER =
  'Arrows move  \u00b7  Enter opens  \u00b7  Esc closes  \u00b7  A accept  \u00b7  R reject  \u00b7  ' +
  'E edit  \u00b7  U reset';

let instances = 0;

function render({ model, el }: IRenderProps<IGalleryTraits>): () => void {
  const uid = `cg${++instances}`;
  const listeners = new Listeners(model);
  const rows = new RowCache(model, Number(model.get('view_version')) || 0);
  const thumbs = new ThumbCache();
  const pending = new Set<number>(); // ids with a review/edit sent and no `row` answer yet

  const root = widgetRoot('caprl-gallery', { 'data-testid': 'caprl-gallery' });
  const toolbar = new Toolbar(model, uid, listeners);
  const notice = new NoticeBar('The gallery reported an error.');
  const grid = new GridView({ model, root, uid, rows, thumbs, pending, open: pos => detail.open(pos) });
  const detail = new DetailPane({ model, root, rows, thumbs, pending, grid });
  const body = node('div', 'cg-body');
  body.append(grid.el, detail.el);
  root.append(toolbar.el, notice.el, body, keyHints('cg-footer', FOOTER));
  el.append(root);

  listeners.on('change:view_count', () => {
    toolbar.renderCount();
    grid.schedule();
  });
  listeners.on('change:view_version', () => {
    rows.reset(Number(model.get('view_version')) || 0);
    detail.close(false);
    grid.reset();
  });
  listeners.on('change:thumb_size', () => grid.invalidate());

  function onKeyDown(ev: KeyboardEvent): void {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (isTyping(ev.target)) return;
    const onButton = ev.target instanceof HTMLElement && ev.target.tagName === 'BUTTON';
    const key = keyName(ev);
    if (detail.isOpen ? detail.onKey(key, REVIEW_KEYS) : onGridKey(key, onButton)) consume(ev);
  }

  function onGridKey(key: string, onButton: boolean): boolean {
    const { cols, page } = grid.pageSteps();
    const focused = grid.focusedPos;
    const moves: Record<string, number> = {
      ArrowRight: focused + 1,
      ArrowLeft: focused - 1,
      ArrowDown: focused + cols,
      ArrowUp: focused - cols,
      PageDown: focused + page,
      PageUp: focused - page,
      Home: 0,
      End: countOf(model.get('view_count')) - 1
    };
    if (key in moves) grid.setFocus(moves[key], true);
    else if (key === 'Enter' && !onButton) detail.open(focused);
    else if (REVIEW_KEYS[key]) detail.review(REVIEW_KEYS[key], focused);
    else if (key === 'e' && rows.has(focused)) {
      detail.open(focused);
      detail.startEdit();
    } else return false;
    return true;
  }
  listeners.defer(captureKeys(root, onKeyDown));

  listeners.on('msg:custom', (content, buffers) =>
    dispatch(content, buffers, {
      rows: msg => {
        const filled = rows.add(msg);
        if (!filled) return;
        detail.rowsArrived(...filled);
        grid.schedule();
      },
      row: row => {
        pending.delete(row.id);
        rows.update(row);
        if (detail.id === row.id) detail.render();
        grid.schedule();
      },
      thumbs: (msg, bufs) => {
        const ids = Array.isArray(msg.ids) ? msg.ids : [];
        const stale = thumbs.add(ids, bufs || [], msg.mime, () => {
          const shown = grid.shownIds();
          if (detail.id !== null) shown.add(detail.id);
          return shown;
        });
        // Cards take a replaced thumbnail's new URL on the next frame; the old one goes after it.
        grid.schedule(() => stale.forEach(url => URL.revokeObjectURL(url)));
        detail.thumbsArrived(ids);
      },
      detail: (msg, bufs) => detail.onDetail(msg, bufs || []),
      error: message => {
        pending.clear(); // a refused review/edit gets no `row` answer
        notice.show(message);
        detail.render();
        grid.schedule();
      }
    })
  );
  grid.schedule();

  return () => {
    grid.dispose();
    listeners.dispose();
    thumbs.dispose();
    detail.dispose();
    root.remove();
  };
}

const gallery: IWidgetModule<IGalleryTraits> = { render };
export default gallery;
