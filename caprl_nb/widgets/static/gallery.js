// caprl_nb gallery: the browser half of the anywidget `Gallery` (contract: ../PROTOCOL.md).
//
// Python owns the data, filtering, sorting, review state and thumbnails; this module renders
// what it is sent and reports what the user did. The grid is virtualised: the scroll container
// is as tall as every row of the view, but only the visible rows (plus one) exist as cards,
// recycled while scrolling. Rows are fetched in `window` chunks and cached per `view_version`;
// thumbnails arrive later as binary buffers and live as a bounded set of object URLs.
//
// Every string that came from a model or a file reaches the DOM through textContent, .value or
// .title only, never as HTML.

const STATUSES = ["all", "unreviewed", "accepted", "rejected", "edited", "failed"];
const REVIEW_KEYS = { a: "accepted", r: "rejected", u: "unreviewed" };

const CHUNK = 100; // rows per `window` request (the protocol allows up to 200)
const PREFETCH_ROWS = 4; // grid rows fetched beyond the visible ones
const DOM_BUFFER_ROWS = 1; // grid rows kept as cards beyond the visible ones
const MAX_CARDS = 40; // buffer rows are dropped before the card count passes this
const MAX_CHUNKS = 40; // row chunks kept for the current view version
const MAX_THUMBS = 600; // thumbnail object URLs kept, least recently used dropped first
const RETRY_MS = 5000; // ask again for a window that got no answer
const SEARCH_DEBOUNCE_MS = 200;
// Python drops thumbnail work for windows the user scrolled past; once scrolling settles,
// a loaded chunk whose visible rows still lack thumbnails is asked for once more.
const THUMB_RETRY_MS = 1200;

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

let instances = 0;

function node(tag, className, attrs) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (attrs) for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  return el;
}

