import { randomUUID } from 'node:crypto';
import type { BlockList } from 'node:net';
import { createRoute, z } from '@hono/zod-openapi';
import { bodyLimit } from '../../../shared/http/body-limit.ts';
import type { ModuleApiContext } from '../../../shared/http/modules.ts';
import { ProblemSchema, problemResponses } from '../../../shared/http/schemas.ts';
import type { ModuleApiFactory } from '../../../shared/modules/module.ts';
import { MODULES } from '../../registry.ts';
import {
  EXTRA_EVENT_TYPES,
  RegisterWebhookSchema,
  WebhookDestinationRefusedError,
  WebhookEventTypeUnknownError,
  WebhookNotFoundError,
  WebhooksNotConfiguredError,
} from '../domain.ts';
import { encryptSecret, newSecret } from '../secrets.ts';
import { webhookSettings, type WebhookConfig, type WebhookSettings } from '../settings.ts';
import { checkDestination, checkUrlForm, DestinationRefusedError, parseCidrs } from '../ssrf.ts';
import {
  deleteEndpoint,
  findEndpoint,
  insertEndpoint,
  listEndpoints,
  recentDeliveries,
  rotateSecret,
  setEnabled,
  viewOf,
  type WebhookEndpointRow,
} from '../store.sql.ts';

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ProblemSchema } },
});

const RegisterBody = z.strictObject(RegisterWebhookSchema.shape).openapi('RegisterWebhook', {
  example: {
    url: 'https://shop.example/hooks/conveyor',
    eventTypes: ['order.placed', 'order.rejected', 'refund.*'],
    description: 'order outcomes',
  },
});
const IdParam = z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) });
const EndpointSchema = z
  .object({
    id: z.uuid(),
    url: z.string(),
    eventTypes: z.array(z.string()),
    description: z.string().nullable(),
    enabled: z.boolean(),
    previousSecretExpiresAt: z
      .string()
      .nullable()
      .describe('After a rotation: until when the previous secret still signs (both signatures are sent)'),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('WebhookEndpoint');
const WithSecret = EndpointSchema.extend({
  secret: z.string().describe('whsec_…: shown once, keep it to verify the webhook-signature header'),
}).openapi('WebhookEndpointWithSecret');
const DeliverySchema = z
  .object({
    id: z.string().describe('The webhook-id header: the same on every retry and redrive'),
    eventId: z.uuid(),
    eventType: z.string(),
    status: z.enum(['pending', 'delivered', 'dead_lettered', 'skipped']),
    attempts: z.number().int(),
    responseStatus: z.number().int().nullable(),
    lastError: z.string().nullable(),
    deadLetterId: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    deliveredAt: z.string().nullable(),
  })
  .openapi('WebhookDelivery');

const json = <T extends z.ZodType>(description: string, schema: T) => ({
  description,
  content: { 'application/json': { schema } },
});

const register = createRoute({
  method: 'post',
  path: '/v1/webhooks',
  tags: ['webhooks'],
  summary: "Register an endpoint for this key's events (its signing secret is shown once)",
  request: { body: { required: true, content: { 'application/json': { schema: RegisterBody } } } },
  responses: {
    201: json('Registered', WithSecret),
    413: problem('Body over the limit'),
    422: problem(
      'A destination not allowed (webhook.destination_refused: loopback, private, link-local…) or an unknown event type',
    ),
    ...problemResponses,
    503: problem(
      'Webhooks are not configured (production without WEBHOOKS_SECRET_KEY), or a dependency is down',
    ),
  },
});
const list = createRoute({
  method: 'get',
  path: '/v1/webhooks',
  tags: ['webhooks'],
  summary: "This key's endpoints (never their secrets)",
  responses: {
    200: json('The endpoints', z.object({ webhooks: z.array(EndpointSchema) })),
    ...problemResponses,
  },
});
const getOne = createRoute({
  method: 'get',
  path: '/v1/webhooks/{id}',
  tags: ['webhooks'],
  summary: 'One endpoint',
  request: { params: IdParam },
  responses: {
    200: json('The endpoint', EndpointSchema),
    404: problem('Unknown endpoint'),
    ...problemResponses,
  },
});
const toggle = (action: 'enable' | 'disable') =>
  createRoute({
    method: 'post',
    path: `/v1/webhooks/{id}/${action}`,
    tags: ['webhooks'],
    summary:
      action === 'enable'
        ? 'Enable an endpoint: events from now on are delivered'
        : 'Disable an endpoint: no new deliveries; those queued are skipped',
    request: { params: IdParam },
    responses: {
      200: json('The endpoint', EndpointSchema),
      404: problem('Unknown endpoint'),
      ...problemResponses,
    },
  });
const rotate = createRoute({
  method: 'post',
  path: '/v1/webhooks/{id}/rotate-secret',
  tags: ['webhooks'],
  summary: 'A new signing secret (shown once); the previous one keeps signing during the grace period',
  request: { params: IdParam },
  responses: {
    200: json('The endpoint and its new secret', WithSecret),
    404: problem('Unknown endpoint'),
    ...problemResponses,
  },
});
const remove = createRoute({
  method: 'delete',
  path: '/v1/webhooks/{id}',
  tags: ['webhooks'],
  summary: 'Delete an endpoint and its delivery records',
  request: { params: IdParam },
  responses: { 204: { description: 'Deleted' }, 404: problem('Unknown endpoint'), ...problemResponses },
});
const deliveries = createRoute({
  method: 'get',
  path: '/v1/webhooks/{id}/deliveries',
  tags: ['webhooks'],
  summary: "An endpoint's recent deliveries, newest first",
  request: {
    params: IdParam,
    query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) }),
  },
  responses: {
    200: json('The deliveries', z.object({ webhookId: z.uuid(), deliveries: z.array(DeliverySchema) })),
    404: problem('Unknown endpoint'),
    ...problemResponses,
  },
});

