// scripts/stack's launch: a service it starts must not inherit the caller's descriptors. A
// caller that reads the script's output through a pipe (a test runner, `$(...)`) waits for
// end-of-file, which never comes while a long-running service holds the pipe's write end;
// a caller's flock would likewise stay held for as long as the service runs.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const STACK = path.join(import.meta.dirname, 'stack');

describe('scripts/stack launch', () => {
  it('detaches the service from every descriptor above 2 of its caller', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lc-launch-'));
    // The script's own launch and close_inherited_fds, run on a `sleep` that stands in for a
    // service, with an extra descriptor (7) open as a caller's lock would be.
    const harness = `
      set -euo pipefail
      RUN=${dir}; LOGS=${dir}; LAUNCHED=()
      eval "$(sed -n '/^close_inherited_fds()/,/^}/p;/^launch()/,/^}/p' ${STACK})"
      exec 7>${dir}/lock
      launch service sleep 30
      echo launched
    `;
    const child = spawn('bash', ['-c', harness], { stdio: ['ignore', 'pipe', 'inherit'] });
    const t0 = Date.now();
    let out = '';
    child.stdout.on('data', (d) => (out += d.toString()));
    // The pipe closes when every holder of its write end is gone: the harness at once, the
    // service only after 30 s if it inherited stdout's pipe.
    await new Promise<void>((r) => child.stdout.once('close', () => r()));
    const ms = Date.now() - t0;
    const pid = Number(readFileSync(path.join(dir, 'service.pid'), 'utf8'));
    const comm = () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    try {
      expect(out.trim()).toBe('launched');
      expect(ms).toBeLessThan(10_000);
      // The pid file names the service itself (once setsid and nohup have exec'd into it),
      // and it holds nothing but 0, 1 and 2.
      for (let i = 0; i < 100 && comm() !== 'sleep'; i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(comm()).toBe('sleep');
      const { readdirSync } = await import('node:fs');
      expect(readdirSync(`/proc/${pid}/fd`).map(Number).sort()).toEqual([0, 1, 2]);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });
});
