// The lanes between rooms (docs/architecture.md says why each exists), checked in the
// lint step (`npm run lint:lanes`, part of `npm test`). A room may import the rooms below
// it in the data flow and the platform kernel, never a room beside or above it, never
// test support; and no folder, inside a room or across rooms, imports one that imports it back.
/** Product code: tests (`*.test.ts`) may also reach test/support and the development tools. */
const PRODUCT =
  '^(platform|access|rules|engine|ingestion|delivery|analytics|dashboards|admin|devtools|bin|scripts)/';
const TESTS = '\\.test\\.ts$';

const ROOMS = PRODUCT.slice(2, -2).split('|');

/** room -> the rooms it may import (docs/architecture.md); every other room is forbidden to it. */
const MAY_IMPORT = {
  platform: [],
  access: ['platform'],
  rules: ['platform'],
  ingestion: ['platform'],
  engine: ['platform', 'rules'],
  delivery: ['platform'],
  analytics: ['platform', 'rules', 'engine'],
  dashboards: ['platform', 'analytics'],
  admin: ['platform', 'access', 'rules', 'engine', 'delivery', 'analytics'],
  devtools: ['platform'],
  scripts: ['platform', 'devtools'],
};
const LANES = Object.fromEntries(
  Object.entries(MAY_IMPORT).map(([room, allowed]) => [
    room,
    ROOMS.filter((r) => r !== room && !allowed.includes(r)),
  ]),
);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...Object.entries(LANES).map(([room, forbidden]) => ({
      name: `lane-${room}`,
      severity: 'error',
      comment: `${room}/ may not import ${forbidden.join(', ')} (see docs/architecture.md, "Rooms and lanes")`,
      from: { path: `^${room}/`, pathNot: TESTS },
      to: { path: `^(${forbidden.join('|')})/` },
    })),
    {
      name: 'no-test-support-in-product',
      severity: 'error',
      comment:
        'product code must not import test support, fixtures or benchmarks: move the shared part into the room, or the test part under test/support/',
      from: { path: PRODUCT, pathNot: TESTS },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-folder-cycle',
      severity: 'error',
      scope: 'folder',
      comment:
        'folders that import each other (directly or round a circle) are one unit pretending to be two: move the shared piece to the lower folder or a top-level file of the room',
      from: { path: PRODUCT, pathNot: TESTS },
      to: { circular: true },
    },
    {
      name: 'no-module-cycle',
      severity: 'error',
      comment: 'modules that import each other load in an order that depends on who came first',
      from: { path: PRODUCT, pathNot: TESTS },
      to: { circular: true },
    },
  ],
  options: {
    // Tests are not product code: they are left out, and test support is seen only as a
    // target, so a test importing its room and its support does not read as a folder cycle.
    doNotFollow: { path: '^(node_modules|test|bench)/' },
    exclude: { path: ['^(\\.stack|\\.data|bench/results)/', '\\.test\\.ts$'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
