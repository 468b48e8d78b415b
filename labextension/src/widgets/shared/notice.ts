/** The dismissable error bar under a widget's toolbar. */

import { button, node, setText } from './dom';

export class NoticeBar {
  readonly el = node('div', 'caprl-notice', { role: 'alert', 'data-testid': 'notice' });

  /** `fallback` is shown when a message carries no text. */
  constructor(private readonly _fallback: string) {
    const close = button('dismiss', '\u00d7', { variant: 'icon', label: 'Dismiss' });
    close.removeAttribute('data-testid');
    close.addEventListener('click', () => {
      this.el.hidden = true;
    });
    this.el.append(this._text, close);
    this.el.hidden = true;
  }

  show(message: unknown): void {
    setText(this._text, message === null || message === undefined ? this._fallback : message);
    this.el.hidden = false;
  }

  private readonly _text = node('span', 'caprl-notice-text');
}
