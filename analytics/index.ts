// Analytics room: sinks events, send commands and delivery outcomes from Kafka into ClickHouse (server or chDB), erases the users deleted upstream (with a log of it), and answers the funnel, holdout-uplift, deliverability, retention, churn and re-engagement questions over them.
export * from './schema.ts';
export * from './sink.ts';
export * from './queries.ts';
export * from './stats.ts';
export * from './erasure.ts';
