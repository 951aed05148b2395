// `node --import tsx scripts/new-module.ts <name>` scaffolds a command module: its folder under modules/
// (a working command `POST /v1/<name>` → queue `<name>` → write model + outbox event → read model, and
// `GET /v1/<name>/{id}`), its line in modules/registry.ts, and everything rendered from the registry
// (scripts/render-modules.ts: Kubernetes manifests, docker-compose services; scripts/config-table.mjs:
// its settings in .env.example and docs/configuration.md). Edit the result into the command you need;
// docs/modules.md is the recipe.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** How a module name appears in the files it scaffolds. */
export interface ModuleNames {
  /** `invoices`: the module, its queue, its table and its path `/v1/invoices`. */
  name: string;
  /** `invoice`: the aggregate of its event types (`invoice.recorded`). */
  item: string;
  /** `Invoice`: its TypeScript names. */
  Item: string;
  /** `invoicesModule`. */
  moduleConst: string;
}

export function namesOf(name: string): ModuleNames {
  if (!/^[a-z][a-z0-9]{1,30}$/.test(name))
    throw new Error(
      `module name ${JSON.stringify(name)}: lowercase letters and digits, 2-31, a letter first`,
    );
  const item = name.endsWith('s') && name.length > 2 ? name.slice(0, -1) : `${name}item`;
  return { name, item, Item: item[0]!.toUpperCase() + item.slice(1), moduleConst: `${name}Module` };
}

/** The files of a new module, by path from the repository root. */
export function moduleFiles(n: ModuleNames): Record<string, string> {
  const fill = (text: string) =>
    text
      .replaceAll('__name__', n.name)
      .replaceAll('__item__', n.item)
      .replaceAll('__Item__', n.Item)
      .replaceAll('__moduleConst__', n.moduleConst);
  return Object.fromEntries(
    Object.entries(TEMPLATE).map(([path, text]) => [fill(`modules/__name__/${path}`), fill(text)]),
  );
}

/** modules/registry.ts with the module imported and listed last. */
export function registerModule(registry: string, n: ModuleNames): string {
  const line = `import { ${n.moduleConst} } from './${n.name}/module.ts';`;
  if (registry.includes(line)) return registry;
  const imports = [...registry.matchAll(/^import .*;$/gm)];
  const last = imports.at(-1);
  if (!last) throw new Error('modules/registry.ts: no import to add the module after');
  const at = last.index + last[0].length;
  let out = `${registry.slice(0, at)}\n${line}${registry.slice(at)}`;
  const list = /(export const MODULES: readonly ModuleDefinition\[\] = \[)([^\]]*)(\]);/.exec(out);
  if (!list) throw new Error('modules/registry.ts: no `export const MODULES … = [ … ];` list');
  const entries = list[2]!
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  out = out.replace(list[0], `${list[1]}${[...entries, n.moduleConst].join(', ')}${list[3]};`);
  return out;
}

/** `text` as `npm run format` would leave the file at `path`. */
async function formatted(path: string, text: string): Promise<string> {
  if (!/\.(ts|js|mjs)$/.test(path)) return text;
  const options = await resolveConfig(path);
  return format(text, { ...options, filepath: path });
}

async function main(argv: readonly string[]): Promise<void> {
  const name = argv[0];
  if (!name || argv.length !== 1) {
    console.error('usage: npm run module:new -- <name>   (lowercase letters and digits, e.g. invoices)');
    process.exit(2);
  }
  const n = namesOf(name);
  if (existsSync(`${ROOT}modules/${n.name}`)) {
    console.error(`modules/${n.name} exists already`);
    process.exit(1);
  }
  for (const [path, text] of Object.entries(moduleFiles(n))) {
    mkdirSync(dirname(`${ROOT}${path}`), { recursive: true });
    writeFileSync(`${ROOT}${path}`, await formatted(`${ROOT}${path}`, text));
    console.log(`created ${path}`);
  }
  const registryPath = `${ROOT}modules/registry.ts`;
  writeFileSync(
    registryPath,
    await formatted(registryPath, registerModule(readFileSync(registryPath, 'utf8'), n)),
  );
  console.log('registered in modules/registry.ts');
  // In processes of their own: they read the registry as it is now, with the new module.
  for (const script of RENDERERS) {
    const args = script.endsWith('.ts') ? ['--import', 'tsx', script] : [script];
    const run = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'inherit' });
    if (run.status !== 0) {
      console.error(`${script} failed: fix it, then run it again`);
      process.exit(1);
    }
  }
  console.log(
    `next: make modules/${n.name} your command, re-run the renderers after changing its settings, then npm run check`,
  );
}

/**
 * What is rendered from the registry: the module's workers in Kubernetes and docker compose, and the
 * generated references (its `<NAME>_*` settings in .env.example and docs/configuration.md).
 */
