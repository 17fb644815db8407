/** `kora-opstate table` and `kora-opstate diagram`. */
import { toMermaid } from '../diagram.js';
import { TRANSITION_TABLE } from '../table.js';
import { type Command, noPositionals, UsageError } from './command.js';

/** @internal */
export const tableCommand: Command = {
  name: 'table',
  summary: 'print the §9.1 transition table',
  usage: `[--json]

Prints the 15 rows of the §9.1 transition table, derived from the statechart.

Options:
  --json      one JSON array instead of a text table
  -h, --help  this help`,
  options: { json: { type: 'boolean' } },
  async run(values, positionals, io) {
    noPositionals(positionals);
    if (values.json) {
      io.stdout(`${JSON.stringify(TRANSITION_TABLE, null, 2)}\n`);
      return 0;
    }
    const head = ['#', 'from', 'to', 'event', 'trigger', 'guard', 'recovery owner'];
    const body = TRANSITION_TABLE.map((r) => [
      String(r.row),
      r.from,
      r.to,
      r.event,
      r.trigger,
      r.guard,
      r.recoveryOwner,
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd();
    io.stdout(
      `${[line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')}\n`,
    );
    return 0;
  },
};

/** @internal */
export const diagramCommand: Command = {
  name: 'diagram',
  summary: 'print the statechart',
  usage: `[--format mermaid|svg] [--triggers]

Prints the statechart as Mermaid (stateDiagram-v2), or as a standalone SVG.

Options:
  --format F   mermaid (default) or svg
  --triggers   label arrows with the row's trigger text too (mermaid)
  -h, --help   this help`,
  options: { format: { type: 'string', default: 'mermaid' }, triggers: { type: 'boolean' } },
  async run(values, positionals, io) {
    noPositionals(positionals);
    const format = values.format as string;
    if (format === 'mermaid') {
      io.stdout(toMermaid({ triggers: Boolean(values.triggers) }));
      return 0;
    }
    if (format === 'svg') {
      const { renderStatechartSvg } = await import('../http/panel.js');
      io.stdout(`${renderStatechartSvg({ standalone: true })}\n`);
      return 0;
    }
    throw new UsageError(`unknown --format ${JSON.stringify(format)}; expected mermaid or svg`);
  },
};
