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
