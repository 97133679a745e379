import { describe, expect, it } from 'vitest';
import { envVariables } from '../platform/config.ts';
import { localStackEnv, readStackEnv } from './support/stack-env.ts';

// The local stack and the product must agree without any variable set: a process started
// with the config defaults talks to `scripts/stack up`'s services.
describe('scripts/stack.env', () => {
  const stack = readStackEnv();
  const defaults = new Map(envVariables().map((v) => [v.env, v.default]));

  it.each(Object.entries(localStackEnv(stack)))(
    '%s of the local stack is the config default',
    (name, value) => {
      expect(defaults.has(name)).toBe(true);
      const d = defaults.get(name);
      expect(Array.isArray(d) ? d.join(',') : d).toBe(value);
    },
  );

  it('pins the Kafka version the Debezium connector is built against', () => {
    expect(stack.KAFKA_VERSION).toBe('3.9.1');
    expect(stack.DEBEZIUM_VERSION).toMatch(/^3\.2\.\d+\.Final$/);
  });
});
