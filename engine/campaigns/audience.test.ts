// Uploaded audiences: what a CSV of user ids yields and what the report says about each row,
// and the list store's pages.
import { describe, expect, it } from 'vitest';
import { LifecycleError } from '../../platform/errors.ts';
import { createMemoryAudienceLists, parseAudienceCsv, REPORTED_PROBLEMS } from './audience.ts';

describe('audience CSV', () => {
  it('reads one id per row from the first column, trims them, and counts repeats once', () => {
    const r = parseAudienceCsv('u1\n u2 \nu1\n\nu3\n', { maxRows: 10 });
    expect(r.userIds).toEqual(['u1', 'u2', 'u3']);
    expect(r).toMatchObject({ rows: 4, accepted: 3, duplicates: 1, rejected: 0, header: false });
  });

  it('takes the column a header names, with Windows line ends, a BOM and quoted fields', () => {
    const csv =
      '\uFEFFemail,User ID,plan\r\n' +
      'a@x.com,u-1,pro\r\n' +
      '"b, the second",u-2,free\r\n' +
      '"c ""quoted""","u,3",pro\r\n' +
      '"multi\nline",u-4,pro\r\n';
    const r = parseAudienceCsv(csv, { maxRows: 10 });
    expect(r.header).toBe(true);
    expect(r.userIds).toEqual(['u-1', 'u-2', 'u,3', 'u-4']);
    expect(r.rows).toBe(4);
    for (const name of ['userId', 'user_id', 'id', 'USER-ID'])
      expect(parseAudienceCsv(`${name}\nx`, { maxRows: 1 }).userIds).toEqual(['x']);
  });

  it('rejects rows without a usable id and names their line', () => {
    const csv = [
      'userId,plan',
      'ok-1,pro',
      ',pro',
      `${'x'.repeat(513)},pro`,
      'bad\u0007id,pro',
      'ok-2',
    ].join('\n');
    const r = parseAudienceCsv(csv, { maxRows: 10 });
    expect(r.userIds).toEqual(['ok-1', 'ok-2']);
    expect(r.rejected).toBe(3);
    expect(r.problems).toEqual([
      { line: 3, message: 'no user id' },
      { line: 4, message: 'user id longer than 512 characters' },
      { line: 5, message: 'user id contains control characters' },
    ]);
    // A short row lacks the id column of the header.
    expect(parseAudienceCsv('plan,userId\npro', { maxRows: 1 }).problems).toEqual([
      { line: 2, message: 'no column 2' },
    ]);
  });

  it('lists the first problems only, but counts them all', () => {
    const r = parseAudienceCsv(Array.from({ length: 50 }, () => ',x').join('\n') + '\nu', {
      maxRows: 5,
    });
    expect(r.rejected).toBe(50);
    expect(r.problems).toHaveLength(REPORTED_PROBLEMS);
    expect(r.userIds).toEqual(['u']);
  });

  it('refuses more distinct ids than the limit with 413, repeats of kept ids notwithstanding', () => {
    expect(parseAudienceCsv('a\nb\na\nb', { maxRows: 2 }).accepted).toBe(2);
    let err: unknown;
    try {
      parseAudienceCsv('a\nb\nc', { maxRows: 2 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LifecycleError);
    expect((err as LifecycleError).status).toBe(413);
    expect((err as LifecycleError).message).toMatch(
      /more than 2 user ids \(LC_CAMPAIGN_LIST_MAX_ROWS, reached at line 3\)/,
    );
  });
});

describe('audience lists in memory', () => {
  it('pages through a list in id order with the last id as cursor, and replaces it whole', async () => {
    const lists = createMemoryAudienceLists();
    await lists.replace('c', ['d', 'b', 'a', 'c', 'e']);
    expect(await lists.size('c')).toBe(5);
    const p1 = await lists.page('c', null, 2);
    const p2 = await lists.page('c', p1.cursor, 2);
    const p3 = await lists.page('c', p2.cursor, 2);
    expect([p1, p2, p3]).toEqual([
      { userIds: ['a', 'b'], cursor: 'b' },
      { userIds: ['c', 'd'], cursor: 'd' },
      { userIds: ['e'], cursor: null },
    ]);
    await lists.replace('c', ['z']);
    expect(await lists.page('c', null, 10)).toEqual({ userIds: ['z'], cursor: null });
    expect(await lists.size('other')).toBe(0);
  });
});
