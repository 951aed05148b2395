import { html } from 'hono/html';
import { BASE_PATH, BOARD_PATH } from '../context.ts';
import {
  moduleTotals,
  type NativeDeadLetters,
  type Overview,
  type QueueOverview,
  type Scaling,
  type Sourced,
} from '../overview/overview.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { legend, minuteBars, type Layer } from './charts.ts';
import { formatDuration, timeTag, type Html } from './layout.ts';

/** How often the Overview reloads itself. */
export const OVERVIEW_REFRESH_SECONDS = 10;

const COLORS = {
  completed: '#16a34a',
  rejected: '#d97706',
  deadLettered: '#dc2626',
  published: '#2563eb',
} as const;

const STYLE = html`<style>
  .verdict {
    display: flex;
    gap: 14px;
    align-items: flex-start;
    padding: 14px 16px;
    border-radius: 8px;
    border: 1px solid;
    margin-bottom: 18px;
  }
  .verdict .state {
    font-size: 18px;
    font-weight: 700;
  }
  .verdict ul {
    margin: 4px 0 0;
    padding-left: 18px;
  }
  .verdict.healthy {
    background: #ecfdf3;
    border-color: #86efac;
  }
  .verdict.attention {
    background: #fffbeb;
    border-color: #fcd34d;
  }
  .verdict.unhealthy {
    background: #fef2f2;
    border-color: #fca5a5;
  }
  .dot {
    width: 14px;
    height: 14px;
    border-radius: 50%;
    margin-top: 5px;
    flex: none;
  }
  .healthy .dot {
    background: #16a34a;
  }
  .attention .dot {
    background: #d97706;
  }
  .unhealthy .dot {
    background: #dc2626;
  }
  .legend {
    display: inline-flex;
    gap: 10px;
    font-size: 12px;
    color: var(--muted);
    margin-left: 8px;
    font-weight: 400;
  }
  .legend i {
    display: inline-block;
    width: 9px;
    height: 9px;
    border-radius: 2px;
    margin-right: 4px;
  }
  table.queues td {
    vertical-align: middle;
  }
  .spark {
    display: block;
  }
  .big {
    font-size: 22px;
    font-weight: 700;
    font-variant-numeric: tabular-nums;
  }
  .card h2 {
    margin: 0 0 8px;
    font-size: 15px;
  }
  .unavailable {
    color: var(--bad);
  }
  .card.wide {
    grid-column: span 2;
  }
  @media (max-width: 700px) {
    .card.wide {
      grid-column: auto;
    }
  }
</style>`;

const n = (v: number) => v.toLocaleString('en-US');
const pct = (part: number, total: number) => (total === 0 ? '—' : `${((part / total) * 100).toFixed(1)}%`);
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

function unavailable(s: { ok: false; error: string }): Html {
  return html`<span class="unavailable" data-testid="unavailable">unavailable: ${s.error}</span>`;
}

function scalingCell(s: Sourced<Scaling> | null | undefined): Html {
  if (!s) return html`<span class="muted small">no ScaledObject in deploy/</span>`;
  if (!s.ok) return unavailable(s);
  const { scaler, metric, desired } = s.value;
  return html`<span
      class="big"
      data-testid="desired-${scaler.scaledObject}"
      title="ceil(${metric} / ${scaler.targetValue}) within ${scaler.minReplicas}–${scaler.maxReplicas} (${scaler.manifest})"
      >${desired}</span
    >
    <span class="muted small"
      >replica${desired === 1 ? '' : 's'} · target ${n(scaler.targetValue)} per replica</span
    >`;
}

function verdictView(o: Overview): Html {
  const label = { healthy: 'Healthy', attention: 'Needs attention', unhealthy: 'Unhealthy' }[o.level];
  return html`<section class="verdict ${o.level}" data-testid="verdict" aria-live="polite">
    <span class="dot" aria-hidden="true"></span>
    <div>
      <div class="state">${label}</div>
      ${
        o.findings.length === 0
          ? html`<div class="muted">
              Queues drain, the outbox is published, no dead letter waits, nothing sits in a failed set or a
              transport's own dead-letter queue, and no breaker is open.
            </div>`
          : html`<ul>
              ${o.findings.map((f) => html`<li class="${f.level}">${f.text}</li>`)}
            </ul>`
      }
    </div>
  </section>`;
}

function queueName(q: QueueOverview): Html {
  return html`<a href="${BOARD_PATH}/queue/${encodeURIComponent(q.queue)}"><strong>${q.queue}</strong></a>`;
}

