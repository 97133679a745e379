// The in-memory stores of the demo keep the same contract as the Redis ones.
import { storesContract } from '../../test/support/delivery-stores.contract.ts';
import { createMemoryDeliveryStores } from './memory-stores.ts';

const stores = createMemoryDeliveryStores();
storesContract({ ...stores, runId: 'memory' });
