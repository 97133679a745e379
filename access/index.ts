// Access room: staff identity (API keys, JWTs of the identity provider, the admin token) proving a role, and the audit log of staff changes.
export * from './api-keys.ts';
export * from './audit-log.ts';
export * from './jwt.ts';
export * from './routes.ts';
export * from './staff-credential.ts';
