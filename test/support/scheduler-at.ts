// The scheduler process as `lifecycle run scheduler` runs it, configured from the environment,
// with its clock moved by the number of milliseconds given as the first argument: integration
// tests start it "on Thursday night" and again "on Friday", and SIGKILL it in between.
// `node --import tsx/esm test/support/scheduler-at.ts <offsetMs>`; SIGTERM stops it gracefully.
import { loadConfig } from '../../platform/config.ts';
import { createLogger } from '../../platform/logger.ts';
import { runScheduler } from '../../engine/scheduler/main.ts';

const offset = Number(process.argv[2] ?? 0);
if (!Number.isFinite(offset)) throw new Error(`not a clock offset: ${process.argv[2]}`);
const config = loadConfig();
const logger = createLogger({ level: config.log.level, name: 'scheduler' });
const unit = await runScheduler(config, logger, { clock: () => Date.now() + offset });
logger.info(
  { offset, now: new Date(Date.now() + offset).toISOString() },
  'scheduler on a moved clock',
);
process.once('SIGTERM', () => {
  void unit.stop().then(() => process.exit(0));
});
