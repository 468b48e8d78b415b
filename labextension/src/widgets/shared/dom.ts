/**
 * DOM helpers shared by the widget front ends and the labextension.
 *
 * Every string that came from a model or a file reaches the DOM through textContent, .value or
 * .title only, never as HTML; these helpers are the only writers of text.
 */

/** Creates `<tag class=className ...attrs>`. */
export function node<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  attrs?: Record<string, string>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (attrs) for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  return el;
}

/** Sets an element's text (null/undefined as empty), touching the DOM only when it changed. */
export function setText(el: HTMLElement, text: unknown): void {
  const value = isMissing(text) ? '' : String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** `1234` -> `"1,234"`; missing or non-numeric values count as 0. */
export function formatInt(n: unknown): string {
  return (Number(n) || 0).toLocaleString('en-US');
}

/** A value as the text a reader sees: null as empty, objects as JSON. */
export function asText(value: unknown): string {
  if (isMissing(value)) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** `value == null`: neither null nor undefined was sent. */
export function isMissing(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}

/** Whether a row-like record carries an error message. */
export function hasError(error: unknown): boolean {
  return !isMissing(error) && error !== '';
}

/** The shared status badge's class for a review status (`accepted` -> `caprl-badge--accepted`). */
export function badgeClass(status: unknown): string {
  return `caprl-badge caprl-badge--${String(status).replace(/[^a-z]/g, '')}`;
}

/** A `<button type=button>` with the shared button style, appended to `parent` when given. */
export function button(
  testid: string,
  text: string,
  options: { variant?: string; hint?: string; label?: string; parent?: HTMLElement } = {}
): HTMLButtonElement {
  const cls = options.variant ? `caprl-btn caprl-btn--${options.variant}` : 'caprl-btn';
  const b = node('button', cls, { type: 'button', 'data-testid': testid });
  b.textContent = text;
  if (options.hint) b.title = options.hint;
  if (options.label) b.setAttribute('aria-label', options.label);
  options.parent?.append(b);
  return b;
}

/** The previous / next pair of icon buttons, for stepping through rows. */
export function stepButtons(noun: string): [HTMLButtonElement, HTMLButtonElement] {
  return [
    button('prev', '\u2039', { variant: 'icon', label: `Previous ${noun}`, hint: 'Previous (Left)' }),
    button('next', '\u203a', { variant: 'icon', label: `Next ${noun}`, hint: 'Next (Right)' })
  ];
}

/** Fills an element with the "Loading image…" / "Image unavailable: …" line, or hides it. */
export function setMediaMessage(el: HTMLElement, message: string, isError: boolean): void {
  setText(el, message);
  el.hidden = message === '';
  el.classList.toggle('is-error', isError);
}

/** An object URL for an image that arrived as a binary buffer (JPEG unless told). */
export function imageUrl(buffer: ArrayBuffer | DataView<ArrayBuffer>, mime: unknown): string {
  const type = typeof mime === 'string' && mime ? mime : 'image/jpeg';
  return URL.createObjectURL(new Blob([buffer], { type }));
}
