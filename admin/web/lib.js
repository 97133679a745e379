// The admin pages' kit: rendering (preact + htm, no build step), the staff API with the
// session's credential, and the components every page is made of. Every value is rendered
// as text (preact escapes it); nothing here writes HTML from data.
import { h, render } from './vendor/preact.mjs';
import { useCallback, useEffect, useMemo, useRef, useState } from './vendor/hooks.mjs';
import htm from './vendor/htm.mjs';
import uPlot from './vendor/uPlot.mjs';

export const html = htm.bind(h);
export { h, render, useCallback, useEffect, useMemo, useRef, useState };

// ------------------------------------------------------------------ session
// The credential lives in this tab's sessionStorage only: closing the tab forgets it, and no
// cookie carries it, so no other site can make the browser send it.
const CREDENTIAL = 'lc-admin-credential';
const WHO = 'lc-admin-session';
const listeners = new Set();

/** `{ actor, name, role, via, expiresAt? }` of the signed-in credential, or null. */
export function session() {
  try {
    const who = JSON.parse(sessionStorage.getItem(WHO) || 'null');
    return who && sessionStorage.getItem(CREDENTIAL) ? who : null;
  } catch {
    return null;
  }
}

/** Called on log in and log out (the app re-renders). */
export function onSession(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
const changed = (reason) => listeners.forEach((l) => l(reason));

/** Checks `credential` with GET /v1/me and keeps it for this tab; throws the ApiError. */
export async function login(credential) {
  const token = String(credential || '').trim();
  if (!token)
    throw new ApiError(400, 'LC_ERR_UNAUTHORIZED', 'Paste an API key, a JWT or the admin token.');
  const who = await request('/v1/me', { headers: { authorization: `Bearer ${token}` } });
  sessionStorage.setItem(CREDENTIAL, token);
  sessionStorage.setItem(WHO, JSON.stringify(who));
  changed(null);
  return who;
}

/** Forgets the credential; `reason` is shown on the login form. */
export function logout(reason) {
  sessionStorage.removeItem(CREDENTIAL);
  sessionStorage.removeItem(WHO);
  changed(reason || null);
}

// ------------------------------------------------------------------ the staff API
/** A refusal of the API: `status`, the `LC_ERR_` `code`, its `message` and `details`. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

async function request(path, { method = 'GET', body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.body = raw ? body : JSON.stringify(body);
    if (!raw || !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type'))
      init.headers['content-type'] = raw ? 'text/plain' : 'application/json';
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'LC_ERR_NETWORK', `The server could not be reached (${err.message}).`);
  }
  const type = res.headers.get('content-type') || '';
  const data =
    res.status === 204
      ? null
      : type.includes('json')
        ? await res.json().catch(() => null)
        : await res.text();
  if (res.ok) return data;
  const coded = data && typeof data === 'object' ? data : {};
  const details = { ...(coded.details || {}) };
  if (coded.field) details.field = coded.field;
  throw new ApiError(
    res.status,
    coded.code || `HTTP_${res.status}`,
    coded.message || (typeof data === 'string' && data) || res.statusText || 'request failed',
    details,
  );
}

/**
 * Calls the staff API with the session's bearer credential: JSON in and out (`raw: true`
 * sends `body` as it is, with the content-type of `headers`). Throws an ApiError on any
 * answer that is not 2xx; a 401 also ends the session (the login form shows why).
 */
export async function api(path, opts = {}) {
  const token = sessionStorage.getItem(CREDENTIAL);
  if (!token) {
    logout('Please log in.');
    throw new ApiError(401, 'LC_ERR_UNAUTHORIZED', 'not logged in');
  }
  try {
    return await request(path, {
      ...opts,
      headers: { ...(opts.headers || {}), authorization: `Bearer ${token}` },
    });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401)
      logout(`${err.message} (${err.code}). Please log in again.`);
    throw err;
  }
}

/** `{ data, error, loading, reload }` of GET `path`, fetched again when `deps` change; a null path fetches nothing. */
export function useApi(path, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: path != null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path == null) return setState({ data: null, error: null, loading: false });
    let live = true;
    setState((s) => ({ ...s, error: null, loading: true }));
    api(path).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [path, tick, ...deps]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

