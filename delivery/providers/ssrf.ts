// SSRF guard for outgoing requests to user-supplied URLs (webhooks): the host is resolved
// once, every address is checked against private, loopback, link-local, ULA, CGNAT,
// multicast and cloud-metadata ranges, and the connection is pinned to the checked address
// so a second DNS answer (rebinding) cannot redirect it.
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';

const blocked = new BlockList();
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
  blocked.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (incl. fd00:ec2::254 metadata)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(net, prefix, 'ipv6');
}

/** The IPv4 address an IPv6 address carries (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, compat), if any. */
function embeddedV4(ip: string): string | undefined {
  const lower = ip.toLowerCase();
  const dotted = /^(?:::ffff:|::ffff:0:|64:ff9b::|::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

/** True for addresses a webhook must never reach unless private targets are allowed. */
export function isForbiddenAddress(ip: string): boolean {
  const v = isIP(ip);
  if (v === 4) return blocked.check(ip, 'ipv4');
  if (v === 6) {
    const v4 = embeddedV4(ip);
    if (v4 !== undefined) return isIP(v4) !== 4 || blocked.check(v4, 'ipv4');
    return blocked.check(ip, 'ipv6');
  }
  return true;
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
