import type { Redis } from '../queue/redis.ts';
import type { Tenant } from './tenants.ts';

/**
 * Fair execution for one module's command queue: commands take their turn across tenants in weighted
 * round-robin order instead of FIFO over everything, on open-source BullMQ.
 *
 * How: BullMQ keeps executing every command (locks, retries, stalled recovery, events). What changes is
 * how a job reaches its wait list. The API asks {@link FairQueue.admit} first, in one script per bulk:
 * a tenant with nothing waiting, under its in-flight limit, while the wait list is shorter than
 * `depth`, goes straight in (`direct`: added as today). Otherwise the job is added *held* — a BullMQ
 * delayed job whose delay is `holdMs` — and its id is appended to its tenant's list. Workers call
 * {@link FairQueue.dispatch} whenever jobs finish (and on a timer): one script that releases their
 * in-flight slots and tops the wait list up to `depth`, taking from the tenants in turn — a tenant of
 * weight w takes w in a row — and promoting each chosen job the way BullMQ's `promote` does.
 *
 * So the wait list never holds more than about `depth` jobs, in round-robin order, and a tenant that
 * posts one command waits behind at most those, not behind a flood. Every key lives under the queue's
 * BullMQ prefix (on a cluster its hash tag), so both scripts run in the queue's slot.
 *
 * Safety: a held job is a BullMQ job from the start (its id deduplicates, its state is `delayed`, the
 * API's status reads work), and its id is registered *before* it is added, so no job is ever held
 * without a turn coming; an id whose add never arrived is dropped after `pendingGraceMs`. Should the
 * lists themselves be lost, BullMQ runs a held job by itself once its hold expires. A tenant's
 * in-flight slots are released by the worker that finished the job; a worker killed between finishing
 * and releasing leaves a slot taken, which the sweep (part of the periodic dispatch) gives back by
 * reading the job's own state.
 */
export interface FairQueue {
  readonly queue: string;
  /**
   * Decides, per job in order, how it enters the queue; run it (on the connection that will add the
   * jobs) before adding them, and add `held` ones with `delay: holdMs`.
   * - `direct`: add it as usual.
   * - `held`: add it with the hold delay; its turn promotes it.
   * - `over-quota`: its tenant's backlog quota is full: do not add it (answer 429).
   * - `exists`: a job of that id is already there (a retried request): adding it again is a no-op.
   */
  admit(client: Redis, jobs: readonly FairJob[]): Promise<Admission[]>;
  /** Releases `finished` jobs' slots and tops the wait list up; see {@link DispatchResult}. */
  dispatch(client: Redis, finished: readonly string[], options?: DispatchOptions): Promise<DispatchResult>;
  /** The tenants with the most commands waiting (at most `top`), and the rest summed. */
  backlog(client: Redis, top: number): Promise<FairBacklog>;
}

export type Admission = 'direct' | 'held' | 'over-quota' | 'exists';

export interface FairJob {
  id: string;
  tenant: Tenant;
}

/**
 * The calling worker's slots, registered with each call: while any worker is registered, tenants with a
 * backlog share at most (every live worker's `slots` − `reserve`, summed) of the wait list and the
 * active jobs together, so `reserve` slots stay free for commands of tenants without one (a quiet
 * producer's order is taken at once instead of when a flood's micro-batch ends). Unregistered workers
 * (none at all): no cap.
 */
export interface WorkerSlots {
  /** Unique per worker (process and queue). */
  id: string;
  /** Its BullMQ concurrency, reserve included; 0 = it leaves (a graceful close). */
  slots: number;
  /** Of those, kept for tenants without a backlog. */
  reserve: number;
  /** Forgotten this long after its last call (a worker killed without leaving). */
  ttlMs: number;
}

