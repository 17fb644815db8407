/** The package's version, as the fleet shows it for each agent. */
import { readFileSync } from 'node:fs';

let version: string | undefined;

/**
 * @internal The `version` of `@kora/opstate`'s package.json: two folders up from source
 * (`src/fleet/`), three from the build (`dist/src/fleet/`); `unknown` when neither is there.
 */
export function packageVersion(): string {
  if (version !== undefined) return version;
  version = 'unknown';
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8'));
      if (pkg?.name === '@kora/opstate' && typeof pkg.version === 'string') {
        version = pkg.version as string;
        break;
      }
    } catch {
      // Not at this depth.
    }
  }
  return version;
}
