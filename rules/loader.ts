// Reads rule files from a folder (and its segments/ folder), and watches it so a valid
// edit is swapped in whole while an invalid one is rejected and the last good set stays.
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../platform/logger.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import type { MessageTypes } from '../platform/message-types.ts';
import { byFile, formatRuleError } from './check.ts';
import { compileRuleSet } from './compile.ts';
import { parseJson } from './json-syntax.ts';
import type { RuleError, RuleSet, RuleSetResult } from './types.ts';

export interface LoadOptions {
  /** When given, every template a rule names must exist there (`<dir>/X/` or `<dir>/X.*`). */
  templatesDir?: string;
  /** Rule ids compiled as enabled whatever their file says (backtesting a draft kept disabled). */
  enable?: readonly string[];
  /** When given, every `messageType` a rule names must be declared there (LC_MESSAGE_TYPES_FILE). */
  messageTypes?: MessageTypes;
}

/** The options a reload keeps: what every rule is checked against. */
const checkedAgainst = (opts: LoadOptions): LoadOptions => ({
  ...(opts.templatesDir === undefined ? {} : { templatesDir: opts.templatesDir }),
  ...(opts.messageTypes === undefined ? {} : { messageTypes: opts.messageTypes }),
});

/** The file content with the rules named in `ids` switched on. */
function enableRules(content: unknown, ids: ReadonlySet<string>): unknown {
  const on = (item: unknown) =>
    item !== null &&
    typeof item === 'object' &&
    !Array.isArray(item) &&
    ids.has((item as { id?: unknown }).id as string)
      ? { ...(item as object), enabled: true }
      : item;
  return Array.isArray(content) ? content.map(on) : on(content);
}

async function isDirectory(folder: string): Promise<boolean> {
  try {
    return (await stat(folder)).isDirectory();
  } catch {
    return false;
  }
}

// The published JSON Schemas and the message types declaration may sit next to rule files; they are not rules.
const isRuleFileName = (name: string) =>
  name.endsWith('.json') && !name.endsWith('.schema.json') && name !== 'message-types.json';

async function jsonFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && isRuleFileName(e.name))
    .map((e) => path.join(dir, e.name))
    .sort();
}

/** Template names in a folder: each sub-folder X, and each file X.* (every prefix before a dot). */
export async function listTemplates(dir: string): Promise<Set<string>> {
  const names = new Set<string>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) names.add(entry.name);
    else if (entry.isFile()) {
      for (let dot = entry.name.indexOf('.'); dot > 0; dot = entry.name.indexOf('.', dot + 1))
        names.add(entry.name.slice(0, dot));
    }
  }
  return names;
}

/** Loads and compiles `dir/*.json` and `dir/segments/*.json`; reports every error of every file. */
export async function loadRuleSet(dir: string, opts: LoadOptions = {}): Promise<RuleSetResult> {
  if (!(await isDirectory(dir)))
    return { ok: false, errors: [{ file: dir, path: '$', message: 'rules folder not found' }] };
  const errors: RuleError[] = [];
  let templates: Set<string> | undefined;
  if (opts.templatesDir !== undefined) {
    if (await isDirectory(opts.templatesDir)) templates = await listTemplates(opts.templatesDir);
    else errors.push({ file: opts.templatesDir, path: '$', message: 'templates folder not found' });
  }
  const segmentsDir = path.join(dir, 'segments');
  const names = [
    ...(await jsonFiles(dir)),
    ...((await isDirectory(segmentsDir)) ? await jsonFiles(segmentsDir) : []),
  ];
  const files: { file: string; content: unknown }[] = [];
  for (const file of names) {
    const text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
    const parsed = parseJson(text);
    if (parsed.ok)
      files.push({
        file,
        content:
          opts.enable?.length && !file.startsWith(segmentsDir + path.sep)
            ? enableRules(parsed.value, new Set(opts.enable))
            : parsed.value,
      });
    else
      errors.push({
        file,
        path: '$',
        message: `invalid JSON at line ${parsed.error.line}, column ${parsed.error.column}: ${parsed.error.message}`,
      });
  }
  const result = compileRuleSet(files, {
    ...(templates ? { templates } : {}),
    ...(opts.messageTypes ? { messageTypes: opts.messageTypes } : {}),
  });
  if (!result.ok) return { ok: false, errors: byFile([...errors, ...result.errors]) };
  if (errors.length > 0) return { ok: false, errors };
  return result;
}

export interface WatchOptions extends LoadOptions {
  /** Quiet time after the last file change before reloading (editors write in bursts). */
  debounceMs?: number;
  /** Version of the set the caller already runs; an identical reload is not reported. */
  currentVersion?: string;
  logger?: Logger;
}