export interface DispatchOptions {
  /** Also give back slots whose job finished without it (its worker died), see the module doc. */
  sweep?: boolean;
  worker?: WorkerSlots;
  /**
   * Active jobs of the calling worker whose effect committed and which it is about to complete: the
   * share cap counts their room as free already, and idle workers are not woken — each finishing job
   * takes one of those promoted as it completes (BullMQ's fetch-next), in the same call, instead of
   * the worker fetching them one by one afterwards. No effect without registered workers.
   */
  finishing?: number;
}

export interface DispatchResult {
  /** Jobs moved into the wait list by this call. */
  promoted: number;
  /** Tenants still waiting for a turn (eligible, not at their in-flight limit). */
  waitingTenants: number;
}

export interface TenantBacklog {
  tenant: string;
  /** Its commands waiting for their turn. */
  waiting: number;
  /** When its oldest waiting command was accepted (ms since the epoch); null with none waiting. */
  oldestAt: number | null;
  /** Its commands handed to the workers and not yet decided (tracked only for tenants with a limit). */
  inFlight: number;
  /** Its commands handed to the workers since the counters began (monotonic). */
  started: number;
  weight: number;
  maxInFlight: number;
  /** At its in-flight limit with commands waiting. */
  blocked: boolean;
}

export interface FairBacklog {
  tenants: TenantBacklog[];
  /** Every other tenant with commands waiting, summed. */
  others: { tenants: number; waiting: number; oldestAt: number | null; started: number };
  /** Commands handed to the workers since the counters began, every tenant. */
  startedTotal: number;
}

export interface FairSettings {
  /** The wait list is topped up to this many jobs; more wait their turn. */
  depth: number;
  /** A held job's delay: BullMQ runs it by itself after this long should its turn never come. */
  holdMs: number;
  /** How long a registered id whose job is not there yet keeps its place (its add is on its way). */
  pendingGraceMs?: number;
}

/** BullMQ's keys of a queue and ours beside them, all under `jobPrefix` (`<bullmq prefix>:<queue>:`). */
function keysOf(jobPrefix: string) {
  const fair = `${jobPrefix}fair:`;
  return {
    fair,
    list: [
      `${jobPrefix}wait`, // 1
      `${fair}ring`, // 2 tenants with commands waiting and room in flight, in turn order
      `${fair}backlog`, // 3 zset tenant → commands waiting
      `${fair}policy`, // 4 hash tenant → "weight|maxInFlight"
      `${fair}owner`, // 5 hash job id → tenant, for jobs counted in flight
      `${fair}started`, // 6 hash tenant → commands handed to workers ("*": all)
      `${fair}blocked`, // 7 set of tenants at their in-flight limit with commands waiting
      `${jobPrefix}meta`, // 8
      `${jobPrefix}active`, // 9
      `${jobPrefix}paused`, // 10
      `${jobPrefix}delayed`, // 11
      `${jobPrefix}marker`, // 12
      `${jobPrefix}events`, // 13
      `${fair}credit`, // 14 hash tenant → turns left in its current go
      `${fair}fresh`, // 15 set of tenants that just began waiting: their first promotion goes to the front
      `${fair}workers`, // 16 hash worker id → "slots|reserve|expiresAt": the workers' slots, for the share cap
    ],
  };
}

