// The SSRF guard, table-driven: every spelling of a forbidden target is refused, whether it
// comes as a literal host (as the WHATWG URL parser serialises it) or as a DNS answer.
import { describe, expect, it } from 'vitest';
import { isForbiddenAddress, resolveTarget } from './ssrf.ts';

const forbidden: [string, string][] = [
  // IPv4
  ['127.0.0.1', 'loopback'],
  ['127.1.2.3', 'loopback'],
  ['10.0.0.1', 'private'],
  ['172.16.5.4', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['169.254.169.254', 'link-local (cloud metadata)'],
  ['100.64.0.1', 'carrier-grade NAT'],
  ['0.0.0.0', 'this network'],
  ['192.0.0.192', 'IETF protocol assignments'],
  ['198.18.0.1', 'benchmarking'],
  ['224.0.0.1', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  // IPv6
  ['::1', 'loopback'],
  ['::', 'unspecified'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local with a zone'],
  ['fc00::1', 'unique local'],
  ['fd00:ec2::254', 'unique local (AWS metadata)'],
  ['fec0::1', 'site-local'],
  ['ff02::1', 'multicast'],
  ['100::1', 'discard'],
  ['2001:db8::1', 'documentation'],
  // IPv4-mapped ::ffff:0:0/96
  ['::ffff:127.0.0.1', 'mapped loopback, dotted'],
  ['::ffff:7f00:1', 'mapped loopback, hex'],
  ['::ffff:10.1.2.3', 'mapped private'],
  ['::ffff:a9fe:a9fe', 'mapped metadata, hex'],
  ['0:0:0:0:0:ffff:7f00:0001', 'mapped loopback, uncompressed'],
  // IPv4-compatible ::/96: refused whatever it embeds
  ['::127.0.0.1', 'compatible loopback, dotted'],
  ['::7f00:1', 'compatible loopback as the URL parser writes it'],
  ['::8.8.8.8', 'compatible public'],
  ['::808:808', 'compatible public, hex'],
  // SIIT ::ffff:0:0:0/96
  ['::ffff:0:127.0.0.1', 'SIIT loopback, dotted'],
  ['::ffff:0:7f00:1', 'SIIT loopback as the URL parser writes it'],
  ['::ffff:0:a00:1', 'SIIT private'],
  // NAT64 well-known 64:ff9b::/96
  ['64:ff9b::a9fe:a9fe', 'NAT64 metadata'],
  ['64:ff9b::127.0.0.1', 'NAT64 loopback, dotted'],
  ['64:ff9b::a00:1', 'NAT64 private'],
  // NAT64 local-use 64:ff9b:1::/48: refused whatever it embeds
  ['64:ff9b:1::7f00:1', 'NAT64 local-use, loopback at /96'],
  ['64:ff9b:1:7f00:0:100::', 'NAT64 local-use, loopback at /48'],
  ['64:ff9b:1::808:808', 'NAT64 local-use, public at /96'],
  // 6to4 2002::/16
  ['2002:7f00:1::', '6to4 loopback'],
  ['2002:7f00:0001:0:0:0:0:1', '6to4 loopback, uncompressed'],
  ['2002:a9fe:a9fe::1', '6to4 metadata'],
  ['2002:c0a8:101::', '6to4 private'],
  ['2002::', '6to4 this network'],
  // not addresses
  ['not-an-ip', 'a name'],
  ['', 'empty'],
];

const allowed: [string, string][] = [
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['172.32.0.1', 'just outside 172.16/12'],
  ['93.184.216.34', 'public'],
  ['2606:4700:4700::1111', 'public IPv6'],
  ['::ffff:8.8.8.8', 'mapped public'],
  ['::ffff:808:808', 'mapped public, hex'],
  ['::ffff:0:808:808', 'SIIT public'],
  ['64:ff9b::808:808', 'NAT64 public'],
  ['64:ff9b::8.8.8.8', 'NAT64 public, dotted'],
  ['2002:808:808::1', '6to4 public'],
];

describe('isForbiddenAddress', () => {
  it.each(forbidden)('refuses %s (%s)', (ip) => expect(isForbiddenAddress(ip)).toBe(true));
  it.each(allowed)('allows %s (%s)', (ip) => expect(isForbiddenAddress(ip)).toBe(false));
});

describe('resolveTarget', () => {
  const literal = forbidden.filter(([ip]) => ip.includes(':') && !ip.includes('%'));
  it.each(literal)(
    'refuses the URL http://[%s]/ (%s) as the URL parser serialises it',
    async (ip) => {
      const { hostname } = new URL(`http://[${ip}]/`);
      await expect(resolveTarget(hostname, { allowPrivate: false })).rejects.toThrow(
        /private\/loopback\/link-local/,
      );
    },
  );

  it.each(forbidden.filter(([ip]) => ip !== '' && ip !== 'not-an-ip'))(
    'refuses a name that resolves to %s (%s)',
    async (ip) => {
      const resolve = async () => [
        { address: ip, family: ip.includes(':') ? (6 as const) : (4 as const) },
      ];
      await expect(resolveTarget('hook.example', { allowPrivate: false, resolve })).rejects.toThrow(
        ip,
      );
    },
  );

  it.each(allowed.filter(([ip]) => ip.includes(':')))(
    'connects to the literal http://[%s]/ (%s)',
    async (ip) => {
      const { hostname } = new URL(`http://[${ip}]/`);
      await expect(resolveTarget(hostname, { allowPrivate: false })).resolves.toMatchObject({
        family: 6,
      });
    },
  );

  it('refuses a name when any of its addresses is private, unless private targets are allowed', async () => {
    const resolve = async () => [
      { address: '93.184.216.34', family: 4 as const },
      { address: '10.0.0.5', family: 4 as const },
    ];
    await expect(resolveTarget('mixed.example', { allowPrivate: false, resolve })).rejects.toThrow(
      /10\.0\.0\.5/,
    );
    await expect(resolveTarget('mixed.example', { allowPrivate: true, resolve })).resolves.toEqual({
      address: '93.184.216.34',
      family: 4,
    });
    await expect(resolveTarget('[::1]', { allowPrivate: false })).rejects.toThrow(/private/);
    const dual = async () => [
      { address: '2606:4700:4700::1111', family: 6 as const },
      { address: '1.1.1.1', family: 4 as const },
    ];
    await expect(
      resolveTarget('dual.example', { allowPrivate: false, resolve: dual }),
    ).resolves.toEqual({ address: '1.1.1.1', family: 4 });
  });
});
