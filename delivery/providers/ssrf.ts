// SSRF guard for outgoing requests to user-supplied URLs (webhooks): the host is resolved
// once, every address is checked against private, loopback, link-local, ULA, CGNAT,
// multicast and cloud-metadata ranges (also when an IPv6 address carries such an IPv4
// address), and the connection is pinned to the checked address so a second DNS answer
// (rebinding) cannot redirect it. Ranges are node:net BlockLists, not patterns over the
// address text: the same address has many spellings.
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';

const blockedV4 = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, incl. 169.254.169.254 metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments (incl. 192.0.0.192 Oracle metadata)
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, incl. broadcast
] as const) {
  blockedV4.addSubnet(net, prefix, 'ipv4');
}

const blockedV6 = new BlockList();
for (const [net, prefix] of [
  // IPv4-compatible (deprecated; some stacks still tunnel them to the IPv4 address), incl. :: and ::1.
  ['::', 96],
  ['100::', 64], // discard
  // NAT64 local-use (RFC 8215): where the IPv4 address sits depends on the operator's prefix
  // length (/48 to /96), so it cannot be read reliably; IANA lists it as not globally reachable.
  ['64:ff9b:1::', 48],
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation (RFC 9637)
  ['fc00::', 7], // unique local (incl. fd00:ec2::254 metadata)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blockedV6.addSubnet(net, prefix, 'ipv6');
}

/** IPv6 ranges that carry an IPv4 address (at byte `at`), which is what they reach and is checked instead. */
const EMBEDDING = (
  [
    ['::ffff:0:0', 96, 12], // IPv4-mapped
    ['::ffff:0:0:0', 96, 12], // IPv4-translated (SIIT, RFC 2765)
    ['64:ff9b::', 96, 12], // NAT64 well-known prefix (RFC 6052)
    ['2002::', 16, 2], // 6to4 (RFC 3056)
  ] as const
).map(([net, prefix, at]) => {
  const range = new BlockList();
  range.addSubnet(net, prefix, 'ipv6');
  return { range, at };
});

/** The 16 bytes of an IPv6 address that `isIP` accepted (hex groups, `::`, dotted IPv4 tail). */
function ipv6Bytes(ip: string): Uint8Array {
  let s = ip;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[2 * i] = n >> 8;
    bytes[2 * i + 1] = n & 255;
  });
  return bytes;
}

/**
 * True for addresses a webhook must never reach unless private targets are allowed: private,
 * loopback, link-local, CGNAT, ULA, multicast, documentation and reserved ranges, and IPv6
 * forms that lead to such an IPv4 address (mapped, SIIT, NAT64, 6to4, IPv4-compatible). The
 * same check applies to literal hosts and to every DNS answer (`resolveTarget`).
 */
export function isForbiddenAddress(address: string): boolean {
  // A zone (`fe80::1%eth0`) only scopes link-local and multicast addresses.
  if (address.includes('%')) return true;
  const v = isIP(address);
  if (v === 4) return blockedV4.check(address, 'ipv4');
  if (v !== 6) return true;
  if (blockedV6.check(address, 'ipv6')) return true;
  const embedding = EMBEDDING.find((e) => e.range.check(address, 'ipv6'));
  if (!embedding) return false;
  const b = ipv6Bytes(address).subarray(embedding.at, embedding.at + 4);
  return blockedV4.check(`${b[0]}.${b[1]}.${b[2]}.${b[3]}`, 'ipv4');
}

export interface ResolvedTarget {
  address: string;
  family: 4 | 6;
}

export type Resolver = (hostname: string) => Promise<ResolvedTarget[]>;

export const systemResolver: Resolver = async (hostname) => {
  const all = await dnsLookup(hostname, { all: true, verbatim: true });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export class ForbiddenTargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenTargetError';
  }
}

/**
 * Resolves `hostname` and returns the address to connect to. Refuses when any answer is a
 * forbidden address (a name that resolves to both a public and a private address is an attack,
 * not a misconfiguration), unless `allowPrivate`.
 */
export async function resolveTarget(
  hostname: string,
  opts: { allowPrivate: boolean; resolve?: Resolver },
): Promise<ResolvedTarget> {
  const host = hostname.replace(/^\[|\]$/g, '');
  const literal = isIP(host);
  const answers: ResolvedTarget[] = literal
    ? [{ address: host, family: literal === 6 ? 6 : 4 }]
    : await (opts.resolve ?? systemResolver)(host);
  if (answers.length === 0) throw new Error(`${host} does not resolve`);
  if (!opts.allowPrivate) {
    const bad = answers.find((a) => isForbiddenAddress(a.address));
    if (bad)
      throw new ForbiddenTargetError(
        `${host} resolves to ${bad.address}, a private/loopback/link-local address (set LC_WEBHOOK_ALLOW_PRIVATE=true to allow)`,
      );
  }
  // Prefer IPv4: hosts without IPv6 routes are common, and every answer passed the check.
  return answers.find((a) => a.family === 4) ?? answers[0]!;
}
