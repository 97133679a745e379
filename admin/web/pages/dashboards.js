// Dashboards (analyst): the dashboards of GET /v1/dashboards, each panel fetched on its own
// (a failing panel shows its error, the others render) and drawn per its `viz`: a number, a
// table (or a pivot such as a retention triangle), or a uPlot line or bar chart. The window
// is in UTC days, `to` inclusive, as on the dashboards page: #/dashboards/<id>?from&to&ruleIds&<parameter>.
import {
  Button,
  Chart,
  ErrorBox,
  Field,
  Loading,
  Table,
  href,
  html,
  navigate,
  useApi,
  useEffect,
  useState,
} from '../lib.js';

const DAY = 86_400_000;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

/** How a column is shown (`viz.format`): integer, number (2 decimals), percent (0.25 -> 25.0%), text. */
export function format(value, kind) {
  if (value === null || value === undefined) return '—';
  if (value === '') return '';
  if (typeof value !== 'number' || !Number.isFinite(value)) return String(value);
  if (kind === 'percent') return `${(value * 100).toFixed(1)}%`;
  if (kind === 'integer') return Math.round(value).toLocaleString('en-US');
  if (kind === 'number')
    return value.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 });
  if (kind === 'text') return String(value);
  return Number.isInteger(value)
    ? value.toLocaleString('en-US')
    : value.toLocaleString('en-US', { maximumFractionDigits: 3 });
}
const fmt = (viz, col, v) => format(v, viz.format ? viz.format[col] : undefined);

function Pivot({ viz, data }) {
  const pv = viz.pivot;
  const keep = pv.keep || [];
  const rowKeys = [];
  const colKeys = [];
  const cells = new Map();
  const kept = new Map();
  for (const r of data.rows) {
    const rk = String(r[pv.row]);
    const ck = String(r[pv.column]);
    if (!cells.has(rk)) {
      rowKeys.push(rk);
      cells.set(rk, new Map());
      kept.set(rk, r);
    }
    if (!colKeys.includes(ck)) colKeys.push(ck);
    cells.get(rk).set(ck, r[pv.value]);
  }
  if (colKeys.every((c) => c !== '' && !Number.isNaN(Number(c))))
    colKeys.sort((a, b) => Number(a) - Number(b));
  const columns = [
    { key: pv.row, title: pv.row, render: (r) => r.key },
    ...keep.map((c) => ({ key: c, title: c, render: (r) => fmt(viz, c, kept.get(r.key)[c]) })),
    ...colKeys.map((ck) => ({
      key: `${pv.column}:${ck}`,
      title: `${pv.column} ${ck}`,
      render: (r) => {
        const v = cells.get(r.key).get(ck);
        return v === undefined ? '' : fmt(viz, pv.value, v);
      },
    })),
  ];
  return html`<${Table} columns=${columns} rows=${rowKeys.map((key) => ({ key }))} />`;
}

function PanelBody({ viz, data }) {
  if (viz.type === 'number') {
    const col = viz.value || data.columns[0];
    const row = data.rows[0];
    return html`<div class="number" data-value=${row ? row[col] : ''}>
      ${row ? fmt(viz, col, row[col]) : '—'}
    </div>`;
  }
  if (data.rows.length === 0) return html`<p class="muted">No rows for this window.</p>`;
  if (viz.type === 'table') {
    if (viz.pivot) return html`<${Pivot} viz=${viz} data=${data} />`;
    const cols = viz.columns || data.columns;
    return html`<${Table}
      columns=${cols.map((c) => ({ key: c, title: c, render: (r) => fmt(viz, c, r[c]) }))}
      rows=${data.rows}
    />`;
  }
  const x = viz.x || data.columns[0];
  const series = viz.y || data.columns.filter((c) => c !== x);
  return html`<${Chart}
    kind=${viz.type === 'bar' ? 'bar' : 'line'}
    columns=${data.columns}
    rows=${data.rows}
    x=${x}
    series=${series}
  />`;
}

function Panel({ dashboard, panel, query }) {
  const q = new URLSearchParams();
  q.set('from', query.from);
  // The form's "to" day is inclusive; the API's `to` is not.
  q.set('to', isoDay(Date.parse(query.to) + DAY));
  if (query.ruleIds) q.set('ruleIds', query.ruleIds);
  for (const [k, v] of Object.entries(query.params)) if (panel.parameters.includes(k)) q.set(k, v);
  const path = `/v1/dashboards/${encodeURIComponent(dashboard.id)}/panels/${encodeURIComponent(panel.id)}?${q}`;
  const { data, error, loading } = useApi(path, []);
  const state = loading ? 'loading' : error ? 'error' : 'ok';
  return html`<section
    class=${`card panel${panel.width === 2 ? ' wide' : ''}`}
    data-panel=${panel.id}
    data-state=${state}
  >
    <h2>${panel.title}</h2>
    ${panel.description ? html`<p class="muted">${panel.description}</p>` : null}
    ${loading ? html`<${Loading} />` : null} ${error ? html`<${ErrorBox} error=${error} />` : null}
    ${data && !loading ? html`<${PanelBody} viz=${panel.viz} data=${data} />` : null}
    <details>
      <summary>${panel.sql ? 'SQL' : 'Query'}</summary>
      <pre class="json">${panel.sql || `built-in query: ${panel.query}`}</pre>
    </details>
  </section>`;
}

