import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScalingSchema } from '../../api/routes/scaling.ts';
import { sqsGroupQueues } from '../../shared/bus/sqs/bus.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { allQueueNames } from '../../shared/queue/names.ts';
import {
  at,
  build,
  createValidator,
  DEPLOY,
  kedaCrdDir,
  parseYaml,
  yamlFiles,
  type Obj,
  type Resource,
} from '../support/manifests.ts';
import { MODULES } from '../../modules/registry.ts';

// The manifests under deploy/ checked without a cluster: KEDA objects against KEDA's own CRD schemas
// (test/support/manifests.ts), Deployments and Services against what the code expects (ports, probes,
// grace periods, worker kinds), triggers against what the API and the buses serve.

const crds = kedaCrdDir();
const validate = createValidator(crds);
const allFiles = yamlFiles(DEPLOY);
const overlays = readdirSync(join(DEPLOY, 'overlays'));
const builds = new Map(overlays.map((o) => [o, build(join(DEPLOY, 'overlays', o))]));
const KEDA_KINDS = ['ScaledObject', 'ScaledJob', 'TriggerAuthentication', 'ClusterTriggerAuthentication'];
const kedaDocs = allFiles.flatMap((f) =>
  parseYaml(f)
    .filter((r) => KEDA_KINDS.includes(r.kind))
    .map((r) => ({ file: relative(DEPLOY, f), r })),
);
const defaultGraceMs = loadConfig({}, { modules: MODULES }).workers.shutdownGraceMs;

const byKind = (rs: Resource[], kind: string) => rs.filter((r) => r.kind === kind);
const named = (rs: Resource[], kind: string, name: string) =>
  rs.find((r) => r.kind === kind && r.metadata.name === name);
const containersOf = (d: Resource) => at(d, 'spec', 'template', 'spec', 'containers') as Obj[];

describe('the KEDA validator itself', () => {
  const good: Resource = {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: { name: 'x' },
    spec: {
      scaleTargetRef: { name: 'd' },
      minReplicaCount: 1,
      maxReplicaCount: 3,
      triggers: [{ type: 'cpu', metricType: 'Utilization', metadata: { value: '50' } }],
    },
  };
  const broken = (mutate: (r: Resource & { spec: Obj }) => void): Resource => {
    const r = structuredClone(good) as Resource & { spec: Obj };
    mutate(r);
    return r;
  };

  it('accepts a valid ScaledObject', () => expect(validate(good)).toEqual([]));
  it.each([
    [
      'minReplicaCount of the wrong type',
      (r: Resource & { spec: Obj }) => void (r.spec.minReplicaCount = 'one'),
      /minReplicaCount must be integer/,
    ],
    [
      'an unknown field (a typo)',
      (r: Resource & { spec: Obj }) => void (r.spec.minReplicas = 1),
      /additional properties \(minReplicas\)/,
    ],
    [
      'an unquoted number in trigger metadata',
      (r: Resource & { spec: Obj }) => void ((r.spec.triggers as Obj[])[0]!.metadata = { value: 50 }),
      /metadata\/value must be string/,
    ],
    [
      'no triggers',
      (r: Resource & { spec: Obj }) => void delete r.spec.triggers,
      /must have required property 'triggers'/,
    ],
    [
      'min above max (a CEL rule)',
      (r: Resource & { spec: Obj }) => void (r.spec.minReplicaCount = 5),
      /less than or equal to maxReplicaCount/,
    ],
    [
      'fallback with a Value trigger',
      (r: Resource & { spec: Obj }) => void (r.spec.fallback = { failureThreshold: 3, replicas: 2 }),
      /fallback needs/,
    ],
  ])('rejects %s', (_name, mutate, message) => {
    expect(validate(broken(mutate)).join('\n')).toMatch(message);
  });
  it('validates ScaledJobs too (their CRD embeds a pod template: int-or-string, list-map keys)', () => {
    const job = {
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'ScaledJob',
      metadata: { name: 'j' },
      spec: {
        jobTargetRef: {
          template: {
            spec: {
              containers: [
                {
                  name: 'c',
                  image: 'i:1',
                  ports: [{ containerPort: 80, protocol: 'TCP' }],
                  resources: { limits: { cpu: 1, memory: '1Gi' } },
                },
              ],
            },
          },
        },
        triggers: [{ type: 'cpu', metadata: { value: '1' } }],
      },
    };
    expect(validate(job)).toEqual([]);
    const twice = structuredClone(job);
    const ports = at(twice, 'spec', 'jobTargetRef', 'template', 'spec', 'containers', 0, 'ports') as Obj[];
    ports.push({ containerPort: 80, protocol: 'TCP' });
    (at(twice, 'spec', 'jobTargetRef') as Obj).parallelism = '2';
    expect(validate(twice).join('\n')).toMatch(
      /parallelism must be integer[\s\S]*x-kubernetes-list-map-keys/,
    );
  });
  it('rejects a TriggerAuthentication secret reference without a key, and an unknown kind', () => {
    const ta = {
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'TriggerAuthentication',
      metadata: { name: 't' },
      spec: { secretTargetRef: [{ parameter: 'host', name: 's' }] },
    };
    expect(validate(ta).join('\n')).toMatch(/required property 'key'/);
    expect(validate({ ...good, kind: 'ScaledThing' })).toEqual(['no CRD for keda.sh/v1alpha1 ScaledThing']);
  });
});

