/** The frame every widget view starts from: its root element and its key hints footer. */

import { node } from './dom';

/**
 * `<div class="caprl-widget <className>">`, which carries the shared theme tokens.
 * Lumino (JupyterLab) stops looking for notebook shortcuts (`a`, `r`, `d d`, ...) inside it.
 */
export function widgetRoot(className: string, attrs: Record<string, string>): HTMLDivElement {
  const root = node('div', `caprl-widget ${className}`, attrs);
  root.setAttribute('data-lm-suppress-shortcuts', 'true');
  return root;
}

/** The footer line that lists the widget's keys. */
export function keyHints(className: string, text: string): HTMLDivElement {
  const footer = node('div', `caprl-footer ${className}`);
  footer.textContent = text;
  return footer;
}
