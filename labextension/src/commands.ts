/**
 * Every id this extension registers with JupyterLab, in one place.
 *
 * Command ids are what other code (and the browser tests) execute through
 * `app.commands`; nothing else in `src/` spells a `caprl-nb:` string.
 */

/** The plugin id; `schema/plugin.json` holds its settings. */
export const PLUGIN_ID = 'caprl-nb:plugin';

/** The status-bar item's id. */
export const STATUS_ITEM_ID = 'caprl-nb:status';

/** The side panel's icon, registered with JupyterLab's icon registry. */
export const ICON_ID = 'caprl-nb:icon';

/** Commands, grouped as JupyterLab's own extensions do. */
export namespace CommandIDs {
  /** Reveal the CapRL side panel. */
  export const openPanel = 'caprl-nb:open-panel';

  /** Ask the server extension for its status now, instead of at the next poll. */
  export const refreshStatus = 'caprl-nb:refresh-status';

  /**
   * Caption an image file; args `{ path?: string }`, the path relative to the
   * Jupyter root. Without a path, the file browser's selected image files.
   */
  export const captionFile = 'caprl-nb:caption-file';

  /**
   * Add a code cell below the active cell of the current notebook that captions
   * a file with the `df.caprl` accessor; args `{ path: string }`.
   */
  export const insertCaptionCode = 'caprl-nb:insert-caption-code';

  /**
   * Read the chart in an image file into a table; args as `captionFile`.
   */
  export const extractTable = 'caprl-nb:extract-table';

  /**
   * Add a code cell below the active cell of the current notebook that reads
   * a chart with `caprl_nb.extract.chart_table`; args `{ path: string }`.
   */
  export const insertTableCode = 'caprl-nb:insert-table-code';
}