// ------------------------------------------------------------------ pages
// The app registers the page list (pages/index.js) here, so a page can link to the others
// without importing the list that imports it.
let registered = [];
export function registerPages(pages) {
  registered = pages;
}
/** The pages the signed-in role may use, in nav order (admin: every page). */
export function visiblePages() {
  const who = session();
  if (!who) return [];
  return registered.filter((p) => who.role === 'admin' || p.roles.includes(who.role));
}

// ------------------------------------------------------------------ routing
/** Goes to a page: `navigate('#/users/u42')` (the leading `#` may be left out). */
export function navigate(hash) {
  const next = hash.startsWith('#') ? hash : `#${hash}`;
  if (location.hash === next) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = next;
}

/** The current route: `{ route: '/users/u42', query: URLSearchParams }`. */
export function currentRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [route, q] = raw.split('?');
  return { route: route || '/', query: new URLSearchParams(q || '') };
}

/** `#/path?k=v` with the query's empty values left out. */
export function href(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ''}`;
}

// ------------------------------------------------------------------ formatting
/** A value as text: dates of ISO strings or epoch ms stay as given; objects as JSON. */
export function text(value) {
  if (value === null || value === undefined || value === '') return '—';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** An ISO time or epoch ms as `2026-03-01 12:00:00 UTC`. */
export function time(value) {
  if (value === null || value === undefined || value === '') return '—';
  const ms = typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms)) return String(value);
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
}

/** A fresh idempotency key for one user action (a retry of the same click reuses it). */
export function idempotencyKey() {
  return crypto.randomUUID();
}

// ------------------------------------------------------------------ components
export function ErrorBox({ error }) {
  if (!error) return null;
  const code = error.code || 'LC_ERR_UNKNOWN';
  const field = error.details && error.details.field;
  return html`<div class="error" role="alert" data-code=${code}>
    <strong>${code}</strong
    >${error.status ? html` <span class="muted">(${error.status})</span>` : null}:
    ${' '}${error.message || String(error)}${field ? html` <span class="muted">(field ${field})</span>` : null}
  </div>`;
}

export function Loading() {
  return html`<p class="muted loading" aria-busy="true">Loading…</p>`;
}

/**
 * A table that scrolls sideways on a narrow screen. `columns: [{ key, title, render? }]`;
 * `render(row)` returns what a cell shows (default: the value as text).
 */
export function Table({ columns, rows, empty = 'Nothing to show.', rowKey }) {
  if (!rows || rows.length === 0) return html`<p class="muted empty">${empty}</p>`;
  return html`<div class="table-wrap">
    <table>
      <thead>
        <tr>
          ${columns.map((c) => html`<th scope="col">${c.title ?? c.key}</th>`)}
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          (row, i) =>
            html`<tr key=${rowKey ? rowKey(row) : i}>
              ${columns.map(
                (c) =>
                  html`<td data-col=${c.key} data-label=${c.title ?? c.key}>
                    ${c.render ? c.render(row) : text(row[c.key])}
                  </td>`,
              )}
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

/** A labelled control: `<${Field} label="Email"><input .../></${Field}>`. */
export function Field({ label, children, hint }) {
  return html`<label class="field">
    <span class="label">${label}</span>
    ${children} ${hint ? html`<span class="hint muted">${hint}</span>` : null}
  </label>`;
}

/** `kind`: primary (default), secondary, danger. A button in a form submits it when `type="submit"`. */
export function Button({ onClick, kind = 'primary', disabled, type = 'button', children, title }) {
  return html`<button
    type=${type}
    class=${`btn ${kind}`}
    onClick=${onClick}
    disabled=${disabled}
    title=${title}
  >
    ${children}
  </button>`;
}

/** `tabs: [{ id, title }]`, the `active` id, and `onChange(id)`. */
export function Tabs({ tabs, active, onChange }) {
  return html`<div class="tabs" role="tablist">
    ${tabs.map(
      (t) =>
        html`<button
          type="button"
          role="tab"
          aria-selected=${t.id === active ? 'true' : 'false'}
          class=${t.id === active ? 'tab active' : 'tab'}
          onClick=${() => onChange(t.id)}
        >
          ${t.title}
        </button>`,
    )}
  </div>`;
}

const STATUS_KIND = {
  delivered: 'ok',
  sent: 'ok',
  opened: 'ok',
  clicked: 'ok',
  active: 'ok',
  published: 'ok',
  running: 'ok',
  granted: 'ok',
  true: 'ok',
  ok: 'ok',
  queued: 'info',
  scheduled: 'info',
  deferred: 'warn',
  pending: 'warn',
  draft: 'info',
  paused: 'warn',
  expired: 'warn',
  suppressed: 'warn',
  holdout: 'info',
  failed: 'bad',
  bounced: 'bad',
  complained: 'bad',
  revoked: 'bad',
  error: 'bad',
  false: 'bad',
  cancelled: 'bad',
  stopped: 'bad',
  denied: 'bad',
};
/** A status as a coloured word. */
export function Badge({ status }) {
  const s = String(status ?? '—');
  return html`<span class=${`badge ${STATUS_KIND[s.toLowerCase()] || 'neutral'}`} data-status=${s}
    >${s}</span
  >`;
}

/** Any value as indented JSON text. */
export function Json({ value }) {
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}

// Toasts: short notes after an action (`notify('Saved')`), shown by one <Toast/> in the app.
let toasts = [];
const toastListeners = new Set();
let toastId = 0;
export function notify(message, kind = 'ok') {
  const id = ++toastId;
  toasts = [...toasts, { id, message: String(message), kind }];
  toastListeners.forEach((l) => l(toasts));
  setTimeout(() => {
    toasts = toasts.filter((t) => t.id !== id);
    toastListeners.forEach((l) => l(toasts));
  }, 6000);
}
export function Toast() {
  const [list, setList] = useState(toasts);
  useEffect(() => {
    toastListeners.add(setList);
    return () => toastListeners.delete(setList);
  }, []);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${list.map((t) => html`<div key=${t.id} class=${`toast ${t.kind}`}>${t.message}</div>`)}
  </div>`;
}