const ADMIT = `
local fp, jp, now, depth = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rcall = redis.call
local paused = rcall('HEXISTS', KEYS[8], 'paused') == 1
local waiting = rcall('LLEN', paused and KEYS[10] or KEYS[1])
-- The share cap (see DISPATCH): past it, only a tenant without a backlog goes straight in, with the
-- first job of its bulk — the slots the workers keep free are for it.
local room = nil
local registered = rcall('HGETALL', KEYS[16])
if #registered > 0 then
  local slots, reserve = 0, 0
  for k = 1, #registered, 2 do
    local s, r, untilAt = string.match(registered[k + 1], '^(%d+)|(%d+)|(%d+)$')
    if s and tonumber(untilAt) >= tonumber(now) then
      slots = slots + tonumber(s)
      reserve = reserve + tonumber(r)
    end
  end
  if slots > 0 then room = slots - reserve - waiting - rcall('LLEN', KEYS[9]) end
end
local out = {}
local i = 5
local all = 0
while i <= #ARGV do
  local t, weight, max, quota, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  i = i + 5
  local heldKey = fp .. 'held:' .. t
  local runKey = fp .. 'run:' .. t
  rcall('HSET', KEYS[4], t, weight .. '|' .. max)
  local held = rcall('LLEN', heldKey)
  local before = held
  local running = 0
  if max > 0 then running = rcall('ZCARD', runKey) end
  local direct = 0
  for k = 1, n do
    local id = ARGV[i]
    i = i + 1
    if rcall('EXISTS', jp .. id) == 1 then
      out[#out + 1] = 3
    elseif held == 0 and waiting < depth and (max == 0 or running < max) and (room == nil or room > 0 or k == 1) then
      if room then room = room - 1 end
      waiting = waiting + 1
      direct = direct + 1
      out[#out + 1] = 0
      if max > 0 then
        running = running + 1
        rcall('ZADD', runKey, now, id)
        rcall('HSET', KEYS[5], id, t)
      end
    elseif quota > 0 and held >= quota then
      out[#out + 1] = 2
    else
      rcall('RPUSH', heldKey, now .. '|' .. id)
      held = held + 1
      out[#out + 1] = 1
    end
  end
  if direct > 0 then
    rcall('HINCRBY', KEYS[6], t, direct)
    all = all + direct
  end
  if held > before then
    rcall('ZADD', KEYS[3], held, t)
    if before == 0 then
      if max > 0 and running >= max then
        rcall('SADD', KEYS[7], t)
      else
        rcall('RPUSH', KEYS[2], t)
        -- Its first promotion goes to the front, unless this bulk also put some of its own straight in
        -- (they would be overtaken by their own later ones).
        if direct == 0 then rcall('SADD', KEYS[15], t) end
      end
    end
  end
end
if all > 0 then rcall('HINCRBY', KEYS[6], '*', all) end
return out
`;

