// Analytics room: sinks events, send commands, delivery outcomes and the message log from Kafka into ClickHouse (server or chDB), erases the users deleted upstream (with a log of it), answers the funnel, holdout-uplift, deliverability, retention, churn and re-engagement questions over them, and serves the message log (what was sent to whom) to staff.
export * from './schema.ts';
export * from './sink.ts';
export * from './queries.ts';
export * from './stats.ts';
export * from './erasure.ts';
export * from './messages.ts';
