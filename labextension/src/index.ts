/**
 * caprl-nb: JupyterLab's view of the caprl_nb server extension.
 *
 * - a status-bar item: the model server's state, model and queue (polls `/caprl/status`);
 * - a side panel: server details, throughput, recent results, settings, docs;
 * - "Caption with CapRL" and "Extract table with CapRL" on image files in the file browser.
 *
 * The base URL and model are JupyterLab settings (`schema/plugin.json`), pushed to
 * `POST /caprl/settings` when they load and whenever they change.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { CapRLClient, ISettingsUpdate } from './api';
import { addCaptionCommands } from './caption';
import { CommandIDs, PLUGIN_ID, STATUS_ITEM_ID } from './commands';
import { CapRLPanel, ILabSettings } from './panel';
import { StatusItem, StatusModel } from './status';
import { addTableCommands } from './table';

/** The palette category of every command. */
const CATEGORY = 'CapRL';

/** Seconds between status polls when the settings don't say. */
const DEFAULT_POLL_SECONDS = 5;

interface IPluginSettings extends ILabSettings {
  pollInterval: number;
}

function readSettings(
  settings: ISettingRegistry.ISettings | null
): IPluginSettings {
  const text = (key: string): string => {
    const value = settings?.get(key).composite;
    return typeof value === 'string' ? value.trim() : '';
  };
  const poll = settings?.get('pollInterval').composite;
  return {
    baseUrl: text('baseUrl'),
    model: text('model'),
    pollInterval:
      typeof poll === 'number' && poll > 0 ? poll : DEFAULT_POLL_SECONDS
  };
}

/** Both settings, always: an empty one (cleared) puts the server's own value back. */
function settingsUpdate(settings: ILabSettings): ISettingsUpdate {
  return {
    base_url: settings.baseUrl === '' ? null : settings.baseUrl,
    model: settings.model === '' ? null : settings.model
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'CapRL server status, recent captions, and "Caption with CapRL" and "Extract table with CapRL" for image files.',
  autoStart: true,
  requires: [ISettingRegistry],
  optional: [
    IStatusBar,
    ICommandPalette,
    IFileBrowserFactory,
    INotebookTracker,
    ILayoutRestorer
  ],
  activate: async (
    app: JupyterFrontEnd,
    registry: ISettingRegistry,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    browserFactory: IFileBrowserFactory | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ): Promise<void> => {
    const { commands, shell } = app;
    const client = new CapRLClient(app.serviceManager.serverSettings);

    let settings: ISettingRegistry.ISettings | null = null;
    try {
      settings = await registry.load(PLUGIN_ID);
    } catch {
      // Without its settings the extension still shows the server's own configuration.
      settings = null;
    }
    let current = readSettings(settings);

    const status = new StatusModel(client, current.pollInterval);
    const panel = new CapRLPanel({ client, commands, status });
    panel.labSettings = current;
    shell.add(panel, 'right', { rank: 900 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }

    const push = async (): Promise<void> => {
      try {
        const reply = await client.updateSettings(settingsUpdate(current));
        panel.showServerSettings(reply, null);
      } catch (error) {
        panel.showServerSettings(
          null,
          error instanceof Error ? error.message : String(error)
        );
      }
    };
    void push();
    settings?.changed.connect(() => {
      current = readSettings(settings);
      status.pollSeconds = current.pollInterval;
      panel.labSettings = current;
      void push().then(() => status.refresh());
    });
    // A restarted Jupyter server forgets what was pushed: push again when it comes back.
    let reachable = false;
    status.changed.connect((_, view) => {
      const now = view.kind === 'reply';
      if (now && !reachable) {
        void push();
      }
      reachable = now;
    });

    commands.addCommand(CommandIDs.openPanel, {
      label: 'Show CapRL Panel',
      caption: 'The CapRL model server, its throughput and recent captions',
      icon: panel.title.icon,
      execute: () => {
        shell.activateById(panel.id);
      }
    });
    commands.addCommand(CommandIDs.refreshStatus, {
      label: 'Refresh CapRL Status',
      caption: 'Ask the CapRL server extension for its status now',
      execute: () => status.refresh()
    });
    addCaptionCommands(app, { client, browserFactory, notebooks });
    addTableCommands(app, { client, browserFactory, notebooks });

    if (palette) {
      for (const command of [
        CommandIDs.openPanel,
        CommandIDs.refreshStatus,
        CommandIDs.captionFile,
        CommandIDs.extractTable
      ]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    if (statusBar) {
      statusBar.registerStatusItem(STATUS_ITEM_ID, {
        item: new StatusItem(status, commands),
        align: 'left',
        rank: 900
      });
    }
  }
};

export default plugin;