const DISPATCH = `
local fp, jp, now, depth, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local sweep = ARGV[6] == '1'
local rcall = redis.call
-- The calling worker's slots (ARGV[7..10]: id, slots, reserve, ttl; slots 0 = it leaves), then every
-- live worker's summed: backlogged tenants share at most slots - reserve of them (wait + active).
if ARGV[7] ~= '' then
  if tonumber(ARGV[8]) > 0 then
    rcall('HSET', KEYS[16], ARGV[7], ARGV[8] .. '|' .. ARGV[9] .. '|' .. (now + tonumber(ARGV[10])))
  else
    rcall('HDEL', KEYS[16], ARGV[7])
  end
end
local cap = -1
local registered = rcall('HGETALL', KEYS[16])
if #registered > 0 then
  local slots, reserve = 0, 0
  for k = 1, #registered, 2 do
    local s, r, untilAt = string.match(registered[k + 1], '^(%d+)|(%d+)|(%d+)$')
    if not s or tonumber(untilAt) < now then
      rcall('HDEL', KEYS[16], registered[k])
    else
      slots = slots + tonumber(s)
      reserve = reserve + tonumber(r)
    end
  end
  if slots > 0 then cap = slots - reserve end
end
local policies = {}
local function policyOf(t)
  local p = policies[t]
  if not p then
    local raw = rcall('HGET', KEYS[4], t) or '1|0'
    local bar = string.find(raw, '|', 1, true)
    p = { tonumber(string.sub(raw, 1, bar - 1)), tonumber(string.sub(raw, bar + 1)) }
    policies[t] = p
  end
  return p[1], p[2]
end
local function unblockIfRoom(t)
  if rcall('SISMEMBER', KEYS[7], t) == 1 then
    local _, max = policyOf(t)
    if max == 0 or rcall('ZCARD', fp .. 'run:' .. t) < max then
      rcall('SREM', KEYS[7], t)
      rcall('RPUSH', KEYS[2], t)
    end
  end
end
-- Finished jobs give their tenant's slot back. Only jobs of tenants with an in-flight limit hold
-- one: with none held, the ids are not looked up one by one.
if #ARGV >= 12 and rcall('HLEN', KEYS[5]) > 0 then
  for k = 12, #ARGV do
    local id = ARGV[k]
    local t = rcall('HGET', KEYS[5], id)
    if t then
      rcall('HDEL', KEYS[5], id)
      rcall('ZREM', fp .. 'run:' .. t, id)
      unblockIfRoom(t)
    end
  end
end
-- No tenant waiting for a turn (none in the ring, none just begun): nothing to promote — the common
-- case of workers draining what went straight to the wait list. Such a call costs four commands
-- instead of seven plus one per finished job. The sweep always runs in full.
if not sweep and rcall('LLEN', KEYS[2]) == 0 and rcall('SCARD', KEYS[15]) == 0 then return { 0, 0 } end
-- The sweep: a slot whose job finished (or is gone) without being given back — its worker died.
if sweep then
  for _, t in ipairs(rcall('SMEMBERS', KEYS[7])) do
    local runKey = fp .. 'run:' .. t
    local slots = rcall('ZRANGE', runKey, 0, -1, 'WITHSCORES')
    for k = 1, #slots, 2 do
      local id, since = slots[k], tonumber(slots[k + 1])
      local jobKey = jp .. id
      -- A job not there yet may be on its way (admitted straight in, its add not arrived): only past
      -- the grace is a missing job taken for gone.
      local gone = rcall('EXISTS', jobKey) == 0 and now - since >= grace
      if gone or rcall('HEXISTS', jobKey, 'finishedOn') == 1 then
        rcall('ZREM', runKey, id)
        rcall('HDEL', KEYS[5], id)
      end
    end
    unblockIfRoom(t)
  end
end
-- Top the wait list up to depth, tenants in turn (as BullMQ's getTargetQueueList: not while paused).
local meta = rcall('HMGET', KEYS[8], 'paused', 'concurrency', 'opts.maxLenEvents')
if meta[1] then return { 0, rcall('LLEN', KEYS[2]) } end
local maxEvents = meta[3] or 10000
local promoted = 0
local deferred = 0
local startedBy = {}
local counted = {}
-- BullMQ's promote (promote-9.lua): into the wait list, its event, no delay left. \`front\`: to the end
-- workers take from next.
local function promote(t, id, max, front)
  if front then rcall('RPUSH', KEYS[1], id) else rcall('LPUSH', KEYS[1], id) end
  rcall('XADD', KEYS[13], 'MAXLEN', '~', maxEvents, '*', 'event', 'waiting', 'jobId', id, 'prev', 'delayed')
  rcall('HSET', jp .. id, 'delay', 0)
  if max > 0 then
    rcall('ZADD', fp .. 'run:' .. t, now, id)
    rcall('HSET', KEYS[5], id, t)
  end
  startedBy[t] = (startedBy[t] or 0) + 1
  promoted = promoted + 1
end
-- A tenant that just began waiting goes first, to the end workers take from next (as a start-time fair
-- queue gives a newly active flow the current time): within the depth, and under the share cap past
-- both — the slots kept free are for such commands. One order of a quiet producer neither queues
-- behind the depth of a flood's nor (with reserved slots) waits for a slot the flood holds. Its later
-- ones wait their turn at the back.
local free = depth - rcall('LLEN', KEYS[1])
for _, t in ipairs(rcall('SMEMBERS', KEYS[15])) do
  -- Past the depth only under the share cap (the slots kept free are for them).
  if cap < 0 and free <= 0 then break end
  local _, max = policyOf(t)
  local heldKey = fp .. 'held:' .. t
  local entry = rcall('LINDEX', heldKey, 0)
  local id = entry and string.sub(entry, string.find(entry, '|', 1, true) + 1)
  if not entry then
    rcall('SREM', KEYS[15], t)
  elseif (max == 0 or rcall('ZCARD', fp .. 'run:' .. t) < max) and rcall('ZREM', KEYS[11], id) == 1 then
    rcall('LPOP', heldKey)
    rcall('SREM', KEYS[15], t)
    promote(t, id, max, true)
    free = free - 1
    local left = rcall('LLEN', heldKey)
    if left == 0 then
      rcall('LREM', KEYS[2], 1, t)
      rcall('ZREM', KEYS[3], t)
      rcall('HDEL', KEYS[14], t)
    else
      counted[t] = left
    end
  end
  -- Otherwise (at its limit, its add not arrived, promoted by other means) its turn in the ring decides.
end
-- \`finishing\` (ARGV[11]): active jobs whose effect committed and that a worker is about to complete
-- — their room is given now, so that each, completing, takes the next job in the same call.
local finishing = tonumber(ARGV[11])
local budget = depth - rcall('LLEN', KEYS[1])
if cap >= 0 then
  local room = cap - rcall('LLEN', KEYS[1]) - rcall('LLEN', KEYS[9]) + finishing
  if room < budget then budget = room end
end
local guard = budget + rcall('LLEN', KEYS[2]) + 16
while budget > 0 and guard > 0 do
  guard = guard - 1
  local t = rcall('LINDEX', KEYS[2], 0)
  if not t then break end
  local weight, max = policyOf(t)
  local heldKey = fp .. 'held:' .. t
  local runKey = fp .. 'run:' .. t
  if max > 0 and rcall('ZCARD', runKey) >= max then
    rcall('LPOP', KEYS[2])
    rcall('SADD', KEYS[7], t)
    rcall('HDEL', KEYS[14], t)
  else
    local entry = rcall('LPOP', heldKey)
    local rotate = false
    if entry then
      local bar = string.find(entry, '|', 1, true)
      local at = tonumber(string.sub(entry, 1, bar - 1))
      local id = string.sub(entry, bar + 1)
      if rcall('ZREM', KEYS[11], id) == 1 then
        promote(t, id, max, rcall('SREM', KEYS[15], t) == 1)
        budget = budget - 1
        if weight == 1 then
          rotate = true
        else
          local credit = tonumber(rcall('HGET', KEYS[14], t) or weight) - 1
          if credit <= 0 then
            rcall('HDEL', KEYS[14], t)
            rotate = true
          else
            rcall('HSET', KEYS[14], t, credit)
          end
        end
      elseif rcall('EXISTS', jp .. id) == 0 and now - at < grace then
        -- Registered, its add not arrived yet: it keeps its place and the turn moves on.
        rcall('LPUSH', heldKey, entry)
        rotate = true
        deferred = deferred + 1
      end
      -- Otherwise it was promoted by other means (its hold ran out, an operator) or is gone: dropped.
    end
    local left = rcall('LLEN', heldKey)
    if left == 0 then
      counted[t] = nil
      rcall('LPOP', KEYS[2])
      rcall('SREM', KEYS[15], t)
      rcall('ZREM', KEYS[3], t)
      rcall('HDEL', KEYS[14], t)
    else
      counted[t] = left
      if rotate then rcall('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT') end
    end
    if deferred > 0 and deferred >= rcall('LLEN', KEYS[2]) then break end
  end
end
for t, left in pairs(counted) do rcall('ZADD', KEYS[3], left, t) end
-- Wake idle workers for what was promoted — not for jobs promoted for the finishing ones: those take
-- them as they complete, and a worker woken would take them into the slots kept free instead. The
-- periodic call wakes them for anything waiting (promoted for a worker that then closed).
if finishing == 0 and (promoted > 0 or (sweep and rcall('LLEN', KEYS[1]) > 0)) then
  local maxed = meta[2] and rcall('LLEN', KEYS[9]) >= tonumber(meta[2])
  if not maxed then rcall('ZADD', KEYS[12], 0, '0') end
end
if promoted > 0 then
  for t, n in pairs(startedBy) do rcall('HINCRBY', KEYS[6], t, n) end
  rcall('HINCRBY', KEYS[6], '*', promoted)
end
return { promoted, rcall('LLEN', KEYS[2]) }
`;