/** Every event type an endpoint may subscribe to: the registered modules' and {@link EXTRA_EVENT_TYPES}. */
function knownEventTypes(): Set<string> {
  return new Set([...MODULES.flatMap((m) => Object.keys(m.events)), ...EXTRA_EVENT_TYPES]);
}

function routes(ctx: ModuleApiContext): void {
  const { app, deps } = ctx;
  const { pool } = deps;
  // Production without WEBHOOKS_SECRET_KEY: the API still serves everything else; registering and
  // rotating (which need the key) answer 503 webhook.not_configured, and the webhooks worker refuses to start.
  let configured: { settings: WebhookSettings; allowed: BlockList } | Error;
  try {
    const settings = webhookSettings(
      deps.config as typeof deps.config & { webhooks?: WebhookConfig },
      deps.logger,
    );
    configured = { settings, allowed: parseCidrs(settings.allowedCidrs) };
  } catch (err) {
    configured = err as Error;
    deps.logger.error({ err }, 'webhooks are not configured: POST /v1/webhooks answers 503');
  }
  const setup = () => {
    if (configured instanceof Error) throw new WebhooksNotConfiguredError(configured.message);
    return configured;
  };
  const known = knownEventTypes();

  /** The endpoint `id` of the request's tenant, else 404 (another tenant's endpoint is not found either). */
  const owned = async (id: string, tenant: string): Promise<WebhookEndpointRow> => {
    const found = await findEndpoint(pool, id, tenant);
    if (!found) throw new WebhookNotFoundError(id);
    return found;
  };

  app.use('/v1/webhooks', bodyLimit({ maxSize: 16_384 }));

  app.openapi(register, async (c) => {
    const { settings, allowed } = setup();
    const body = c.req.valid('json');
    const unknown = body.eventTypes.filter(
      (p) =>
        !(
          p === '*' ||
          known.has(p) ||
          (p.endsWith('.*') && [...known].some((t) => t.startsWith(p.slice(0, -1))))
        ),
    );
    if (unknown.length > 0)
      throw new WebhookEventTypeUnknownError(
        `unknown event type ${unknown.join(', ')}: use ${[...known].sort().join(', ')} (or <prefix>.*)`,
      );
    try {
      await checkDestination(checkUrlForm(body.url), { allowedCidrs: settings.allowedCidrs }, allowed);
    } catch (err) {
      if (err instanceof DestinationRefusedError) throw new WebhookDestinationRefusedError(err.message);
      throw err;
    }
    const secret = newSecret();
    const row = await insertEndpoint(pool, {
      id: randomUUID(),
      tenant: c.get('tenant').id,
      url: body.url,
      eventTypes: [...new Set(body.eventTypes)],
      description: body.description ?? null,
      secret: encryptSecret(settings.secretKey, secret),
    });
    c.header('location', `/v1/webhooks/${row.id}`);
    return c.json({ ...viewOf(row), secret }, 201);
  });

  app.openapi(list, async (c) => {
    const rows = await listEndpoints(pool, c.get('tenant').id);
    return c.json({ webhooks: rows.map(viewOf) }, 200);
  });

  app.openapi(getOne, async (c) => {
    const { id } = c.req.valid('param');
    return c.json(viewOf(await owned(id, c.get('tenant').id)), 200);
  });

  for (const action of ['enable', 'disable'] as const) {
    app.openapi(toggle(action), async (c) => {
      const { id } = c.req.valid('param');
      const row = await setEnabled(pool, id, c.get('tenant').id, action === 'enable');
      if (!row) throw new WebhookNotFoundError(id);
      return c.json(viewOf(row), 200);
    });
  }

  app.openapi(rotate, async (c) => {
    const { id } = c.req.valid('param');
    const { settings } = setup();
    const secret = newSecret();
    const row = await rotateSecret(
      pool,
      id,
      c.get('tenant').id,
      encryptSecret(settings.secretKey, secret),
      settings.rotationGraceSeconds,
    );
    if (!row) throw new WebhookNotFoundError(id);
    return c.json({ ...viewOf(row), secret }, 200);
  });

  app.openapi(remove, async (c) => {
    const { id } = c.req.valid('param');
    if (!(await deleteEndpoint(pool, id, c.get('tenant').id))) throw new WebhookNotFoundError(id);
    return c.body(null, 204);
  });

  app.openapi(deliveries, async (c) => {
    const { id } = c.req.valid('param');
    const { limit } = c.req.valid('query');
    await owned(id, c.get('tenant').id);
    return c.json({ webhookId: id, deliveries: await recentDeliveries(pool, id, limit) }, 200);
  });
}

/** The webhooks module's HTTP side: endpoint registration and delivery records, scoped to the key's tenant. */
export const webhooksApi: ModuleApiFactory = { routes };
