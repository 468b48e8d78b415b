"""A loopback page that runs the gallery front end against a fake anywidget model.

``static/gallery.js`` is loaded as an ES module, exactly as anywidget loads it, and
``render({model, el})`` is called with a model written in JavaScript that plays the Python
``Gallery``'s part of PROTOCOL.md: it holds N generated rows (deterministic captions of a
hundred-odd words, statuses, failed rows, meta columns), recomputes the view when the front end
saves ``query`` / ``status_filter`` / ``sort_by`` / ``sort_descending``, answers ``window``
requests (after an optional delay), sends thumbnails as real JPEG bytes made on a canvas (so the
binary buffer path runs), answers ``review`` / ``edit`` with ``row`` messages and ``detail`` with
a large image or an error. Like the Python side, it drops thumbnail work for windows four or
more requests old. Every message the front end sends is recorded in ``window.__sent``.
With ``scores=True`` the rows also carry a ``caption_score`` (0, 0.2 .. 1 by turns, every
seventh row unscored) and its ``failed_questions``, as a frame joined with ``df.caprl.verify``
does, and the view honours ``score_below`` as Python does.

    with GalleryHarness() as harness:
        root = harness.open(page, n=500, overrides={3: {"caption": "<b>x</b>"}})

``window.__harness`` in the page gives tests the model (``model.get(name)``), the rows
(``row(id)``), and ``pushRow(id, patch)`` / ``push(msg)`` to send what Python would, ``release()``
to send the review answers held back by ``hold_rows``;
``window.__liveUrls`` holds the object URLs the gallery has made and not yet revoked.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parents[2] / "caprl_nb" / "widgets" / "static"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>caprl_nb gallery harness</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/gallery.css">
<style>
  body { margin: 0; padding: 16px; background: #fff; font-family: system-ui, sans-serif; }
  #out { max-width: 1240px; }
</style>
</head>
<body>
<div id="out"></div>
<script type="module" src="/harness.js"></script>
</body>
</html>
"""

