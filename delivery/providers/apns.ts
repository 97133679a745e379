// An HTTP/2 client of APNs (node:http2): one session per host, reused by every request and
// opened again when the host closed it (APNs sends GOAWAY after idle time or a token error).
// `https:` is TLS as APNs requires; `http:` speaks HTTP/2 in the clear (prior knowledge), which
// only local stand-ins of APNs do.
import { connect, constants, type ClientHttp2Session } from 'node:http2';

export interface ApnsResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface ApnsClient {
  post(path: string, req: { headers: Record<string, string>; body: string }): Promise<ApnsResponse>;
  close(): Promise<void>;
}

export function createApnsClient(opts: { url: string; timeoutMs: number }): ApnsClient {
  const origin = new URL(opts.url).origin;
  let session: ClientHttp2Session | undefined;

  const open = (): ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    const s = connect(origin);
    // Errors surface on the requests; an idle session must not crash the process.
    s.on('error', () => undefined);
    s.on('close', () => {
      if (session === s) session = undefined;
    });
    // Not held open for the process: an idle session never keeps it alive.
    s.unref();
    session = s;
    return s;
  };

  return {
    post(path, req) {
      return new Promise<ApnsResponse>((resolve, reject) => {
        let stream;
        try {
          stream = open().request({
            [constants.HTTP2_HEADER_METHOD]: 'POST',
            [constants.HTTP2_HEADER_PATH]: path,
            ...req.headers,
          });
        } catch (err) {
          reject(err as Error);
          return;
        }
        const timer = setTimeout(() => {
          stream.close(constants.NGHTTP2_CANCEL);
          reject(Object.assign(new Error('no answer from APNs in time'), { name: 'TimeoutError' }));
        }, opts.timeoutMs);
        let status = 0;
        const headers: Record<string, string> = {};
        const chunks: Buffer[] = [];
        stream.on('response', (h) => {
          status = Number(h[constants.HTTP2_HEADER_STATUS]);
          for (const [k, v] of Object.entries(h))
            if (!k.startsWith(':') && v !== undefined)
              headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
        });
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          clearTimeout(timer);
          if (status === 0)
            reject(
              Object.assign(new Error('stream ended without an answer'), { code: 'ECONNRESET' }),
            );
          else resolve({ status, headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        stream.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        stream.end(req.body);
      });
    },
    async close() {
      const s = session;
      session = undefined;
      if (s && !s.closed) await new Promise<void>((r) => s.close(() => r()));
    },
  };
}