const BACKLOG = `
local fp, top = ARGV[1], tonumber(ARGV[2])
local rcall = redis.call
local function oldest(t)
  local entry = rcall('LINDEX', fp .. 'held:' .. t, 0)
  if not entry then return -1 end
  return tonumber(string.sub(entry, 1, string.find(entry, '|', 1, true) - 1))
end
local ranked = rcall('ZREVRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local out = {}
local others, othersWaiting, othersOldest, topStarted = 0, 0, -1, 0
for i = 1, #ranked, 2 do
  local t, waiting = ranked[i], tonumber(ranked[i + 1])
  if (i + 1) / 2 <= top then
    local started = tonumber(rcall('HGET', KEYS[6], t) or 0)
    topStarted = topStarted + started
    out[#out + 1] = { t, waiting, oldest(t), rcall('ZCARD', fp .. 'run:' .. t), started,
      rcall('HGET', KEYS[4], t) or '1|0', rcall('SISMEMBER', KEYS[7], t) }
  else
    others = others + 1
    othersWaiting = othersWaiting + waiting
    local at = oldest(t)
    if at >= 0 and (othersOldest < 0 or at < othersOldest) then othersOldest = at end
  end
end
local all = tonumber(rcall('HGET', KEYS[6], '*') or 0)
return { out, { others, othersWaiting, othersOldest, all - topStarted }, all }
`;

