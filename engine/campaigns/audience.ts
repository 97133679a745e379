// Uploaded audiences: a CSV of user ids read into a validation report (rows accepted,
// duplicates, bad ids with their line), and the list kept per campaign where the scheduler
// pages through it with a stable cursor. Production keeps a list as one Redis sorted set per
// campaign (members = user ids, all score 0, so a page is a lexicographic range after the
// last id of the previous page); an upload fills a new key and renames it over the old one,
// so a list is never half replaced.
import { randomUUID } from 'node:crypto';
import type { RedisDeps } from '../../platform/redis.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';

/** Longest user id a list accepts (as the staff API's user lookup). */
export const MAX_USER_ID_LENGTH = 512;
/** Problems listed in an upload's report; the counts cover every row. */
export const REPORTED_PROBLEMS = 20;
/** Header names of the user id column (case, spaces and `_` ignored). */
const ID_HEADERS = new Set(['userid', 'id', 'user']);

export interface AudienceReport {
  /** Data rows read (header and blank lines excluded). */
  rows: number;
  /** Distinct user ids kept. */
  accepted: number;
  /** Rows repeating an id already read. */
  duplicates: number;
  /** Rows without a usable id. */
  rejected: number;
  /** Whether the first row was read as a header (a column named userId, user_id or id). */
  header: boolean;
  /** The first problems, with their line number (1-based, as an editor shows it). */
  problems: { line: number; message: string }[];
}

export interface ParsedAudience extends AudienceReport {
  userIds: string[];
}

/** CSV rows (RFC 4180: quoted fields may hold commas, quotes as "" and line breaks), with the line each starts on. */
function* csvRows(text: string): Generator<{ line: number; fields: string[] }> {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const start = line;
    const fields: string[] = [];
    let field = '';
    for (;;) {
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) break;
          const ch = text[i]!;
          if (ch === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (ch === '\n') line++;
          field += ch;
          i++;
        }
      }
      while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') field += text[i++];
      fields.push(field);
      field = '';
      if (i < n && text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (text[i] === '\r') i++;
    if (text[i] === '\n') i++;
    line++;
    yield { line: start, fields };
  }
}

function idProblem(id: string): string | null {
  if (id === '') return 'no user id';
  if (id.length > MAX_USER_ID_LENGTH) return `user id longer than ${MAX_USER_ID_LENGTH} characters`;
  // Control characters come from a binary file or a broken export, never from a real id.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(id)) return 'user id contains control characters';
  return null;
}

/**
 * Reads a CSV of user ids: one id per row, in the first column, or in the column named
 * `userId` / `user_id` / `id` when the first row is such a header. Blank lines are skipped,
 * ids are trimmed, repeats counted once. More than `maxRows` distinct ids is refused (413).
 */
export function parseAudienceCsv(text: string, opts: { maxRows: number }): ParsedAudience {
  const seen = new Set<string>();
  const userIds: string[] = [];
  const report: AudienceReport = {
    rows: 0,
    accepted: 0,
    duplicates: 0,
    rejected: 0,
    header: false,
    problems: [],
  };
  const problem = (line: number, message: string) => {
    report.rejected++;
    if (report.problems.length < REPORTED_PROBLEMS) report.problems.push({ line, message });
  };
  let column = 0;
  let first = true;
  for (const { line, fields } of csvRows(text)) {
    if (fields.length === 1 && fields[0]!.trim() === '') continue;
    if (first) {
      first = false;
      const named = fields.findIndex((f) =>
        ID_HEADERS.has(
          f
            .trim()
            .toLowerCase()
            .replace(/[\s_-]/g, ''),
        ),
      );
      if (named >= 0) {
        column = named;
        report.header = true;
        continue;
      }
    }
    report.rows++;
    const id = (fields[column] ?? '').trim();
    const bad = idProblem(id);
    if (bad !== null) {
      problem(line, fields.length <= column ? `no column ${column + 1}` : bad);
      continue;
    }
    if (seen.has(id)) {
      report.duplicates++;
      continue;
    }
    if (seen.size >= opts.maxRows)
      throw new LifecycleError(
        ErrorCodes.PayloadTooLarge,
        `the list holds more than ${opts.maxRows} user ids (LC_CAMPAIGN_LIST_MAX_ROWS, reached at line ${line}): split the audience over several campaigns, or raise the limit`,
      );
    seen.add(id);
    userIds.push(id);
  }
  report.accepted = userIds.length;
  return { ...report, userIds };
}

export interface ListPage {
  userIds: string[];
  /** The last id of this page (the next page starts after it), or null when the list is done. */
  cursor: string | null;
}

/** Where uploaded lists are kept: the scheduler pages through them, the API replaces them. */
export interface AudienceLists {
  /** Replaces the campaign's list with these (distinct) ids at once. */
  replace(campaignId: string, userIds: readonly string[]): Promise<void>;
  /** Up to `limit` ids after `cursor`, in id order. */
  page(campaignId: string, cursor: string | null, limit: number): Promise<ListPage>;
  size(campaignId: string): Promise<number>;
}

export function createMemoryAudienceLists(): AudienceLists {
  const lists = new Map<string, string[]>();
  return {
    async replace(id, userIds) {
      lists.set(id, [...new Set(userIds)].sort());
    },
    async page(id, cursor, limit) {
      const all = lists.get(id) ?? [];
      let from = 0;
      if (cursor !== null) {
        // First index after the cursor (the list is sorted).
        let lo = 0;
        let hi = all.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (all[mid]! <= cursor) lo = mid + 1;
          else hi = mid;
        }
        from = lo;
      }
      const userIds = all.slice(from, from + limit);
      return { userIds, cursor: userIds.length < limit ? null : userIds[userIds.length - 1]! };
    },
    async size(id) {
      return lists.get(id)?.length ?? 0;
    },
  };
}

/** Ids added per round trip while a list is written. */
const WRITE_CHUNK = 5000;

export function createRedisAudienceLists({
  redis,
  keys,
  durable,
}: Pick<RedisDeps, 'redis' | 'keys' | 'durable'>): AudienceLists {
  // One hash tag per campaign: the upload key and the list share a slot, so RENAME is legal on a Cluster.
  const listKey = (id: string) => keys.global(`{campaign:${id}}:audience`);
  return {
    async replace(id, userIds) {
      const key = listKey(id);
      const upload = `${key}:upload:${randomUUID()}`;
      try {
        for (let i = 0; i < userIds.length; i += WRITE_CHUNK) {
          const args: (string | number)[] = [];
          for (const u of userIds.slice(i, i + WRITE_CHUNK)) args.push(0, u);
          await redis.zadd(upload, ...args);
          // An upload abandoned by a crash does not stay forever.
          if (i === 0) await redis.pexpire(upload, 3_600_000);
        }
        if (userIds.length === 0) await redis.del(key);
        else {
          await redis.rename(upload, key);
          await redis.persist(key);
        }
        await durable?.();
      } finally {
        await redis.del(upload).catch(() => undefined);
      }
    },
    async page(id, cursor, limit) {
      const found = await redis.zrangebylex(
        listKey(id),
        cursor === null ? '-' : `(${cursor}`,
        '+',
        'LIMIT',
        0,
        limit,
      );
      return { userIds: found, cursor: found.length < limit ? null : found[found.length - 1]! };
    },
    async size(id) {
      return redis.zcard(listKey(id));
    },
  };
}
