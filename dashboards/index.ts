// Dashboards room: analysts' dashboard specs (*.json here: SQL or built-in query panels), their loader and checks, and the page and admin API that render them.
export * from './schema.ts';
export { BUILTIN_QUERIES, type BuiltinQuery, type PanelContext } from './builtins.ts';
export {
  loadDashboards,
  checkDashboard,
  formatDashboardError,
  STANDARD_PARAMS,
  type DashboardError,
  type DashboardSet,
  type LoadedDashboard,
} from './loader.ts';
export { panelContext, runPanel, parseInstant, type PanelResult } from './run.ts';
export { dashboardRoutes, type DashboardRoutesOptions } from './routes.ts';
