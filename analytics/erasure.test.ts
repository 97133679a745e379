import { describe, expect, it } from 'vitest';
import { eventRow } from './schema.ts';
import { bindParams } from './store.ts';
import {
  deletionRow,
  erasureMethod,
  erasureRequests,
  erasureStatements,
  supportsLightweightDelete,
} from './erasure.ts';

describe('erasure statements', () => {
  it('are mutations on the server, whatever its version, and lightweight deletes on a chDB that has them', () => {
    expect(erasureMethod('server', '18.16.1')).toBe('mutation');
    expect(erasureMethod('server', '25.3.2.1')).toBe('mutation');
    expect(erasureMethod('chdb', '26.7.2.1')).toBe('lightweight_delete');
    expect(erasureMethod('chdb', '23.3.1')).toBe('lightweight_delete');
    expect(erasureMethod('chdb', '23.2.9')).toBe('mutation');
    expect(erasureMethod('chdb', '22.8.1')).toBe('mutation');
    expect(supportsLightweightDelete('24.1')).toBe(true);
    expect(supportsLightweightDelete('not a version')).toBe(false);
  });

  it('erase every table of the user, keeping only the deletion event, with the id as a parameter', () => {
    expect(erasureStatements('lc', 'mutation')).toEqual([
      {
        table: 'events',
        count:
          "SELECT count() AS n FROM lc.events WHERE user_id = {user:String} AND type != 'user_deleted'",
        erase:
          "ALTER TABLE lc.events DELETE WHERE user_id = {user:String} AND type != 'user_deleted'",
      },
      {
        table: 'sends',
        count: 'SELECT count() AS n FROM lc.sends WHERE user_id = {user:String}',
        erase: 'ALTER TABLE lc.sends DELETE WHERE user_id = {user:String}',
      },
      {
        table: 'deliveries',
        count: 'SELECT count() AS n FROM lc.deliveries WHERE user_id = {user:String}',
        erase: 'ALTER TABLE lc.deliveries DELETE WHERE user_id = {user:String}',
      },
      {
        table: 'messages',
        count: 'SELECT count() AS n FROM lc.messages WHERE user_id = {user:String}',
        erase: 'ALTER TABLE lc.messages DELETE WHERE user_id = {user:String}',
      },
    ]);
    expect(erasureStatements('lc', 'lightweight_delete').map((s) => s.erase)).toEqual([
      "DELETE FROM lc.events WHERE user_id = {user:String} AND type != 'user_deleted'",
      'DELETE FROM lc.sends WHERE user_id = {user:String}',
      'DELETE FROM lc.deliveries WHERE user_id = {user:String}',
      'DELETE FROM lc.messages WHERE user_id = {user:String}',
    ]);
    expect(() => erasureStatements('lc; DROP TABLE x', 'mutation')).toThrow(
      /not a plain ClickHouse database name/,
    );
  });

  it('bind a hostile id as a string literal on servers without query parameters', () => {
    const [events] = erasureStatements('lc', 'mutation');
    expect(bindParams(events!.erase, { user: "x' OR 1=1 --" })).toBe(
      "ALTER TABLE lc.events DELETE WHERE user_id = 'x\\' OR 1=1 --' AND type != 'user_deleted'",
    );
  });
});

describe('erasure requests', () => {
  const deletion = eventRow({
    id: 'cdc:appdb:users:42:d',
    userId: '42',
    anonymousId: 'anon-7',
    type: 'user_deleted',
    ts: 1_780_000_000_000,
    receivedAt: 1_780_000_000_500,
    source: 'cdc:appdb',
    properties: { email: 'ann@example.com' },
    traits: { firstName: 'Ann' },
    context: { ip: '203.0.113.9' },
  });

  it('are the batch rows of user_deleted events, once per event id', () => {
    const other = eventRow({
      id: 'e1',
      userId: '43',
      type: 'login',
      ts: 1,
      receivedAt: 1,
      source: 'http:web',
      properties: {},
    });
    expect(erasureRequests([other, deletion, deletion])).toEqual([
      {
        userId: '42',
        requestId: 'cdc:appdb:users:42:d',
        source: 'cdc:appdb',
        requestedAt: 1_780_000_000_000,
      },
    ]);
  });

  it('come only from the product database: a user_deleted an app sent erases nothing', () => {
    const forged = eventRow({
      id: 'm-9',
      userId: '42',
      type: 'user_deleted',
      ts: 1,
      receivedAt: 1,
      source: 'http:web',
      properties: {},
    });
    expect(erasureRequests([forged])).toEqual([]);
  });

  it('keep the deletion event row with its id, user, type, times and source, and nothing else the request carried', () => {
    expect(deletionRow(deletion)).toEqual({
      ...deletion,
      anonymous_id: '',
      properties: '{}',
      traits: '',
      context: '',
    });
  });
});