/** The fair queue's Lua scripts by name (tools that attribute Redis commands recognise them by SHA1). */
export const FAIR_SCRIPTS: Readonly<Record<string, string>> = {
  fairAdmit: ADMIT,
  fairDispatch: DISPATCH,
  fairBacklog: BACKLOG,
};

type ScriptClient = Redis & {
  fairAdmit?: (...args: (string | number)[]) => Promise<number[]>;
  fairDispatch?: (...args: (string | number)[]) => Promise<[number, number]>;
  fairBacklog?: (...args: (string | number)[]) => Promise<unknown>;
};

/** The scripts on `client`, defined once per connection (ioredis then sends EVALSHA, loading on NOSCRIPT). */
function scripts(client: Redis): Required<Pick<ScriptClient, 'fairAdmit' | 'fairDispatch' | 'fairBacklog'>> {
  const c = client as ScriptClient;
  if (!c.fairAdmit) {
    const keys = keysOf('').list.length;
    client.defineCommand('fairAdmit', { numberOfKeys: keys, lua: ADMIT });
    client.defineCommand('fairDispatch', { numberOfKeys: keys, lua: DISPATCH });
    client.defineCommand('fairBacklog', { numberOfKeys: keys, lua: BACKLOG });
  }
  return c as Required<Pick<ScriptClient, 'fairAdmit' | 'fairDispatch' | 'fairBacklog'>>;
}

const CODES: readonly Admission[] = ['direct', 'held', 'over-quota', 'exists'];

/**
 * The {@link FairQueue} of the BullMQ queue whose job keys start with `jobPrefix` (BullMQ's
 * `queue.toKey('')`, e.g. `conveyor:orders:`; on a cluster `{conveyor:orders}:orders:`).
 * @example const fair = createFairQueue('orders', queue.toKey(''), { depth: 100, holdMs: 7 * 86_400_000 });
 */
