// Per-channel frequency caps from configuration: LC_CAPS parsing (with errors that name the
// bad entry) and which channels LC_CAP_PER_DAY/LC_CAP_PER_WEEK apply to.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../platform/config.ts';
import { parseChannelCaps, resolveChannelCaps } from './caps.ts';

const problems = (spec: string): string[] => {
  try {
    parseChannelCaps(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`"${spec}" was accepted`);
};

describe('LC_CAPS', () => {
  it('reads <channel>:<per day>/<per week> and <channel>:none', () => {
    expect(parseChannelCaps('email:3/10, sms:1/3 ,push: 5 / 20,inapp:none,webhook:0/0')).toEqual({
      email: { perDay: 3, perWeek: 10 },
      sms: { perDay: 1, perWeek: 3 },
      push: { perDay: 5, perWeek: 20 },
      inapp: null,
      webhook: null,
    });
    expect(parseChannelCaps('')).toEqual({});
    expect(parseChannelCaps('sms:1/0,email:0/4,')).toEqual({
      sms: { perDay: 1, perWeek: 0 },
      email: { perDay: 0, perWeek: 4 },
    });
  });

  it('rejects each bad entry by name, with what to write instead', () => {
    expect(problems('email:3/10,sms:1,push:5/20')).toEqual([
      'LC_CAPS entry "sms:1": must be <channel>:<per day>/<per week> or <channel>:none, e.g. sms:1/3',
    ]);
    expect(problems('fax:1/3')).toEqual([
      'LC_CAPS entry "fax:1/3": unknown channel "fax" (one of email, inapp, webhook, sms, push)',
    ]);
    expect(problems('sms:1/3,sms:2/6')).toEqual(['LC_CAPS entry "sms:2/6": sms is listed twice']);
    expect(problems('push:20/5')).toEqual([
      'LC_CAPS entry "push:20/5": 20 per day is more than 5 per week; the order is <per day>/<per week>',
    ]);
    expect(problems('email:-1/3,sms:x/y')).toHaveLength(2);
    expect(() => parseChannelCaps('EMAIL:1/2')).toThrow(/LC_CAPS entry "EMAIL:1\/2"/);
  });

  it('is refused at configuration load when its form is wrong, so no process starts with it', () => {
    expect(() => loadConfig({ LC_CAPS: 'email=3' })).toThrow(/LC_CAPS="email=3"/);
    expect(() => loadConfig({ LC_CAPS: 'sms:1/3;push:2/5' })).toThrow(ConfigError);
    for (const ok of [
      '',
      'email:3/10, sms:1/3 ,push: 5 / 20,inapp:none,webhook:0/0',
      'sms:1/0,email:0/4,',
      'EMAIL:1/2',
    ]) {
      expect(() => loadConfig({ LC_CAPS: ok }), ok).not.toThrow();
    }
  });

  it('caps email, SMS and push by default with LC_CAP_PER_DAY/WEEK; in-app and webhook only when named', () => {
    const defaults = loadConfig({}).delivery;
    expect(defaults.channelCaps).toBe('');
    expect(resolveChannelCaps(defaults)).toEqual({
      email: { perDay: 3, perWeek: 10 },
      sms: { perDay: 3, perWeek: 10 },
      push: { perDay: 3, perWeek: 10 },
      inapp: null,
      webhook: null,
    });
    const tuned = loadConfig({
      LC_CAPS: 'sms:1/3,push:5/20,inapp:2/6,email:none',
      LC_CAP_PER_DAY: '4',
      LC_CAP_PER_WEEK: '12',
    }).delivery;
    expect(resolveChannelCaps(tuned)).toEqual({
      email: null,
      sms: { perDay: 1, perWeek: 3 },
      push: { perDay: 5, perWeek: 20 },
      inapp: { perDay: 2, perWeek: 6 },
      webhook: null,
    });
    expect(resolveChannelCaps({ capPerDay: 0, capPerWeek: 0, channelCaps: 'sms:1/3' })).toEqual({
      email: null,
      sms: { perDay: 1, perWeek: 3 },
      push: null,
      inapp: null,
      webhook: null,
    });
    expect(
      resolveChannelCaps({ capPerDay: 2, capPerWeek: 0, channelCaps: 'webhook:100/0' }),
    ).toMatchObject({ email: { perDay: 2, perWeek: 0 }, webhook: { perDay: 100, perWeek: 0 } });
  });
});
