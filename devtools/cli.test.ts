import { describe, expect, it } from 'vitest';
import { generatorFlags, planGenerate, type GenerateFlags } from './cli.ts';

const base: GenerateFlags = {
  ingestUrl: 'http://127.0.0.1:8088',
  writeKey: 'dev-write-key',
  rate: '2',
  dayMs: '1000',
  progressMs: '5000',
};

describe('lifecycle generate flags', () => {
  it('make a plan: the seed given or a random one, a duration, opt-ins with a URL and a token', () => {
    expect(planGenerate(base, () => 77)).toEqual({
      generator: { rate: 2, seed: 77, dayMs: 1000 },
      ingestUrl: 'http://127.0.0.1:8088',
      writeKey: 'dev-write-key',
      optIn: null,
      durationMs: null,
      progressMs: 5000,
    });
    const plan = planGenerate(
      {
        ...base,
        seed: '12',
        rate: '0.5',
        duration: '2m',
        users: '40',
        apiUrl: 'http://127.0.0.1:8089',
        adminToken: 'tok',
      },
      () => 77,
    );
    expect(plan).toMatchObject({
      generator: { rate: 0.5, seed: 12, dayMs: 1000, maxUsers: 40 },
      optIn: { apiUrl: 'http://127.0.0.1:8089', token: 'tok' },
      durationMs: 120_000,
    });
    expect(planGenerate({ ...base, duration: '90' }, () => 1).durationMs).toBe(90_000);
  });

  it.each([
    [{ rate: '0' }, /--rate 0: new users per second/],
    [{ rate: 'fast' }, /--rate fast/],
    [{ dayMs: '1.5' }, /--day-ms 1.5: whole milliseconds/],
    [{ seed: '-3' }, /--seed -3: an integer from 0 to 4294967295/],
    [{ seed: '99999999999' }, /--seed 99999999999/],
    [{ duration: 'soon' }, /--duration soon: a time such as 90s, 10m or 1h/],
    [{ users: '0' }, /--users 0/],
    [{ apiUrl: 'http://127.0.0.1:8089' }, /--api-url and --admin-token go together/],
    [{ ingestUrl: '127.0.0.1:8088' }, /--ingest-url 127.0.0.1:8088: not an http\(s\) URL/],
    [{ progressMs: '5' }, /--progress-ms 5/],
  ] as [Partial<GenerateFlags>, RegExp][])('refuse %o, naming the flag', (flags, message) => {
    expect(() => planGenerate({ ...base, ...flags }, () => 1)).toThrow(message);
  });

  it('name the flag the demo calls the seed', () => {
    expect(() =>
      generatorFlags({ rate: '1', dayMs: '1000', seed: 'x' }, () => 1, {
        seed: '--generator-seed',
      }),
    ).toThrow(/^--generator-seed x:/);
  });
});
