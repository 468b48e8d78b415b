/**
 * The slice of anywidget's model that the widget front ends use, typed by each widget's traits,
 * and a registry that removes every listener a view added when the view goes away.
 */

/** A custom message's binary buffers, as anywidget hands them over. */
export type Buffers = ReadonlyArray<ArrayBuffer | DataView<ArrayBuffer>>;

/** Called for `change:<trait>` (no arguments) and `msg:custom` (content, buffers). */
export type ModelCallback = (content: unknown, buffers: Buffers) => void;

/** anywidget's `model`, with `T` mapping each synced trait to its type. */
export interface IWidgetModel<T> {
  get<K extends keyof T & string>(name: K): T[K] | undefined;
  set<K extends keyof T & string>(name: K, value: T[K]): void;
  save_changes(): void;
  send(content: object): void;
  on(event: string, callback: ModelCallback): void;
  off(event: string, callback: ModelCallback): void;
}

/** What anywidget passes to `render`. */
export interface IRenderProps<T> {
  model: IWidgetModel<T>;
  el: HTMLElement;
}

/** The widget module's default export. */
export interface IWidgetModule<T> {
  render(props: IRenderProps<T>): () => void;
}

/** Model listeners and clean-ups of one view, all undone by `dispose()`. */
export class Listeners<T> {
  constructor(private readonly _model: IWidgetModel<T>) {}

  /** `model.on(event, callback)`, remembered for `dispose()`. */
  on(event: string, callback: ModelCallback): void {
    this._model.on(event, callback);
    this._added.push([event, callback]);
  }

  /** Runs `cleanup` on `dispose()` (timers, observers, window listeners). */
  defer(cleanup: () => void): void {
    this._cleanups.push(cleanup);
  }

  dispose(): void {
    for (const [event, callback] of this._added.splice(0)) this._model.off(event, callback);
    for (const cleanup of this._cleanups.splice(0).reverse()) cleanup();
  }

  private readonly _added: Array<[string, ModelCallback]> = [];
  private readonly _cleanups: Array<() => void> = [];
}

/** Sets a trait and syncs it to Python. */
export function setTrait<T, K extends keyof T & string>(
  model: IWidgetModel<T>,
  name: K,
  value: T[K]
): void {
  model.set(name, value);
  model.save_changes();
}

/** A non-negative count from a numeric trait (0 when unset or not a number). */
export function countOf(value: unknown): number {
  return Math.max(0, Number(value) || 0);
}

/** A custom message as an object with a `type`, or null for anything else. */
export function messageOf(content: unknown): { type?: unknown } | null {
  return content !== null && typeof content === 'object' ? content : null;
}
