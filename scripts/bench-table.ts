/**
 * Renders the Markdown table of a `npm run bench -- --json` run (the README's table).
 *
 * Usage: node --import tsx scripts/bench-table.ts [bench-results.json]
 */
import { readFileSync } from 'node:fs';
import { type BenchResults, renderTable } from './bench/table.js';

const file = process.argv[2] ?? 'bench-results.json';
const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
if (!Array.isArray(results.rows)) throw new Error(`${file}: no "rows" array (not a bench result?)`);
console.log(renderTable(results));