export function createFairQueue(queue: string, jobPrefix: string, settings: FairSettings): FairQueue {
  const { fair, list } = keysOf(jobPrefix);
  const grace = settings.pendingGraceMs ?? 60_000;
  return {
    queue,
    async admit(client, jobs) {
      if (jobs.length === 0) return [];
      // One group per tenant, in first-seen order; answers come back in the jobs' own order.
      const groups = new Map<string, { tenant: FairJob['tenant']; at: number[] }>();
      jobs.forEach((job, at) => {
        const group = groups.get(job.tenant.id);
        if (group) group.at.push(at);
        else groups.set(job.tenant.id, { tenant: job.tenant, at: [at] });
      });
      const args: (string | number)[] = [fair, jobPrefix, Date.now(), settings.depth];
      const order: number[] = [];
      for (const { tenant, at } of groups.values()) {
        const p = tenant.policy;
        args.push(tenant.id, p.weight, p.maxInFlight, p.backlogQuota, at.length);
        for (const i of at) {
          args.push(jobs[i]!.id);
          order.push(i);
        }
      }
      const codes = await scripts(client).fairAdmit(...list, ...args);
      const out = new Array<Admission>(jobs.length);
      codes.forEach((code, k) => (out[order[k]!] = CODES[code] ?? 'direct'));
      return out;
    },
    async dispatch(client, finished, options) {
      const [promoted, waitingTenants] = await scripts(client).fairDispatch(
        ...list,
        fair,
        jobPrefix,
        Date.now(),
        settings.depth,
        grace,
        options?.sweep ? '1' : '0',
        options?.worker?.id ?? '',
        options?.worker ? Math.max(0, Math.floor(options.worker.slots)) : 0,
        options?.worker ? Math.max(0, Math.floor(options.worker.reserve)) : 0,
        options?.worker ? Math.max(1, Math.ceil(options.worker.ttlMs)) : 0,
        Math.max(0, Math.floor(options?.finishing ?? 0)),
        ...finished,
      );
      return { promoted, waitingTenants };
    },
    backlog: (client, top) => readFairBacklog(client, jobPrefix, top),
  };
}

/**
 * {@link FairQueue.backlog} of the queue whose job keys start with `jobPrefix`, for readers that
 * neither admit nor dispatch (metrics, the scaling endpoint, the console): no settings needed.
 */
export async function readFairBacklog(client: Redis, jobPrefix: string, top: number): Promise<FairBacklog> {
  const { fair, list } = keysOf(jobPrefix);
  const raw = (await scripts(client).fairBacklog(...list, fair, top)) as [
    [string, number, number, number, number, string, number][],
    [number, number, number, number],
    number,
  ];
  const [rows, others, all] = raw;
  return {
    tenants: rows.map(([tenant, waiting, oldestAt, inFlight, started, policy, blocked]) => {
      const [weight = '1', max = '0'] = policy.split('|');
      return {
        tenant,
        waiting: Number(waiting),
        oldestAt: Number(oldestAt) >= 0 ? Number(oldestAt) : null,
        inFlight: Number(inFlight),
        started: Number(started),
        weight: Number(weight),
        maxInFlight: Number(max),
        blocked: Number(blocked) === 1,
      };
    }),
    others: {
      tenants: Number(others[0]),
      waiting: Number(others[1]),
      oldestAt: Number(others[2]) >= 0 ? Number(others[2]) : null,
      started: Number(others[3]),
    },
    startedTotal: Number(all),
  };
}

/**
 * The fair queue of a command queue as producers use it (`JobTarget.fair`), from the configuration's
 * `fairness`; undefined with FAIRNESS off (FIFO, as BullMQ's).
 * @example const fair = fairTarget(config.fairness, 'orders', queue.toKey(''));
 */
export function fairTarget(
  fairness: { enabled: boolean; depth: number; holdMs: number },
  queue: string,
  jobPrefix: string,
): { queue: FairQueue; holdMs: number } | undefined {
  if (!fairness.enabled) return undefined;
  const { depth, holdMs } = fairness;
  return { queue: createFairQueue(queue, jobPrefix, { depth, holdMs }), holdMs };
}
