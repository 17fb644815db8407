/**
 * The statechart as Mermaid text, read from the derived table (so it cannot drift).
 */
import { TRANSITION_TABLE } from './table.js';

/**
 * Mermaid `stateDiagram-v2` source of the §9.1 table: one arrow per row, labelled with
 * its row number and event (and, with `triggers: true`, the row's trigger text).
 *
 * @example
 * console.log(toMermaid()); // paste into any Mermaid renderer
 */
export function toMermaid(options: { triggers?: boolean } = {}): string {
  const lines = ['stateDiagram-v2', '  [*] --> booting'];
  for (const r of TRANSITION_TABLE) {
    // Mermaid ends a label at ':' and chokes on ';' — keep the text readable without them.
    const text = options.triggers ? ` (${r.trigger})` : '';
    const label = `${r.row} ${r.event}${text}`.replace(/[:;]/g, ',');
    lines.push(`  ${r.from} --> ${r.to}: ${label}`);
  }
  lines.push('  stopped --> [*]');
  return `${lines.join('\n')}\n`;
}
