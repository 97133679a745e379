// The security headers every server of the product sends: the fastify servers through the HTTP
// kit (platform/http.ts), the workers' bare metrics endpoint (platform/metrics.ts) and the
// development SMTP catcher's HTTP API (devtools/smtp-sink.ts).

/**
 * The Content-Security-Policy of everything that is not an HTML page (JSON, the open
 * pixel, redirects): nothing may load, run, frame it or be submitted from it.
 */
export const API_CONTENT_SECURITY_POLICY =
  "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * Headers on every answer of every server, refusals and misses included. `no-referrer`
 * keeps signed tracking tokens (`?t=`) out of the Referer of whatever a page or a click
 * redirect leads to. A page sets its own Content-Security-Policy (`pageSecurityPolicy`).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': API_CONTENT_SECURITY_POLICY,
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
});
