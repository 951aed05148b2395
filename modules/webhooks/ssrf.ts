import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Where a webhook may be sent. A destination's host is resolved and every address it resolves to
 * must be public: loopback, private (RFC 1918, fc00::/7), carrier-grade NAT (100.64/10), link-local
 * (169.254/16 — cloud metadata at 169.254.169.254 — and fe80::/10), "this network" (0/8),
 * multicast, reserved and documentation ranges are refused unless the allow-list
 * (`WEBHOOKS_ALLOWED_CIDRS`) names them. Checked when an endpoint is registered and again at each
 * delivery, whose connection then goes to the address checked (DNS may have changed since).
 */
const DENIED: readonly [string, number, 'ipv4' | 'ipv6'][] = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.0.2.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['198.51.100.0', 24, 'ipv4'],
  ['203.0.113.0', 24, 'ipv4'],
  ['224.0.0.0', 4, 'ipv4'],
  ['240.0.0.0', 4, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['64:ff9b:1::', 48, 'ipv6'],
  ['100::', 64, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

/** A refused destination: answered 422 at registration, a failed attempt at delivery. */
export class DestinationRefusedError extends Error {
  override readonly name = 'DestinationRefusedError';
}

/** The address a destination resolved to and passed the check: the connection goes there. */
export interface CheckedAddress {
  address: string;
  family: 4 | 6;
}

export interface DestinationPolicy {
  /** CIDRs allowed although they are in a denied range (e.g. `10.1.0.0/16`, `::1/128`). */
  allowedCidrs: readonly string[];
  /** Resolves a host name (tests may pin one); default: the system resolver, every address. */
  resolve?: (host: string) => Promise<CheckedAddress[]>;
}

function blockList(entries: readonly (readonly [string, number, 'ipv4' | 'ipv6'])[]): BlockList {
  const list = new BlockList();
  for (const [net, prefix, type] of entries) list.addSubnet(net, prefix, type);
  return list;
}

/** @throws {Error} naming a CIDR that does not parse. */
export function parseCidrs(cidrs: readonly string[]): BlockList {
  return blockList(
    cidrs.map((c) => {
      const [net = '', bits] = c.trim().split('/');
      const family = isIP(net);
      if (family === 0) throw new Error(`not a CIDR: ${c}`);
      const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128))
        throw new Error(`not a CIDR: ${c}`);
      return [net, prefix, family === 4 ? 'ipv4' : 'ipv6'] as const;
    }),
  );
}

const denied = blockList(DENIED);

/** The IPv4 address an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address carries. */
function embeddedIpv4(address: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return m[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return undefined;
  const hi = parseInt(hex[1]!, 16);
  const lo = parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why `address` may not be a destination, or undefined when it may. */
export function refusal(address: string, allowed: BlockList): string | undefined {
  const family = isIP(address);
  if (family === 0) return `${address} is not an IP address`;
  const v4 = family === 6 ? embeddedIpv4(address) : undefined;
  const [ip, type] = v4
    ? [v4, 'ipv4' as const]
    : [address, family === 4 ? ('ipv4' as const) : ('ipv6' as const)];
  if (allowed.check(ip, type) || (v4 && allowed.check(address, 'ipv6'))) return undefined;
  if (denied.check(ip, type))
    return `${address} is a loopback, private, link-local or reserved address (allow it with WEBHOOKS_ALLOWED_CIDRS)`;
  return undefined;
}

const systemResolve = async (host: string): Promise<CheckedAddress[]> =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

/** Checks a webhook URL's form: http(s), a host, no credentials. @throws {DestinationRefusedError} */
export function checkUrlForm(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DestinationRefusedError(`${raw} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new DestinationRefusedError(`${url.protocol} URLs are not allowed: use https (or http)`);
  if (url.username || url.password)
    throw new DestinationRefusedError('a webhook URL may not carry credentials');
  if (!url.hostname) throw new DestinationRefusedError('a webhook URL needs a host');
  return url;
}

/**
 * Resolves `url`'s host and checks every address it resolves to (all must pass: a name that also
 * resolves to a private address is refused, whatever order the resolver answers in).
 * @returns the address to connect to.
 * @throws {DestinationRefusedError} when the host does not resolve or an address is refused.
 */
export async function checkDestination(
  url: URL,
  policy: DestinationPolicy,
  allowed = parseCidrs(policy.allowedCidrs),
): Promise<CheckedAddress> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  let addresses: CheckedAddress[];
  const literal = isIP(host);
  if (literal !== 0) addresses = [{ address: host, family: literal === 6 ? 6 : 4 }];
  else {
    try {
      addresses = await (policy.resolve ?? systemResolve)(host);
    } catch (err) {
      throw new DestinationRefusedError(`${host} does not resolve: ${(err as Error).message}`);
    }
  }
  if (addresses.length === 0) throw new DestinationRefusedError(`${host} does not resolve`);
  for (const a of addresses) {
    const why = refusal(a.address, allowed);
    if (why) throw new DestinationRefusedError(`${host} resolves to ${why}`);
  }
  return addresses[0]!;
}
