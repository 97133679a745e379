// Benchmark runner: `npm run bench [-- name ...]`. Each benchmark measures the product
// against a baseline in the same run (json-rules-engine, raw kafkajs consume, a fastify
// hello-world route...) and reports ratios, because the machines are noisy. Results go to
// bench/results/<name>.json and a readable summary to stdout.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

interface BenchModule {
  run(): Promise<unknown>;
}

const BENCHES: Record<string, { file: string; needsStack: boolean; about: string }> = {
  'rules-evaluator': {
    file: './rules-evaluator.ts',
    needsStack: false,
    about: 'compiled evaluator vs json-rules-engine',
  },
  'delivery-email': {
    file: './delivery-email.ts',
    needsStack: false,
    about: 'template renders/s, emails accepted by a local SMTP sink/s',
  },
  'delivery-policy': {
    file: './delivery-policy.ts',
    needsStack: true,
    about: 'policy-chain decisions/s with Redis',
  },
  'redis-fsync': {
    file: './redis-fsync.ts',
    needsStack: false,
    about: 'state writes and claims on Redis with appendfsync always vs everysec',
  },
  'ingest-http': {
    file: './ingest-http.ts',
    needsStack: true,
    about: 'Segment API vs fastify hello-world, Kafka acking',
  },
  'send-api': {
    file: './send-api.ts',
    needsStack: true,
    about: 'send API vs ingest /v1/track, Kafka acking',
  },
  cdc: { file: './cdc.ts', needsStack: true, about: 'Debezium records decoded and mapped/s' },
  'campaign-fanout': {
    file: './campaign-fanout.ts',
    needsStack: true,
    about: 'campaign members into the events topic/s through the scheduler vs raw kafkajs produce',
  },
  engine: {
    file: './engine.ts',
    needsStack: true,
    about: 'engine vs raw kafkajs consume; event-to-send latency',
  },
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
if (process.argv.includes('--help')) {
  console.log('usage: npm run bench [-- NAME ...]\n\nbenchmarks:');
  for (const [name, b] of Object.entries(BENCHES))
    console.log(
      `  ${name.padEnd(18)} ${b.about}${b.needsStack ? ' (needs scripts/stack up)' : ''}`,
    );
  process.exit(0);
}
const unknown = wanted.filter((w) => !(w in BENCHES));
if (unknown.length) {
  console.error(
    `unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHES).join(', ')}`,
  );
  process.exit(2);
}

const results: Record<string, unknown> = {};
let failed = 0;
for (const [name, b] of Object.entries(BENCHES)) {
  if (wanted.length && !wanted.includes(name)) continue;
  console.log(`\n=== ${name}: ${b.about}`);
  try {
    const mod = (await import(b.file)) as BenchModule;
    results[name] = await mod.run();
  } catch (err) {
    failed++;
    results[name] = { error: (err as Error).message };
    console.error(
      `${name} failed: ${(err as Error).message}${b.needsStack ? ' (is the stack up? scripts/stack up)' : ''}`,
    );
  }
}
const dir = path.join(import.meta.dirname, 'results');
await mkdir(dir, { recursive: true });
await writeFile(
  path.join(dir, 'summary.json'),
  JSON.stringify({ at: new Date().toISOString(), results }, null, 2),
);
console.log(`\nresults: ${path.join(dir, 'summary.json')}`);
process.exit(failed ? 1 : 0);