HARNESS_JS = r"""
import gallery from "/static/gallery.js";

const WORDS = ("a the small large red blue green yellow wooden metal glass old new bright dark "
  + "window door street building person dog cat table chair tree sky cloud river car bicycle sign "
  + "text logo chart bar line axis label legend title page document paragraph figure photo scene "
  + "background foreground left right center top bottom near behind beside holding wearing "
  + "standing sitting showing depicting featuring with and of in on under over across").split(" ");
const COLOURS = ["crimson", "teal", "amber", "violet", "olive", "navy", "coral", "ivory", "slate", "jade"];
const SUBJECTS = ["harbour", "kitchen", "bar chart", "street market", "invoice", "mountain", "poster",
  "laboratory", "garden", "line chart"];

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function captionFor(id) {
  const rand = rng(id * 7919 + 17);
  const words = [`The image shows a ${COLOURS[id % 10]} ${SUBJECTS[(id >> 1) % 10]} (item ${id}).`];
  const n = 80 + Math.floor(rand() * 160);
  let sentence = [];
  for (let i = 0; i < n; i++) {
    sentence.push(WORDS[Math.floor(rand() * WORDS.length)]);
    if (sentence.length > 8 + rand() * 10) {
      const s = sentence.join(" ");
      words.push(s.charAt(0).toUpperCase() + s.slice(1) + ".");
      sentence = [];
    }
  }
  if (sentence.length) words.push(sentence.join(" ") + ".");
  return words.join(" ");
}

const QUESTIONS = [
  (id) => `What colour is the ${SUBJECTS[(id >> 1) % 10]}? expected: ${COLOURS[id % 10]}; `
    + "from the caption: cannot answer",
  (id) => `How many people are visible? expected: two; from the caption: one`,
  (id) => `What is written on the sign? expected: OPEN; from the caption: cannot answer`,
  (id) => `Where is the light coming from? expected: the left; from the caption: above`,
  (id) => `What is the weather like? expected: overcast; from the caption: sunny`,
];

function band(score) {
  if (score === null) return "none";
  return score < 0.5 ? "low" : score < 0.8 ? "mid" : "high";
}

function makeRows(cfg) {
  const rows = [];
  const failedEvery = cfg.failed_every ?? 50;
  for (let id = 0; id < cfg.n; id++) {
    const failed = failedEvery > 0 && id % failedEvery === failedEvery - 3;
    const status = id % 5 === 1 ? "accepted" : id % 9 === 2 ? "rejected" : "unreviewed";
    const row = {
      id,
      label: String(id),
      source: `img${String(id).padStart(5, "0")}.jpg`,
      caption: failed ? null : captionFor(id),
      edited: null,
      status: failed ? "unreviewed" : status,
      error: failed ? `ImageError: cannot identify image file 'img${String(id).padStart(5, "0")}.jpg'` : null,
      _score: Math.round(rng(id + 1)() * 10000) / 10000,
      _width: 320 + ((id * 37) % 1600),
    };
    if (cfg.scores) {
      const score = id % 7 === 6 || failed ? null : [0, 0.2, 0.4, 0.6, 0.8, 1][id % 6];
      row._caption_score = score;
      row.notes = [];
      for (let q = 0; score !== null && q < Math.round((1 - score) * 5); q++) {
        row.notes.push(QUESTIONS[(id + q) % QUESTIONS.length](id));
      }
    }
    Object.assign(row, (cfg.overrides || {})[String(id)] || {});
    rows.push(row);
  }
  return rows;
}

class FakeModel {
  constructor(traits) {
    this._traits = { ...traits };
    this._handlers = new Map();
    this._dirty = new Set();
    this.backend = null;
  }
  get(name) { return this._traits[name]; }
  set(name, value) {
    this._traits[name] = value;
    this._dirty.add(name);
    this._emit(`change:${name}`, value);
  }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
  }
  off(name, fn) {
    if (!name) { this._handlers.clear(); return; }
    if (!fn) { this._handlers.delete(name); return; }
    const set = this._handlers.get(name);
    if (set) set.delete(fn);
  }
  listenerCount() {
    let total = 0;
    for (const set of this._handlers.values()) total += set.size;
    return total;
  }
  save_changes() {
    const changed = {};
    for (const name of this._dirty) changed[name] = this._traits[name];
    this._dirty.clear();
    window.__saved.push(changed);
    setTimeout(() => this.backend.onTraits(changed), 0);
  }
  send(content, callbacks, buffers) {
    window.__sent.push(JSON.parse(JSON.stringify(content)));
    this.backend.onMessage(content, buffers || []);
  }
  // what Python does: update traits (synced to the front end) and send custom messages
  _pythonSet(traits) {
    for (const [name, value] of Object.entries(traits)) {
      this._traits[name] = value;
      this._emit(`change:${name}`, value);
    }
  }
  _pythonSend(msg, buffers) { this._emit("msg:custom", msg, buffers || []); }
  _emit(name, ...args) {
    for (const fn of Array.from(this._handlers.get(name) || [])) fn(...args);
  }
}

const STATUS_KEYS = ["unreviewed", "accepted", "rejected", "edited"];

class FakePython {
  constructor(cfg, model) {
    this.cfg = cfg;
    this.model = model;
    this.rows = makeRows(cfg);
    this.view = this.rows.map((r) => r.id);
    this.thumbCache = new Map();
    this.held = []; // review/edit answers kept back until release() (cfg.hold_rows)
    this.stats = { windows: 0, thumbMessages: 0, thumbBytes: 0 };
  }
  isFailed(row) { return row.error != null || row.caption == null; }
  counts() {
    const counts = { all: this.rows.length, unreviewed: 0, accepted: 0, rejected: 0, edited: 0, failed: 0 };
    for (const row of this.rows) {
      counts[row.status] += 1;
      if (this.isFailed(row)) counts.failed += 1;
    }
    return counts;
  }
  wire(row, pos) {
    const wired = {
      id: row.id, pos, label: row.label, source: row.source, caption: row.caption,
      edited: row.edited, status: row.status, error: row.error,
      meta: { score: String(row._score), width: String(row._width) },
    };
    if (this.cfg.scores) {  // as Python sends them: the score in its own field, not in meta
      delete wired.meta.score;
      const s = row._caption_score;
      wired.score = { value: s, text: s === null ? "no score" : s.toFixed(2), band: band(s) };
      wired.notes = row.notes;
    }
    return wired;
  }
  recompute() {
    const t = this.model._traits;
    const query = (t.query || "").trim().toLowerCase();
    let view = this.rows.filter((row) => {
      if (t.status_filter === "failed" && !this.isFailed(row)) return false;
      const byStatus = t.status_filter !== "all" && t.status_filter !== "failed";
      if (byStatus && row.status !== t.status_filter) return false;
      if (t.score_below !== null && t.score_below !== undefined) {
        if (row._caption_score === null || !(row._caption_score < t.score_below)) return false;
      }
      if (!query) return true;
      const text = `${row.edited ?? row.caption ?? row.error ?? ""}\n${row.source}`.toLowerCase();
      return text.includes(query) || (row.notes || []).some((n) => n.toLowerCase().includes(query));
    });
    if (t.sort_by) {
      const key = `_${t.sort_by}`;
      const value = (r) => r[key] ?? null;  // a row without a value sorts last, either way
      view.sort((a, b) => {
        const [x, y] = [value(a), value(b)];
        if (x === null || y === null) return (x === null) - (y === null) || a.id - b.id;
        return (t.sort_descending ? y - x : x - y) || a.id - b.id;
      });
    } else if (t.sort_descending) {
      view.reverse();
    }
    this.view = view.map((r) => r.id);
    this.model._pythonSet({ view_count: this.view.length, view_version: t.view_version + 1 });
  }
  onTraits(changed) {
    const viewTraits = ["query", "status_filter", "sort_by", "sort_descending", "score_below"];
    if (Object.keys(changed).some((k) => viewTraits.includes(k))) this.recompute();
  }
  later(ms, fn) { setTimeout(fn, ms || 0); }
  onMessage(msg) {
    if (msg.type === "window") {
      this.stats.windows += 1;
      const start = Math.max(0, msg.start);
      const end = Math.min(this.view.length, msg.end, start + 200);
      const ids = this.view.slice(start, end);
      this.later(this.cfg.window_delay_ms, () => {
        const rows = ids.map((id, k) => this.wire(this.rows[id], start + k));
        this.model._pythonSend({ type: "rows", version: msg.version, start, rows });
        const seq = this.stats.windows;
        if (this.cfg.thumbs !== false) this.later(this.cfg.thumb_delay_ms, () => this.sendThumbs(ids, seq));
      });
    } else if (msg.type === "review" || msg.type === "edit") {
      const row = this.rows[msg.id];
      // as caprl_nb.widgets.reviews does: accepting keeps an edit (status stays "edited"),
      // rejecting or resetting drops it
      if (msg.type === "edit") { row.edited = msg.caption; row.status = "edited"; }
      else if (msg.status === "accepted" && row.edited != null) row.status = "edited";
      else { row.status = msg.status; if (msg.status !== "accepted") row.edited = null; }
      const answer = () => {
        this.model._pythonSet({ counts: this.counts() });
        this.model._pythonSend({ type: "row", row: this.wire(row, -1) });
      };
      if (this.cfg.hold_rows) this.held.push(answer);
      else this.later(this.cfg.row_delay_ms, answer);
    } else if (msg.type === "detail") {
      this.later(this.cfg.window_delay_ms, async () => {
        if ((this.cfg.detail_error_ids || []).includes(msg.id) || this.isFailed(this.rows[msg.id])) {
          this.model._pythonSend({ type: "detail", id: msg.id, error: "cannot identify image file" });
          return;
        }
        const bytes = await this.jpeg(msg.id, 960, 640, 56);
        this.model._pythonSend(
          { type: "detail", id: msg.id, mime: "image/jpeg", width: 960, height: 640 }, [new DataView(bytes)]);
      });
    }
  }
  async sendThumbs(ids, seq) {
    const wanted = ids.filter((id) => !this.isFailed(this.rows[id]));
    for (let i = 0; i < wanted.length; i += 8) {
      // as the Python side does: thumbnails for windows 4+ requests old are dropped
      if (this.stats.windows - seq > 4) return;
      const batch = wanted.slice(i, i + 8);
      const buffers = [];
      for (const id of batch) {
        if (!this.thumbCache.has(id)) {
          const portrait = id % 3 === 0;
          this.thumbCache.set(id, await this.jpeg(id, portrait ? 96 : 160, portrait ? 144 : 110, 22));
        }
        buffers.push(new DataView(this.thumbCache.get(id)));
        this.stats.thumbBytes += this.thumbCache.get(id).byteLength;
      }
      this.stats.thumbMessages += 1;
      this.model._pythonSend({ type: "thumbs", ids: batch, mime: "image/jpeg" }, buffers);
    }
  }
  jpeg(id, width, height, fontSize) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    const hue = (id * 47) % 360;
    const gradient = ctx.createLinearGradient(0, 0, width, height);
    gradient.addColorStop(0, `hsl(${hue}, 55%, 62%)`);
    gradient.addColorStop(1, `hsl(${(hue + 40) % 360}, 60%, 38%)`);
    ctx.fillStyle = gradient;
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "rgba(255,255,255,0.9)";
    ctx.font = `bold ${fontSize}px sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(`#${id}`, width / 2, height / 2);
    return new Promise((resolve) => {
      canvas.toBlob((blob) => blob.arrayBuffer().then(resolve), "image/jpeg", 0.8);
    });
  }
}

window.__sent = [];
window.__saved = [];

// Count the object URLs the gallery holds, to check it revokes what it drops.
window.__liveUrls = new Set();
window.__urlsMade = 0;
const createObjectURL = URL.createObjectURL.bind(URL);
const revokeObjectURL = URL.revokeObjectURL.bind(URL);
URL.createObjectURL = (blob) => {
  const url = createObjectURL(blob);
  window.__liveUrls.add(url);
  window.__urlsMade += 1;
  return url;
};
URL.revokeObjectURL = (url) => {
  window.__liveUrls.delete(url);
  revokeObjectURL(url);
};

window.__start = (cfg) => {
  const model = new FakeModel({
    total: cfg.n,
    view_count: cfg.n,
    view_version: 1,
    counts: {},
    sort_options: cfg.sort_options ?? (cfg.scores ? ["caption_score", "width"] : ["score", "width"]),
    title: cfg.title ?? `${cfg.n.toLocaleString("en-US")} images`,
    thumb_size: cfg.thumb_size ?? 160,
    query: "",
    status_filter: "all",
    sort_by: "",
    sort_descending: false,
    score_column: cfg.scores ? "caption_score" : "",
    score_span: [0, 1],
    notes_label: cfg.scores ? "failed questions" : "",
    score_below: null,
  });
  const python = new FakePython(cfg, model);
  model.backend = python;
  model._traits.counts = python.counts();
  const el = document.getElementById("out");
  const cleanup = gallery.render({ model, el });
  window.__harness = {
    model,
    python,
    cleanup,
    row: (id) => python.wire(python.rows[id], -1),
    pushRow(id, patch) {
      Object.assign(python.rows[id], patch);
      model._pythonSet({ counts: python.counts() });
      model._pythonSend({ type: "row", row: python.wire(python.rows[id], -1) });
    },
    push(msg) { model._pythonSend(msg, []); },
    release() { python.held.splice(0).forEach((answer) => answer()); },
  };
};

window.__ready = true;
"""

