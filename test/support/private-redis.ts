// A redis-server of a test's own, as a child process on a free port with its data folder in
// a temporary directory: a test can SIGKILL it and start it again on the same folder and
// port without disturbing the stack's Redis that other tests share.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** The server's output so far (last 20 kB), for failure messages. */
  output(): string;
  /** SIGKILL: nothing is flushed beyond what the fsync policy already put on disk. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and data folder; resolves once it answers. */
  restart(): Promise<void>;
  /** Kills the server and removes its data folder. */
  stop(): Promise<void>;
}

export interface PrivateRedisOptions {
  appendfsync?: 'always' | 'everysec' | 'no';
  appendonly?: boolean;
  maxmemoryPolicy?: string;
}

async function answers(port: number): Promise<boolean> {
  const probe = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    // A server still replaying its AOF answers LOADING errors.
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

export async function startPrivateRedis(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'lc-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--appendonly',
    options.appendonly === false ? 'no' : 'yes',
    '--appendfsync',
    options.appendfsync ?? 'always',
    '--maxmemory-policy',
    options.maxmemoryPolicy ?? 'noeviction',
    '--save',
    '',
    '--protected-mode',
    'no',
  ];
  let child: ChildProcess | null = null;
  let out = '';
  const launch = async () => {
    const c = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer) => {
      out = (out + b.toString()).slice(-20_000);
    };
    c.stdout!.on('data', keep);
    c.stderr!.on('data', keep);
    child = c;
    for (let i = 0; i < 200; i++) {
      if (c.exitCode !== null || c.signalCode !== null)
        throw new Error(`redis-server on port ${port} exited while starting:\n${out}`);
      if (await answers(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${port} did not answer within 10 s:\n${out}`);
  };
  const kill = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    output: () => out,
    kill,
    restart: launch,
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
