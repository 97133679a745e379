// Admin room: what managers and support staff see composed from the other rooms' ports — user lookup, campaigns, rules (the set in force, simulations and backtests of drafts) — and the admin pages that build on them.
export * from './users.ts';
export * from './campaigns.ts';
export * from './rules-routes.ts';
export * from './pages.ts';
