/**
 * The gallery's client-side state: rows of the current view fetched in `window` chunks and cached
 * per `view_version`, and thumbnails kept as a bounded set of object URLs.
 */

import { imageUrl, isMissing } from '../shared/dom';
import { Buffers } from '../shared/model';
import { GalleryModel, IRow, IRowsMessage, send } from './protocol';

export const CHUNK = 100; // rows per `window` request (the protocol allows up to 200)
const MAX_CHUNKS = 40; // row chunks kept for the current view version
const MAX_THUMBS = 600; // thumbnail object URLs kept, least recently used dropped first
const RETRY_MS = 5000; // ask again for a window that got no answer
// Python drops thumbnail work for windows the user scrolled past; once scrolling settles,
// a loaded chunk whose visible rows still lack thumbnails is asked for once more.
export const THUMB_RETRY_MS = 1200;

interface IChunk {
  loaded: boolean;
  at: number;
  thumbRetried?: boolean;
}

/** Rows of one view version by position, fetched a chunk at a time. */
export class RowCache {
  constructor(
    private readonly _model: GalleryModel,
    public version: number
  ) {}

  /** Forgets every row: the view changed. */
  reset(version: number): void {
    this.version = version;
    this._byPos = new Map();
    this._posById = new Map();
    this._chunks = new Map();
  }

  at(pos: number): IRow | undefined {
    return this._byPos.get(pos);
  }

  has(pos: number): boolean {
    return this._byPos.has(pos);
  }

  byId(id: number): IRow | undefined {
    const pos = this._posById.get(id);
    return pos === undefined ? undefined : this._byPos.get(pos);
  }

  /** Asks for the chunks covering [from, to) that are neither loaded nor recently asked for. */
  request(from: number, to: number, count: number): void {
    from = Math.max(0, from);
    to = Math.min(count, to);
    if (from >= to) return;
    const now = performance.now();
    for (let k = Math.floor(from / CHUNK); k * CHUNK < to; k++) {
      const state = this._chunks.get(k);
      if (state && (state.loaded || now - state.at < RETRY_MS)) continue;
      this._chunks.set(k, { loaded: false, at: now });
      const start = k * CHUNK;
      send.window(this._model, this.version, start, Math.min(count, start + CHUNK));
    }
  }

  /** Drops the chunks farthest from `centerPos` once more than MAX_CHUNKS are held. */
  evict(centerPos: number): void {
    if (this._chunks.size <= MAX_CHUNKS) return;
    const center = Math.floor(centerPos / CHUNK);
    const far = Array.from(this._chunks.keys()).sort(
      (a, b) => Math.abs(b - center) - Math.abs(a - center)
    );
    for (const k of far.slice(0, this._chunks.size - MAX_CHUNKS)) {
      this._chunks.delete(k);
      for (let pos = k * CHUNK; pos < (k + 1) * CHUNK; pos++) {
        const row = this._byPos.get(pos);
        if (!row) continue;
        this._byPos.delete(pos);
        if (this._posById.get(row.id) === pos) this._posById.delete(row.id);
      }
    }
  }

  /** Stores a `rows` answer; returns the positions [start, end) it filled, or null if stale. */
  add(msg: IRowsMessage): [number, number] | null {
    if (msg.version !== this.version || !Array.isArray(msg.rows)) return null;
    const start = Number(msg.start) || 0;
    msg.rows.forEach((row, i) => {
      this._byPos.set(start + i, row);
      this._posById.set(row.id, start + i);
    });
    const end = start + msg.rows.length;
    for (let k = Math.floor(start / CHUNK); k * CHUNK < Math.max(end, start + 1); k++) {
      const retried = Boolean(this._chunks.get(k)?.thumbRetried);
      this._chunks.set(k, { loaded: true, at: performance.now(), thumbRetried: retried });
    }
    return [start, end];
  }

  /** Replaces a row in place (a `row` answer to a review or edit). */
  update(row: IRow): void {
    const pos = this._posById.get(row.id);
    if (pos !== undefined) this._byPos.set(pos, row);
  }

  /** Asks once more for loaded chunks in [from, to) whose rows still lack thumbnails. */
  retryMissingThumbs(from: number, to: number, count: number, hasThumb: (id: number) => boolean): void {
    const now = performance.now();
    for (let k = Math.floor(from / CHUNK); k * CHUNK < to; k++) {
      const state = this._chunks.get(k);
      if (!state || !state.loaded || state.thumbRetried || now - state.at < THUMB_RETRY_MS) continue;
      let missing = false;
      for (let pos = Math.max(from, k * CHUNK); pos < Math.min(to, (k + 1) * CHUNK); pos++) {
        const row = this._byPos.get(pos);
        if (row && isMissing(row.error) && !hasThumb(row.id)) missing = true;
      }
      if (!missing) continue;
      state.thumbRetried = true;
      const start = k * CHUNK;
      send.window(this._model, this.version, start, Math.min(count, start + CHUNK));
    }
  }

  private _byPos = new Map<number, IRow>(); // pos -> Row, for `version`
  private _posById = new Map<number, number>(); // id -> pos, for `version`
  private _chunks = new Map<number, IChunk>(); // chunk index -> load state
}

/** Thumbnail object URLs by row id; insertion order is recency. */
export class ThumbCache {
  /**
   * Stores the thumbnails of a `thumbs` message; drops the least recently used beyond
   * MAX_THUMBS unless `shown` holds them. Returns the replaced URLs, to revoke once no card
   * shows them any more.
   */
  add(ids: number[], buffers: Buffers, mime: unknown, shown: () => Set<number>): string[] {
    const stale: string[] = [];
    ids.forEach((id, i) => {
      const buffer = buffers[i];
      if (!buffer) return;
      const url = imageUrl(buffer, mime);
      const old = this._urls.get(id);
      if (old) stale.push(old);
      this._urls.delete(id);
      this._urls.set(id, url);
    });
    if (this._urls.size > MAX_THUMBS) {
      const keep = shown();
      for (const [id, url] of this._urls) {
        if (this._urls.size <= MAX_THUMBS) break;
        if (keep.has(id)) continue;
        this._urls.delete(id);
        URL.revokeObjectURL(url); // on no card and not in the detail pane: safe to drop now
      }
    }
    return stale;
  }

  has(id: number): boolean {
    return this._urls.has(id);
  }

  /** The URL without touching its recency. */
  peek(id: number): string | undefined {
    return this._urls.get(id);
  }

  /** The URL, marked most recently used. */
  take(id: number): string | undefined {
    const url = this._urls.get(id);
    if (url) {
      this._urls.delete(id);
      this._urls.set(id, url);
    }
    return url;
  }

  dispose(): void {
    for (const url of this._urls.values()) URL.revokeObjectURL(url);
    this._urls.clear();
  }

  private readonly _urls = new Map<number, string>();
}
