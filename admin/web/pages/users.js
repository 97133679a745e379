// Users (support): find a user by email, phone or userId, read what the product knows of
// them, their messages (content in a sandboxed frame, status history, resend), and change
// their preferences. Routes: #/users?q=..., #/users/<id>, #/users/<id>/messages,
// #/users/<id>/messages/<sendId>.
import {
  Badge,
  Button,
  ErrorBox,
  Field,
  Json,
  Loading,
  Table,
  Tabs,
  api,
  href,
  html,
  idempotencyKey,
  navigate,
  notify,
  session,
  text,
  time,
  useApi,
  useEffect,
  useState,
} from '../lib.js';

const enc = encodeURIComponent;
const userHref = (id, rest = '') => `#/users/${enc(id)}${rest}`;

// ------------------------------------------------------------------ search
function Search({ params }) {
  const q = params.get('q') || '';
  const [value, setValue] = useState(q);
  useEffect(() => setValue(q), [q]);
  const { data, error, loading } = useApi(q ? `/v1/users?q=${enc(q)}&limit=50` : null, [q]);
  const submit = (e) => {
    e.preventDefault();
    navigate(href('/users', { q: value.trim() }));
  };
  return html`<section>
    <h1>Users</h1>
    <form class="card row" role="search" onSubmit=${submit}>
      <${Field} label="Email, phone or user id">
        <input
          name="q"
          type="search"
          value=${value}
          onInput=${(e) => setValue(e.currentTarget.value)}
          placeholder="grace@example.com"
          required
        />
      </${Field}>
      <${Button} type="submit">Search</${Button}>
    </form>
    ${loading ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data
        ? html`<${Table}
            rowKey=${(u) => u.userId}
            columns=${[
              {
                key: 'userId',
                title: 'User',
                render: (u) => html`<a href=${userHref(u.userId)}>${u.userId}</a>`,
              },
              { key: 'email', title: 'Email', render: (u) => text(u.traits && u.traits.email) },
              { key: 'phone', title: 'Phone', render: (u) => text(u.traits && u.traits.phone) },
              { key: 'matched', title: 'Matched by', render: (u) => (u.matched || []).join(', ') },
            ]}
            rows=${data.users}
            empty=${`No user has "${q}" as their user id, email or phone.`}
          />`
        : null
    }
  </section>`;
}

// ------------------------------------------------------------------ one user
/** A section of the lookup that could not be read carries its own error. */
const SectionError = ({ section }) =>
  section && section.error ? html`<${ErrorBox} error=${section.error} />` : null;

function Profile({ profile, timers }) {
  if (profile.error) return html`<${SectionError} section=${profile} />`;
  const stats = Object.entries(profile.stats || {}).map(([type, s]) => ({ type, ...s }));
  const rules = Object.entries(profile.rules || {}).map(([ruleId, r]) => ({ ruleId, ...r }));
  return html`<div>
    <h2>Traits</h2>
    <${Table}
      columns=${[
        { key: 'k', title: 'Trait' },
        { key: 'v', title: 'Value' },
      ]}
      rows=${Object.entries(profile.traits || {}).map(([k, v]) => ({ k, v }))}
      empty="No traits."
    />
    <h2>Segments</h2>
    ${
      (profile.segments || []).length
        ? html`<p>${profile.segments.map((s) => html`<${Badge} status=${s} /> `)}</p>`
        : html`<p class="muted">In no segment.</p>`
    }
    <h2>Events</h2>
    <${Table}
      columns=${[
        { key: 'type', title: 'Event' },
        { key: 'count', title: 'Count' },
        { key: 'first', title: 'First', render: (r) => time(r.first) },
        { key: 'last', title: 'Last', render: (r) => time(r.last) },
      ]}
      rows=${stats}
      empty="No events."
    />
    <h2>Rules</h2>
    <${Table}
      columns=${[
        { key: 'ruleId', title: 'Rule' },
        { key: 'fires', title: 'Fired' },
        { key: 'lastFiredAt', title: 'Last fired', render: (r) => time(r.lastFiredAt) },
      ]}
      rows=${rules}
      empty="No rule has fired for this user."
    />
    <h2>Pending timers</h2>
    <${SectionError} section=${timers} />
    ${
      timers && !timers.error
        ? html`<${Table}
            columns=${[
              { key: 'ruleId', title: 'Rule' },
              { key: 'fires', title: 'Fires' },
              { key: 'dueAt', title: 'Due', render: (t) => time(t.dueAt) },
              {
                key: 'trigger',
                title: 'Trigger',
                render: (t) => (t.trigger ? `${t.trigger.type} (${time(t.trigger.ts)})` : '—'),
              },
            ]}
            rows=${timers.pending}
            empty="No timer waits for this user."
          />`
        : null
    }
  </div>`;
}

