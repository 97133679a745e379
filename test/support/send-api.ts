// Shared pieces of the send API's tests: users in the engine's state store, as the engine
// writes them, and the shipped templates.
import { silentLogger } from '../../platform/logger.ts';
import type { UserDirectory } from '../../platform/users.ts';
import { createUserDirectory, MemoryStores } from '../../engine/index.ts';
import { emptyState, serializeState } from '../../engine/core/state.ts';
import { createTemplateRenderer, type TemplateRenderer } from '../../delivery/templates/index.ts';
import { REPO_ROOT } from './stack-env.ts';
import { join } from 'node:path';

/** The engine's in-memory state store holding these users' traits, and its directory. */
export async function memoryUsers(
  users: Record<string, Record<string, unknown>>,
): Promise<{ stores: MemoryStores; directory: UserDirectory }> {
  const stores = new MemoryStores();
  const epoch = await stores.acquire(0);
  await stores.write(
    0,
    epoch,
    Object.entries(users).map(([userId, traits], i) => {
      const state = emptyState();
      state.traits = { ...traits };
      return { userId, state: serializeState(state), offset: String(i + 1), timerIds: [] };
    }),
  );
  return { stores, directory: createUserDirectory(stores) };
}

/** The renderer over the repository's templates folder, as delivery and the API run it. */
export function shippedTemplates(): TemplateRenderer {
  return createTemplateRenderer(
    { dir: join(REPO_ROOT, 'templates'), strict: true },
    silentLogger(),
  );
}
