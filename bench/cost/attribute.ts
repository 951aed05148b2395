import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';

/**
 * Attributes the commands of a MONITOR capture (bench/cost/drain.ts `monitorFile`) to their origin:
 * a script call and every command it ran count for the script (BullMQ's by name, from its own script
 * sources; others by SHA), a plain command for itself — each named with the queue its first key
 * belongs to (`<prefix>:<queue>:…`). Per order: divide by the orders drained.
 */

export interface Origin {
  origin: string;
  /** Calls from clients (a script call counts once). */
  calls: number;
  /** Every command Redis ran for it: the calls plus the commands inside scripts. */
  commands: number;
  /** The commands inside its scripts, by name. */
  inner: Map<string, number>;
}

/** SHA1 → name of every BullMQ script, as ioredis's defineCommand computes it (from BullMQ's own sources). */
async function bullmqScriptNames(): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  const dir = fileURLToPath(new URL('../../node_modules/bullmq/dist/esm/scripts/', import.meta.url));
  for (const file of await readdir(dir)) {
    if (!/-\d+\.js$/.test(file)) continue;
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as Record<
      string,
      { name?: unknown; content?: unknown }
    >;
    for (const s of Object.values(mod)) {
      if (typeof s?.content === 'string' && typeof s.name === 'string')
        names.set(createHash('sha1').update(s.content).digest('hex'), s.name);
    }
  }
  return names;
}

/** The queue a key names, after the prefix: `cv_x:orders:wait` → `orders`, `cv_x:events.projections:1` → `events.projections`. */
function queueOf(key: string | undefined, prefix: string): string {
  if (!key) return '-';
  const rest = key.startsWith(`${prefix}:`) ? key.slice(prefix.length + 1) : key.replace(/^\{[^}]*\}:/, '');
  const part = rest.split(':')[0] ?? '';
  return part === '' ? '-' : part;
}

/**
 * Reads a capture and groups it by origin. `extraScripts` names scripts of ours by SHA1 (e.g. the
 * fair queue's), `prefix` is the stack's QUEUE_PREFIX.
 */
export async function attribute(
  file: string,
  prefix: string,
  extraScripts: ReadonlyMap<string, string> = new Map(),
): Promise<Origin[]> {
  const names = new Map([...(await bullmqScriptNames()), ...extraScripts]);
  const origins = new Map<string, Origin>();
  const get = (origin: string) => {
    let o = origins.get(origin);
    if (!o) origins.set(origin, (o = { origin, calls: 0, commands: 0, inner: new Map() }));
    return o;
  };
  let current: Origin | undefined;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    const [source, command = '', ...args] = JSON.parse(line) as string[];
    const cmd = command.toLowerCase();
    if (source === 'lua') {
      // Redis feeds a script's call before the commands it runs (all of them before the next call).
      const o = current ?? get('(script commands, script not seen)');
      o.commands += 1;
      o.inner.set(cmd, (o.inner.get(cmd) ?? 0) + 1);
      continue;
    }
    let origin: string;
    if (cmd === 'evalsha' || cmd === 'eval') {
      const sha =
        cmd === 'eval'
          ? createHash('sha1')
              .update(args[0] ?? '')
              .digest('hex')
          : (args[0] ?? '');
      const nkeys = Number(args[1] ?? 0);
      const name = names.get(sha) ?? `${cmd} ${sha.slice(0, 8)}`;
      origin = `${name} @ ${nkeys > 0 ? queueOf(args[2], prefix) : '-'}`;
    } else if (cmd === 'multi' || cmd === 'exec') {
      origin = cmd;
    } else {
      origin = `${cmd} @ ${queueOf(args[0], prefix)}`;
    }
    current = get(origin);
    current.calls += 1;
    current.commands += 1;
  }
  return [...origins.values()].sort((a, b) => b.commands - a.commands);
}

/** The capture as a markdown table, per order. */
export function renderAttribution(origins: readonly Origin[], orders: number): string {
  const total = origins.reduce((s, o) => s + o.commands, 0);
  const f = (n: number) => (n / orders).toFixed(3);
  const rows = origins
    .filter((o) => o.commands / orders >= 0.001)
    .map((o) => {
      const inner = [...o.inner]
        .sort((a, b) => b[1] - a[1])
        .map(([c, n]) => `${c} ${f(n)}`)
        .join(', ');
      return `| ${o.origin} | ${f(o.calls)} | ${f(o.commands)} | ${inner} |`;
    });
  return [
    `| origin (script or command @ queue) | calls / order | commands / order | inside the script, per order |`,
    '|---|---:|---:|---|',
    ...rows,
    `| **total** | ${f(origins.reduce((s, o) => s + o.calls, 0))} | ${f(total)} | |`,
  ].join('\n');
}
