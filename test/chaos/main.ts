// `npm run chaos [-- --long] [-- --seed N] [-- --faults N] [-- --keep]`: the whole-pipeline
// chaos run on the local stack (see test/chaos/README.md). Prints the seed first and the
// table last; exits 1 when a check failed. It restarts shared services: run it alone.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runChaos } from './driver.ts';

const { values } = parseArgs({
  options: {
    long: { type: 'boolean', default: false },
    seed: { type: 'string' },
    faults: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(seed) || seed < 0) {
  console.error(`--seed: ${values.seed} is not a non-negative integer`);
  process.exit(2);
}
const report = await runChaos({
  long: values.long,
  seed,
  ...(values.faults === undefined ? {} : { faults: Number(values.faults) }),
  keep: values.keep,
});
const detailsFile = path.join(report.logDir, 'report.json');
writeFileSync(detailsFile, JSON.stringify(report, null, 2));
console.log(report.table);
console.log(`details: ${detailsFile}`);
process.exit(report.failures.length > 0 ? 1 : 0);
