import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ErrorCodes, LifecycleError } from './errors.ts';

describe('error codes', () => {
  it('every code has an HTTP status and a meaning, and names itself LC_ERR_*', () => {
    for (const code of Object.values(ErrorCodes)) {
      expect(code).toMatch(/^LC_ERR_[A-Z_]+$/);
      expect(ERROR_CODES[code].status, code).toBeGreaterThanOrEqual(400);
      expect(ERROR_CODES[code].meaning.length, code).toBeGreaterThan(10);
    }
    expect(Object.keys(ERROR_CODES).sort()).toEqual(Object.values(ErrorCodes).sort());
  });

  it('a LifecycleError answers the status of its code unless it names another', () => {
    expect(new LifecycleError(ErrorCodes.Template, 'x').status).toBe(422);
    expect(new LifecycleError(ErrorCodes.BadRequest, 'x', { status: 415 }).status).toBe(415);
    // @ts-expect-error a code outside the registry does not compile
    expect(new LifecycleError('LC_ERR_SOMETHING_NEW', 'x').status).toBe(500);
  });
});
