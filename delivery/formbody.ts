// application/x-www-form-urlencoded bodies (the preference page's and the unsubscribe
// page's forms, and RFC 8058 one-click POSTs), parsed into a flat object.
import type { FastifyInstance } from 'fastify';

export default async function formbody(app: FastifyInstance): Promise<void> {
  if (app.hasContentTypeParser('application/x-www-form-urlencoded')) return;
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 65_536 },
    (_req, body, done) => {
      const out: Record<string, string> = {};
      for (const [k, v] of new URLSearchParams(body as string)) out[k] = v;
      done(null, out);
    },
  );
}
