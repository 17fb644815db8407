/**
 * The panel's static files (HTML, CSS, the client script), read from this folder once, on
 * first use. The folder is `src/http/panel/` when run from source (tsx, tests) and
 * `dist/src/http/panel/` in the built package, where `npm run build` copies them (tsc
 * copies only what it compiles).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The files `npm run build` must copy next to this module. */
export const PANEL_FILES = [
  'panel.html',
  'panel.css',
  'panel.js',
  'cockpit.js',
  'cards.js',
  'statechart.css',
] as const;
export type PanelFile = (typeof PANEL_FILES)[number];

const cache = new Map<PanelFile, string>();

/**
 * The text of one of the panel's files (cached for the life of the process).
 *
 * @example
 * panelFile('panel.css').includes('.badge'); // true
 */
export function panelFile(name: PanelFile): string {
  let text = cache.get(name);
  if (text === undefined) {
    const url = new URL(name, import.meta.url);
    try {
      text = readFileSync(url, 'utf8');
    } catch (err) {
      throw new Error(
        `the panel's file ${JSON.stringify(name)} is missing at ${fileURLToPath(url)} ` +
          `(a build must copy src/http/panel/ next to the compiled panel: npm run build): ${(err as Error).message}`,
      );
    }
    // The files go inline into <style>/<script>: a closing tag would end the element early.
    if (/<\/(script|style)/i.test(text) && name !== 'panel.html') {
      throw new Error(
        `the panel's file ${JSON.stringify(name)} contains a closing </script> or </style>`,
      );
    }
    cache.set(name, text);
  }
  return text;
}
