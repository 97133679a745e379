// The Kafka Connect REST API for the Debezium tests: one request, its status and JSON body.
export interface ConnectAnswer {
  status: number;
  json: unknown;
}

/** `method path` against a Connect worker at `base` (e.g. http://127.0.0.1:18083), with an optional JSON body. */
export async function connectRequest(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<ConnectAnswer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
}
