import { describe, expect, it } from 'vitest';
import { ErrorCodes, isRetriable } from '../platform/errors.ts';
import { batchRequest, optInRequest, OPT_IN_SOURCE, refusal } from './generator-http.ts';

describe("the generator's requests", () => {
  it('posts a batch with the write key and the client time', () => {
    const req = batchRequest('dev-write-key', [{ type: 'track' }], new Date(0));
    expect(req).toMatchObject({ method: 'POST', url: '/v1/batch' });
    expect(req.headers.authorization).toBe(
      `Basic ${Buffer.from('dev-write-key:').toString('base64')}`,
    );
    expect(JSON.parse(req.body)).toEqual({
      batch: [{ type: 'track' }],
      sentAt: '1970-01-01T00:00:00.000Z',
    });
  });

  it('opts in to marketing by email and in-app, saying where the consent came from', () => {
    const req = optInRequest('tok', 'user/1');
    expect(req).toMatchObject({ method: 'PATCH', url: '/v1/users/user%2F1/preferences' });
    expect(req.headers.authorization).toBe('Bearer tok');
    expect(JSON.parse(req.body)).toEqual({
      consents: {
        marketing: {
          email: { granted: true, source: OPT_IN_SOURCE },
          inapp: { granted: true, source: OPT_IN_SOURCE },
        },
      },
    });
  });
});

describe('refusal', () => {
  it('is nothing for an answer that took every message', () => {
    expect(refusal('ingest', 200, '{"success":true,"accepted":3,"rejected":[]}')).toBeNull();
    expect(refusal('opt-in', 200, '{}')).toBeNull();
  });

  it('is a permanent error for messages the batch API refused', () => {
    const err = refusal(
      'ingest',
      202,
      '{"success":true,"accepted":1,"rejected":[{"index":1,"code":"LC_ERR_BAD_REQUEST","field":"event","message":"required"}]}',
    );
    expect(err?.message).toMatch(/ingest: 1 message\(s\) refused, the first: .*"field":"event"/);
    expect(isRetriable(err)).toBe(false);
  });

  it('keeps the product’s code and message; only rate limits and outages are retried', () => {
    const forbidden = refusal(
      'ingest',
      403,
      '{"code":"LC_ERR_FORBIDDEN","message":"unknown write key"}',
    );
    expect(forbidden).toMatchObject({
      code: ErrorCodes.Forbidden,
      status: 403,
      message: 'ingest: 403 LC_ERR_FORBIDDEN: unknown write key',
    });
    expect(isRetriable(forbidden)).toBe(false);
    const limited = refusal('ingest', 429, '{"code":"LC_ERR_RATE_LIMITED","message":"slow down"}');
    expect(limited?.code).toBe(ErrorCodes.RateLimited);
    expect(isRetriable(limited)).toBe(true);
    const proxy = refusal('opt-in', 502, '<html>Bad gateway</html>');
    expect(proxy).toMatchObject({ code: ErrorCodes.Unavailable, retriable: true });
    expect(proxy?.message).toContain('<html>Bad gateway');
  });
});
