/**
 * The fleet (SPEC §12): `GET /api/fleet`, every agent of the workspace as JSON, and
 * `GET /fleet`, a page that draws it and follows it live (it polls `/api/fleet`). The
 * agents come from the app's `fleet` option (a registry on a shared Postgres); without
 * one, the fleet is the served instance alone. With the `fleetControl` option the page
 * also controls the fleet: `POST /api/fleet/commands` (operator token) issues a command
 * as `kora-opstate control` does, `GET /api/fleet/commands/:id` reads its outcomes.
 */
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { inputErrorFrom } from '../../events.js';
import {
  CONTROL_ACTIONS,
  type ControlAction,
  type ControlCommand,
  issueCommand,
  liveAgents,
  readOutcomes,
} from '../../fleet/control.js';
import { commandForgery, controlKey } from '../../fleet/controlAuth.js';
import { rowToCommand } from '../../fleet/controlParts.js';
import { createFleetRegistry } from '../../fleet/registry.js';
import {
  countPresence,
  type FleetSource,
  type FleetView,
  GONE_AFTER_HEARTBEATS,
} from '../../fleet/types.js';
import { errorText } from '../../logger.js';
import type { SqlSession } from '../../sinks/sql.js';
import {
  MAX_TRIGGER_LENGTH,
  OperationalStateInputError,
  PAUSE_CAUSES,
  type PauseCause,
  quote,
} from '../../vocabulary.js';
import type { StatusCore } from '../core.js';
import { operatorAuth, operatorBodyLimit } from '../middleware.js';
import type { FleetControlOptions } from '../options.js';
import { fillPage, htmlPage, pageParts, panelFile } from '../panel/assets.js';
import { badInput, HTTP_LOG_TAG, json, parsed } from '../respond.js';

/** The page, cut at its per-request slots once (see `pageParts`). */
let template: string[] | undefined;

function page(core: StatusCore): Response {
  template ??= pageParts('fleet.html', {
    css: () => `${panelFile('base.css')}\n${panelFile('fleet.css')}`,
    js: () => `${panelFile('fleetControl.js')}\n${panelFile('fleet.js')}`,
  });
  const parts = template;
  return htmlPage((nonce) => fillPage(parts, { nonce, title: core.options.title }));
}

/** The fleet of an app without a `fleet` option: its instance alone (or nobody yet). */
function localSource(core: StatusCore): FleetSource {
  let local: FleetSource | undefined;
  return {
    list(): Promise<FleetView> {
      const holder = core.holder();
      if (!holder) {
        return Promise.resolve({
          workspace_id: 'default',
          source: 'local',
          gone_after_heartbeats: GONE_AFTER_HEARTBEATS,
          generated_at: new Date().toISOString(),
          agents: [],
          counts: countPresence([]),
        });
      }
      local ??= createFleetRegistry({ opstate: holder });
      return local.list();
    },
  };
}

/** The longest TTL the page may ask for: a week (the CLI's `--ttl-ms` has no such cap). */
const MAX_TTL_MS = 7 * 86_400_000;

/** `POST /api/fleet/commands`: one agent (`agent`) or every agent (`all: true`). */
const commandBody = z.strictObject({
  action: z.enum(CONTROL_ACTIONS as unknown as [ControlAction, ...ControlAction[]]),
  agent: z.string().min(1).max(200).optional(),
  all: z.literal(true).optional(),
  cause: z.enum(PAUSE_CAUSES as unknown as [PauseCause, ...PauseCause[]]).optional(),
  trigger: z
    .string()
    .max(MAX_TRIGGER_LENGTH - 64)
    .optional(),
  reconciled_spend_usd: z.number().finite().nonnegative().optional(),
  threshold_usd: z.number().finite().nonnegative().optional(),
  ttl_ms: z.number().int().min(1000).max(MAX_TTL_MS).optional(),
});
type CommandBody = z.infer<typeof commandBody>;

function parseCommandBody(body: unknown): CommandBody {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new OperationalStateInputError(
      'body',
      body,
      `body must be a JSON object, got ${quote(body)}`,
    );
  }
  const r = commandBody.safeParse(body);
  if (!r.success) throw inputErrorFrom(r.error.issues, body);
  if ((r.data.agent === undefined) === (r.data.all === undefined)) {
    throw new OperationalStateInputError(
      'agent',
      r.data.agent,
      'name the agent ("agent": ID) or pass "all": true, not both',
    );
  }
  return r.data;
}

const NO_CONTROL =
  'fleet control is not available here: it needs the agents on a shared Postgres and the chain key ' +
  '(kora-opstate start --database-url …; in the library, the fleetControl option). An agent on an ' +
  'embedded store (PGlite) is one process: use its operator API, POST /api/operational-state/transitions';

/** A command as the API shows it (its MAC stays in the database). */
function shown(c: ControlCommand): Record<string, unknown> {
  return {
    command_id: c.command_id,
    workspace_id: c.workspace_id,
    target_agent: c.target_agent,
    action: c.action,
    args: c.args,
    issued_by: c.issued_by,
    issued_at: c.issued_at.toISOString(),
    expires_at: c.expires_at.toISOString(),
  };
}

