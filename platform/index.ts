// Shared room: configuration, logging, errors, message contracts and the adapters (bus, Redis, analytics store) every other room builds on.
export * from './config.ts';
export * from './logger.ts';
export * from './errors.ts';
export * from './contracts.ts';
export * from './avro.ts';
export * from './bus.ts';
export * from './keys.ts';
export * from './metrics.ts';
export * from './shutdown.ts';
