// What test/global-setup.ts hands to every integration test through vitest's provide/inject.

/** Where the services of this run are, whichever way they were started. */
export interface StackInfo {
  /** `local`: scripts/stack on this machine; `docker`: containers started by testcontainers. */
  mode: 'local' | 'docker';
  /**
   * LC_* variables pointing at the services, ready for `loadConfig(env)`; tests add their
   * own isolation variables (topic prefix, key prefix, database) on top.
   */
  env: Record<string, string>;
  /** Kafka Connect REST API (connectors are created per test with POST /connectors). */
  connectUrl: string;
  /** How the Kafka Connect worker reaches PostgreSQL (inside Docker it is not 127.0.0.1). */
  connectPostgres: { host: string; port: number; user: string; password: string; database: string };
  /** HTTP read API of the SMTP sink (GET /messages, GET /messages/:id, DELETE /messages). */
  smtpApiUrl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}
