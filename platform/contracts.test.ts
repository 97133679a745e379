import { describe, expect, it } from 'vitest';
import { eventOrigin, httpSource, reservedTypeRefusal, writeKeyKindOf } from './contracts.ts';

describe('the write key kind in an event source', () => {
  it('is set by ingestion and read back; anything not from HTTP has none', () => {
    expect(httpSource('web', 'client')).toBe('http:web:client');
    expect(writeKeyKindOf(httpSource('web', 'client'))).toBe('client');
    expect(writeKeyKindOf(httpSource('backend', 'server'))).toBe('server');
    expect(writeKeyKindOf('cdc:app-db')).toBeNull();
    expect(writeKeyKindOf('tracker')).toBeNull();
    expect(eventOrigin(httpSource('backend', 'server'))).toBe('http');
  });

  it('reads an http source without a kind (written before keys had one) as client, even a source named "server"', () => {
    expect(writeKeyKindOf('http:web')).toBe('client');
    expect(writeKeyKindOf('http:server')).toBe('client');
    expect(writeKeyKindOf('http:web:admin')).toBe('client');
  });

  it('does not let a server key send reserved types', () => {
    expect(
      reservedTypeRefusal({ type: 'user_deleted', source: httpSource('backend', 'server') }),
    ).toMatch(/only cdc may send it/);
  });
});
