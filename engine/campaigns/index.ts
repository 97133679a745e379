// Campaigns: their model and state machine, the rule each compiles to, the replicated table on the campaigns topic, and uploaded audiences.
export * from './model.ts';
export * from './compile.ts';
export * from './table.ts';
export * from './audience.ts';