async function readJson(c: Context): Promise<{ value: unknown } | { response: Response }> {
  // The body limit already held the bytes to its cap.
  const bytes = new Uint8Array(await c.req.raw.arrayBuffer());
  try {
    return { value: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) };
  } catch (err) {
    return { response: json(400, { error: `invalid JSON body: ${(err as Error).message}` }) };
  }
}

async function postCommand(core: StatusCore, fc: FleetControlOptions, c: Context) {
  const body = await readJson(c);
  if ('response' in body) return body.response;
  const b = parsed(() => parseCommandBody(body.value));
  if ('response' in b) return b.response;
  const { action, agent, cause, trigger, reconciled_spend_usd, threshold_usd, ttl_ms } = b.value;
  const target = agent ?? null;
  let command: ControlCommand;
  try {
    command = await issueCommand(fc.db, {
      workspaceId: fc.workspaceId,
      action,
      target,
      args: {
        ...(cause !== undefined ? { cause } : {}),
        ...(trigger !== undefined && trigger !== '' ? { trigger } : {}),
        ...(reconciled_spend_usd !== undefined ? { reconciled_spend_usd } : {}),
        ...(threshold_usd !== undefined ? { threshold_usd } : {}),
      },
      chainKey: fc.chainKey,
      issuedBy: 'the fleet page',
      ...((ttl_ms ?? fc.ttlMs) !== undefined ? { ttlMs: ttl_ms ?? fc.ttlMs } : {}),
    });
  } catch (err) {
    if (err instanceof OperationalStateInputError) return badInput(err);
    core.logger.warn(`${HTTP_LOG_TAG} POST /api/fleet/commands: ${errorText(err)}`);
    return json(503, { error: `the command could not be written: ${errorText(err)}` });
  }
  const awaiting = target ? [target] : await liveAgents(fc.db as SqlSession, fc.workspaceId);
  core.logger.info(
    `${HTTP_LOG_TAG} fleet command #${command.command_id} ${action} → ${target === null ? 'every agent' : `agent ${quote(target)}`}`,
  );
  return json(202, { command: shown(command), awaiting });
}

async function getCommand(fc: FleetControlOptions, id: string): Promise<Response> {
  if (!/^[1-9]\d{0,14}$/.test(id)) {
    return badInput(new OperationalStateInputError('id', id, `invalid command id ${quote(id)}`));
  }
  const db = fc.db as SqlSession;
  const { rows } = await db.query(
    `SELECT command_id::text, workspace_id, target_agent, action, args, issued_by, issued_at,
            expires_at, key_id, mac, expires_at <= now() AS expired
       FROM kora_opstate_fleet_commands WHERE command_id = $1 AND workspace_id = $2`,
    [Number(id), fc.workspaceId],
  );
  if (rows.length === 0) {
    return json(404, {
      error: `no command #${id} in workspace ${quote(fc.workspaceId)}`,
    });
  }
  const command = rowToCommand(rows[0]);
  const outcomes = await readOutcomes(db, command.command_id, fc.chainKey);
  const answered = new Set(outcomes.map((o) => o.agent_id));
  const awaited = command.target_agent
    ? [command.target_agent]
    : await liveAgents(db, fc.workspaceId);
  return json(200, {
    command: {
      ...shown(command),
      verified: commandForgery(controlKey(fc.chainKey), command) === undefined,
    },
    expired: rows[0].expired === true,
    outcomes: outcomes.map((o) => ({ ...o, recorded_at: new Date(o.recorded_at).toISOString() })),
    pending: awaited.filter((a) => !answered.has(a)),
  });
}

/** @internal Registers `GET /api/fleet`, `GET /fleet` and the fleet's command routes on `app`. */
export function fleetRoutes(app: Hono, core: StatusCore): void {
  const source = core.options.fleet ?? localSource(core);
  const fc = core.options.fleetControl;
  // What the page offers: controls only where a command can be written and authorised.
  const control = { available: fc !== undefined, operator_api: core.bearer.configured };
  app.get('/api/fleet', async () => {
    try {
      return json(200, { ...(await source.list()), control });
    } catch (err) {
      core.logger.warn(`${HTTP_LOG_TAG} GET /api/fleet: ${errorText(err)}`);
      return json(503, { error: `the fleet registry could not be read: ${errorText(err)}` });
    }
  });
  app.get('/fleet', () => page(core));
  app.post('/api/fleet/commands', operatorAuth(core.bearer), operatorBodyLimit(), (c) =>
    fc ? postCommand(core, fc, c) : json(501, { error: NO_CONTROL }),
  );
  app.get('/api/fleet/commands/:id', async (c) => {
    if (!fc) return json(501, { error: NO_CONTROL });
    try {
      return await getCommand(fc, c.req.param('id'));
    } catch (err) {
      core.logger.warn(`${HTTP_LOG_TAG} GET /api/fleet/commands: ${errorText(err)}`);
      return json(503, { error: `the command could not be read: ${errorText(err)}` });
    }
  });
}