// ------------------------------------------------------------------ charts
const PALETTE = ['#2f6fdf', '#e0702a', '#2a9d6f', '#b5409b', '#8a6d1e', '#5a5f6b'];

/**
 * A uPlot chart of `rows` (objects): `x` is the column along the horizontal axis (numbers,
 * times or words: words become evenly spaced categories), `series` the columns drawn.
 * `kind: 'line' | 'bar'`. `columns` (all the columns of the data) is accepted for symmetry
 * with panel data; only `x` and `series` are drawn.
 */
export function Chart({ kind = 'line', rows, x, series, height = 260 }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el || !rows || rows.length === 0) return undefined;
    const xs = rows.map((r) => r[x]);
    const numeric = xs.every(
      (v) => typeof v === 'number' || (v !== '' && v !== null && !Number.isNaN(Number(v))),
    );
    const times =
      !numeric &&
      xs.every(
        (v) => typeof v === 'string' && !Number.isNaN(Date.parse(v)) && /^\d{4}-\d{2}/.test(v),
      );
    const xData = numeric
      ? xs.map(Number)
      : times
        ? xs.map((v) => Date.parse(v) / 1000)
        : xs.map((_, i) => i);
    const data = [
      xData,
      ...series.map((s) => rows.map((r) => (r[s] == null ? null : Number(r[s])))),
    ];
    const bars = kind === 'bar' && uPlot.paths && uPlot.paths.bars;
    const opts = {
      width: Math.max(280, el.clientWidth || 600),
      height,
      scales: { x: { time: times, ...(bars || !numeric ? { distr: 2 } : {}) } },
      axes: [
        numeric || times
          ? {}
          : { values: (_u, ticks) => ticks.map((t) => (xs[t] === undefined ? '' : String(xs[t]))) },
        {},
      ],
      series: [
        { label: x },
        ...series.map((s, i) => ({
          label: s,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          ...(bars
            ? {
                fill: `${PALETTE[i % PALETTE.length]}99`,
                paths: uPlot.paths.bars({ size: [0.8 / series.length, 60], align: 0 }),
              }
            : {}),
        })),
      ],
    };
    const plot = new uPlot(opts, data, el);
    const resize = () => plot.setSize({ width: Math.max(280, el.clientWidth || 600), height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [kind, rows, x, series && series.join('\u0000'), height]);
  if (!rows || rows.length === 0) return html`<p class="muted empty">No rows for this window.</p>`;
  return html`<div class="chart" data-kind=${kind} ref=${box}></div>`;
}
