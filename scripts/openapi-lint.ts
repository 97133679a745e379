// `npm run lint:openapi`: the OpenAPI document of every server (`lifecycle openapi`, built
// without any service) checked by Redocly's linter with the rules of redocly.yaml. Exits
// non-zero on any problem, naming the document and the place in it; the documents stay in
// their temporary folder then, to be read.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Runs a command in the repository; resolves with its exit code. Output is passed on, less `drop`'s lines. */
function run(command: string, args: string[], drop?: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // No telemetry or update check: the lint step talks to nothing outside the machine.
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_NOTIFICATIONS: 'true' },
    });
    const pass = (from: NodeJS.ReadableStream, to: NodeJS.WritableStream) => {
      let rest = '';
      from.setEncoding('utf8');
      from.on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (!drop?.test(line)) to.write(`${line}\n`);
      });
      from.on('end', () => {
        if (rest && !drop?.test(rest)) to.write(rest);
      });
    };
    pass(child.stdout, process.stdout);
    pass(child.stderr, process.stderr);
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

const dir = await mkdtemp(path.join(tmpdir(), 'lifecycle-openapi-'));
const built = await run(path.join(ROOT, 'bin', 'lifecycle'), ['openapi', '--out', dir]);
if (built !== 0) {
  console.error('lint:openapi: the documents could not be built (lifecycle openapi failed above)');
  process.exit(built);
}
const linted = await run(
  path.join(ROOT, 'node_modules', '.bin', 'redocly'),
  [
    'lint',
    ...(await readdir(dir)).sort().map((file) => path.join(dir, file)),
    '--config',
    path.join(ROOT, 'redocly.yaml'),
  ],
  // Redocly's framed notice about Node.js versions says nothing about the documents.
  /[║╔╚]/,
);
if (linted !== 0) {
  console.error(
    `lint:openapi: fix the route's schema where the route is defined (operationId, summary, tags, its responses; the HTTP kit adds security and the standard refusals). The documents are in ${dir}`,
  );
  process.exit(linted);
}
await rm(dir, { recursive: true, force: true });
