// The OpenAPI documents of every server of the product, built without any service: the API
// server over the in-memory stores (the demo's wiring), the ingest server over the in-memory
// bus, and a worker's operational endpoint. Each is the document the server serves at
// /openapi.json. `lifecycle openapi --out DIR` writes them (the lint step checks them with
// `npm run lint:openapi`).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { FastifyInstance } from 'fastify';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import { createOperationalServer } from '../platform/http.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import { createIngestServer } from '../ingestion/index.ts';
import { createApiServer } from './api.ts';

/** The servers, by the file name their document is written to. */
export const SERVERS = ['api', 'ingest', 'worker'] as const;
export type ServerName = (typeof SERVERS)[number];

/** Builds one server as its process would, on in-memory stand-ins for Kafka and Redis. */
async function build(name: ServerName): Promise<FastifyInstance> {
  // The defaults, never the environment: the same sources give the same documents anywhere.
  const config = loadConfig(
    {},
    {
      'auth.signingSecret': 'openapi-document-signing-secret',
      'auth.inappSecret': 'openapi-document-inapp-secret',
    },
  );
  const metrics = createMetricsRegistry({ defaults: false });
  switch (name) {
    case 'api':
      return createApiServer(config, {
        memory: {
          stores: createMemoryDeliveryStores(),
          inbox: createMemoryInbox(),
          live: createMemoryLiveChannel(),
        },
        publisher: new InMemoryBus(1).publisher(),
        logger: silentLogger(),
        metrics,
      });
    case 'ingest':
      return createIngestServer(
        { ...config, auth: { ...config.auth, writeKeys: ['docs:openapi-document-write-key'] } },
        { bus: new InMemoryBus(1), logger: silentLogger(), metrics },
      );
    case 'worker':
      return createOperationalServer({ metrics, health: () => ({ ok: true }) });
  }
}

/** The OpenAPI document one server serves at /openapi.json. */
export async function openApiDocument(name: ServerName): Promise<Record<string, unknown>> {
  const app = await build(name);
  try {
    await app.ready();
    return app.swagger() as unknown as Record<string, unknown>;
  } finally {
    await app.close();
  }
}

/** Writes `<name>.json` of every server into `dir`; returns the files. */
export async function writeOpenApiDocuments(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const name of SERVERS) {
    const file = path.join(dir, `${name}.json`);
    await writeFile(file, `${JSON.stringify(await openApiDocument(name), null, 2)}\n`);
    files.push(file);
  }
  return files;
}

export function register(program: Command): void {
  program
    .command('openapi')
    .description(
      `Write the OpenAPI document of every server (${SERVERS.join(', ')}) as <server>.json into a folder, as each serves it at /openapi.json; needs no service`,
    )
    .requiredOption('--out <dir>', 'folder to write the documents to')
    .action(async (opts: { out: string }) => {
      for (const file of await writeOpenApiDocuments(opts.out)) console.log(file);
    });
}
