// caprl_nb extraction review: the browser half of the anywidget `ExtractionReview`
// (contract: the docstring of ../extraction.py; conventions as ../PROTOCOL.md).
//
// Python owns the values, their types and the review state; this module shows one row at a
// time (the image beside an editable form of fields, or an editable grid for a chart table),
// keeps the reviewer's unsaved draft per row, and reports what the user did. The `current`
// traitlet is the row shown; Python answers a change of it with the row and its image.
//
// Every string that came from a model or a file reaches the DOM through textContent, .value or
// .title only, never as HTML.

const STATUS_OF = { u: "unreviewed", a: "accepted", r: "rejected", e: "edited" };
const COUNT_KEYS = ["unreviewed", "accepted", "rejected", "edited", "failed"];
const KIND_LABEL = { integer: "integer", number: "number", boolean: "true/false", string: "text", json: "JSON" };
const MAX_IMAGES = 8; // decoded images kept as object URLs, least recently shown dropped first
const LIST_ROW_H = 28; // px; extraction.css gives .xr-item exactly this height
const LIST_BUFFER = 6; // list items kept beyond the visible ones

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

function asText(value) {
  if (value == null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function isTyping(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
}

function formatInt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function render({ model, el }) {
  const listeners = [];
  const on = (name, fn) => {
    model.on(name, fn);
    listeners.push([name, fn]);
  };

  // ---- state -------------------------------------------------------------------------------
  const rows = new Map(); // id -> Row (as Python sent it)
  const images = new Map(); // id -> { url, width, height } | { error } (insertion order = recency)
  const drafts = new Map(); // id -> unsaved text: { field: text } or { columns: [...], rows: [[...]] }
  const pending = new Set(); // ids with a review/edit sent and no answer yet
  let current = Number(model.get("current")) || 0;
  let shownId = null; // the row whose values the editor holds
  let zoomed = false;
  let listFrame = 0;

  const mode = () => (model.get("mode") === "table" ? "table" : "fields");
  const total = () => Math.max(0, Number(model.get("total")) || 0);

  // ---- skeleton ----------------------------------------------------------------------------
  const root = node("div", "caprl-xreview", { "data-testid": "caprl-extraction-review", tabindex: "0" });
  // Lumino (JupyterLab) stops looking for notebook shortcuts (`a`, `r`, ...) here.
  root.setAttribute("data-lm-suppress-shortcuts", "true");

  const toolbar = node("div", "xr-toolbar");
  const title = node("div", "xr-title", { "data-testid": "title" });
  const counts = node("div", "xr-counts", { "data-testid": "counts", "aria-live": "polite" });
  const countEls = {};
  for (const key of COUNT_KEYS) {
    const item = node("span", `xr-count xr-count--${key}`, { "data-testid": `count-${key}` });
    const dot = node("span", "xr-dot");
    const number = node("span", "xr-count-n");
    const label = node("span", "xr-count-label");
    label.textContent = key;
    item.append(dot, number, label);
    countEls[key] = { item, number };
    counts.append(item);
  }
  const nav = node("div", "xr-nav");
  const prev = node("button", "xr-btn xr-btn--icon", {
    type: "button", "data-testid": "prev", "aria-label": "Previous row", title: "Previous (Left)",
  });
  prev.textContent = "\u2039";
  const position = node("span", "xr-position", { "data-testid": "position" });
  const next = node("button", "xr-btn xr-btn--icon", {
    type: "button", "data-testid": "next", "aria-label": "Next row", title: "Next (Right)",
  });
  next.textContent = "\u203a";
  const nextOpen = node("button", "xr-btn", {
    type: "button", "data-testid": "next-unreviewed", title: "Next unreviewed row (N)",
  });
  nextOpen.textContent = "Next unreviewed";
  nav.append(prev, position, next, nextOpen);
  toolbar.append(title, counts, nav);

  const notice = node("div", "xr-notice", { role: "alert", "data-testid": "notice" });
  const noticeText = node("span", "xr-notice-text");
  const noticeClose = node("button", "xr-btn xr-btn--icon", { type: "button", "aria-label": "Dismiss" });
  noticeClose.textContent = "\u00d7";
  noticeClose.addEventListener("click", () => {
    notice.hidden = true;
  });
  notice.append(noticeText, noticeClose);
  notice.hidden = true;

  const body = node("div", "xr-body");

  // the row list (virtualised: only the visible items exist)
  const list = node("div", "xr-list", { "data-testid": "row-list", role: "listbox", "aria-label": "Rows" });
  const listSizer = node("div", "xr-list-sizer");
  list.append(listSizer);
  const listItems = new Map(); // id -> item element

  // the image
  const media = node("div", "xr-media", { "data-testid": "media" });
  const img = node("img", "xr-img", { alt: "", "data-testid": "image", draggable: "false" });
  const mediaMsg = node("p", "xr-media-msg", { "data-testid": "image-message" });
  media.append(img, mediaMsg);
  media.title = "Click to zoom";

  // the values
  const side = node("div", "xr-side");
  const head = node("div", "xr-head");
  const label = node("h3", "xr-label", { "data-testid": "label" });
  const status = node("span", "xr-badge", { "data-testid": "status" });
  const failedBadge = node("span", "xr-badge xr-badge--failed");
  failedBadge.textContent = "failed";
  const unsaved = node("span", "xr-unsaved", { "data-testid": "unsaved" });
  unsaved.textContent = "unsaved edits";
  head.append(label, status, failedBadge, unsaved);
  const source = node("div", "xr-source", { "data-testid": "source" });
  const error = node("p", "xr-error", { "data-testid": "error", role: "alert" });
  const editor = node("div", "xr-editor", { "data-testid": "editor" });
  const emptyTable = node("p", "xr-empty", { "data-testid": "no-table" });
  emptyTable.textContent = "No table for this row.";

  const actions = node("div", "xr-actions");
  const button = (testid, text, cls, hint) => {
    const b = node("button", `xr-btn ${cls || ""}`.trim(), { type: "button", "data-testid": testid });
    b.textContent = text;
    if (hint) b.title = hint;
    actions.append(b);
    return b;
  };
  const accept = button("accept", "Accept", "xr-btn--accept", "Accept (A); with unsaved edits, saves them");
  const reject = button("reject", "Reject", "xr-btn--reject", "Reject (R); drops unsaved edits");
  const reset = button("reset", "Reset", "", "Back to unreviewed (U); drops the edit");
  actions.append(node("span", "xr-spacer"));
  const discard = button("discard", "Discard", "", "Discard unsaved edits");
  const save = button("save", "Save edits", "xr-btn--primary", "Save edits (Ctrl+Enter)");
  side.append(head, source, error, editor, emptyTable, actions);

  body.append(list, media, side);
  const footer = node("div", "xr-footer");
  footer.textContent =
    "\u2190 \u2192 rows  \u00b7  A accept  \u00b7  R reject  \u00b7  U reset  \u00b7  N next unreviewed  " +
    "\u00b7  Ctrl+Enter saves  \u00b7  Esc leaves a field";
  root.append(toolbar, notice, body, footer);
  el.append(root);

  // ---- the fields form and the table grid ---------------------------------------------------
  let form = null; // { el, inputs: Map(name -> { input, original, row }) }
  let grid = null; // { el, head: [input], body: tbody, rows: [[input]], removes: [button] }

  function buildForm() {
    const table = node("table", "xr-form", { "data-testid": "fields" });
    const tbody = document.createElement("tbody");
    const inputs = new Map();
    for (const field of model.get("fields") || []) {
      const name = String(field.name);
      const kind = String(field.kind || "string");
      const tr = node("tr", "xr-field", { "data-field": name });
      const th = node("th", "xr-field-name", { scope: "row" });
      const nameEl = node("span", "xr-field-label");
      nameEl.textContent = name;
      const kindEl = node("span", "xr-field-kind");
      kindEl.textContent = KIND_LABEL[kind] || kind;
      th.append(nameEl, kindEl);
      const td = node("td", "xr-field-value");
      let input;
      if (kind === "boolean") {
        input = node("select", "xr-input");
        for (const [value, text] of [["", "\u2014"], ["true", "true"], ["false", "false"]]) {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = text;
          input.append(option);
        }
      } else if (kind === "json") {
        input = node("textarea", "xr-input xr-input--json", { rows: "2", spellcheck: "false" });
      } else {
        input = node("input", "xr-input", { type: "text", spellcheck: kind === "string" ? "true" : "false" });
        if (kind === "integer" || kind === "number") {
          input.setAttribute("inputmode", kind === "integer" ? "numeric" : "decimal");
          input.classList.add("xr-input--num");
        }
      }
      input.setAttribute("data-testid", "field-input");
      input.setAttribute("data-field", name);
      input.setAttribute("aria-label", name);
      input.addEventListener("input", () => onFieldInput(name, input.value));
      input.addEventListener("change", () => onFieldInput(name, input.value));
      const original = node("div", "xr-original", { "data-testid": "field-original" });
      td.append(input, original);
      tr.append(th, td);
      tbody.append(tr);
      inputs.set(name, { input, original, row: tr });
    }
    table.append(tbody);
    return { el: table, inputs };
  }

  function buildGrid() {
    const wrap = node("div", "xr-grid-wrap");
    const table = node("table", "xr-grid", { "data-testid": "table" });
    const thead = document.createElement("thead");
    const headRow = document.createElement("tr");
    thead.append(headRow);
    const tbody = document.createElement("tbody");
    table.append(thead, tbody);
    const addRow = node("button", "xr-btn xr-btn--small", { type: "button", "data-testid": "add-row" });
    addRow.textContent = "+ Add row";
    addRow.addEventListener("click", () => {
      const draft = tableDraft();
      draft.rows.push(draft.columns.map(() => ""));
      fillEditor();
      const last = grid.rows[grid.rows.length - 1];
      if (last && last[0]) last[0].focus();
    });
    wrap.append(table, addRow);
    return { el: wrap, headRow, tbody, head: [], rows: [], addRow };
  }

  function ensureGridShape(nCols, nRows) {
    if (grid.head.length !== nCols) {
      grid.headRow.replaceChildren();
      grid.head = [];
      const corner = node("th", "xr-corner");
      corner.textContent = "#";
      grid.headRow.append(corner);
      for (let c = 0; c < nCols; c++) {
        const th = document.createElement("th");
        const input = node("input", "xr-cell xr-cell--head", {
          type: "text", "data-testid": "header-cell", "data-col": String(c), "aria-label": `Column ${c + 1} name`,
          spellcheck: "false",
        });
        input.addEventListener("input", () => onHeadInput(c, input.value));
        th.append(input);
        grid.headRow.append(th);
        grid.head.push(input);
      }
      grid.headRow.append(node("th", "xr-corner"));
      grid.tbody.replaceChildren();
      grid.rows = [];
    }
    while (grid.rows.length > nRows) {
      grid.rows.pop();
      grid.tbody.lastChild.remove();
    }
    while (grid.rows.length < nRows) {
      const r = grid.rows.length;
      const tr = node("tr", "xr-grid-row");
      const num = node("th", "xr-rownum", { scope: "row" });
      num.textContent = String(r + 1);
      tr.append(num);
      const cells = [];
      for (let c = 0; c < nCols; c++) {
        const td = document.createElement("td");
        const input = node("input", "xr-cell", {
          type: "text", "data-testid": "cell", "data-row": String(r), "data-col": String(c),
          "aria-label": `Row ${r + 1}, column ${c + 1}`, spellcheck: "false",
        });
        input.addEventListener("input", () => onCellInput(r, c, input.value));
        input.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" && !ev.ctrlKey && !ev.metaKey) {
            ev.preventDefault();
            const below = grid.rows[r + (ev.shiftKey ? -1 : 1)];
            if (below && below[c]) below[c].focus();
          }
        });
        td.append(input);
        tr.append(td);
        cells.push(input);
      }
      const tdRemove = node("td", "xr-remove-cell");
      const remove = node("button", "xr-btn xr-btn--ghost", {
        type: "button", "data-testid": "remove-row", "aria-label": `Remove row ${r + 1}`, title: "Remove row",
      });
      remove.textContent = "\u00d7";
      remove.addEventListener("click", () => {
        const draft = tableDraft();
        draft.rows.splice(r, 1);
        fillEditor();
      });
      tdRemove.append(remove);
      tr.append(tdRemove);
      grid.tbody.append(tr);
      grid.rows.push(cells);
    }
  }

  // ---- drafts ------------------------------------------------------------------------------
  function currentRow() {
    return rows.get(current);
  }

  function baseFields(row) {
    const values = row.edited || row.values || {};
    const out = {};
    for (const field of model.get("fields") || []) out[field.name] = asText(values[field.name]);
    return out;
  }

  function modelFields(row) {
    const out = {};
    for (const field of model.get("fields") || []) out[field.name] = asText((row.values || {})[field.name]);
    return out;
  }

  function tableText(table) {
    if (!table) return null;
    return {
      columns: (table.columns || []).map(asText),
      rows: (table.rows || []).map((r) => r.map(asText)),
    };
  }

  function baseTable(row) {
    return tableText(row.edited || row.values);
  }

  function tableDraft() {
    const row = currentRow();
    if (!drafts.has(row.id)) drafts.set(row.id, baseTable(row));
    return drafts.get(row.id);
  }

  function onFieldInput(name, value) {
    const row = currentRow();
    if (!row) return;
    const draft = drafts.get(row.id) || baseFields(row);
    draft[name] = value;
    drafts.set(row.id, draft);
    fillEditor();
  }

  function onHeadInput(c, value) {
    if (!currentRow()) return;
    tableDraft().columns[c] = value;
    renderDirty();
  }

  function onCellInput(r, c, value) {
    if (!currentRow()) return;
    const draft = tableDraft();
    if (draft.rows[r]) draft.rows[r][c] = value;
    renderCellMarks();
    renderDirty();
  }

  function changedFields(row) {
    const draft = drafts.get(row.id);
    if (!draft) return {};
    const base = baseFields(row);
    const changed = {};
    for (const [name, text] of Object.entries(draft)) if (text !== base[name]) changed[name] = text;
    return changed;
  }

  function isDirty(row) {
    if (!row || !drafts.has(row.id)) return false;
    if (mode() === "fields") return Object.keys(changedFields(row)).length > 0;
    return JSON.stringify(drafts.get(row.id)) !== JSON.stringify(baseTable(row));
  }

  // ---- rendering ---------------------------------------------------------------------------
  function renderToolbar() {
    setText(title, model.get("title") || "");
    const c = model.get("counts") || {};
    for (const key of COUNT_KEYS) {
      setText(countEls[key].number, formatInt(c[key]));
      countEls[key].item.hidden = key === "failed" && !c[key];
    }
    const n = total();
    setText(position, n ? `${formatInt(current + 1)} / ${formatInt(n)}` : "0 / 0");
    prev.disabled = current <= 0;
    next.disabled = current >= n - 1;
    nextOpen.disabled = !(c.unreviewed > 0);
  }

  function statusOf(id) {
    const letter = (model.get("statuses") || "").charAt(id);
    return STATUS_OF[letter] || "unreviewed";
  }

  function renderRow() {
    const row = currentRow();
    renderToolbar();
    scheduleList(true);
    const loading = !row;
    for (const b of [accept, reject, reset]) b.disabled = loading;
    side.classList.toggle("is-loading", loading);
    if (loading) {
      setText(label, "Loading\u2026");
      status.hidden = true;
      failedBadge.hidden = true;
      error.hidden = true;
      editor.hidden = true;
      emptyTable.hidden = true;
      unsaved.hidden = true;
      save.disabled = true;
      discard.hidden = true;
      setText(source, "");
      renderImage();
      return;
    }
    root.setAttribute("data-status", String(row.status));
    side.classList.toggle("is-pending", pending.has(row.id));
    setText(label, row.label === "" ? `Row ${row.id}` : row.label);
    status.hidden = false;
    status.className = `xr-badge xr-badge--${String(row.status).replace(/[^a-z]/g, "")}`;
    setText(status, row.status);
    const failed = row.error != null && row.error !== "";
    failedBadge.hidden = !failed;
    error.hidden = !failed;
    setText(error, failed ? row.error : "");
    setText(source, row.source);
    source.title = row.source == null ? "" : String(row.source);
    editor.hidden = false;
    if (shownId !== row.id) {
      shownId = row.id;
      editor.scrollTop = 0;
    }
    fillEditor();
    renderImage();
  }

  function fillEditor() {
    const row = currentRow();
    if (!row) return;
    if (mode() === "fields") {
      if (!form) {
        form = buildForm();
        editor.replaceChildren(form.el);
      }
      const values = drafts.get(row.id) || baseFields(row);
      const original = modelFields(row);
      for (const [name, parts] of form.inputs) {
        const text = values[name] ?? "";
        if (parts.input.value !== text) parts.input.value = text;
        const differs = text !== original[name];
        parts.row.classList.toggle("is-changed", differs);
        parts.original.hidden = !differs;
        setText(parts.original, differs ? `model: ${original[name] === "" ? "(empty)" : original[name]}` : "");
      }
      emptyTable.hidden = true;
    } else {
      if (!grid) {
        grid = buildGrid();
        editor.replaceChildren(grid.el);
      }
      const data = drafts.get(row.id) || baseTable(row);
      emptyTable.hidden = data != null;
      grid.el.hidden = data == null;
      if (data) {
        ensureGridShape(data.columns.length, data.rows.length);
        data.columns.forEach((text, c) => {
          if (grid.head[c].value !== text) grid.head[c].value = text;
        });
        data.rows.forEach((cells, r) => {
          cells.forEach((text, c) => {
            const input = grid.rows[r][c];
            if (input.value !== text) input.value = text;
          });
        });
        const kinds = row.kinds || [];
        grid.head.forEach((input, c) => {
          const numeric = kinds[c] === "integer" || kinds[c] === "number";
          for (const cells of grid.rows) cells[c].classList.toggle("xr-cell--num", numeric);
        });
        renderCellMarks();
      }
    }
    renderDirty();
  }

  function renderCellMarks() {
    const row = currentRow();
    if (!row || !grid) return;
    const original = tableText(row.values) || { columns: [], rows: [] };
    grid.rows.forEach((cells, r) => {
      cells.forEach((input, c) => {
        const was = original.rows[r] ? original.rows[r][c] : undefined;
        const differs = was === undefined || input.value !== was;
        input.classList.toggle("is-changed", differs);
        input.title = differs ? (was === undefined ? "added" : `model: ${was === "" ? "(empty)" : was}`) : "";
      });
    });
    grid.head.forEach((input, c) => {
      const was = original.columns[c];
      const differs = was === undefined || input.value !== was;
      input.classList.toggle("is-changed", differs);
      input.title = differs ? `model: ${was === undefined ? "(none)" : was}` : "";
    });
  }

  function renderDirty() {
    const row = currentRow();
    const dirty = isDirty(row);
    unsaved.hidden = !dirty;
    save.disabled = !dirty || (row && pending.has(row.id));
    discard.hidden = !dirty;
    accept.textContent = dirty ? "Save & accept" : "Accept";
    root.classList.toggle("is-dirty", dirty);
  }

  function renderImage() {
    const shown = images.get(current);
    const hasUrl = Boolean(shown && shown.url);
    if (hasUrl) {
      if (img.getAttribute("src") !== shown.url) img.src = shown.url;
      img.hidden = false;
      img.setAttribute("data-id", String(current));
      images.delete(current); // most recently shown
      images.set(current, shown);
    } else {
      img.removeAttribute("src");
      img.removeAttribute("data-id");
      img.hidden = true;
    }
    let message = "";
    if (shown && shown.error != null) message = `Image unavailable: ${shown.error}`;
    else if (!hasUrl) message = "Loading image\u2026";
    setText(mediaMsg, message);
    mediaMsg.hidden = message === "";
    mediaMsg.classList.toggle("is-error", Boolean(shown && shown.error != null));
    media.classList.toggle("is-zoomed", zoomed && hasUrl);
  }

  // ---- the row list ------------------------------------------------------------------------
  function scheduleList(reveal) {
    if (reveal) {
      const top = current * LIST_ROW_H;
      if (top < list.scrollTop) list.scrollTop = top;
      else if (top + LIST_ROW_H > list.scrollTop + list.clientHeight && list.clientHeight > 0) {
        list.scrollTop = top + LIST_ROW_H - list.clientHeight;
      }
    }
    if (!listFrame) listFrame = requestAnimationFrame(renderList);
  }

  function renderList() {
    listFrame = 0;
    const n = total();
    listSizer.style.height = `${n * LIST_ROW_H}px`;
    const labels = model.get("labels") || [];
    const failed = new Set(model.get("failed_ids") || []);
    const first = Math.max(0, Math.floor(list.scrollTop / LIST_ROW_H) - LIST_BUFFER);
    const last = Math.min(n, Math.ceil((list.scrollTop + (list.clientHeight || 400)) / LIST_ROW_H) + LIST_BUFFER);
    for (const [id, item] of listItems) {
      if (id < first || id >= last) {
        item.remove();
        listItems.delete(id);
      }
    }
    for (let id = first; id < last; id++) {
      let item = listItems.get(id);
      if (!item) {
        item = node("div", "xr-item", { "data-testid": "row-item", role: "option", "data-id": String(id) });
        item.style.transform = `translateY(${id * LIST_ROW_H}px)`;
        const dot = node("span", "xr-dot");
        const text = node("span", "xr-item-label");
        const mark = node("span", "xr-item-failed");
        mark.textContent = "failed";
        item.append(dot, text, mark);
        item._parts = { text, mark };
        item.addEventListener("click", () => {
          go(id);
          root.focus({ preventScroll: true });
        });
        list.append(item);
        listItems.set(id, item);
      }
      const rowStatus = statusOf(id);
      item.setAttribute("data-status", rowStatus);
      setText(item._parts.text, labels[id] === undefined || labels[id] === "" ? `Row ${id}` : labels[id]);
      item.title = `${labels[id] ?? id}: ${rowStatus}${failed.has(id) ? ", failed" : ""}`;
      item._parts.mark.hidden = !failed.has(id);
      const isCurrent = id === current;
      item.classList.toggle("is-current", isCurrent);
      item.setAttribute("aria-selected", String(isCurrent));
    }
  }
  list.addEventListener("scroll", () => scheduleList(false), { passive: true });

  // ---- navigation --------------------------------------------------------------------------
  function request(id) {
    if (id >= 0 && id < total() && !rows.has(id)) model.send({ type: "row", id });
  }

  function go(id) {
    const n = total();
    if (n === 0) return;
    id = Math.min(n - 1, Math.max(0, id));
    if (id === current) return;
    current = id;
    model.set("current", id);
    model.save_changes(); // Python answers with the row and its image
    renderRow();
    request(id + 1);
    request(id - 1);
  }

  function nextUnreviewed() {
    const statuses = model.get("statuses") || "";
    const n = total();
    for (let k = 1; k <= n; k++) {
      const id = (current + k) % n;
      if (statuses.charAt(id) === "u") {
        go(id);
        return;
      }
    }
  }

  prev.addEventListener("click", () => go(current - 1));
  next.addEventListener("click", () => go(current + 1));
  nextOpen.addEventListener("click", () => nextUnreviewed());
  media.addEventListener("click", () => {
    zoomed = !zoomed;
    media.title = zoomed ? "Click to fit" : "Click to zoom";
    renderImage();
  });
  img.addEventListener("error", () => img.removeAttribute("src"));

  // ---- review actions ----------------------------------------------------------------------
  // Python owns review semantics (an edit is an accepted correction; equal values accept);
  // the view marks the row pending until its `row` answer arrives.
  function review(statusName) {
    const row = currentRow();
    if (!row) return;
    if (statusName === "accepted" && isDirty(row)) {
      saveEdit();
      return;
    }
    drafts.delete(row.id);
    pending.add(row.id);
    model.send({ type: "review", id: row.id, status: statusName });
    renderRow();
  }

  function saveEdit() {
    const row = currentRow();
    if (!row || !isDirty(row) || pending.has(row.id)) return;
    pending.add(row.id);
    if (mode() === "fields") model.send({ type: "edit", id: row.id, values: changedFields(row) });
    else model.send({ type: "edit", id: row.id, table: drafts.get(row.id) });
    renderRow();
  }

  function discardEdit() {
    const row = currentRow();
    if (!row) return;
    drafts.delete(row.id);
    renderRow();
  }

  accept.addEventListener("click", () => review("accepted"));
  reject.addEventListener("click", () => review("rejected"));
  reset.addEventListener("click", () => review("unreviewed"));
  save.addEventListener("click", () => saveEdit());
  discard.addEventListener("click", () => discardEdit());

  // ---- keyboard ----------------------------------------------------------------------------
  function onKeyDown(ev) {
    if (ev.defaultPrevented) return;
    if (isTyping(ev.target)) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        saveEdit();
      } else if (ev.key === "Escape") {
        ev.preventDefault();
        ev.target.blur();
        root.focus({ preventScroll: true });
      }
      ev.stopPropagation(); // typing `a` in a cell is text, not a notebook shortcut
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    let handled = true;
    if (key === "ArrowLeft") go(current - 1);
    else if (key === "ArrowRight") go(current + 1);
    else if (key === "Home") go(0);
    else if (key === "End") go(total() - 1);
    else if (key === "a") review("accepted");
    else if (key === "r") review("rejected");
    else if (key === "u") review("unreviewed");
    else if (key === "n") nextUnreviewed();
    else handled = false;
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
  function onRowMessage(row) {
    if (!row || row.id == null) return;
    rows.set(row.id, row);
    if (pending.delete(row.id)) drafts.delete(row.id); // the answer to a review or an edit
    if (row.id === current) renderRow();
    else scheduleList(false);
  }

  function onImage(msg, buffers) {
    if (msg.id == null) return;
    const old = images.get(msg.id);
    if (msg.error != null) {
      images.set(msg.id, { error: String(msg.error) });
    } else if (buffers && buffers[0]) {
      const url = URL.createObjectURL(new Blob([buffers[0]], { type: msg.mime || "image/jpeg" }));
      images.delete(msg.id);
      images.set(msg.id, { url, width: msg.width, height: msg.height });
    } else {
      return;
    }
    if (old && old.url && msg.id !== current) URL.revokeObjectURL(old.url);
    else if (old && old.url) queueMicrotask(() => URL.revokeObjectURL(old.url));
    for (const [id, entry] of images) {
      if (images.size <= MAX_IMAGES) break;
      if (id === current) continue;
      images.delete(id);
      if (entry.url) URL.revokeObjectURL(entry.url);
    }
    if (msg.id === current) renderImage();
  }

  function onMessage(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "row") onRowMessage(msg.row);
    else if (msg.type === "image") onImage(msg, buffers);
    else if (msg.type === "error") {
      // a refused review/edit gets no `row` answer; the reviewer's draft stays
      if (msg.id != null) pending.delete(msg.id);
      else pending.clear();
      setText(noticeText, msg.message == null ? "The review reported an error." : msg.message);
      notice.hidden = false;
      renderRow();
    }
  }

  on("msg:custom", onMessage);
  on("change:current", () => {
    const id = Number(model.get("current")) || 0;
    if (id === current) return;
    current = id;
    renderRow();
    request(id + 1);
  });
  on("change:counts", renderToolbar);
  on("change:title", renderToolbar);
  on("change:statuses", () => scheduleList(false));
  on("change:labels", () => scheduleList(false));
  on("change:failed_ids", () => scheduleList(false));
  on("change:fields", () => {
    form = null;
    fillEditor();
  });
  const resizer = new ResizeObserver(() => scheduleList(false));
  resizer.observe(list);

  renderRow();
  if (total() > 0) {
    model.send({ type: "row", id: current });
    request(current + 1);
  }

  return () => {
    if (listFrame) cancelAnimationFrame(listFrame);
    resizer.disconnect();
    for (const [name, fn] of listeners) model.off(name, fn);
    window.removeEventListener("keydown", onWindowKeyDown, true);
    for (const entry of images.values()) if (entry.url) URL.revokeObjectURL(entry.url);
    images.clear();
    root.remove();
  };
}

export default { render };
