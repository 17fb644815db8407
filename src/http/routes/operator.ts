/**
 * `POST /api/operational-state/transitions`: the operator's transition, behind the bearer
 * token and the body limit. `{ to, trigger, ... }` takes the `transitionTo` path,
 * `{ event }` the `send` path; 200 with the new status, 409 for what the table refuses.
 */
import type { Context, Hono } from 'hono';
import { InvalidStateTransitionError, type OperationalStateHolder } from '../../holder.js';
import { quote } from '../../vocabulary.js';
import type { StatusCore } from '../core.js';
import { operatorAuth, operatorBodyLimit } from '../middleware.js';
import { badInput, HTTP_LOG_TAG, json, parsed } from '../respond.js';
import { type OperatorCommand, parseOperatorCommand } from '../schemas.js';
import { HOLDER_NOT_INITIALIZED, statusOf } from '../status.js';

async function apply(holder: OperationalStateHolder, command: OperatorCommand): Promise<void> {
  if (command.kind === 'event') {
    await holder.send(command.event);
    return;
  }
  await holder.transitionTo(command.to, command.trigger, {
    ...(command.claimPermission ? { claimPermission: command.claimPermission } : {}),
    ...(command.addReasons ? { addReasons: command.addReasons } : {}),
    ...(command.removeReasons ? { removeReasons: command.removeReasons } : {}),
  });
}

function refused(err: InvalidStateTransitionError): Response {
  return json(409, {
    error: err.message,
    from: err.from,
    to: err.to ?? null,
    trigger: err.trigger,
    event: err.event ?? null,
    reason: err.reason,
  });
}

async function postTransition(core: StatusCore, c: Context): Promise<Response> {
  // The body limit already held the bytes to its cap.
  const bytes = new Uint8Array(await c.req.raw.arrayBuffer());
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    return json(400, { error: `invalid JSON body: ${(err as Error).message}` });
  }
  const command = parsed(() => parseOperatorCommand(body));
  if ('response' in command) return command.response;
  const holder = core.holder();
  if (!holder) return json(503, { error: HOLDER_NOT_INITIALIZED });
  try {
    await apply(holder, command.value);
  } catch (err) {
    return err instanceof InvalidStateTransitionError ? refused(err) : badInput(err);
  }
  const status = statusOf(holder, core.chain());
  const what =
    command.value.kind === 'event'
      ? `event ${quote(command.value.event.type)}`
      : `transition to ${command.value.to}`;
  core.logger.info(`${HTTP_LOG_TAG} operator ${what} → ${status.primary_state}`);
  return json(200, status);
}

/** @internal Registers the operator route on `app`. */
export function operatorRoutes(app: Hono, core: StatusCore): void {
  app.post(
    '/api/operational-state/transitions',
    operatorAuth(core.bearer),
    operatorBodyLimit(),
    (c) => postTransition(core, c),
  );
}