describe('deploy/ manifests', () => {
  it('parse, and each is applied by an overlay or is a documented standalone file', () => {
    const used = new Set([...builds.values()].flatMap((b) => [...b.files]));
    const standalone = (f: string) =>
      f.startsWith(join(DEPLOY, 'alternatives')) ||
      f.startsWith(join(DEPLOY, 'monitoring')) ||
      f.endsWith('secret.example.yaml');
    expect(allFiles.filter((f) => !used.has(f) && !standalone(f)).map((f) => relative(DEPLOY, f))).toEqual(
      [],
    );
    expect(kedaDocs.length).toBeGreaterThanOrEqual(5);
  });

  it.each(kedaDocs.map(({ file, r }) => [`${file} ${r.kind}/${r.metadata.name}`, r] as const))(
    '%s is valid against the KEDA CRD',
    (_name, r) => {
      expect(validate(r)).toEqual([]);
    },
  );

  it('has one overlay per event bus, each setting EVENT_BUS and scaling projections once', () => {
    expect(overlays.sort()).toEqual(['bullmq', 'kafka', 'rabbitmq', 'sqs']);
    for (const [bus, { resources }] of builds) {
      expect(named(resources, 'ConfigMap', 'conveyor-config')?.data?.EVENT_BUS).toBe(bus);
      const projections = byKind(resources, 'ScaledObject').filter(
        (s) => at(s, 'spec', 'scaleTargetRef', 'name') === 'conveyor-worker-projections',
      );
      expect(projections).toHaveLength(1);
    }
  });

  describe.each([...builds.keys()])('overlay %s', (bus) => {
    const { resources } = builds.get(bus)!;
    const config = named(resources, 'ConfigMap', 'conveyor-config')!.data!;
    const graceSeconds = Number(config.SHUTDOWN_GRACE_MS ?? defaultGraceMs) / 1_000;
    const deployments = byKind(resources, 'Deployment');

    it('Deployments: image, probes on /readyz and /healthz, grace > SHUTDOWN_GRACE_MS, resources, config refs', () => {
      // The API, the dashboard, and one worker per worker kind (every registered module, outbox, projections).
      expect(deployments.map((d) => d.metadata.name).sort()).toEqual(
        [
          'conveyor-api',
          'conveyor-dashboard',
          ...loadConfig({}, { modules: MODULES }).workers.kinds.map((k) => `conveyor-worker-${k}`),
        ].sort(),
      );
      for (const d of deployments) {
        const [c, ...more] = containersOf(d);
        const where = d.metadata.name;
        expect(more, where).toEqual([]);
        expect(c!.image, where).toMatch(/^[a-z0-9./-]+:(?!latest$)[\w.-]+$/);
        const ports = (c!.ports as Obj[]).flatMap((p) => [p.name, p.containerPort]);
        for (const [probe, path] of [
          ['readinessProbe', '/readyz'],
          ['livenessProbe', '/healthz'],
        ] as const) {
          expect(at(c, probe, 'httpGet', 'path'), `${where} ${probe}`).toBe(path);
          expect(ports, `${where} ${probe} port`).toContain(at(c, probe, 'httpGet', 'port'));
        }
        const preStop = at(c, 'lifecycle', 'preStop', 'exec', 'command') as string[] | undefined;
        const preStopSeconds = preStop?.[0] === 'sleep' ? Number(preStop[1]) : 0;
        const grace = at(d, 'spec', 'template', 'spec', 'terminationGracePeriodSeconds') as number;
        expect(grace, where).toBeGreaterThan(graceSeconds + preStopSeconds);
        for (const kind of ['requests', 'limits']) {
          expect(Object.keys((at(c, 'resources', kind) ?? {}) as Obj).sort(), `${where} ${kind}`).toEqual([
            'cpu',
            'memory',
          ]);
        }
        const envFrom = (c!.envFrom ?? []) as Obj[];
        expect(envFrom.map((e) => at(e, 'configMapRef', 'name') ?? at(e, 'secretRef', 'name'))).toEqual([
          'conveyor-config',
          'conveyor-secrets',
        ]);
      }
    });

    it('listens where the ConfigMap says: PORT, METRICS_PORT, DASHBOARD_PORT', () => {
      const port = (name: string) =>
        at(containersOf(named(resources, 'Deployment', name)!)[0], 'ports', 0, 'containerPort');
      expect(port('conveyor-api')).toBe(Number(config.PORT));
      expect(port('conveyor-dashboard')).toBe(Number(config.DASHBOARD_PORT));
      for (const kind of loadConfig({}, { modules: MODULES }).workers.kinds)
        expect(port(`conveyor-worker-${kind}`)).toBe(Number(config.METRICS_PORT));
    });

    it('runs each worker kind in exactly one Deployment, with a WORKER_KINDS the config accepts', () => {
      const workers = deployments.filter((d) =>
        (containersOf(d)[0]!.command as string[]).includes('dist/workers/main.js'),
      );
      const kinds = workers.flatMap((d) => {
        const env = (containersOf(d)[0]!.env ?? []) as { name: string; value: string }[];
        const value = env.find((e) => e.name === 'WORKER_KINDS')?.value;
        expect(value, d.metadata.name).toBeDefined();
        return loadConfig({ WORKER_KINDS: value }, { modules: MODULES }).workers.kinds;
      });
      // One Deployment per kind, and every kind the registry knows (a module without one would never run).
      expect(kinds.sort()).toEqual([...loadConfig({}, { modules: MODULES }).workers.kinds].sort());
    });

    it('Services select a Deployment and target a named container port', () => {
      for (const s of byKind(resources, 'Service')) {
        const selector = at(s, 'spec', 'selector') as Obj;
        const d = deployments.find((dep) =>
          Object.entries(selector).every(
            ([k, v]) => at(dep, 'spec', 'template', 'metadata', 'labels', k) === v,
          ),
        );
        expect(d, s.metadata.name).toBeDefined();
        const names = (containersOf(d!)[0]!.ports as Obj[]).map((p) => p.name);
        for (const p of at(s, 'spec', 'ports') as Obj[]) expect(names).toContain(p.targetPort);
      }
    });

    it('ScaledObjects target existing Deployments, with authenticationRefs that exist and activation thresholds', () => {
      const scaled = byKind(resources, 'ScaledObject');
      expect(scaled.length).toBeGreaterThanOrEqual(2);
      for (const so of scaled) {
        expect(
          named(resources, 'Deployment', at(so, 'spec', 'scaleTargetRef', 'name') as string),
          so.metadata.name,
        ).toBeDefined();
        for (const t of at(so, 'spec', 'triggers') as Obj[]) {
          const ref = at(t, 'authenticationRef', 'name') as string | undefined;
          if (ref) expect(named(resources, 'TriggerAuthentication', ref), ref).toBeDefined();
          expect(
            Object.keys(t.metadata as Obj).some((k) => k.startsWith('activation')),
            `${so.metadata.name} activation`,
          ).toBe(true);
        }
      }
    });

    it('points each trigger at what the code serves: /v1/scaling/{queue} backlog, the Kafka group, the RabbitMQ and SQS queues', () => {
      for (const t of byKind(resources, 'ScaledObject').flatMap(
        (so) => at(so, 'spec', 'triggers') as Obj[],
      )) {
        const m = t.metadata as Record<string, string>;
        if (t.type === 'metrics-api') {
          const url = new URL(m.url!);
          const [service, namespace] = url.hostname.split('.');
          const svc = named(resources, 'Service', service!);
          expect(svc?.metadata.namespace).toBe(namespace);
          expect((at(svc, 'spec', 'ports') as Obj[]).map((p) => String(p.port))).toContain(url.port);
          expect(allQueueNames(MODULES)).toContain(/^\/v1\/scaling\/(.+)$/.exec(url.pathname)?.[1]);
          expect(Object.keys(ScalingSchema.shape)).toContain(m.valueLocation);
          expect(m.authMode).toBe('bearer');
        } else if (t.type === 'kafka') {
          expect([m.bootstrapServers, m.consumerGroup, m.topic]).toEqual([
            config.KAFKA_BROKERS,
            config.KAFKA_GROUP_ID,
            config.KAFKA_TOPIC,
          ]);
        } else if (t.type === 'rabbitmq') {
          expect(m.queueName).toBe(config.RABBITMQ_QUEUE);
        } else if (t.type === 'aws-sqs-queue') {
          // The projections group's queue as the bus names it, in the region and endpoint it uses.
          const sqs = loadConfig(config, { modules: MODULES }).bus.sqs;
          expect(config.EVENT_BUS).toBe('sqs');
          expect(m.queueURL).toBe(sqsGroupQueues(sqs).queue);
          expect(m.awsRegion).toBe(sqs.region);
          expect(new URL(sqs.endpoint).hostname).toBe(`sqs.${sqs.region}.amazonaws.com`);
          // The backlog nobody holds: in-flight messages are the replicas' own prefetch.
          expect(m.scaleOnInFlight).toBe('false');
        } else {
          throw new Error(`unexpected trigger type ${String(t.type)}`);
        }
      }
      const kafka = byKind(resources, 'ScaledObject').find(
        (so) => at(so, 'spec', 'triggers', 0, 'type') === 'kafka',
      );
      // More consumers than partitions would idle.
      if (kafka)
        expect(at(kafka, 'spec', 'maxReplicaCount')).toBeLessThanOrEqual(Number(config.KAFKA_PARTITIONS));
    });
  });

  it('reads every TriggerAuthentication secret key from the Secrets the example documents', () => {
    const secrets = parseYaml(join(DEPLOY, 'base', 'secret.example.yaml'));
    for (const { r } of kedaDocs.filter((d) => d.r.kind === 'TriggerAuthentication')) {
      for (const ref of (at(r, 'spec', 'secretTargetRef') ?? []) as { name: string; key: string }[]) {
        expect(
          Object.keys((named(secrets, 'Secret', ref.name)?.stringData ?? {}) as Obj),
          `${ref.name}/${ref.key}`,
        ).toContain(ref.key);
      }
    }
  });

  it('keeps standalone ScaledObjects pointed at base Deployments', () => {
    const base = build(join(DEPLOY, 'base')).resources;
    for (const { file, r } of kedaDocs.filter(
      (d) => d.file.startsWith('alternatives') && d.r.kind === 'ScaledObject',
    )) {
      expect(
        named(base, 'Deployment', at(r, 'spec', 'scaleTargetRef', 'name') as string),
        file,
      ).toBeDefined();
    }
  });
});

