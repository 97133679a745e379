// Keys (admin): every staff API key, a new one (its secret shown once, here), revocation.
import {
  Badge,
  Button,
  ErrorBox,
  Field,
  Loading,
  Table,
  api,
  html,
  notify,
  time,
  useApi,
  useState,
} from '../lib.js';

const ROLES = ['support', 'analyst', 'marketer', 'service', 'admin'];

function state(key) {
  if (key.revokedAt) return 'revoked';
  if (key.expiresAt && Date.parse(key.expiresAt) <= Date.now()) return 'expired';
  return 'active';
}

function Create({ onCreated }) {
  const [name, setName] = useState('');
  const [role, setRole] = useState('support');
  const [expires, setExpires] = useState('90d');
  const [error, setError] = useState(null);
  const [made, setMade] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { name: name.trim(), role };
      if (expires.trim()) body.expires = expires.trim();
      const res = await api('/v1/keys', { method: 'POST', body });
      setMade(res);
      setName('');
      notify(`Key ${res.key.name} created`);
      onCreated();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="card">
    <h2>New key</h2>
    <form class="filters" onSubmit=${submit}>
      <${Field} label="Name">
        <input
          name="name"
          value=${name}
          onInput=${(e) => setName(e.currentTarget.value)}
          required
          maxlength="200"
          placeholder="Ana (support)"
        />
      </${Field}>
      <${Field} label="Role">
        <select name="role" value=${role} onChange=${(e) => setRole(e.currentTarget.value)}>
          ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
        </select>
      </${Field}>
      <${Field} label="Expires in" hint="30d, 12h, 2w, an ISO time, or empty for never">
        <input name="expires" value=${expires} onInput=${(e) => setExpires(e.currentTarget.value)} />
      </${Field}>
      <${Button} type="submit" disabled=${busy}>Create key</${Button}>
    </form>
    <${ErrorBox} error=${error} />
    ${
      made
        ? html`<div class="created" role="status">
          <p>
            The secret of <strong>${made.key.name}</strong> (${made.key.role}). It is shown this once
            and not stored: copy it now and hand it over safely.
          </p>
          <p class="secret" data-secret>${made.secret}</p>
          <${Button} kind="secondary" onClick=${() => setMade(null)}>I have copied it</${Button}>
        </div>`
        : null
    }
  </div>`;
}

function Keys() {
  const { data, error, loading, reload } = useApi('/v1/keys', []);
  const [failure, setFailure] = useState(null);
  const revoke = async (key) => {
    if (!window.confirm(`Revoke the key ${key.name} (${key.role})? It stops working at once.`))
      return;
    setFailure(null);
    try {
      await api(`/v1/keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' });
      notify(`Key ${key.name} revoked`);
      reload();
    } catch (err) {
      setFailure(err);
    }
  };
  return html`<section>
    <h1>API keys</h1>
    <${Create} onCreated=${reload} />
    ${loading && !data ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error || failure} />
    ${
      data
        ? html`<${Table}
            rowKey=${(k) => k.id}
            columns=${[
              { key: 'name', title: 'Name' },
              { key: 'role', title: 'Role' },
              {
                key: 'prefix',
                title: 'Starts with',
                render: (k) => html`<code>${k.prefix}…</code>`,
              },
              {
                key: 'state',
                title: 'State',
                render: (k) => html`<${Badge} status=${state(k)} />`,
              },
              { key: 'createdAt', title: 'Created', render: (k) => time(k.createdAt) },
              { key: 'createdBy', title: 'By' },
              {
                key: 'expiresAt',
                title: 'Expires',
                render: (k) => (k.expiresAt ? time(k.expiresAt) : 'never'),
              },
              { key: 'id', title: 'Id', render: (k) => html`<code>${k.id}</code>` },
              {
                key: 'revoke',
                title: 'Revoke',
                render: (k) =>
                  state(k) === 'active'
                    ? html`<${Button} kind="danger" onClick=${() => revoke(k)}>Revoke</${Button}>`
                    : html`<span class="muted">${k.revokedAt ? time(k.revokedAt) : '—'}</span>`,
              },
            ]}
            rows=${data.keys}
            empty="No key yet."
          />`
        : null
    }
  </section>`;
}

export default { id: 'keys', title: 'API keys', roles: ['admin'], route: '/keys', component: Keys };
