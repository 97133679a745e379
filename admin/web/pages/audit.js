// Audit log (admin): every change made by staff, newest first, filtered by actor, action,
// target and time, a page at a time, each with what the target was before and after.
import {
  Button,
  ErrorBox,
  Field,
  Json,
  Loading,
  Table,
  href,
  html,
  navigate,
  time,
  useApi,
  useState,
} from '../lib.js';

const FILTERS = ['actor', 'action', 'target', 'since', 'until'];

/** A `datetime-local` value (the browser's local time) as ISO, or the text as typed. */
function isoOf(value) {
  if (!value) return '';
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : value;
}

function Audit({ params }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || '']));
  const [form, setForm] = useState(filters);
  const [cursors, setCursors] = useState([null]);
  const [open, setOpen] = useState(null);
  const cursor = cursors[cursors.length - 1];
  const q = new URLSearchParams({ limit: '50' });
  for (const f of FILTERS) if (filters[f]) q.set(f, filters[f]);
  if (cursor) q.set('cursor', cursor);
  const { data, error, loading } = useApi(`/v1/audit?${q}`, []);
  const submit = (e) => {
    e.preventDefault();
    setCursors([null]);
    navigate(
      href('/audit', {
        ...form,
        since: isoOf(form.since),
        until: isoOf(form.until),
      }),
    );
  };
  const input = (name, label, attrs = {}) =>
    html`<${Field} label=${label}>
      <input
        name=${name}
        value=${form[name]}
        onInput=${(e) => setForm({ ...form, [name]: e.currentTarget.value })}
        ...${attrs}
      />
    </${Field}>`;
  return html`<section>
    <h1>Audit log</h1>
    <form class="card filters" onSubmit=${submit}>
      ${input('actor', 'Actor', { placeholder: 'key_…, admin-token, jwt:…' })}
      ${input('action', 'Action', { placeholder: 'key.create' })}
      ${input('target', 'Target', { placeholder: 'key:…, user:…' })}
      ${input('since', 'Since', { placeholder: '2026-03-01T00:00:00Z' })}
      ${input('until', 'Until', { placeholder: '2026-03-31T23:59:59Z' })}
      <${Button} type="submit">Filter</${Button}>
    </form>
    ${loading && !data ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data
        ? html`<${Table}
          rowKey=${(e) => e.id}
          columns=${[
            { key: 'at', title: 'When', render: (e) => time(e.at) },
            { key: 'actor', title: 'Actor', render: (e) => `${e.actorName} (${e.actor})` },
            { key: 'role', title: 'Role', render: (e) => e.role || '—' },
            { key: 'action', title: 'Action', render: (e) => html`<code>${e.action}</code>` },
            { key: 'target', title: 'Target' },
            {
              key: 'change',
              title: 'Change',
              render: (e) =>
                open === e.id
                  ? html`<div class="change">
                      <${Button} kind="secondary" onClick=${() => setOpen(null)}>Hide</${Button}>
                      <h3>Before</h3>
                      <${Json} value=${e.before ?? null} />
                      <h3>After</h3>
                      <${Json} value=${e.after ?? null} />
                      ${e.requestId ? html`<p class="muted">Request ${e.requestId}</p>` : null}
                    </div>`
                  : html`<${Button} kind="secondary" onClick=${() => setOpen(e.id)}>Before / after</${Button}>`,
            },
          ]}
          rows=${data.entries}
          empty="No change matches these filters."
        />
        <div class="actions">
          <${Button}
            kind="secondary"
            disabled=${cursors.length === 1}
            onClick=${() => setCursors(cursors.slice(0, -1))}
          >
            Newer
          </${Button}>
          <${Button}
            kind="secondary"
            disabled=${!data.next}
            onClick=${() => setCursors([...cursors, data.next])}
          >
            Older
          </${Button}>
        </div>`
        : null
    }
  </section>`;
}

export default {
  id: 'audit',
  title: 'Audit log',
  roles: ['admin'],
  route: '/audit',
  component: Audit,
};
