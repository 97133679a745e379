// Which network failures of an HTTP provider call may have left the message at the provider.
import { describe, expect, it } from 'vitest';
import { networkFailure } from './http-result.ts';

const fetchError = (code: string, message = 'x') =>
  Object.assign(new TypeError('fetch failed'), {
    cause: Object.assign(new Error(message), { code }),
  });

describe('networkFailure', () => {
  it('is definite when the request cannot have reached the provider', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])
      expect(networkFailure(fetchError(code))).toEqual({
        status: 'retriable',
        error: `${code}: x`,
      });
  });

  it('is ambiguous when the connection broke or timed out after the request may have been sent', () => {
    for (const code of ['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE'])
      expect(networkFailure(fetchError(code))).toMatchObject({
        status: 'retriable',
        ambiguous: true,
      });
    expect(
      networkFailure(Object.assign(new Error('timeout'), { name: 'TimeoutError' })),
    ).toMatchObject({ ambiguous: true });
    // Something we cannot classify is treated as possibly sent.
    expect(networkFailure(new Error('odd'))).toMatchObject({ ambiguous: true });
  });
});