export interface RuleSetHandlers {
  onSwap(ruleSet: RuleSet): void;
  onReject(errors: RuleError[]): void;
  /** A valid reload identical to the set in force (a broken file put back as it was). */
  onUnchanged?(): void;
}

/**
 * Watches the rules folder (segments included) and the templates folder. After changes
 * settle, reloads: a valid set with a new version goes to onSwap (the caller replaces its
 * reference in one assignment); an invalid one goes to onReject and nothing is swapped.
 */
export function watchRuleSet(
  dir: string,
  opts: WatchOptions,
  handlers: RuleSetHandlers,
): { close(): Promise<void> } {
  const debounceMs = opts.debounceMs ?? 200;
  let currentVersion = opts.currentVersion ?? null;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let closed = false;
  const watchers: FSWatcher[] = [];

  const reload = async (): Promise<void> => {
    const result = await loadRuleSet(dir, checkedAgainst(opts));
    if (closed) return;
    if (result.ok) {
      if (result.ruleSet.version === currentVersion) {
        handlers.onUnchanged?.();
        return;
      }
      currentVersion = result.ruleSet.version;
      opts.logger?.info(
        {
          version: currentVersion,
          rules: result.ruleSet.rules.length,
          segments: result.ruleSet.segments.length,
        },
        'rule set reloaded',
      );
      handlers.onSwap(result.ruleSet);
    } else {
      opts.logger?.warn(
        { errors: result.errors.length, version: currentVersion },
        'rule set rejected; keeping the previous one',
      );
      handlers.onReject(result.errors);
    }
  };

  const run = () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = reload()
      .catch((err: unknown) => {
        opts.logger?.error({ err }, 'rule set reload failed');
        handlers.onReject([
          {
            file: dir,
            path: '$',
            message: `reload failed: ${err instanceof Error ? err.message : String(err)}`,
          },
        ]);
      })
      .finally(() => {
        running = null;
        if (again && !closed) {
          again = false;
          schedule();
        }
      });
  };

  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(run, debounceMs);
  };

  for (const target of [dir, opts.templatesDir]) {
    if (target === undefined) continue;
    try {
      const watcher = watch(target, { recursive: true }, schedule);
      watcher.on('error', (err) =>
        opts.logger?.warn({ err, dir: target }, 'watching rules stopped for a folder'),
      );
      watchers.push(watcher);
    } catch (err) {
      opts.logger?.warn({ err, dir: target }, 'cannot watch folder; changes there need a restart');
    }
  }

  return {
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
      await running;
    },
  };
}

export interface LiveRuleSet {
  /** The rule set in force now; read it per event (a swap is one assignment). */
  current(): RuleSet;
  /**
   * The problems of the last reload that was refused (every error of every file, the time it
   * was refused), while the set in force is older than the files; null once a reload succeeds.
   */
  rejected(): RejectedReload | null;
  close(): Promise<void>;
}

export interface RejectedReload {
  errors: RuleError[];
  /** Epoch ms of the refusal. */
  at: number;
}

/**
 * What every process that runs rules does: load the folder (an invalid set at start is an
 * error listing every problem as `file:jsonpath: message`), then hot-reload it, keeping the
 * last good set and logging each rejected file. `onSwap` lets the caller publish the new version.
 */
export async function openRuleSet(
  dir: string,
  opts: LoadOptions & { logger: Logger; debounceMs?: number },
  onSwap: (ruleSet: RuleSet) => void = () => {},
): Promise<LiveRuleSet> {
  const loaded = await loadRuleSet(dir, checkedAgainst(opts));
  if (!loaded.ok) {
    throw new LifecycleError(
      ErrorCodes.RulesInvalid,
      `rule set in ${dir} is invalid:\n${loaded.errors.map(formatRuleError).join('\n')}`,
    );
  }
  let current = loaded.ruleSet;
  let rejected: RejectedReload | null = null;
  const watcher = watchRuleSet(
    dir,
    { ...opts, currentVersion: current.version },
    {
      onSwap(ruleSet) {
        current = ruleSet;
        rejected = null;
        onSwap(ruleSet);
      },
      onUnchanged() {
        rejected = null;
      },
      onReject(errors) {
        rejected = { errors, at: Date.now() };
        for (const error of errors.slice(0, 20)) {
          opts.logger.error(
            { file: error.file, path: error.path, ruleSetVersion: current.version },
            `rule file rejected, keeping the last good set: ${error.message}`,
          );
        }
      },
    },
  );
  return { current: () => current, rejected: () => rejected, close: () => watcher.close() };
}
