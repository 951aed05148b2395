import { Hono } from 'hono';
import { z } from 'zod';
import { BASE_PATH, type DashboardDeps, type DashboardEnv } from '../context.ts';
import type { OrderStory } from '../orders/story.ts';
import { page } from '../views/layout.ts';
import {
  customerOrdersView,
  orderHref,
  orderStoryView,
  ordersHomeView,
  unknownOrderView,
} from '../views/orders.ts';

const RECENT_ORDERS = 50;
/** An order still on its way reloads this often, so its page follows it to the end. */
const IN_FLIGHT_REFRESH_SECONDS = 3;

const OrderId = z.uuid();
/** Customer ids are the API's identifiers: letters, digits, ".", "_", ":" or "-", up to 64. */
const CustomerId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/);
const LookupQuery = z.object({ q: z.string().trim().max(200).optional().catch(undefined) });

/** Something is still to happen: no decision, an event not yet published or projected, a redrive open. */
function inFlight(s: OrderStory): boolean {
  if (s.unknown) return false;
  if (!s.order) return true;
  if (s.events.some((e) => !e.publishedAt || e.projected.length === 0)) return true;
  return s.deadLetters.some((d) => d.outcome.kind === 'queued');
}

/** Orders: look one up by id (its story) or a customer's recent orders. */
export function orderPages(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();

  app.get('/orders', async (c) => {
    const { q } = LookupQuery.parse(c.req.query());
    const session = c.get('session');
    const show = (body: ReturnType<typeof ordersHomeView>, status: 200 | 400 = 200) =>
      page(c, { title: 'Orders', session, current: 'orders', status, body });
    if (!q) return show(ordersHomeView());
    const id = OrderId.safeParse(q.toLowerCase());
    if (id.success) return c.redirect(orderHref(id.data), 302);
    const customer = CustomerId.safeParse(q);
    if (!customer.success)
      return show(
        ordersHomeView(
          q,
          'Enter an order id (a UUID) or a customer id (letters, digits, ".", "_", ":", "-").',
        ),
        400,
      );
    const orders = await deps.stories.recent(customer.data, RECENT_ORDERS);
    return page(c, {
      title: `Customer ${customer.data}`,
      session,
      current: 'orders',
      body: customerOrdersView(customer.data, orders, RECENT_ORDERS),
    });
  });

  app.get('/orders/:id', async (c) => {
    const session = c.get('session');
    const id = OrderId.safeParse(c.req.param('id').toLowerCase());
    if (!id.success) return c.redirect(`${BASE_PATH}/orders?q=${encodeURIComponent(c.req.param('id'))}`, 302);
    const story = await deps.stories.get(id.data);
    if (story.unknown)
      return page(c, {
        title: 'Unknown order',
        session,
        current: 'orders',
        status: 404,
        body: unknownOrderView(id.data),
      });
    return page(c, {
      title: `Order ${id.data}`,
      session,
      current: 'orders',
      refreshSeconds: inFlight(story) ? IN_FLIGHT_REFRESH_SECONDS : undefined,
      body: orderStoryView(story),
    });
  });

  return app;
}
