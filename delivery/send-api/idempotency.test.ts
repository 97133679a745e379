import { describe } from 'vitest';
import { idempotencyStoreContract } from '../../test/support/idempotency-store.contract.ts';
import { createMemoryIdempotencyStore } from './idempotency.ts';

describe('the in-memory Idempotency-Key store (the demo)', () => {
  idempotencyStoreContract(() => createMemoryIdempotencyStore());
});
