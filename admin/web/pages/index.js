// The admin pages, in the order of the navigation. Each module default-exports
// `{ id, title, roles, route, component }`; the shell shows a page to the roles it lists
// (admin sees every page) and hands the component `{ path, params }`: the rest of the hash
// route after `route`, and its query.
import home from './home.js';
import users from './users.js';
import templates from './templates.js';
import campaigns from './campaigns.js';
import rules from './rules.js';
import dashboards from './dashboards.js';
import audit from './audit.js';
import keys from './keys.js';

export default [home, users, templates, campaigns, rules, dashboards, audit, keys];
