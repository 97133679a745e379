// The admin pages, served by the API server itself with no build step: `/` is the page (a
// login form, then the pages of the signed-in role), `/app/...` its ES modules and styles.
// The pages are static and public: every piece of data comes from the staff API, called by the
// browser with the credential the user typed in. Files are served from a list made when the
// server starts (the app's own files under admin/web/, and named files of preact, htm and
// uPlot); the URL only selects an entry of that list, it never becomes a path.
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../platform/http.ts';

/** The policy of the pages and everything they load: own files only, data from this server's API. */
export const ADMIN_PAGE_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  // A message's HTML body is shown in a sandboxed srcdoc frame, which inherits this policy.
  "frame-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const WEB_DIR = fileURLToPath(new URL('web/', import.meta.url));
const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** One served file: where it is read from, its type, and a rewrite of its text if it needs one. */
interface Served {
  file: string;
  type: string;
  rewrite?: (text: string) => string;
}

/**
 * The vendored modules, by the name the app imports them as. The hooks module imports the
 * bare specifier `preact`, which a browser cannot resolve without an import map (an inline
 * one would need its own hash in the policy): it is pointed at the served file instead.
 */
function vendorFiles(): Map<string, Served> {
  // The folder of an installed package (htm's exports hide its package.json: resolve its main).
  const require = createRequire(import.meta.url);
  const pkg = (name: string) => {
    let dir = path.dirname(require.resolve(name));
    while (path.basename(dir) !== name && path.dirname(dir) !== dir) dir = path.dirname(dir);
    return dir;
  };
  const js = TYPES['.js']!;
  const files = new Map<string, Served>([
    ['vendor/preact.mjs', { file: path.join(pkg('preact'), 'dist/preact.mjs'), type: js }],
    [
      'vendor/hooks.mjs',
      {
        file: path.join(pkg('preact'), 'hooks/dist/hooks.mjs'),
        type: js,
        rewrite: (text) => {
          const out = text.replace(/from\s*"preact"/g, 'from"./preact.mjs"');
          if (out === text) throw new Error('preact/hooks no longer imports "preact"');
          return out;
        },
      },
    ],
    ['vendor/htm.mjs', { file: path.join(pkg('htm'), 'dist/htm.module.js'), type: js }],
    ['vendor/uPlot.mjs', { file: path.join(pkg('uplot'), 'dist/uPlot.esm.js'), type: js }],
    [
      'vendor/uPlot.css',
      { file: path.join(pkg('uplot'), 'dist/uPlot.min.css'), type: TYPES['.css']! },
    ],
  ]);
  return files;
}

/** Every file of admin/web/ and its folders with a served type, by its path under it (`pages/users.js`). */
async function webFiles(dir: string, under = ''): Promise<Map<string, Served>> {
  const files = new Map<string, Served>();
  for (const entry of await readdir(path.join(dir, under), { withFileTypes: true })) {
    const rel = under === '' ? entry.name : `${under}/${entry.name}`;
    if (entry.name.startsWith('.')) continue;
    // Files are served one folder deep at most (`pages/users.js`), as the routes read them.
    if (entry.isDirectory()) {
      if (under === '') for (const [k, v] of await webFiles(dir, rel)) files.set(k, v);
      continue;
    }
    const type = TYPES[path.extname(entry.name)];
    if (entry.isFile() && type && rel !== 'index.html')
      files.set(rel, { file: path.join(dir, rel), type });
  }
  return files;
}

export interface AdminPagesOptions {
  /** The app's folder; admin/web/ by default. */
  webDir?: string;
}

const PAGE_HEADERS = {
  'cache-control': 'no-cache',
  'content-security-policy': ADMIN_PAGE_POLICY,
} as const;

export async function adminPages(
  app: FastifyInstance,
  opts: AdminPagesOptions = {},
): Promise<void> {
  requireHttpKit(app);
  const dir = opts.webDir ?? WEB_DIR;
  const served = new Map([...(await webFiles(dir)), ...vendorFiles()]);
  // Read now, so a missing vendored file stops the server at start rather than a page later.
  const texts = new Map<string, string>();
  const load = async (served: Served) => {
    const text = await readFile(served.file, 'utf8');
    return served.rewrite ? served.rewrite(text) : text;
  };
  for (const [name, s] of served) if (name.startsWith('vendor/')) texts.set(name, await load(s));
  const index = path.join(dir, 'index.html');
  await readFile(index, 'utf8');

  app.get(
    '/',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['pages'],
        operationId: 'adminPages',
        summary:
          'The admin pages (static; they ask for a staff credential and call the staff API with it)',
        response: {
          200: {
            description: 'The page (HTML; its scripts and styles are the files under /app/).',
            content: { 'text/html': { schema: { type: 'string' } } },
          },
        },
      },
    },
    async (_req, reply) =>
      reply
        .headers({ ...PAGE_HEADERS, 'content-type': TYPES['.html']! })
        // The app's own files are read on each request, so an edit shows at the next reload.
        .send(await readFile(index, 'utf8')),
  );

  const fileRoute = (url: string, operationId: string, params: Record<string, string>) =>
    app.get<{ Params: { file: string; folder?: string } }>(
      url,
      {
        config: { auth: 'public' },
        schema: {
          tags: ['pages'],
          operationId,
          summary: 'A script or style of the admin pages (one of the files listed at start)',
          params: {
            type: 'object',
            required: Object.keys(params),
            properties: Object.fromEntries(
              Object.entries(params).map(([k, description]) => [
                k,
                { type: 'string', maxLength: 200, description },
              ]),
            ),
          },
          response: {
            200: {
              description: 'The file (JavaScript module or CSS).',
              content: {
                'text/javascript': { schema: { type: 'string' } },
                'text/css': { schema: { type: 'string' } },
              },
            },
            404: errorResponse('Not a file of the admin pages.'),
          },
        },
      },
      async (req, reply) => {
        const { folder, file } = req.params;
        const name = folder === undefined ? file : `${folder}/${file}`;
        const found = served.get(name);
        if (!found)
          throw new LifecycleError(
            ErrorCodes.NotFound,
            `no file "${name.slice(0, 100)}" in the admin pages; they load their own files only`,
            { status: 404 },
          );
        const text = texts.get(name) ?? (await load(found));
        return reply.headers({ ...PAGE_HEADERS, 'content-type': found.type }).send(text);
      },
    );
  fileRoute('/app/:file', 'adminPagesFile', { file: 'e.g. `app.js`, `style.css`' });
  fileRoute('/app/:folder/:file', 'adminPagesFolderFile', {
    folder: '`pages` or `vendor`',
    file: 'e.g. `users.js`, `preact.mjs`',
  });
}