describe('alerting rules (deploy/monitoring)', () => {
  // Prometheus rules for work that sits where no operator looks; promtool (apt package "prometheus",
  // scripts/install-promtool.sh) checks them and runs their unit tests.
  const rules = join(DEPLOY, 'monitoring', 'conveyor-alerts.yaml');
  const tests = join(DEPLOY, 'monitoring', 'conveyor-alerts.test.yaml');
  const promtool = (...args: string[]) => {
    const res = spawnSync('promtool', args, { encoding: 'utf8' });
    if (res.error)
      throw new Error(
        'promtool is not installed: run `bash scripts/install-promtool.sh` (apt package "prometheus")',
      );
    return { status: res.status, output: `${res.stdout}${res.stderr}`.trim() };
  };
  type RuleFile = { groups: { rules: { alert?: string; expr: string }[] }[] };
  type TestFile = { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] };
  const alerts = (parseYaml(rules) as unknown as RuleFile[])[0]!.groups.flatMap((g) => g.rules);

  it('pass `promtool check rules`', () => {
    expect(promtool('check', 'rules', rules)).toMatchObject({ status: 0 });
  });

  it('pass their `promtool test rules` unit tests, and every alert has a case where it fires', () => {
    const run = promtool('test', 'rules', tests);
    expect(run, run.output).toMatchObject({ status: 0 });
    const fired = new Set(
      (parseYaml(tests) as unknown as TestFile[])[0]!.tests.flatMap((t) =>
        (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
      ),
    );
    expect(alerts.map((a) => a.alert).filter((name) => !fired.has(name!))).toEqual([]);
  });

  it('name only metrics the code exports', () => {
    const source = ['collectors.ts', 'metrics.ts', 'event-loop.ts']
      .map((f) => readFileSync(join(DEPLOY, '..', 'shared', 'observability', f), 'utf8'))
      .join('\n');
    const used = new Set(alerts.flatMap((a) => a.expr.match(/\bconveyor_[a-z_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(0);
    expect([...used].filter((m) => !source.includes(`name: '${m}'`))).toEqual([]);
  });
});