function workRow(q: QueueOverview, o: Overview): Html {
  let chart: Html = html`<span class="muted">—</span>`;
  let failure: Html = html`—`;
  let scaling: Html = scalingCell(null);
  const module = o.modules.find((m) => m.queue === q.queue);
  if (module) {
    if (o.activity.ok) {
      const t = moduleTotals(o.activity.value, module);
      const layers: Layer[] = [
        { label: 'completed', color: COLORS.completed, values: t.byOutcome.completed },
        { label: 'rejected', color: COLORS.rejected, values: t.byOutcome.rejected },
        { label: 'dead-lettered', color: COLORS.deadLettered, values: t.byOutcome.dead_lettered },
      ];
      const peak = Math.max(
        0,
        ...t.byOutcome.completed.map(
          (c, i) => c + (t.byOutcome.rejected[i] ?? 0) + (t.byOutcome.dead_lettered[i] ?? 0),
        ),
      );
      chart = html`${minuteBars(
          layers,
          `${t.decided} ${module.name} commands decided in the last hour, at most ${peak} a minute`,
        )}<span class="small muted" data-testid="decided-${q.queue}">${n(t.decided)} decided</span>`;
      failure = html`<span data-testid="failure-rate-${q.queue}">${pct(t.deadLettered, t.decided)}</span>
        <span class="small muted">(${t.deadLettered} dead-lettered)</span>`;
    } else chart = unavailable(o.activity);
    scaling = scalingCell(o.commandScaling[q.queue]);
  } else if (q.queue === QueueNames.events) {
    // The projections' queue; another group's (`events.<group>`) gets the same events, its own scaling.
    if (o.activity.ok) chart = eventsChart(o);
    failure = eventsFailure(o);
    scaling = scalingCell(o.bus.scaling);
  }
  return html`<tr data-queue="${q.queue}">
    <td>${queueName(q)}${q.paused ? html` <span class="badge warn">paused</span>` : ''}${tenantsLine(q)}</td>
    <td class="num" data-testid="backlog-${q.queue}">${n(q.backlog)}</td>
    <td class="num">${q.backlog > 0 ? formatDuration(q.oldestWaitingAgeSeconds) : '—'}</td>
    <td class="num">${n(q.delayed)}</td>
    <td class="num">${n(q.active)}</td>
    ${failedCell(q)}
    <td>${chart}</td>
    <td>${failure}</td>
    <td>${scaling}</td>
  </tr>`;
}

/** Under a command queue's name: its tenants waiting their turn, linked to the Tenants page. */
function tenantsLine(q: QueueOverview): Html {
  const t = q.tenants;
  if (!t || t.waiting === 0) return html``;
  return html`<div class="small muted" data-testid="tenants-${q.queue}">
    <a href="${BASE_PATH}/tenants"
      >tenants waiting:
      ${n(t.waiting)}${
        t.largest ? html`, largest backlog: ${t.largest.tenant} (${n(t.largest.waiting)})` : ''
      }</a
    >
  </div>`;
}

/** A failed set holds work nothing retries and no dead letter shows: never a quiet zero-like number. */
function failedCell(q: QueueOverview): Html {
  return q.failed > 0
    ? html`<td class="num"><span class="badge bad" data-testid="failed-${q.queue}">${n(q.failed)}</span></td>`
    : html`<td class="num" data-testid="failed-${q.queue}">0</td>`;
}

function eventsChart(o: Overview): Html {
  if (!o.activity.ok) return unavailable(o.activity);
  const a = o.activity.value;
  const total = sum(a.published);
  return html`${minuteBars(
      [
        { label: 'published', color: COLORS.published, values: a.published },
        { label: 'dead-lettered', color: COLORS.deadLettered, values: a.eventDeadLetters },
      ],
      `${total} events published in the last hour, at most ${Math.max(0, ...a.published)} a minute`,
    )}<span class="small muted" data-testid="events-published">${n(total)} published</span>`;
}

function eventsFailure(o: Overview): Html {
  if (!o.activity.ok) return html`—`;
  const a = o.activity.value;
  const failed = sum(a.eventDeadLetters);
  return html`${pct(failed, sum(a.published))} <span class="small muted">(${failed} dead-lettered)</span>`;
}

function deadLetterRow(q: QueueOverview, o: Overview): Html {
  const origin = q.origin ?? q.queue;
  const pending = o.deadLetters.ok
    ? o.deadLetters.value
        .filter((d) => d.transport === 'bullmq' && (d.origin === origin || d.origin.startsWith(`${origin}.`)))
        .reduce((s, d) => s + d.count, 0)
    : null;
  const href = `${BASE_PATH}/dead-letters?status=pending&transport=bullmq&origin=${encodeURIComponent(origin)}`;
  return html`<tr data-queue="${q.queue}">
    <td>${queueName(q)} <span class="badge" data-testid="dlq-badge">dead-letter queue</span></td>
    <td class="num" colspan="4">
      <span class="muted small">copies held for inspection:</span>
      ${n(q.waiting + q.prioritized + q.delayed + q.active + q.completed + q.waitingChildren)}
    </td>
    ${failedCell(q)}
    <td colspan="3">
      ${
        pending === null
          ? unavailable(o.deadLetters as { ok: false; error: string })
          : html`<a href="${href}" data-testid="pending-${q.queue}"
              >${n(pending)} pending dead letter${pending === 1 ? '' : 's'}</a
            >`
      }
      <span class="muted small">· consumed by nothing, by design</span>
    </td>
  </tr>`;
}

