/**
 * The chain, read-only: `GET /api/operational-state/chain` (the newest events) and
 * `GET …/chain/verify` (a verification of the whole chain: behind the operator token when
 * one is configured, else answered from a recent shared result).
 */
import type { Hono } from 'hono';
import type { DurableEventSink } from '../../sinks/types.js';
import { parseVerifyQuery, verifyResultJson } from '../chainVerify.js';
import type { StatusCore } from '../core.js';
import { json, parsed } from '../respond.js';
import { parseChainQuery } from '../schemas.js';
import type { SinkLike } from '../status.js';
import { createVerifyCache } from '../verifyCache.js';

/** What the chain routes read: a durable sink's `tail` and `verifyChain` (structural). */
type ChainReader = Pick<DurableEventSink, 'workspaceId' | 'tail' | 'verifyChain'>;

function chainReader(sink: SinkLike | undefined): ChainReader | undefined {
  const s = sink as Partial<ChainReader> | undefined;
  return s && typeof s.tail === 'function' && typeof s.verifyChain === 'function'
    ? (s as ChainReader)
    : undefined;
}

/** Each distinct question has its own answer: the query, order aside. */
function verifyKey(url: URL): string {
  const params = new URLSearchParams(url.searchParams);
  params.sort();
  return params.toString();
}

/** @internal Registers the chain routes on `app`. */
export function chainRoutes(app: Hono, core: StatusCore): void {
  const noChain = () =>
    json(404, { error: 'no chain store is configured (pass a durable sink as `sink`)' });
  const verifications = createVerifyCache<Awaited<ReturnType<ChainReader['verifyChain']>>>(
    core.options.verifyCacheMs,
  );

  app.get('/api/operational-state/chain', async (c) => {
    const reader = chainReader(core.sink());
    if (!reader) return noChain();
    const query = parsed(() => parseChainQuery(new URL(c.req.url).searchParams));
    if ('response' in query) return query.response;
    const events = await reader.tail(query.value);
    return json(200, { workspace_id: reader.workspaceId, events });
  });

  app.get('/api/operational-state/chain/verify', async (c) => {
    const reader = chainReader(core.sink());
    if (!reader) return noChain();
    const { bearer } = core;
    if (bearer.configured && !bearer.authorized(c.req.header('authorization'))) {
      return bearer.unauthorized();
    }
    const url = new URL(c.req.url);
    const query = parsed(() => parseVerifyQuery(url.searchParams));
    if ('response' in query) return query.response;
    const verified = await verifications.get(
      verifyKey(url),
      () => reader.verifyChain(undefined, query.value),
      bearer.configured,
    );
    core.verified(verified); // the panel's "last verify"
    return json(200, {
      ...verifyResultJson(reader.workspaceId, verified.result),
      verified_at: new Date(verified.at).toISOString(),
      cached: verified.cached,
    });
  });
}
