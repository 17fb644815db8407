/**
 * `node --import ./withoutStatelyInspect.mjs …`: the process runs as if the optional peer
 * `@statelyai/inspect` were not installed — resolving it fails exactly as Node fails for a
 * missing package (ERR_MODULE_NOT_FOUND, "Cannot find package …").
 */
import { register } from 'node:module';

const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier === '@statelyai/inspect' || specifier.startsWith('@statelyai/inspect/')) {
    const err = new Error(\`Cannot find package '\${specifier}' imported from \${context.parentURL}\`);
    err.code = 'ERR_MODULE_NOT_FOUND';
    throw err;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
