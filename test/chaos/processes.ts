// The product's processes of a chaos run, each `lifecycle run <role>` as a child process with
// the run's own environment, its output appended to a log file. A process the fault injector
// did not kill that exits anyway is started again after a pause (as a service manager would)
// and counted, so the report shows it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';

export const ROLES = ['ingest', 'engine', 'delivery', 'sink', 'scheduler'] as const;
export type Role = (typeof ROLES)[number];

export interface Member {
  /** Unique name, e.g. `engine-a`. */
  readonly name: string;
  readonly role: Role;
  /** Exits the fault injector did not cause. */
  unplannedExits: number;
  starts: number;
  alive(): boolean;
  start(): void;
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM and wait (then SIGKILL after `graceMs`); resolves to the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  closeLog(): Promise<void>;
}

export interface Supervisor {
  readonly members: Member[];
  byRole(role: Role): Member[];
  stopAll(): Promise<void>;
}

export function createSupervisor(o: {
  root: string;
  logDir: string;
  env: Record<string, string>;
  members: { name: string; role: Role; env?: Record<string, string> }[];
  log: (line: string) => void;
}): Supervisor {
  let stopping = false;
  const members: Member[] = o.members.map((spec) => {
    let child: ChildProcess | null = null;
    let exited: Promise<void> = Promise.resolve();
    let planned = false;
    let logFile: WriteStream | null = null;
    const m: Member = {
      name: spec.name,
      role: spec.role,
      unplannedExits: 0,
      starts: 0,
      alive: () => child !== null && child.exitCode === null && child.signalCode === null,
      start() {
        if (m.alive()) return;
        planned = false;
        m.starts++;
        logFile ??= createWriteStream(path.join(o.logDir, `${spec.name}.log`), { flags: 'a' });
        logFile.write(`\n=== start ${m.starts} at ${new Date().toISOString()}\n`);
        const c = spawn(
          process.execPath,
          ['--import', 'tsx/esm', path.join(o.root, 'bin/cli.ts'), 'run', spec.role],
          { cwd: o.root, env: { ...o.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        c.stdout!.pipe(logFile, { end: false });
        c.stderr!.pipe(logFile, { end: false });
        child = c;
        exited = new Promise<void>((resolve) =>
          c.once('exit', (code, signal) => {
            logFile?.write(`=== exit code=${code} signal=${signal}\n`);
            resolve();
            if (planned || stopping) return;
            m.unplannedExits++;
            o.log(`${spec.name} exited by itself (code ${code}, signal ${signal}); restarting it`);
            setTimeout(() => {
              if (!stopping && !m.alive()) m.start();
            }, 1000).unref();
          }),
        );
      },
      async kill() {
        if (!m.alive()) return;
        planned = true;
        child!.kill('SIGKILL');
        await exited;
      },
      async stop(graceMs = 30_000) {
        if (!m.alive()) return child?.exitCode ?? null;
        planned = true;
        const c = child!;
        c.kill('SIGTERM');
        const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
        return c.exitCode;
      },
      async closeLog() {
        const f = logFile;
        logFile = null;
        if (f) await new Promise<void>((resolve) => f.end(() => resolve()));
      },
    };
    return m;
  });
  return {
    members,
    byRole: (role) => members.filter((m) => m.role === role),
    async stopAll() {
      stopping = true;
      await Promise.all(members.map((m) => m.stop(15_000)));
      await Promise.all(members.map((m) => m.closeLog()));
    },
  };
}
