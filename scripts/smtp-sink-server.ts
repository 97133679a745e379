// The SMTP sink as a standalone process, started by `scripts/stack up`.
// node --import tsx/esm scripts/smtp-sink-server.ts --port 12525 --http-port 12580 --dir .stack/data/smtp
import { parseArgs } from 'node:util';
import { createSmtpSink } from '../devtools/smtp-sink.ts';
import { createLogger } from '../platform/logger.ts';
import { onShutdown } from '../platform/shutdown.ts';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '12525' },
    'http-port': { type: 'string', default: '12580' },
    dir: { type: 'string', default: '.stack/data/smtp' },
  },
});

const logger = createLogger({ name: 'smtp-sink' });
const sink = createSmtpSink({
  host: values.host,
  port: Number(values.port),
  httpPort: Number(values['http-port']),
  dir: values.dir,
  // Read over HTTP only (tests, people): parse when read, not on the accept path.
  views: 'on-read',
  logger,
});
await sink.start();
onShutdown(logger, () => sink.stop());