function queryOf(dashboard, params) {
  const today = Date.parse(isoDay(Date.now()));
  const query = {
    from: params.get('from') || isoDay(today - (dashboard.windowDays - 1) * DAY),
    to: params.get('to') || isoDay(today),
    ruleIds: params.get('ruleIds') || '',
    params: {},
  };
  for (const [name, p] of Object.entries(dashboard.parameters || {}))
    query.params[name] = params.get(name) ?? String(p.default ?? '');
  return query;
}

function Controls({ dashboard, query }) {
  const [form, setForm] = useState(query);
  useEffect(() => setForm(query), [JSON.stringify(query)]);
  const set = (k, v) => setForm({ ...form, [k]: v });
  const setParam = (k, v) => setForm({ ...form, params: { ...form.params, [k]: v } });
  const submit = (e) => {
    e.preventDefault();
    const values = { from: form.from, to: form.to, ruleIds: form.ruleIds.trim() };
    for (const [k, v] of Object.entries(form.params))
      if (v !== String(dashboard.parameters[k].default ?? '')) values[k] = v;
    navigate(href(`/dashboards/${encodeURIComponent(dashboard.id)}`, values));
  };
  return html`<form class="card filters" onSubmit=${submit}>
    <${Field} label="From (UTC day)">
      <input type="date" name="from" value=${form.from} onInput=${(e) => set('from', e.currentTarget.value)} required />
    </${Field}>
    <${Field} label="To (UTC day, inclusive)">
      <input type="date" name="to" value=${form.to} onInput=${(e) => set('to', e.currentTarget.value)} required />
    </${Field}>
    <${Field} label="Rules (comma-separated, empty = all)">
      <input name="ruleIds" value=${form.ruleIds} placeholder="all rules" onInput=${(e) => set('ruleIds', e.currentTarget.value)} />
    </${Field}>
    ${Object.entries(dashboard.parameters || {}).map(
      ([name, p]) =>
        html`<${Field} label=${p.label || name}>
        ${
          p.enum
            ? html`<select
                name=${`p:${name}`}
                value=${form.params[name]}
                onChange=${(e) => setParam(name, e.currentTarget.value)}
              >
                ${p.enum.map((v) => html`<option value=${v}>${v}</option>`)}
              </select>`
            : html`<input
                name=${`p:${name}`}
                type=${p.type === 'integer' ? 'number' : 'text'}
                step=${p.type === 'integer' ? 1 : undefined}
                min=${p.minimum}
                max=${p.maximum}
                maxlength=${p.maxLength || 200}
                value=${form.params[name]}
                onInput=${(e) => setParam(name, e.currentTarget.value)}
              />`
        }
      </${Field}>`,
    )}
    <${Button} type="submit">Apply</${Button}>
  </form>`;
}

function Dashboards({ path, params }) {
  const { data, error, loading } = useApi('/v1/dashboards', []);
  if (loading && !data) return html`<${Loading} />`;
  if (error)
    return html`<section>
      <h1>Dashboards</h1>
      <${ErrorBox} error=${error} />
    </section>`;
  const list = data.dashboards;
  const id = decodeURIComponent(path.split('/')[0] || '');
  const current = list.find((d) => d.id === id) || list[0];
  if (!current)
    return html`<section>
      <h1>Dashboards</h1>
      <p class="muted">No dashboard in the dashboards folder.</p>
    </section>`;
  const query = queryOf(current, params);
  const key = `${current.id}?${params}`;
  return html`<section>
    <h1>${current.title}</h1>
    <div class="tabs" role="tablist">
      ${list.map(
        (d) =>
          html`<a
            role="tab"
            class=${d.id === current.id ? 'tab active' : 'tab'}
            aria-selected=${d.id === current.id ? 'true' : 'false'}
            href=${`#/dashboards/${encodeURIComponent(d.id)}`}
            >${d.title}</a
          >`,
      )}
    </div>
    ${current.description ? html`<p class="muted">${current.description}</p>` : null}
    ${
      data.errors.length
        ? html`<div class="error" role="alert">
            Spec errors: ${data.errors.map((e) => html`<div><code>${e}</code></div>`)}
          </div>`
        : null
    }
    <${Controls} dashboard=${current} query=${query} />
    <div class="grid panels" key=${key}>
      ${current.panels.map((p) => html`<${Panel} key=${`${key}:${p.id}`} dashboard=${current} panel=${p} query=${query} />`)}
    </div>
  </section>`;
}

export default {
  id: 'dashboards',
  title: 'Dashboards',
  roles: ['analyst', 'admin'],
  route: '/dashboards',
  component: Dashboards,
};
