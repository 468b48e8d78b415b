/**
 * Keyboard handling shared by the widgets: which targets take text, how keys are named, and the
 * capture-phase listener that keeps notebook shortcuts from firing while the widget has focus.
 */

/** Whether typing into `target` is text (inputs, text areas, selects, contenteditable). */
export function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  const tag = target.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || target.isContentEditable;
}

/** Letters lower-cased (`A` -> `a`), named keys as they are (`ArrowLeft`). */
export function keyName(ev: KeyboardEvent): string {
  return ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
}

/** Whether Ctrl/Cmd+Enter was pressed (the save chord). */
export function isSaveChord(ev: KeyboardEvent): boolean {
  return ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey);
}

/** Stops a key the widget handled from reaching anything else. */
export function consume(ev: Event): void {
  ev.preventDefault();
  ev.stopPropagation();
}

/**
 * Calls `handler` for every keydown aimed at an element inside `root`; returns the remover.
 *
 * Keys are caught on their way down, at the window: Notebook 7 runs its shortcuts on the
 * document in the capture phase (JupyterLab lets them bubble), so a listener on the root would
 * come too late there and `r` would turn the cell into raw text.
 */
export function captureKeys(root: HTMLElement, handler: (ev: KeyboardEvent) => void): () => void {
  const listener = (ev: KeyboardEvent): void => {
    if (ev.target instanceof Node && root.contains(ev.target)) handler(ev);
  };
  window.addEventListener('keydown', listener, true);
  return () => window.removeEventListener('keydown', listener, true);
}