const CATEGORIES = ['marketing', 'transactional'];
const CHANNELS = ['email', 'inapp', 'sms', 'push', 'webhook'];

function Preferences({ userId, preferences, onChanged }) {
  const [source, setSource] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  if (preferences.error) return html`<${SectionError} section=${preferences} />`;
  const consents = preferences.consents || {};
  const categories = [...new Set([...CATEGORIES, ...Object.keys(consents)])];
  const patch = async (body, what) => {
    setBusy(true);
    setError(null);
    try {
      await api(`/v1/users/${enc(userId)}/preferences`, { method: 'PATCH', body });
      notify(`Saved: ${what}`);
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const toggle = (category, channel, granted) => {
    const consent = { granted };
    if (source.trim()) consent.source = source.trim();
    return patch(
      { consents: { [category]: { [channel]: consent } } },
      `${category} on ${channel} ${granted ? 'granted' : 'withdrawn'}`,
    );
  };
  const rows = [];
  for (const category of categories)
    for (const channel of CHANNELS) {
      const c = (consents[category] || {})[channel];
      rows.push({ category, channel, c });
    }
  return html`<div>
    <p>
      Unsubscribed from everything:
      ${
        preferences.unsubscribedAll
          ? html`<${Badge} status="yes" /> since ${time(preferences.unsubscribedAll.at)}
              (${preferences.unsubscribedAll.source})`
          : html`<${Badge} status="no" />`
      }
      ${' '}
      <${Button}
        kind="secondary"
        disabled=${busy}
        onClick=${() =>
          patch(
            { unsubscribedAll: !preferences.unsubscribedAll },
            preferences.unsubscribedAll ? 'resubscribed' : 'unsubscribed from everything',
          )}
      >
        ${preferences.unsubscribedAll ? 'Resubscribe' : 'Unsubscribe from everything'}
      </${Button}>
    </p>
    <${Field}
      label="Where the user agreed (source)"
      hint="A marketing opt-in must say where the user gave it, e.g. 'support call 2026-03-01'."
    >
      <input name="source" value=${source} onInput=${(e) => setSource(e.currentTarget.value)} maxlength="200" />
    </${Field}>
    <${ErrorBox} error=${error} />
    <${Table}
      columns=${[
        { key: 'category', title: 'Category' },
        { key: 'channel', title: 'Channel' },
        {
          key: 'granted',
          title: 'Consent',
          render: (r) =>
            r.c
              ? html`<${Badge} status=${r.c.granted ? 'granted' : 'denied'} />`
              : html`<span class="muted">not given</span>`,
        },
        { key: 'at', title: 'Since', render: (r) => (r.c ? time(r.c.at) : '—') },
        { key: 'source', title: 'Source', render: (r) => (r.c ? text(r.c.source) : '—') },
        {
          key: 'change',
          title: 'Change',
          render: (r) =>
            html`<${Button}
              kind="secondary"
              disabled=${busy}
              onClick=${() => toggle(r.category, r.channel, !(r.c && r.c.granted))}
            >
              ${r.c && r.c.granted ? 'Withdraw' : 'Grant'}
            </${Button}>`,
        },
      ]}
      rows=${rows}
    />
    <h2>History</h2>
    <${Table}
      columns=${[
        { key: 'recordedAt', title: 'Recorded', render: (h) => time(h.recordedAt) },
        {
          key: 'what',
          title: 'Change',
          render: (h) =>
            h.kind === 'consent'
              ? `${h.category} on ${h.channel}: ${h.granted ? 'granted' : 'withdrawn'}`
              : h.kind === 'unsubscribe_all'
                ? 'unsubscribed from everything'
                : 'resubscribed',
        },
        { key: 'source', title: 'Source', render: (h) => text(h.source) },
        { key: 'via', title: 'Via', render: (h) => text(h.via) },
        {
          key: 'by',
          title: 'By',
          render: (h) => (h.by ? `${h.by.actor} (${h.by.role || '—'})` : '—'),
        },
      ]}
      rows=${preferences.history || []}
      empty="No change recorded."
    />
  </div>`;
}

function Suppressions({ userId, suppressions, onChanged }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  if (suppressions.error) return html`<${SectionError} section=${suppressions} />`;
  const lift = async (channel) => {
    setBusy(true);
    setError(null);
    try {
      await api(`/v1/users/${enc(userId)}/suppressions/${enc(channel)}`, { method: 'DELETE' });
      notify(`Lifted the ${channel} suppression`);
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const rows = Object.entries(suppressions.channels || {}).map(([channel, s]) => ({
    channel,
    ...s,
  }));
  return html`<div>
    ${
      suppressions.deleted
        ? html`<p class="error">
            This user was erased at ${time(suppressions.deleted.at)}; nothing is sent to them.
          </p>`
        : null
    }
    <${ErrorBox} error=${error} />
    <${Table}
      columns=${[
        { key: 'channel', title: 'Channel' },
        { key: 'reason', title: 'Reason', render: (s) => html`<${Badge} status=${s.reason} />` },
        { key: 'at', title: 'Since', render: (s) => time(s.at) },
        { key: 'address', title: 'Address', render: (s) => text(s.address) },
        {
          key: 'lift',
          title: 'Lift',
          render: (s) =>
            html`<${Button} kind="secondary" disabled=${busy} onClick=${() => lift(s.channel)}>Lift</${Button}>`,
        },
      ]}
      rows=${rows}
      empty="No channel is suppressed."
    />
  </div>`;
}

function Inbox({ inbox }) {
  if (inbox.error) return html`<${SectionError} section=${inbox} />`;
  return html`<div>
    <p>Unread: ${inbox.unread ?? 0}</p>
    <${Table}
      columns=${[
        { key: 'createdAt', title: 'Created', render: (m) => time(m.createdAt) },
        { key: 'title', title: 'Title' },
        { key: 'body', title: 'Body' },
        { key: 'ruleId', title: 'Rule' },
        {
          key: 'readAt',
          title: 'Read',
          render: (m) => (m.readAt ? time(m.readAt) : html`<${Badge} status="unread" />`),
        },
      ]}
      rows=${inbox.messages || []}
      empty="The in-app inbox is empty."
    />
  </div>`;
}

function User({ userId, params }) {
  const { data, error, loading, reload } = useApi(`/v1/users/${enc(userId)}`, []);
  const tab = params.get('tab') || 'profile';
  const setTab = (t) => navigate(href(`/users/${enc(userId)}`, { tab: t }));
  if (loading && !data) return html`<${Loading} />`;
  if (error)
    return html`<section>
      <h1>User ${userId}</h1>
      <${ErrorBox} error=${error} />
    </section>`;
  const who = data.profile && data.profile.traits ? data.profile.traits : {};
  return html`<section>
    <p><a href="#/users">← Users</a></p>
    <h1>User ${userId}</h1>
    <p class="muted">${[who.email, who.phone, who.name].filter(Boolean).join(' · ')}</p>
    <div class="actions">
      <a class="btn secondary" href=${userHref(userId, '/messages')}>Messages</a>
    </div>
    <${Tabs}
      tabs=${[
        { id: 'profile', title: 'Profile' },
        { id: 'preferences', title: 'Preferences' },
        { id: 'suppressions', title: 'Suppressions' },
        { id: 'inbox', title: 'In-app inbox' },
      ]}
      active=${tab}
      onChange=${setTab}
    />
    ${tab === 'profile' ? html`<${Profile} profile=${data.profile} timers=${data.timers} />` : null}
    ${
      tab === 'preferences'
        ? html`<${Preferences}
            userId=${userId}
            preferences=${data.preferences}
            onChanged=${reload}
          />`
        : null
    }
    ${
      tab === 'suppressions'
        ? html`<${Suppressions}
            userId=${userId}
            suppressions=${data.suppressions}
            onChanged=${reload}
          />`
        : null
    }
    ${tab === 'inbox' ? html`<${Inbox} inbox=${data.inbox} />` : null}
  </section>`;
}

// ------------------------------------------------------------------ messages
function Messages({ userId }) {
  // The cursors of the pages seen, so "Newer" goes back without the API going backwards.
  const [cursors, setCursors] = useState([null]);
  const cursor = cursors[cursors.length - 1];
  const path = `/v1/messages?userId=${enc(userId)}&limit=20${cursor ? `&cursor=${enc(cursor)}` : ''}`;
  const { data, error, loading, reload } = useApi(path, []);
  return html`<section>
    <p><a href=${userHref(userId)}>← User ${userId}</a></p>
    <h1>Messages of ${userId}</h1>
    <div class="actions">
      <${Button} kind="secondary" onClick=${reload}>Refresh</${Button}>
    </div>
    ${loading ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data
        ? html`<${Table}
          rowKey=${(m) => `${m.sendId}:${m.channel}`}
          columns=${[
            { key: 'createdAt', title: 'Created', render: (m) => time(m.createdAt) },
            {
              key: 'subject',
              title: 'Message',
              render: (m) =>
                html`<a href=${userHref(userId, `/messages/${enc(m.sendId)}`)} data-send=${m.sendId}
                  >${m.subject || m.template}</a
                >`,
            },
            { key: 'channel', title: 'Channel' },
            {
              key: 'status',
              title: 'Status',
              render: (m) => html`<${Badge} status=${m.status} />`,
            },
            { key: 'ruleId', title: 'Rule' },
            { key: 'to', title: 'To', render: (m) => text(m.to) },
            { key: 'origin', title: 'Origin', render: (m) => text(m.origin) },
          ]}
          rows=${data.messages}
          empty="No message to this user in the message log."
        />
        <div class="actions">
          <${Button} kind="secondary" disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>
            Newer
          </${Button}>
          <${Button} kind="secondary" disabled=${!data.next} onClick=${() => setCursors([...cursors, data.next])}>
            Older
          </${Button}>
        </div>`
        : null
    }
  </section>`;
}

/**
 * What a message's HTML may load where it is shown: images inline in it (`data:`), nothing
 * else, so a tracking pixel never fires (reading a message is not the user opening it).
 * It adds to the page's policy, which the frame inherits, and can only narrow it.
 */
export const MESSAGE_FRAME_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/**
 * An email's HTML, shown in a frame with every sandbox restriction: no script runs, it is of
 * no origin (so it cannot read the session), its forms, popups and the links that open them
 * are refused. The page's
 * policy, which the frame inherits, refuses its inline styles too: the preview shows the
 * message's text, structure and inline images, not its styling.
 */
function HtmlBody({ html: body }) {
  // Links open as new windows, which the sandbox refuses (no allow-popups): a link followed
  // in the preview would otherwise be a click of the user, recorded by the tracker.
  const doc = `<meta http-equiv="Content-Security-Policy" content="${MESSAGE_FRAME_POLICY}"><base target="_blank">${body}`;
  return html`<iframe
    class="message-body"
    title="The message as sent (HTML)"
    sandbox=""
    referrerpolicy="no-referrer"
    srcdoc=${doc}
  ></iframe>`;
}

function ChannelContent({ c }) {
  return html`<div class="card" data-channel=${c.channel}>
    <h2>${c.channel} <${Badge} status=${c.status} /></h2>
    <dl class="facts">
      <dt>To</dt>
      <dd>${text(c.to)}</dd>
      <dt>Sent</dt>
      <dd>${time(c.sentAt)}</dd>
      <dt>Template version</dt>
      <dd>${text(c.templateVersion)}</dd>
      <dt>Locale</dt>
      <dd>${text(c.locale)}</dd>
      ${
        c.reason
          ? html`<dt>Reason</dt>
              <dd>${c.reason}</dd>`
          : null
      }
    </dl>
    ${
      c.bodyExpired
        ? html`<p class="muted">The content is past its retention and no longer kept.</p>`
        : c.content
          ? html`<div>
              ${
                c.content.subject != null
                  ? html`<h3>Subject</h3>
                      <p class="subject">${c.content.subject}</p>`
                  : null
              }
              ${
                c.content.text != null
                  ? html`<h3>Text</h3>
                      <pre class="text">${c.content.text}</pre>`
                  : null
              }
              ${
                c.content.html != null
                  ? html`<h3>HTML</h3>
                      <${HtmlBody} html=${c.content.html} />`
                  : null
              }
              ${
                c.content.other && Object.keys(c.content.other).length
                  ? html`<h3>Content</h3>
                      <${Json} value=${c.content.other} />`
                  : null
              }
            </div>`
          : html`<p class="muted">Not sent, so there is no content.</p>`
    }
    ${
      c.data
        ? html`<details>
            <summary>Data it was rendered with</summary>
            <${Json} value=${c.data} />
          </details>`
        : null
    }
    <h3>Status history</h3>
    <${Table}
      columns=${[
        { key: 'ts', title: 'When', render: (h) => time(h.ts) },
        { key: 'status', title: 'Status', render: (h) => html`<${Badge} status=${h.status} />` },
        { key: 'reason', title: 'Reason', render: (h) => text(h.reason) },
        { key: 'provider', title: 'Provider', render: (h) => text(h.provider) },
        { key: 'attempt', title: 'Attempt', render: (h) => text(h.attempt) },
      ]}
      rows=${c.history || []}
      empty="No status yet."
    />
  </div>`;
}

function Resend({ message }) {
  const sent = message.channels.filter((c) => c.content && !c.bodyExpired).map((c) => c.channel);
  const [channel, setChannel] = useState(sent[0] || '');
  // One key per intended resend: a second click after a network failure is the same send.
  const [key, setKey] = useState(idempotencyKey());
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const role = session().role;
  if (role !== 'support' && role !== 'admin') return null;
  if (sent.length === 0)
    return html`<p class="muted">
      This message was not sent or its content expired: it cannot be resent.
    </p>`;
  const resend = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await api(`/v1/messages/${enc(message.sendId)}/resend`, {
        method: 'POST',
        body: sent.length > 1 ? { channel } : {},
        headers: { 'idempotency-key': key },
      });
      setResult(r);
      setKey(idempotencyKey());
      notify(`Resent as ${r.sendId}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="card resend">
    <h2>Resend</h2>
    <p class="muted">
      A new send of the same template version and data, through the whole policy chain (consent and
      suppression included).
    </p>
    ${
      sent.length > 1
        ? html`<${Field} label="Channel">
          <select value=${channel} onChange=${(e) => setChannel(e.currentTarget.value)}>
            ${sent.map((c) => html`<option value=${c}>${c}</option>`)}
          </select>
        </${Field}>`
        : null
    }
    <${Button} onClick=${resend} disabled=${busy}>Resend</${Button}>
    <${ErrorBox} error=${error} />
    ${
      result
        ? html`<div class="resend-result" data-send=${result.sendId}>
            <p>
              New send
              <a href=${userHref(message.userId, `/messages/${enc(result.sendId)}`)}
                >${result.sendId}</a
              >
              on ${result.channel}.
            </p>
            ${
              result.policy
                ? html`<p>
                    <${Badge} status=${result.policy.allowed ? 'ok' : 'suppressed'} />
                    ${result.policy.message}
                  </p>`
                : null
            }
          </div>`
        : null
    }
  </div>`;
}

function Message({ userId, sendId }) {
  const { data, error, loading, reload } = useApi(`/v1/messages/${enc(sendId)}`, []);
  return html`<section>
    <p><a href=${userHref(userId, '/messages')}>← Messages of ${userId}</a></p>
    <h1>Message</h1>
    ${loading && !data ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data
        ? html`<div>
          <dl class="facts card">
            <dt>sendId</dt>
            <dd class="mono">${data.sendId}</dd>
            <dt>Created</dt>
            <dd>${time(data.createdAt)}</dd>
            <dt>Rule</dt>
            <dd>${data.ruleId}</dd>
            <dt>Campaign</dt>
            <dd>${text(data.campaignId)}</dd>
            <dt>Template</dt>
            <dd>${data.template}</dd>
            <dt>Category</dt>
            <dd>${data.category}</dd>
            <dt>Origin</dt>
            <dd>${text(data.origin)}</dd>
            ${
              data.holdout
                ? html`<dt>Holdout</dt>
                    <dd><${Badge} status="holdout" /></dd>`
                : null
            }
          </dl>
          <div class="actions"><${Button} kind="secondary" onClick=${reload}>Refresh</${Button}></div>
          ${data.channels.map((c) => html`<${ChannelContent} key=${c.channel} c=${c} />`)}
          <${Resend} message=${data} />
        </div>`
        : null
    }
  </section>`;
}

function Users({ path, params }) {
  const parts = path
    .split('/')
    .filter(Boolean)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  if (parts.length === 0) return html`<${Search} params=${params} />`;
  const [userId, section, sendId] = parts;
  if (section === 'messages' && sendId)
    return html`<${Message} key=${sendId} userId=${userId} sendId=${sendId} />`;
  if (section === 'messages') return html`<${Messages} key=${userId} userId=${userId} />`;
  return html`<${User} key=${userId} userId=${userId} params=${params} />`;
}

export default {
  id: 'users',
  title: 'Users',
  roles: ['support', 'admin'],
  route: '/users',
  component: Users,
};