function setText(el, text) {
  const value = text == null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

function formatInt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function titleCase(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

function isTyping(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
}

function render({ model, el }) {
  const t0 = performance.now();
  const uid = `cg${++instances}`;
  const listeners = [];
  const on = (name, fn) => {
    model.on(name, fn);
    listeners.push([name, fn]);
  };

  // ---- state -------------------------------------------------------------------------------
  let version = model.get("view_version");
  let rowsByPos = new Map(); // pos -> Row, for `version`
  let posById = new Map(); // id -> pos, for `version`
  let chunks = new Map(); // chunk index -> { loaded: bool, at: ms }
  const thumbs = new Map(); // id -> object URL (insertion order = recency)
  const cards = new Map(); // pos -> card element in the grid
  const spare = []; // detached cards ready for reuse
  let geometry = null; // { cols, cardW, cardH, rowH, width }
  let focusedPos = 0;
  let frame = 0;
  let searchTimer = 0;
  let settleTimer = 0;
  let firstPaint = false;
  const pending = new Set(); // ids with a review/edit sent and no `row` answer yet
  let detail = null; // { pos, id, editing, imageUrl, imageError }

  // ---- skeleton ----------------------------------------------------------------------------
  const root = node("div", "caprl-gallery", { "data-testid": "caprl-gallery" });
  // Lumino (JupyterLab) stops looking for notebook shortcuts (`a`, `d d`, ...) here.
  root.setAttribute("data-lm-suppress-shortcuts", "true");

  const toolbar = node("div", "cg-toolbar");
  const title = node("div", "cg-title");
  const search = node("input", "cg-search", {
    type: "search",
    placeholder: "Search captions and sources",
    "aria-label": "Search captions and sources",
    "data-testid": "search",
    spellcheck: "false",
  });
  search.value = model.get("query") || "";
  const chipBox = node("div", "cg-chips", { role: "group", "aria-label": "Filter by status" });
  const chips = {};
  for (const status of STATUSES) {
    const chip = node("button", `cg-chip cg-chip--${status}`, {
      type: "button",
      "data-testid": `filter-${status}`,
      "data-status": status,
    });
    const label = node("span", "cg-chip-label");
    label.textContent = titleCase(status);
    const count = node("span", "cg-chip-count");
    chip.append(label, count);
    chip.addEventListener("click", () => setTrait("status_filter", status));
    chips[status] = { chip, count };
    chipBox.append(chip);
  }
  const sortBox = node("div", "cg-sort");
  const sortLabel = node("label", "cg-sort-label", { for: `${uid}-sort` });
  sortLabel.textContent = "Sort";
  const sortSelect = node("select", "cg-select", { id: `${uid}-sort`, "data-testid": "sort" });
  const dirButton = node("button", "cg-dir", { type: "button", "data-testid": "sort-direction" });
  sortBox.append(sortLabel, sortSelect, dirButton);
  const count = node("span", "cg-count", { "data-testid": "count", "aria-live": "polite" });
  const toolbarTop = node("div", "cg-toolbar-row");
  toolbarTop.append(title, search, sortBox, count);
  toolbar.append(toolbarTop, chipBox);

  const notice = node("div", "cg-notice", { role: "alert", "data-testid": "notice" });
  const noticeText = node("span", "cg-notice-text");
  const noticeClose = node("button", "cg-btn cg-btn--icon", { type: "button", "aria-label": "Dismiss" });
  noticeClose.textContent = "\u00d7";
  noticeClose.addEventListener("click", () => {
    notice.hidden = true;
  });
  notice.append(noticeText, noticeClose);
  notice.hidden = true;

  const body = node("div", "cg-body");
  const grid = node("div", "cg-grid", {
    "data-testid": "grid",
    tabindex: "0",
    role: "listbox",
    "aria-label": "Images",
  });
  const sizer = node("div", "cg-sizer");
  const empty = node("div", "cg-empty");
  empty.textContent = "No rows match the search and filter.";
  grid.append(sizer, empty);

  const pane = buildDetail();
  body.append(grid, pane.el);

  const footer = node("div", "cg-footer");
  footer.textContent =
    "Arrows move  \u00b7  Enter opens  \u00b7  Esc closes  \u00b7  A accept  \u00b7  R reject  \u00b7  E edit  \u00b7  U reset";
  root.append(toolbar, notice, body, footer);
  el.append(root);

  // ---- traits ------------------------------------------------------------------------------
  function setTrait(name, value) {
    model.set(name, value);
    model.save_changes();
  }

  function viewCount() {
    return Math.max(0, Number(model.get("view_count")) || 0);
  }

  function renderTitle() {
    setText(title, model.get("title") || "");
    title.hidden = !model.get("title");
  }

  function renderChips() {
    const counts = model.get("counts") || {};
    const active = model.get("status_filter") || "all";
    for (const status of STATUSES) {
      const { chip, count: badge } = chips[status];
      setText(badge, formatInt(counts[status]));
      chip.classList.toggle("is-active", status === active);
      chip.setAttribute("aria-pressed", String(status === active));
    }
  }

  function renderSort() {
    const options = ["", ...(model.get("sort_options") || [])];
    const current = model.get("sort_by") || "";
    const have = Array.from(sortSelect.options, (o) => o.value);
    if (have.length !== options.length || have.some((v, i) => v !== options[i])) {
      sortSelect.replaceChildren(
        ...options.map((value) => {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = value === "" ? "original order" : value;
          return option;
        }),
      );
    }
    sortSelect.value = current;
    const descending = Boolean(model.get("sort_descending"));
    dirButton.textContent = descending ? "\u2193 desc" : "\u2191 asc";
    dirButton.setAttribute("aria-pressed", String(descending));
    dirButton.title = descending ? "Descending: click for ascending" : "Ascending: click for descending";
  }

  function renderCount() {
    setText(count, `${formatInt(viewCount())} of ${formatInt(model.get("total"))}`);
  }

  function renderQuery() {
    const query = model.get("query") || "";
    if (!searchTimer && search.value !== query) search.value = query;
  }

  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      searchTimer = 0;
      if ((model.get("query") || "") !== search.value) setTrait("query", search.value);
    }, SEARCH_DEBOUNCE_MS);
  });
  sortSelect.addEventListener("change", () => setTrait("sort_by", sortSelect.value));
  dirButton.addEventListener("click", () => setTrait("sort_descending", !model.get("sort_descending")));

  on("change:title", renderTitle);
  on("change:counts", renderChips);
  on("change:status_filter", renderChips);
  on("change:sort_options", renderSort);
  on("change:sort_by", renderSort);
  on("change:sort_descending", renderSort);
  on("change:query", renderQuery);
  on("change:total", renderCount);
  on("change:view_count", () => {
    renderCount();
    schedule();
  });
  on("change:view_version", () => resetView(model.get("view_version")));
  on("change:thumb_size", () => {
    geometry = null;
    for (const card of cards.values()) card._row = null;
    schedule();
  });

  // ---- rows --------------------------------------------------------------------------------
  function resetView(newVersion) {
    version = newVersion;
    rowsByPos = new Map();
    posById = new Map();
    chunks = new Map();
    closeDetail(false);
    focusedPos = 0;
    grid.scrollTop = 0;
    schedule();
  }

  function requestRows(from, to) {
    const n = viewCount();
    from = Math.max(0, from);
    to = Math.min(n, to);
    if (from >= to) return;
    const now = performance.now();
    for (let k = Math.floor(from / CHUNK); k * CHUNK < to; k++) {
      const state = chunks.get(k);
      if (state && (state.loaded || now - state.at < RETRY_MS)) continue;
      chunks.set(k, { loaded: false, at: now });
      const start = k * CHUNK;
      model.send({ type: "window", version, start, end: Math.min(n, start + CHUNK) });
    }
  }

  function evictChunks(centerPos) {
    if (chunks.size <= MAX_CHUNKS) return;
    const center = Math.floor(centerPos / CHUNK);
    const far = Array.from(chunks.keys()).sort((a, b) => Math.abs(b - center) - Math.abs(a - center));
    for (const k of far.slice(0, chunks.size - MAX_CHUNKS)) {
      chunks.delete(k);
      for (let pos = k * CHUNK; pos < (k + 1) * CHUNK; pos++) {
        const row = rowsByPos.get(pos);
        if (!row) continue;
        rowsByPos.delete(pos);
        if (posById.get(row.id) === pos) posById.delete(row.id);
      }
    }
  }

  function onRows(msg) {
    if (msg.version !== version || !Array.isArray(msg.rows)) return;
    const start = Number(msg.start) || 0;
    msg.rows.forEach((row, i) => {
      rowsByPos.set(start + i, row);
      posById.set(row.id, start + i);
    });
    const end = start + msg.rows.length;
    for (let k = Math.floor(start / CHUNK); k * CHUNK < Math.max(end, start + 1); k++) {
      const retried = Boolean(chunks.get(k) && chunks.get(k).thumbRetried);
      chunks.set(k, { loaded: true, at: performance.now(), thumbRetried: retried });
    }
    if (detail && detail.id == null && detail.pos >= start && detail.pos < end) showDetail(detail.pos);
    schedule();
  }

  function onRow(row) {
    if (!row || row.id == null) return;
    pending.delete(row.id);
    const pos = posById.get(row.id);
    if (pos !== undefined) rowsByPos.set(pos, row);
    if (detail && detail.id === row.id) renderDetail();
    schedule();
  }

  // ---- thumbnails --------------------------------------------------------------------------
  function retryMissingThumbs(from, to) {
    settleTimer = 0;
    const now = performance.now();
    for (let k = Math.floor(from / CHUNK); k * CHUNK < to; k++) {
      const state = chunks.get(k);
      if (!state || !state.loaded || state.thumbRetried || now - state.at < THUMB_RETRY_MS) continue;
      let missing = false;
      for (let pos = Math.max(from, k * CHUNK); pos < Math.min(to, (k + 1) * CHUNK); pos++) {
        const row = rowsByPos.get(pos);
        if (row && row.error == null && !thumbs.has(row.id)) missing = true;
      }
      if (!missing) continue;
      state.thumbRetried = true;
      const start = k * CHUNK;
      model.send({ type: "window", version, start, end: Math.min(viewCount(), start + CHUNK) });
    }
  }

  function onThumbs(msg, buffers) {
    const ids = Array.isArray(msg.ids) ? msg.ids : [];
    const mime = msg.mime || "image/jpeg";
    const stale = [];
    ids.forEach((id, i) => {
      const buffer = buffers && buffers[i];
      if (!buffer) return;
      const url = URL.createObjectURL(new Blob([buffer], { type: mime }));
      const old = thumbs.get(id);
      if (old) stale.push(old);
      thumbs.delete(id);
      thumbs.set(id, url);
    });
    if (thumbs.size > MAX_THUMBS) {
      const shown = new Set();
      for (const card of cards.values()) if (card._row) shown.add(card._row.id);
      if (detail && detail.id != null) shown.add(detail.id);
      for (const [id, url] of thumbs) {
        if (thumbs.size <= MAX_THUMBS) break;
        if (shown.has(id)) continue;
        thumbs.delete(id);
        URL.revokeObjectURL(url); // on no card and not in the detail pane: safe to drop now
      }
    }
    // Cards take a replaced thumbnail's new URL on the next frame; the old one goes after it.
    schedule(() => stale.forEach((url) => URL.revokeObjectURL(url)));
    if (detail && ids.includes(detail.id) && !detail.imageUrl) renderDetailImage();
  }

  function thumbFor(id) {
    const url = thumbs.get(id);
    if (url) {
      thumbs.delete(id);
      thumbs.set(id, url);
    }
    return url;
  }

  // ---- grid --------------------------------------------------------------------------------
  function measure() {
    const width = grid.clientWidth;
    if (geometry && geometry.width === width) return geometry;
    const thumb = Math.min(512, Math.max(48, Number(model.get("thumb_size")) || 160));
    root.style.setProperty("--cg-thumb", `${thumb}px`);
    const minW = Math.max(thumb, MIN_CARD_TEXT_WIDTH) + 2 * PAD;
    const avail = Math.max(minW, width - 2 * GAP);
    const cols = Math.max(1, Math.floor((avail + GAP) / (minW + GAP)));
    const cardW = Math.floor((avail - (cols - 1) * GAP) / cols);
    const cardH =
      2 * (PAD + BORDER) + thumb + INNER_GAP + BADGES_H + INNER_GAP + CAPTION_LINES * LINE_H + INNER_GAP + FOOT_H;
    geometry = { width, cols, cardW, cardH, rowH: cardH + GAP };
    for (const card of cards.values()) card._pos = undefined;
    return geometry;
  }

  function buildCard() {
    const card = node("div", "cg-card", { role: "option" });
    const thumbBox = node("div", "cg-thumb");
    const img = node("img", "cg-thumb-img", { alt: "", decoding: "async", draggable: "false" });
    thumbBox.append(img);
    const badges = node("div", "cg-badges");
    const status = node("span", "cg-badge");
    const failed = node("span", "cg-badge cg-badge--failed");
    failed.textContent = "failed";
    const editedMark = node("span", "cg-edited-mark", { title: "Caption edited by a reviewer" });
    editedMark.textContent = "✎ by reviewer";
    badges.append(status, failed, editedMark);
    const caption = node("p", "cg-caption", { "data-testid": "caption" });
    const error = node("p", "cg-error", { "data-testid": "error" });
    const foot = node("div", "cg-foot");
    const label = node("span", "cg-label");
    const source = node("span", "cg-source");
    foot.append(label, source);
    card.append(thumbBox, badges, caption, error, foot);
    card._parts = { thumbBox, img, status, failed, editedMark, caption, error, foot, label, source };
    card._row = null; // neither a row nor `undefined` (a placeholder): the first fill always runs
    card.addEventListener("click", () => {
      if (card._gridPos === undefined) return;
      setFocus(card._gridPos, false);
      grid.focus({ preventScroll: true });
      openDetail(card._gridPos);
    });
    return card;
  }

  function fillCard(card, pos, row) {
    const p = card._parts;
    card._gridPos = pos;
    if (card._row === row) {
      const url = row ? thumbs.get(row.id) : undefined;
      if (card._thumb !== url) setThumb(card, url);
      return;
    }
    card._row = row;
    if (!row) {
      card.classList.add("is-placeholder");
      card.classList.remove("is-failed");
      card.setAttribute("data-testid", "placeholder");
      card.removeAttribute("data-id");
      card.removeAttribute("data-status");
      card.removeAttribute("aria-label");
      p.caption.textContent = "";
      p.error.textContent = "";
      p.label.textContent = "";
      p.source.textContent = "";
      p.foot.removeAttribute("data-sortval");
      p.status.textContent = "";
      p.failed.hidden = true;
      p.editedMark.hidden = true;
      p.error.hidden = true;
      p.caption.hidden = false;
      setThumb(card, undefined);
      return;
    }
    const failed = row.error != null && row.error !== "";
    const edited = row.edited != null;
    const text = edited ? row.edited : row.caption;
    card.classList.remove("is-placeholder");
    card.classList.toggle("is-failed", failed);
    card.setAttribute("data-testid", "card");
    card.setAttribute("data-id", String(row.id));
    card.setAttribute("data-status", String(row.status));
    card.setAttribute("aria-label", String(row.label || row.source || `row ${row.id}`));
    p.status.className = `cg-badge cg-badge--${String(row.status).replace(/[^a-z]/g, "")}`;
    setText(p.status, row.status);
    p.failed.hidden = !failed;
    p.editedMark.hidden = !edited;
    setText(p.caption, text);
    p.caption.hidden = failed && (text == null || text === "");
    setText(p.error, failed ? row.error : "");
    p.error.hidden = !failed;
    p.error.title = failed ? String(row.error) : "";
    setText(p.label, row.label);
    setText(p.source, row.source);
    p.source.title = row.source == null ? "" : String(row.source);
    // the sort column's value, drawn by CSS (content: attr(...)), which only ever shows text
    const sortBy = model.get("sort_by");
    const sortValue = sortBy && row.meta ? row.meta[sortBy] : undefined;
    if (sortValue != null && sortValue !== "") p.foot.setAttribute("data-sortval", `${sortBy} ${sortValue}`);
    else p.foot.removeAttribute("data-sortval");
    setThumb(card, thumbFor(row.id));
  }

  function setThumb(card, url) {
    const { img, thumbBox } = card._parts;
    card._thumb = url;
    if (url) img.src = url;
    else img.removeAttribute("src");
    thumbBox.classList.toggle("has-img", Boolean(url));
  }

  function update() {
    frame = 0;
    const n = viewCount();
    empty.hidden = n > 0;
    if (grid.clientWidth === 0) return; // not laid out yet; the ResizeObserver calls back
    const g = measure();
    const totalRows = Math.ceil(n / g.cols);
    sizer.style.height = `${totalRows ? GAP + totalRows * g.rowH : 0}px`;
    const top = grid.scrollTop;
    const height = grid.clientHeight;
    const firstVisible = Math.floor(Math.max(0, top - GAP) / g.rowH);
    const lastVisible = Math.max(firstVisible, Math.floor(Math.max(0, top + height - GAP - 1) / g.rowH));
    let buffer = DOM_BUFFER_ROWS;
    while (buffer > 0 && (lastVisible - firstVisible + 1 + 2 * buffer) * g.cols > MAX_CARDS) buffer--;
    const r0 = Math.max(0, firstVisible - buffer);
    const r1 = Math.min(totalRows - 1, lastVisible + buffer);
    const p0 = r0 * g.cols;
    const p1 = Math.min(n, (r1 + 1) * g.cols);

    for (const [pos, card] of cards) {
      if (pos >= p0 && pos < p1) continue;
      cards.delete(pos);
      card.remove();
      card._gridPos = undefined;
      spare.push(card);
    }
    const fresh = [];
    let painted = false;
    for (let pos = p0; pos < p1; pos++) {
      let card = cards.get(pos);
      if (!card) {
        card = spare.pop() || buildCard();
        card._pos = undefined;
        cards.set(pos, card);
        fresh.push(card);
      }
      if (card._pos !== pos) {
        const r = Math.floor(pos / g.cols);
        const c = pos % g.cols;
        card.style.transform = `translate(${GAP + c * (g.cardW + GAP)}px, ${GAP + r * g.rowH}px)`;
        card.style.width = `${g.cardW}px`;
        card.style.height = `${g.cardH}px`;
        card.id = `${uid}-card-${pos}`;
        card._pos = pos;
      }
      const row = rowsByPos.get(pos);
      fillCard(card, pos, row);
      if (row) painted = true;
      card.classList.toggle("is-pending", Boolean(row && pending.has(row.id)));
      const focused = pos === focusedPos;
      card.classList.toggle("is-focused", focused);
      card.setAttribute("aria-selected", String(focused));
    }
    if (fresh.length) grid.append(...fresh);
    spare.length = Math.min(spare.length, MAX_CARDS);
    if (n > 0 && focusedPos < n) grid.setAttribute("aria-activedescendant", `${uid}-card-${focusedPos}`);
    else grid.removeAttribute("aria-activedescendant");

    const fetchFrom = p0 - PREFETCH_ROWS * g.cols;
    const fetchTo = p1 + PREFETCH_ROWS * g.cols;
    requestRows(p0, p1); // what is on screen first
    requestRows(fetchFrom, fetchTo);
    evictChunks((p0 + p1) >> 1);
    clearTimeout(settleTimer);
    settleTimer = setTimeout(() => retryMissingThumbs(p0, p1), THUMB_RETRY_MS);

    if (painted && !firstPaint) {
      firstPaint = true;
      requestAnimationFrame(() => {
        root.setAttribute("data-first-paint-ms", (performance.now() - t0).toFixed(1));
      });
    }
    const after = afterUpdate.splice(0);
    after.forEach((fn) => fn());
  }

  const afterUpdate = [];
  function schedule(then) {
    if (then) afterUpdate.push(then);
    if (!frame) frame = requestAnimationFrame(update);
  }

  function setFocus(pos, scroll) {
    const n = viewCount();
    if (n === 0) return;
    focusedPos = Math.min(n - 1, Math.max(0, pos));
    if (scroll) scrollToPos(focusedPos);
    schedule();
  }

  function scrollToPos(pos) {
    const g = measure();
    const rowTop = GAP + Math.floor(pos / g.cols) * g.rowH;
    const rowBottom = rowTop + g.cardH;
    if (rowTop < grid.scrollTop) grid.scrollTop = rowTop - GAP;
    else if (rowBottom > grid.scrollTop + grid.clientHeight) {
      grid.scrollTop = rowBottom - grid.clientHeight + GAP;
    }
  }

  grid.addEventListener("scroll", () => schedule(), { passive: true });
  grid.addEventListener("focus", () => {
    const card = cards.get(focusedPos);
    if (!card) setFocus(cards.size ? Math.min(...cards.keys()) : 0, false);
  });
  const resizer = new ResizeObserver(() => schedule());
  resizer.observe(grid);

  // ---- detail pane -------------------------------------------------------------------------
  function buildDetail() {
    const el = node("div", "cg-detail", {
      "data-testid": "detail",
      role: "dialog",
      "aria-modal": "false",
      "aria-label": "Image detail",
      tabindex: "-1",
    });
    el.hidden = true;
    const media = node("div", "cg-detail-media");
    const img = node("img", "cg-detail-img", { alt: "", "data-testid": "detail-image" });
    const mediaMsg = node("p", "cg-detail-media-msg");
    media.append(img, mediaMsg);

    const side = node("div", "cg-detail-side");
    const head = node("div", "cg-detail-head");
    const label = node("h3", "cg-detail-label", { "data-testid": "detail-label" });
    const nav = node("div", "cg-detail-nav");
    const prev = node("button", "cg-btn cg-btn--icon", {
      type: "button",
      "data-testid": "prev",
      "aria-label": "Previous image",
      title: "Previous (Left)",
    });
    prev.textContent = "\u2039";
    const position = node("span", "cg-detail-pos");
    const next = node("button", "cg-btn cg-btn--icon", {
      type: "button",
      "data-testid": "next",
      "aria-label": "Next image",
      title: "Next (Right)",
    });
    next.textContent = "\u203a";
    const close = node("button", "cg-btn cg-btn--icon", {
      type: "button",
      "data-testid": "close",
      "aria-label": "Close detail",
      title: "Close (Esc)",
    });
    close.textContent = "\u00d7";
    nav.append(prev, position, next, close);
    head.append(label, nav);

    const badges = node("div", "cg-badges cg-detail-badges");
    const status = node("span", "cg-badge");
    const failed = node("span", "cg-badge cg-badge--failed");
    failed.textContent = "failed";
    const editedMark = node("span", "cg-edited-mark");
    editedMark.textContent = "✎ by reviewer";
    const source = node("span", "cg-detail-source", { "data-testid": "detail-source" });
    badges.append(status, failed, editedMark, source);

    const error = node("p", "cg-detail-error", { "data-testid": "detail-error", role: "alert" });
    const caption = node("div", "cg-detail-caption", { "data-testid": "detail-caption", tabindex: "0" });
    const original = node("details", "cg-detail-original");
    const originalSummary = node("summary");
    originalSummary.textContent = "Model caption";
    const originalText = node("div", "cg-detail-original-text");
    original.append(originalSummary, originalText);
    const editor = node("textarea", "cg-editor", {
      "data-testid": "editor",
      "aria-label": "Edit caption",
      spellcheck: "true",
    });
    const meta = node("dl", "cg-meta");

    const actions = node("div", "cg-actions");
    const button = (testid, text, cls, hint) => {
      const b = node("button", `cg-btn ${cls || ""}`.trim(), { type: "button", "data-testid": testid });
      b.textContent = text;
      if (hint) b.title = hint;
      actions.append(b);
      return b;
    };
    const accept = button("accept", "Accept", "cg-btn--accept", "Accept (A)");
    const reject = button("reject", "Reject", "cg-btn--reject", "Reject (R)");
    const edit = button("edit", "Edit", "", "Edit caption (E)");
    const reset = button("reset", "Reset", "", "Back to unreviewed (U)");
    const save = button("save", "Save", "cg-btn--primary", "Save (Ctrl+Enter)");
    const cancel = button("cancel", "Cancel", "", "Cancel (Esc)");
    const hint = node("span", "cg-actions-hint");
    actions.append(hint);

    side.append(head, badges, error, caption, original, editor, meta, actions);
    el.append(media, side);

    prev.addEventListener("click", () => stepDetail(-1));
    next.addEventListener("click", () => stepDetail(1));
    close.addEventListener("click", () => closeDetail(true));
    accept.addEventListener("click", () => review(detail && detail.pos, "accepted"));
    reject.addEventListener("click", () => review(detail && detail.pos, "rejected"));
    reset.addEventListener("click", () => review(detail && detail.pos, "unreviewed"));
    edit.addEventListener("click", () => startEdit());
    save.addEventListener("click", () => saveEdit());
    cancel.addEventListener("click", () => cancelEdit());
    editor.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        saveEdit();
      } else if (ev.key === "Escape") {
        ev.preventDefault();
        cancelEdit();
      }
      ev.stopPropagation();
    });
    img.addEventListener("error", () => img.removeAttribute("src"));

    return {
      el, img, mediaMsg, label, position, prev, next, status, failed, editedMark, source, error,
      caption, original, originalText, editor, meta, accept, reject, edit, reset, save, cancel, hint,
    };
  }

  function openDetail(pos) {
    if (pos == null || pos < 0 || pos >= viewCount()) return;
    pane.el.hidden = false;
    root.classList.add("has-detail");
    showDetail(pos);
    pane.el.focus({ preventScroll: true });
  }

  function showDetail(pos) {
    const row = rowsByPos.get(pos);
    const previous = detail;
    detail = {
      pos,
      id: row ? row.id : null,
      editing: false,
      imageUrl: null,
      imageError: null,
    };
    if (previous && previous.id === detail.id) {
      detail.imageUrl = previous.imageUrl;
      detail.imageError = previous.imageError;
    } else {
      if (previous && previous.imageUrl) URL.revokeObjectURL(previous.imageUrl);
      if (row) model.send({ type: "detail", id: row.id });
    }
    if (!row) requestRows(pos - CHUNK / 2, pos + CHUNK / 2);
    renderDetail();
    renderDetailImage();
  }

  function renderDetail() {
    if (!detail) return;
    const row = detail.id == null ? undefined : rowsByPos.get(posById.get(detail.id));
    const n = viewCount();
    setText(pane.position, `${formatInt(detail.pos + 1)} / ${formatInt(n)}`);
    pane.prev.disabled = detail.pos <= 0;
    pane.next.disabled = detail.pos >= n - 1;
    const actionable = Boolean(row);
    for (const b of [pane.accept, pane.reject, pane.edit, pane.reset]) b.disabled = !actionable;
    pane.el.classList.toggle("is-editing", detail.editing);
    pane.editor.hidden = !detail.editing;
    pane.save.hidden = !detail.editing;
    pane.cancel.hidden = !detail.editing;
    pane.edit.hidden = detail.editing;
    setText(pane.hint, detail.editing ? "Ctrl+Enter saves \u00b7 Esc cancels" : "");
    if (!row) {
      setText(pane.label, "Loading\u2026");
      setText(pane.caption, "");
      pane.caption.hidden = true;
      pane.error.hidden = true;
      pane.original.hidden = true;
      pane.status.hidden = true;
      pane.failed.hidden = true;
      pane.editedMark.hidden = true;
      setText(pane.source, "");
      pane.meta.replaceChildren();
      return;
    }
    pane.el.setAttribute("data-id", String(row.id));
    pane.el.classList.toggle("is-pending", pending.has(row.id));
    pane.el.setAttribute("data-status", String(row.status));
    setText(pane.label, row.label || `Row ${row.id}`);
    setText(pane.source, row.source);
    pane.source.title = row.source == null ? "" : String(row.source);
    pane.status.hidden = false;
    pane.status.className = `cg-badge cg-badge--${String(row.status).replace(/[^a-z]/g, "")}`;
    setText(pane.status, row.status);
    const failed = row.error != null && row.error !== "";
    const edited = row.edited != null;
    pane.failed.hidden = !failed;
    pane.editedMark.hidden = !edited;
    pane.error.hidden = !failed;
    setText(pane.error, failed ? row.error : "");
    const text = edited ? row.edited : row.caption;
    pane.caption.hidden = detail.editing || text == null;
    setText(pane.caption, text);
    pane.original.hidden = detail.editing || !edited || row.caption == null;
    setText(pane.originalText, row.caption);

    const entries = [["row", row.id], ...Object.entries(row.meta || {})];
    const signature = JSON.stringify(entries);
    if (pane.meta._signature !== signature) {
      pane.meta._signature = signature;
      const items = [];
      for (const [key, value] of entries) {
        const dt = document.createElement("dt");
        dt.textContent = String(key);
        const dd = document.createElement("dd");
        dd.textContent = value == null ? "" : String(value);
        items.push(dt, dd);
      }
      pane.meta.replaceChildren(...items);
    }
  }

  function renderDetailImage() {
    if (!detail) return;
    const url = detail.imageUrl || (detail.id != null ? thumbs.get(detail.id) : undefined);
    pane.img.setAttribute("data-kind", detail.imageUrl ? "full" : "thumb");
    if (url) {
      if (pane.img.getAttribute("src") !== url) pane.img.src = url;
      pane.img.hidden = false;
    } else {
      pane.img.removeAttribute("src");
      pane.img.hidden = true;
    }
    let message = "";
    if (detail.imageError != null) message = `Image unavailable: ${detail.imageError}`;
    else if (!detail.imageUrl && detail.id != null) message = url ? "" : "Loading image\u2026";
    setText(pane.mediaMsg, message);
    pane.mediaMsg.hidden = message === "";
    pane.mediaMsg.classList.toggle("is-error", detail.imageError != null);
  }

  function onDetail(msg, buffers) {
    if (!detail || msg.id !== detail.id) return;
    if (msg.error != null) {
      detail.imageError = String(msg.error);
    } else if (buffers && buffers[0]) {
      if (detail.imageUrl) URL.revokeObjectURL(detail.imageUrl);
      detail.imageUrl = URL.createObjectURL(new Blob([buffers[0]], { type: msg.mime || "image/jpeg" }));
      detail.imageError = null;
    }
    renderDetailImage();
  }

  function stepDetail(delta) {
    if (!detail) return;
    const pos = Math.min(viewCount() - 1, Math.max(0, detail.pos + delta));
    if (pos === detail.pos) return;
    setFocus(pos, true);
    showDetail(pos);
  }

  function closeDetail(refocus) {
    if (!detail && pane.el.hidden) return;
    if (detail && detail.imageUrl) URL.revokeObjectURL(detail.imageUrl);
    detail = null;
    pane.el.hidden = true;
    root.classList.remove("has-detail");
    if (refocus) {
      scrollToPos(focusedPos);
      schedule();
      grid.focus({ preventScroll: true });
    }
  }

  // ---- review actions ----------------------------------------------------------------------
  // Python owns review semantics (what accepting an edited row means, what a reset drops), so
  // a card is only marked pending until the `row` message with the outcome arrives.
  function review(pos, status) {
    const row = pos == null ? undefined : rowsByPos.get(pos);
    if (!row) return;
    pending.add(row.id);
    model.send({ type: "review", id: row.id, status });
    renderDetail();
    schedule();
  }

  function startEdit() {
    if (!detail) return;
    const row = rowsByPos.get(detail.pos);
    if (!row) return;
    detail.editing = true;
    pane.editor.value = row.edited != null ? row.edited : row.caption || "";
    renderDetail();
    pane.editor.focus();
  }

  function saveEdit() {
    if (!detail || !detail.editing) return;
    const row = rowsByPos.get(detail.pos);
    detail.editing = false;
    if (row) {
      pending.add(row.id);
      model.send({ type: "edit", id: row.id, caption: pane.editor.value });
      schedule();
    }
    renderDetail();
    pane.el.focus({ preventScroll: true });
  }

  function cancelEdit() {
    if (!detail || !detail.editing) return;
    detail.editing = false;
    renderDetail();
    pane.el.focus({ preventScroll: true });
  }

  // ---- keyboard ----------------------------------------------------------------------------
  function onKeyDown(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (isTyping(ev.target)) return;
    const onButton = ev.target && ev.target.tagName === "BUTTON";
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    let handled = true;
    if (detail) {
      if (key === "Escape") closeDetail(true);
      else if (key === "ArrowLeft") stepDetail(-1);
      else if (key === "ArrowRight") stepDetail(1);
      else if (REVIEW_KEYS[key]) review(detail.pos, REVIEW_KEYS[key]);
      else if (key === "e") startEdit();
      else handled = false;
    } else {
      const cols = geometry ? geometry.cols : 1;
      const page = geometry ? Math.max(1, Math.floor(grid.clientHeight / geometry.rowH)) * cols : cols;
      if (key === "ArrowRight") setFocus(focusedPos + 1, true);
      else if (key === "ArrowLeft") setFocus(focusedPos - 1, true);
      else if (key === "ArrowDown") setFocus(focusedPos + cols, true);
      else if (key === "ArrowUp") setFocus(focusedPos - cols, true);
      else if (key === "PageDown") setFocus(focusedPos + page, true);
      else if (key === "PageUp") setFocus(focusedPos - page, true);
      else if (key === "Home") setFocus(0, true);
      else if (key === "End") setFocus(viewCount() - 1, true);
      else if (key === "Enter" && !onButton) openDetail(focusedPos);
      else if (REVIEW_KEYS[key]) review(focusedPos, REVIEW_KEYS[key]);
      else if (key === "e" && rowsByPos.has(focusedPos)) {
        openDetail(focusedPos);
        startEdit();
      } else handled = false;
    }
    if (handled) {
      ev.preventDefault();
      ev.stopPropagation();
    }
  }
  // Keys aimed at the widget are caught on their way down, at the window: Notebook 7 runs its
  // shortcuts on the document in the capture phase (JupyterLab lets them bubble), so a
  // listener on the root would come too late there and `r` would turn the cell into raw text.
  function onWindowKeyDown(ev) {
    if (ev.target instanceof Node && root.contains(ev.target)) onKeyDown(ev);
  }
  window.addEventListener("keydown", onWindowKeyDown, true);

  // ---- messages ----------------------------------------------------------------------------
  function onMessage(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "rows") onRows(msg);
    else if (msg.type === "row") onRow(msg.row);
    else if (msg.type === "thumbs") onThumbs(msg, buffers);
    else if (msg.type === "detail") onDetail(msg, buffers);
    else if (msg.type === "error") {
      pending.clear(); // a refused review/edit gets no `row` answer
      showNotice(msg.message);
      renderDetail();
      schedule();
    }
  }

  function showNotice(text) {
    setText(noticeText, text == null ? "The gallery reported an error." : text);
    notice.hidden = false;
  }
  on("msg:custom", onMessage);

  renderTitle();
  renderChips();
  renderSort();
  renderCount();
  schedule();

  return () => {
    if (frame) cancelAnimationFrame(frame);
    clearTimeout(searchTimer);
    clearTimeout(settleTimer);
    resizer.disconnect();
    for (const [name, fn] of listeners) model.off(name, fn);
    window.removeEventListener("keydown", onWindowKeyDown, true);
    for (const url of thumbs.values()) URL.revokeObjectURL(url);
    thumbs.clear();
    if (detail && detail.imageUrl) URL.revokeObjectURL(detail.imageUrl);
    detail = null;
    root.remove();
  };
}

export default { render };