function idleRow(q: QueueOverview, bus: string): Html {
  return html`<tr data-queue="${q.queue}">
    <td>${queueName(q)}</td>
    <td colspan="8" class="muted">Not used with EVENT_BUS=${bus}.</td>
  </tr>`;
}

function busRow(o: Overview): Html {
  const { bus } = o;
  if (bus.kind === 'bullmq' || !bus.depth) return html``;
  const name = { kafka: 'Kafka', rabbitmq: 'RabbitMQ', sqs: 'SQS' }[bus.kind];
  return html`<tr data-queue="bus">
    <td><strong>${name}</strong> <span class="badge info">event bus</span></td>
    <td class="num" colspan="5">
      ${
        bus.depth.ok
          ? bus.depth.value.map(
              (d) => html`<div><span class="muted small">${d.label}:</span> ${n(d.value)}</div>`,
            )
          : unavailable(bus.depth)
      }
    </td>
    <td>${eventsChart(o)}</td>
    <td>${eventsFailure(o)}</td>
    <td>${scalingCell(bus.scaling)}</td>
  </tr>`;
}

function queuesTable(o: Overview): Html {
  if (!o.queues.ok) return html`<p>${unavailable(o.queues)}</p>`;
  const unusedEventQueue = (q: QueueOverview) =>
    o.bus.kind !== 'bullmq' &&
    (q.role === 'events' || (q.role === 'dead-letter' && !o.modules.some((m) => m.queue === q.origin)));
  return html`<table class="queues" data-testid="queues">
    <caption class="sr-only">
      Queues and the event bus
    </caption>
    <thead>
      <tr>
        <th scope="col">Queue</th>
        <th scope="col" class="num">Backlog</th>
        <th scope="col" class="num">Oldest waiting</th>
        <th scope="col" class="num">Delayed</th>
        <th scope="col" class="num">Active</th>
        <th scope="col" class="num">Failed</th>
        <th scope="col">Last hour, per minute</th>
        <th scope="col">Dead-lettered</th>
        <th scope="col">KEDA would run</th>
      </tr>
    </thead>
    <tbody>
      ${o.queues.value.map((q) =>
        unusedEventQueue(q)
          ? idleRow(q, o.bus.kind)
          : q.role === 'dead-letter'
            ? deadLetterRow(q, o)
            : workRow(q, o),
      )}
      ${busRow(o)}
    </tbody>
  </table>`;
}

function outboxCard(o: Overview): Html {
  return html`<section class="card" data-testid="outbox">
    <h2>Outbox</h2>
    ${
      o.outbox.ok
        ? html`<div class="big">${n(o.outbox.value.count)}</div>
            <div class="muted small">
              events not yet
              published${
                o.outbox.value.count > 0
                  ? html`; oldest ${formatDuration(o.outbox.value.oldestAgeSeconds)} old`
                  : ''
              }
            </div>`
        : unavailable(o.outbox)
    }
  </section>`;
}

function deadLettersCard(o: Overview): Html {
  return html`<section class="card" data-testid="dead-letters">
    <h2>Dead letters pending</h2>
    ${
      !o.deadLetters.ok
        ? unavailable(o.deadLetters)
        : o.deadLetters.value.length === 0
          ? html`<div class="big">0</div>
              <div class="muted small">nothing waits for an operator</div>`
          : html`<div class="big">${n(sum(o.deadLetters.value.map((d) => d.count)))}</div>
              <ul class="small">
                ${o.deadLetters.value.map(
                  (d) =>
                    html`<li>
                      <a
                        href="${BASE_PATH}/dead-letters?status=pending&transport=${encodeURIComponent(
                          d.transport,
                        )}&origin=${encodeURIComponent(d.origin)}"
                        >${n(d.count)} from ${d.transport} ${d.origin}</a
                      >
                      <span class="muted">(${d.kind}s; oldest ${timeTag(d.oldestFailedAt)})</span>
                    </li>`,
                )}
              </ul>`
    }
  </section>`;
}

