// Admin room: what managers and support staff see composed from the other rooms' ports — user lookup now; campaigns and admin pages build on it.
export * from './users.ts';