_ROUTES = {
    "/": ("text/html; charset=utf-8", lambda: PAGE.encode()),
    "/harness.js": ("text/javascript; charset=utf-8", lambda: HARNESS_JS.encode()),
    "/static/gallery.js": ("text/javascript; charset=utf-8", lambda: (STATIC / "gallery.js").read_bytes()),
    "/static/gallery.css": ("text/css; charset=utf-8", lambda: (STATIC / "gallery.css").read_bytes()),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        route = _ROUTES.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        mime, body = route[0], route[1]()
        self.send_response(200)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        """Quiet: the test output is for assertions."""


class GalleryHarness:
    """Serves the harness page and the gallery's static files on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gallery-harness", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> GalleryHarness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def open(self, page: Any, *, n: int = 200, **config: Any) -> Any:
        """Load the page and render a gallery of ``n`` rows; returns the widget root locator.

        ``config``: ``overrides`` ({id: {field: value}}, e.g. a caption, label, source, error,
        edited or status), ``failed_every`` (every k-th row fails; 0 for none; default 50),
        ``thumb_size``, ``sort_options``, ``title``, ``window_delay_ms``, ``thumb_delay_ms``,
        ``row_delay_ms``, ``hold_rows`` (review/edit answers wait for ``__harness.release()``),
        ``thumbs`` (False sends none), ``detail_error_ids``, ``scores`` (rows with a
        ``caption_score`` and ``failed_questions``; overrides may set ``_caption_score``, ``notes``).
        """
        cfg = {"n": n, **config}
        if "overrides" in cfg:
            cfg["overrides"] = {str(k): v for k, v in cfg["overrides"].items()}
        page.goto(self.url)
        page.wait_for_function("window.__ready === true", timeout=10_000)
        page.evaluate("cfg => window.__start(cfg)", json.loads(json.dumps(cfg)))
        return page.get_by_test_id("caprl-gallery")


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, with nothing but loopback to talk to."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
