/** The root element every widget view starts from. */

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