const RENDERERS = ['scripts/render-modules.ts', 'scripts/config-table.mjs'];

const TEMPLATE: Record<string, string> = {
  'module.ts': `import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { __Item__JobSchema } from './domain.ts';
import { __item__Events } from './events.ts';

/**
 * __name__: \`POST /v1/__name__\` → queue \`__name__\` → a \`__name__\` row and its \`__item__.recorded\`
 * event in one transaction → \`__item___view\`; \`GET /v1/__name__/{id}\` reads it back.
 */
export const __moduleConst__: ModuleDefinition = {
  name: '__name__',
  description: '__Item__ commands (scaffolded by scripts/new-module.ts)',
  jobName: 'record-__item__',
  jobSchema: __Item__JobSchema,
  events: __item__Events,
  migrations: new URL('./migrations/', import.meta.url),
  scopes: { write: '__name__:write', read: '__name__:read' },
  paths: ['/v1/__name__'],
  api: async () => (await import('./api/index.ts')).__item__Api,
  worker: async () => (await import('./worker/index.ts')).__item__Worker,
};
`,
  'domain.ts': `import { z } from 'zod';
import { TenantIdSchema } from '../../shared/modules/tenant.ts';

/** What a producer posts. */
export const Record__Item__Schema = z.object({ note: z.string().min(1).max(1_000) });
export type Record__Item__ = z.infer<typeof Record__Item__Schema>;

/** The command's job data, as the API enqueues it and the worker checks it. */
export const __Item__JobSchema = z.object({
  id: z.uuid(),
  correlationId: z.string().min(1),
  requestedAt: z.iso.datetime(),
  tenant: TenantIdSchema.optional(),
  request: Record__Item__Schema,
});
export type __Item__Job = z.infer<typeof __Item__JobSchema>;
`,
  'events.ts': `import { z } from 'zod';
import type { TypedEvent } from '../../shared/domain/events.ts';

/** The __name__ module's event types; their key is the command's id. */
export const __Item__EventTypes = {
  recorded: '__item__.recorded',
  deadLettered: '__item__.dead_lettered',
} as const;

export const __Item__RecordedPayload = z.object({
  id: z.uuid(),
  note: z.string(),
  attempts: z.number().int().min(0),
  requestedAt: z.iso.datetime(),
  recordedAt: z.iso.datetime(),
});
export const __Item__DeadLetteredPayload = z.object({
  id: z.uuid(),
  attempts: z.number().int().min(0),
  error: z.string(),
  deadLetterId: z.string(),
  deadLetteredAt: z.iso.datetime(),
});

export const __item__Events = {
  [__Item__EventTypes.recorded]: { 1: __Item__RecordedPayload },
  [__Item__EventTypes.deadLettered]: { 1: __Item__DeadLetteredPayload },
} as const;

export type __Item__Event =
  | TypedEvent<typeof __Item__EventTypes.recorded, typeof __Item__RecordedPayload>
  | TypedEvent<typeof __Item__EventTypes.deadLettered, typeof __Item__DeadLetteredPayload>;
`,
  'migrations/0001___name__.sql': `-- Write model: one row per command, written by the __name__ worker in the same transaction as its event.
CREATE TABLE __name__ (
  id              uuid PRIMARY KEY,
  note            text,
  status          text        NOT NULL CHECK (status IN ('recorded', 'dead_lettered')),
  attempts        integer     NOT NULL,
  correlation_id  text        NOT NULL,
  tenant          text,
  requested_at    timestamptz,
  decided_at      timestamptz NOT NULL DEFAULT now()
);

-- Read model, maintained only by the __name__ projection.
CREATE TABLE __item___view (
  id              uuid PRIMARY KEY,
  note            text,
  status          text        NOT NULL,
  attempts        integer     NOT NULL,
  correlation_id  text,
  requested_at    timestamptz,
  decided_at      timestamptz,
  updated_at      timestamptz NOT NULL
);
`,
  'worker/index.ts': `import { randomUUID } from 'node:crypto';
import { runWithIsolation } from '../../../shared/batch.ts';
import { insertOutbox } from '../../../shared/db/outbox.sql.ts';
import { withTransaction, type PoolClient } from '../../../shared/db/pool.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';
import { isUuid } from '../../../shared/domain/ids.ts';
import type { Command, ModuleProjection, ModuleWorkerFactory } from '../../../shared/modules/module.ts';
import type { __Item__Job } from '../domain.ts';
import { __Item__EventTypes, type __Item__Event } from '../events.ts';

interface Outcome {
  status: 'recorded' | 'duplicate';
}

function describe(data: unknown): { correlationId: string | null; subjectId: string | null } {
  const loose = (data ?? {}) as { id?: unknown; correlationId?: unknown };
  return {
    correlationId: typeof loose.correlationId === 'string' ? loose.correlationId : null,
    subjectId: isUuid(loose.id) ? loose.id : null,
  };
}

/** Writes a batch's rows and their events in one transaction; a row written before changes nothing. */
async function record(client: PoolClient, commands: readonly Command<__Item__Job>[]): Promise<Outcome[]> {
  const now = new Date().toISOString();
  const outcomes: Outcome[] = [];
  const events: EventEnvelope[] = [];
  for (const { job, attempt } of commands) {
    const written = await client.query(
      \`INSERT INTO __name__ (id, note, status, attempts, correlation_id, tenant, requested_at, decided_at)
       VALUES ($1, $2, 'recorded', $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING id\`,
      [job.id, job.request.note, attempt, job.correlationId, job.tenant ?? null, job.requestedAt, now],
    );
    if (written.rowCount === 0) {
      outcomes.push({ status: 'duplicate' });
      continue;
    }
    outcomes.push({ status: 'recorded' });
    events.push({
      eventId: randomUUID(),
      type: __Item__EventTypes.recorded,
      version: 1,
      key: job.id,
      correlationId: job.correlationId,
      occurredAt: now,
      payload: { id: job.id, note: job.request.note, attempts: attempt, requestedAt: job.requestedAt, recordedAt: now },
    });
  }
  await insertOutbox(client, events);
  return outcomes;
}

const projection: ModuleProjection = {
  tables: ['__item___view'],
  async apply(client, events) {
    for (const e of events as readonly __Item__Event[]) {
      const row =
        e.type === __Item__EventTypes.recorded
          ? [e.payload.id, e.payload.note, 'recorded', e.payload.attempts, e.payload.requestedAt, e.payload.recordedAt]
          : [e.payload.id, null, 'dead_lettered', e.payload.attempts, null, null];
      // A recorded command is final; a dead-lettered one may still be recorded after a redrive.
      await client.query(
        \`INSERT INTO __item___view (id, note, status, attempts, requested_at, decided_at, correlation_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note, status = EXCLUDED.status, attempts = EXCLUDED.attempts,
           requested_at = EXCLUDED.requested_at, decided_at = EXCLUDED.decided_at, updated_at = EXCLUDED.updated_at
         WHERE __item___view.status <> 'recorded'\`,
        [...row, e.correlationId, e.occurredAt],
      );
    }
  },
};

/** The __name__ module's worker side. */
export const __item__Worker: ModuleWorkerFactory = {
  commands(ctx) {
    return {
      describe,
      async handleBatch(commands: readonly Command<__Item__Job>[]) {
        const settled = await runWithIsolation(commands, (batch) =>
          withTransaction(ctx.pool, (client) => record(client, batch)),
        );
        if (settled.some((s) => s.ok && s.value.status !== 'duplicate')) ctx.onOutboxAppended();
        return settled;
      },
      statusOf: (outcome: Outcome) => outcome.status,
      async deadLettered(client, cmd) {
        const id = describe(cmd.data).subjectId;
        if (!id) return [];
        const error = cmd.error.message.slice(0, 1_000);
        const written = await client.query(
          \`INSERT INTO __name__ (id, status, attempts, correlation_id, decided_at)
           VALUES ($1, 'dead_lettered', $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id\`,
          [id, cmd.attempts, cmd.correlationId, cmd.at],
        );
        if (written.rowCount === 0) return [];
        return [
          {
            eventId: randomUUID(),
            type: __Item__EventTypes.deadLettered,
            version: 1,
            key: id,
            correlationId: cmd.correlationId,
            occurredAt: cmd.at.toISOString(),
            payload: {
              id,
              attempts: cmd.attempts,
              error,
              deadLetterId: cmd.deadLetterId,
              deadLetteredAt: cmd.at.toISOString(),
            },
          },
        ];
      },
    };
  },
  projection,
};
`,
  'api/index.ts': `import { randomUUID } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import {
  createIdempotent,
  derivedId,
  IdempotencyKeyParameter,
  idempotencyResponses,
} from '../../../shared/http/idempotent.ts';
import { loadShedding } from '../../../shared/http/load-shedding.ts';
import { addBulkExactly } from '../../../shared/http/enqueue.ts';
import { bodyLimit } from '../../../shared/http/body-limit.ts';
import type { ModuleApiContext } from '../../../shared/http/modules.ts';
import { ProblemSchema, problemResponses } from '../../../shared/http/schemas.ts';
import { DependencyUnavailableError, NotFoundError } from '../../../shared/errors/domain.ts';
import type { ModuleApiFactory } from '../../../shared/modules/module.ts';
import { __Item__JobSchema, Record__Item__Schema, type __Item__Job } from '../domain.ts';

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ProblemSchema } },
});

const Record__Item__Body = z.strictObject(Record__Item__Schema.shape).openapi('Record__Item__', {
  example: { note: 'first' },
});
const IdParam = z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) });
const Accepted__Item__ = z
  .object({ id: z.uuid(), status: z.literal('queued'), correlationId: z.string() })
  .openapi('Accepted__Item__');
const __Item__ViewSchema = z
  .object({
    id: z.uuid(),
    note: z.string().nullable(),
    status: z.enum(['queued', 'processing', 'recorded', 'dead_lettered']),
    attempts: z.number().int(),
    correlationId: z.string().nullable(),
    requestedAt: z.string().nullable(),
    decidedAt: z.string().nullable(),
  })
  .openapi('__Item__');
type __Item__View = z.infer<typeof __Item__ViewSchema>;

const record__Item__ = createRoute({
  method: 'post',
  path: '/v1/__name__',
  tags: ['__name__'],
  summary: 'Record a __item__ (enqueued; recorded asynchronously)',
  parameters: [IdempotencyKeyParameter],
  request: { body: { required: true, content: { 'application/json': { schema: Record__Item__Body } } } },
  responses: {
    202: {
      description: 'Accepted and enqueued',
      headers: { Location: { schema: { type: 'string' } } },
      content: { 'application/json': { schema: Accepted__Item__ } },
    },
    413: problem('Body over the limit'),
    ...problemResponses,
    ...idempotencyResponses,
  },
});

const get__Item__ = createRoute({
  method: 'get',
  path: '/v1/__name__/{id}',
  tags: ['__name__'],
  summary: 'One __item__: read model, else write model, else queue',
  request: { params: IdParam },
  responses: {
    200: { description: 'The __item__', content: { 'application/json': { schema: __Item__ViewSchema } } },
    404: problem('Unknown __item__'),
    ...problemResponses,
  },
});

const COLUMNS = \`id, note, status, attempts, correlation_id AS "correlationId",
  to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "requestedAt",
  to_char(decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "decidedAt"\`;

function routes(ctx: ModuleApiContext): void {
  const { app, deps, commands, redisCall, timeoutMs } = ctx;
  const idempotent = createIdempotent({ store: deps.idempotency, redisCall });
  const shedIfOverloaded = loadShedding(commands.queue, { maxBacklog: deps.config.api.maxBacklog, redisCall });

  app.use('/v1/__name__', bodyLimit({ maxSize: deps.config.api.bodyLimitBytes }));

  app.openapi(record__Item__, async (c) => {
    const request = c.req.valid('json');
    await shedIfOverloaded();
    return idempotent(c, request, async (seed) => {
      const id = seed ? derivedId(seed) : randomUUID();
      const correlationId = c.get('correlationId');
      const tenant = c.get('tenant');
      const job: __Item__Job = { id, correlationId, requestedAt: new Date().toISOString(), tenant: tenant.id, request };
      const { accepted, refused } = await addBulkExactly(commands, [{ id, data: job, tenant }], timeoutMs);
      const refusal = refused?.get(id);
      if (refusal) throw refusal;
      if (!accepted.has(id)) throw new DependencyUnavailableError('redis');
      return {
        status: 202,
        body: { id, status: 'queued', correlationId },
        headers: { location: \`/v1/__name__/\${id}\` },
      };
    }) as never;
  });

  /** A command not decided yet, from its job. */
  async function fromQueue(id: string): Promise<__Item__View | undefined> {
    const job = await redisCall(() => commands.queue.getJob(id));
    if (!job) return undefined;
    const parsed = __Item__JobSchema.safeParse(job.data);
    if (!parsed.success) return undefined;
    const state = await redisCall(() => job.getState());
    return {
      id,
      note: parsed.data.request.note,
      status: state === 'active' ? 'processing' : 'queued',
      attempts: job.attemptsMade,
      correlationId: parsed.data.correlationId,
      requestedAt: parsed.data.requestedAt,
      decidedAt: null,
    };
  }

  app.openapi(get__Item__, async (c) => {
    const { id } = c.req.valid('param');
    const read = async (table: string) =>
      (await deps.pool.query<__Item__View>(\`SELECT \${COLUMNS} FROM \${table} WHERE id = $1\`, [id])).rows[0];
    // A job leaves Redis only after its row committed: the last read finds what the first two missed.
    const found = (await read('__item___view')) ?? (await read('__name__')) ?? (await fromQueue(id)) ?? (await read('__name__'));
    // resource.not_found: a code of the module's own also needs its entry in scripts/lib/problem-docs.ts.
    if (!found) throw new NotFoundError(\`__item__ \${id} not found\`);
    return c.json(found, 200);
  });
}

/** The __name__ module's HTTP side. */
export const __item__Api: ModuleApiFactory = { routes };
`,
};

if (import.meta.url === `file://${process.argv[1]}`) await main(process.argv.slice(2));