function nativeRow(d: NativeDeadLetters): Html {
  const missing = d.recorded === null ? null : d.messages - d.recorded;
  return html`<li data-native-dlq="${d.queue}">
    <strong>${d.transport} ${d.queue}</strong>:
    <span data-testid="native-dlq-${d.queue}">${n(d.messages)}</span> message${d.messages === 1 ? '' : 's'}
    <span class="muted small"
      >· ${d.recorded === null ? 'dead-letter table unavailable' : `${n(d.recorded)} ${d.recordedWhat}`}</span
    >
    ${
      missing !== null && missing > 0
        ? html`<span class="badge bad" data-testid="unrecorded-${d.queue}">${n(missing)} not recorded</span>`
        : ''
    }
  </li>`;
}

/** The transports' own dead-letter places: what is there, and what the dead-letter table accounts for. */
function nativeCard(o: Overview): Html {
  return html`<section class="card" data-testid="native-dead-letters">
    <h2>Transports' dead-letter queues</h2>
    ${
      !o.nativeDeadLetters.ok
        ? unavailable(o.nativeDeadLetters)
        : o.nativeDeadLetters.value.length === 0
          ? html`<div class="big">0</div>
              <div class="muted small">nothing in a BullMQ, RabbitMQ, SQS or Kafka dead-letter queue</div>`
          : html`<div class="big">${n(sum(o.nativeDeadLetters.value.map((d) => d.messages)))}</div>
              <ul class="small">
                ${o.nativeDeadLetters.value.map(nativeRow)}
              </ul>`
    }
  </section>`;
}

function breakersCard(o: Overview): Html {
  return html`<section class="card" data-testid="breakers">
    <h2>Circuit breakers</h2>
    ${
      !o.breakers.ok
        ? unavailable(o.breakers)
        : o.breakers.value.length === 0
          ? html`<div class="muted small">
              No breaker report from the workers in Redis (each worker's own /metrics has
              conveyor_circuit_breaker_state).
            </div>`
          : html`<ul>
              ${o.breakers.value.map(
                (b) =>
                  html`<li data-breaker="${b.breaker}">
                    <strong>${b.breaker}</strong> <span class="badge ${b.state}">${b.state}</span>
                    <span class="muted small"
                      >since ${timeTag(b.since)} · ${b.replicas.closed} closed, ${b.replicas['half-open']}
                      half-open, ${b.replicas.open} open</span
                    >
                  </li>`,
              )}
            </ul>`
    }
  </section>`;
}

function scalingCard(o: Overview): Html {
  const row = (what: string, s: Sourced<Scaling> | null | undefined) =>
    html`<tr>
      <th scope="row">${what}</th>
      ${
        !s
          ? html`<td colspan="4" class="muted">no ScaledObject in deploy/</td>`
          : s.ok
            ? html`<td class="num">${n(s.value.metric)}</td>
                <td class="num">${n(s.value.scaler.targetValue)}</td>
                <td class="num">${s.value.scaler.minReplicas}–${s.value.scaler.maxReplicas}</td>
                <td class="num"><strong>${s.value.desired}</strong></td>`
            : html`<td colspan="4">${unavailable(s)}</td>`
      }
    </tr>`;
  return html`<section class="card wide" data-testid="autoscaling">
    <h2>Autoscaling (KEDA, now)</h2>
    <table>
      <thead>
        <tr>
          <th scope="col">Workers</th>
          <th scope="col" class="num">Metric</th>
          <th scope="col" class="num">Target</th>
          <th scope="col" class="num">Range</th>
          <th scope="col" class="num">Replicas</th>
        </tr>
      </thead>
      <tbody>
        ${o.modules.map((m) => row(m.name, o.commandScaling[m.queue]))}
        ${row(`projections (${o.bus.kind})`, o.bus.scaling)}
      </tbody>
    </table>
    <p class="muted small">
      ceil(metric ÷ target) within the ScaledObject's range, as the HPA computes it before its stabilization
      windows.
    </p>
  </section>`;
}

/** The Overview: is the platform healthy, and where to look if not. */
export function overviewView(o: Overview): Html {
  const key = [
    { label: 'completed', color: COLORS.completed },
    { label: 'rejected', color: COLORS.rejected },
    { label: 'dead-lettered', color: COLORS.deadLettered },
    { label: 'events published', color: COLORS.published },
  ];
  return html`${STYLE}
    <h1>Overview</h1>
    <p class="muted small">
      As of ${timeTag(o.at)} · refreshes every ${OVERVIEW_REFRESH_SECONDS} s · event bus: ${o.bus.kind}
    </p>
    ${verdictView(o)}
    <h2>Queues and bus ${legend(key)}</h2>
    ${queuesTable(o)}
    <div class="grid" style="margin-top:14px">
      ${outboxCard(o)} ${deadLettersCard(o)} ${nativeCard(o)} ${breakersCard(o)} ${scalingCard(o)}
    </div>`;
}
