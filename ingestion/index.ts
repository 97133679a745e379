// Ingestion room: Segment-compatible HTTP API and Debezium CDC, both producing normalised events on `<prefix>.events`.
export { createIngestServer, type IngestServerConfig, type IngestDeps } from './http/server.ts';
export {
  createCdcProcessor,
  processRecord,
  type CdcProcessorConfig,
  type CdcDeps,
} from './cdc/processor.ts';
export { loadMapping, checkMapping, MappingError, type CdcMapping } from './cdc/mapping.ts';
export { mapChange } from './cdc/mapper.ts';
export { runCdc, cdcGroupId } from './run.ts';
export { runIngest } from './http/run.ts';
export { parseWriteKeyEntry } from './http/auth.ts';
export { userHash, USER_HASH_FIELD, BUILT_IN_PROTECTED_TRAITS } from './http/trust.ts';
