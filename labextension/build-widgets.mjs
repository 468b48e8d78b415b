// Bundles the anywidget front ends (src/widgets/) into ../caprl_nb/widgets/static/: one ES module
// and one stylesheet per widget, which the Python widgets load as `_esm` / `_css`.
// `node build-widgets.mjs --watch` rebuilds on every change (anywidget then hot-reloads).
import * as esbuild from 'esbuild';

const widgets = ['gallery', 'extraction'];

const options = {
  entryPoints: widgets.flatMap(name => [
    { out: name, in: `src/widgets/${name}/index.ts` },
    { out: name, in: `src/widgets/${name}/${name}.css` }
  ]),
  outdir: '../caprl_nb/widgets/static',
  bundle: true,
  format: 'esm',
  target: 'es2020',
  logLevel: 'warning'
};

if (process.argv.includes('--watch')) {
  const context = await esbuild.context({ ...options, logLevel: 'info' });
  await context.watch();
} else {
  await esbuild.build(options);
}
