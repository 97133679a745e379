// The OpenAPI documents of every server, as `lifecycle openapi` writes them and each server
// serves them: every operation is described (the lint step runs Redocly on the same
// documents; this catches the same gaps when the unit tests run alone), and the kit's
// defaults reach a route that declares nothing but its access.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../platform/errors.ts';
import { adminCredential, httpServerOptions, setupHttpKit } from '../platform/http.ts';
import {
  CODED_ERROR_REF,
  operationProblems,
  type OpenApiDocument,
} from '../test/support/openapi.ts';
import { openApiDocument, SERVERS, writeOpenApiDocuments } from './openapi.ts';

describe('the OpenAPI document of every server', () => {
  it.each(SERVERS)(
    '%s: every operation has an operationId, a summary, a tag, its security, a successful answer and its refusals as CodedError',
    async (name) => {
      const doc = (await openApiDocument(name)) as unknown as OpenApiDocument;
      expect(Object.keys(doc.paths).length).toBeGreaterThan(2);
      expect(operationProblems(doc)).toEqual([]);
    },
    30_000,
  );

  it('the API server: staff routes carry the staff scheme and x-roles, public ones say []', async () => {
    const doc = (await openApiDocument('api')) as unknown as OpenApiDocument & {
      paths: Record<string, Record<string, { 'x-roles'?: string[] }>>;
    };
    expect(doc.paths['/v1/keys']!.post).toMatchObject({
      security: [{ staffKey: [] }],
      'x-roles': ['admin'],
    });
    expect(Object.keys(doc.paths['/v1/keys']!.post!.responses!).sort()).toEqual(
      ['201', '400', '401', '403', '413', '415', '500'].sort(),
    );
    expect(doc.paths['/t/c']!.get!.security).toEqual([]);
    expect(doc.paths['/v1/inapp/inbox']!.get!.security).toEqual([
      { inappToken: [] },
      { inappBearer: [] },
    ]);
    // A page's 400 is its HTML page, and the kit's refusals of a malformed request in JSON.
    expect(Object.keys(doc.paths['/p']!.get!.responses!['400']!.content!).sort()).toEqual([
      'application/json',
      'text/html',
    ]);
  });

  it('is the same every time it is built (documents are compared and published as files)', async () => {
    const [a, b] = [
      await mkdtemp(path.join(tmpdir(), 'oa-')),
      await mkdtemp(path.join(tmpdir(), 'oa-')),
    ];
    try {
      const files = await writeOpenApiDocuments(a);
      await writeOpenApiDocuments(b);
      expect(files.map((f) => path.basename(f))).toEqual([
        'api.json',
        'ingest.json',
        'worker.json',
      ]);
      for (const f of files) {
        const name = path.basename(f);
        expect(await readFile(path.join(b, name), 'utf8'), name).toBe(await readFile(f, 'utf8'));
      }
    } finally {
      await Promise.all([a, b].map((d) => rm(d, { recursive: true, force: true })));
    }
  }, 60_000);
});

describe('a new route on the kit', () => {
  it('gets its security, x-roles, an operationId and the standard refusals from its declared access alone', async () => {
    const app = Fastify(httpServerOptions({ trustProxy: 'false' }));
    await setupHttpKit(app, {
      credentials: { staff: adminCredential('t') },
      openapi: { info: { title: 't', version: '1' } },
    });
    app.post(
      '/v1/things/:id',
      {
        config: { auth: { roles: ['marketer'] } },
        schema: {
          summary: 'Make a thing',
          tags: ['things'],
          response: { 201: { type: 'object', properties: { id: { type: 'string' } } } },
        },
      },
      async (_req, reply) => reply.code(201).send({ id: 'x' }),
    );
    await app.ready();
    const doc = app.swagger() as unknown as OpenApiDocument & {
      paths: Record<string, Record<string, { 'x-roles'?: string[] }>>;
    };
    await app.close();
    const op = doc.paths['/v1/things/{id}']!.post!;
    expect(op).toMatchObject({
      operationId: 'postV1ThingsId',
      security: [{ adminToken: [] }],
      'x-roles': ['admin', 'marketer'],
    });
    for (const status of ['400', '401', '403', '413', '415', '500'])
      expect(op.responses![status]!.content!['application/json']!.schema, status).toEqual({
        $ref: CODED_ERROR_REF,
      });
    expect(doc.components!.schemas!.CodedError!.properties!.code!.enum).toEqual(
      Object.keys(ERROR_CODES),
    );
  });

  it('is found out by the check when it says nothing of itself', async () => {
    const app = Fastify(httpServerOptions({ trustProxy: 'false' }));
    await setupHttpKit(app, { openapi: { info: { title: 't', version: '1' } } });
    app.get('/v1/bare', { config: { auth: 'public' } }, async () => ({ ok: true }));
    await app.ready();
    const doc = app.swagger() as unknown as OpenApiDocument;
    await app.close();
    expect(operationProblems(doc)).toEqual([
      'GET /v1/bare: no summary',
      'GET /v1/bare: no tag',
      'GET /v1/bare: no successful answer (2xx or 3xx)',
    ]);
  });
});
