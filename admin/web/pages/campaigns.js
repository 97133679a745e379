// Campaigns (marketer; analysts read): the list with state and progress, a form to create one
// (audience: a segment, a filter over user state or an uploaded CSV list; template, channels,
// holdout; schedule: now, at an instant, or recurring by cron in a zone or each user's zone),
// and one campaign's progress, refreshed while it runs, with schedule, stop and cancel.
// Routes: #/campaigns, #/campaigns/new, #/campaigns/<id>.
import {
  Badge,
  Button,
  Chart,
  ErrorBox,
  Field,
  Json,
  Loading,
  Table,
  api,
  html,
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
const CHANNELS = ['email', 'inapp', 'push', 'sms', 'webhook'];
const canEdit = () => {
  const who = session();
  return !!who && (who.role === 'marketer' || who.role === 'admin');
};

// ------------------------------------------------------------------ list
function List() {
  const { data, error, loading } = useApi('/v1/campaigns');
  return html`<section>
    <div class="row">
      <h1>Campaigns</h1>
      ${canEdit() ? html`<${Button} onClick=${() => navigate('#/campaigns/new')}>New campaign</${Button}>` : null}
    </div>
    ${loading ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data
        ? html`<${Table}
            rowKey=${(c) => c.id}
            columns=${[
              {
                key: 'name',
                title: 'Campaign',
                render: (c) => html`<a href=${`#/campaigns/${enc(c.id)}`}>${c.name}</a>`,
              },
              { key: 'state', title: 'State', render: (c) => html`<${Badge} status=${c.state} />` },
              { key: 'audience', title: 'Audience', render: (c) => audienceText(c) },
              {
                key: 'template',
                title: 'Template',
                render: (c) => `${c.message.template} via ${c.message.channels.join(', ')}`,
              },
              { key: 'schedule', title: 'Schedule', render: (c) => scheduleText(c.schedule) },
              { key: 'updatedAt', title: 'Updated', render: (c) => time(c.updatedAt) },
            ]}
            rows=${data.campaigns}
            empty="No campaigns yet."
          />`
        : null
    }
  </section>`;
}

function audienceText(c) {
  const a = c.audience;
  if (a.type === 'segment') return `segment ${a.segment}`;
  if (a.type === 'filter') return 'filter';
  return c.list ? `list of ${c.list.accepted}` : 'list (not uploaded)';
}
function scheduleText(s) {
  if (s.type === 'now') return 'now';
  if (s.type === 'at') return `at ${time(s.at)}`;
  return `${s.cron} (${s.timezone === 'user' ? "each user's zone" : s.timezone})`;
}

// ------------------------------------------------------------------ create
function NewCampaign() {
  const templates = useApi('/v1/templates');
  const rules = useApi('/v1/rules');
  const [f, setF] = useState({
    name: '',
    audience: 'list',
    segment: '',
    filter:
      '{\n  "all": [{ "fact": "user", "path": "$.plan", "operator": "equal", "value": "pro" }]\n}',
    template: '',
    channels: ['email'],
    category: 'marketing',
    holdout: '',
    schedule: 'now',
    at: '',
    cron: '0 10 * * 5',
    timezone: 'user',
  });
  const [file, setFile] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setF({ ...f, [k]: e.currentTarget.value });
  const toggle = (ch) =>
    setF({
      ...f,
      channels: f.channels.includes(ch) ? f.channels.filter((c) => c !== ch) : [...f.channels, ch],
    });
  const segments = [
    ...new Set(
      ((rules.data && rules.data.rules) || [])
        .map((r) => r.trigger && r.trigger.segment)
        .filter(Boolean),
    ),
  ];
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      let audience;
      if (f.audience === 'segment') audience = { type: 'segment', segment: f.segment.trim() };
      else if (f.audience === 'filter') {
        try {
          audience = { type: 'filter', conditions: JSON.parse(f.filter) };
        } catch (err) {
          throw {
            code: 'LC_ERR_BAD_REQUEST',
            message: `the filter is not JSON: ${err.message}`,
            details: { field: 'audience.conditions' },
          };
        }
      } else audience = { type: 'list' };
      if (f.audience === 'list' && !file)
        throw {
          code: 'LC_ERR_BAD_REQUEST',
          message: 'choose the CSV file of user ids',
          details: { field: 'list' },
        };
      const schedule =
        f.schedule === 'now'
          ? { type: 'now' }
          : f.schedule === 'at'
            ? { type: 'at', at: new Date(f.at).toISOString() }
            : { type: 'recurring', cron: f.cron.trim(), timezone: f.timezone.trim() };
      const message = {
        template: f.template,
        channels: f.channels,
        category: f.category,
        ...(f.holdout !== '' ? { holdout: Number(f.holdout) } : {}),
      };
      const { campaign } = await api('/v1/campaigns', {
        method: 'POST',
        body: { name: f.name.trim(), audience, message, schedule },
      });
      if (f.audience === 'list') {
        const csv = await file.text();
        const { report } = await api(`/v1/campaigns/${enc(campaign.id)}/audience`, {
          method: 'PUT',
          body: csv,
          raw: true,
          headers: { 'content-type': 'text/csv' },
        });
        notify(
          `List uploaded: ${report.accepted} users (${report.rejected} rejected, ${report.duplicates} duplicates)`,
        );
      }
      navigate(`#/campaigns/${enc(campaign.id)}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<section>
    <h1>New campaign</h1>
    <${ErrorBox} error=${templates.error || rules.error} />
    <form class="card stack" onSubmit=${submit}>
      <${Field} label="Name">
        <input name="name" value=${f.name} required onInput=${set('name')} />
      </${Field}>
      <fieldset class="stack">
        <legend>Audience</legend>
        <${Field} label="Who">
          <select name="audience" value=${f.audience} onChange=${set('audience')}>
            <option value="list">An uploaded list (CSV of user ids)</option>
            <option value="segment">A segment</option>
            <option value="filter">A filter over user state</option>
          </select>
        </${Field}>
        ${
          f.audience === 'list'
            ? html`<${Field} label="CSV file" hint="one user id per row, or a userId column">
              <input name="list" type="file" accept=".csv,text/csv,text/plain" onChange=${(e) => setFile(e.currentTarget.files[0] || null)} />
            </${Field}>`
            : f.audience === 'segment'
              ? html`<${Field} label="Segment id">
                <input name="segment" list="segments" value=${f.segment} required onInput=${set('segment')} />
                <datalist id="segments">${segments.map((s) => html`<option value=${s}></option>`)}</datalist>
              </${Field}>`
              : html`<${Field} label="Conditions (JSON, as in rules)">
                <textarea name="filter" rows="5" class="code" value=${f.filter} onInput=${set('filter')}></textarea>
              </${Field}>`
        }
      </fieldset>
      <fieldset class="stack">
        <legend>Message</legend>
        <${Field} label="Template">
          <select name="template" value=${f.template} required onChange=${set('template')}>
            <option value="">Choose…</option>
            ${((templates.data && templates.data.templates) || []).map((t) => html`<option value=${t.name}>${t.name}</option>`)}
          </select>
        </${Field}>
        <div class="row" role="group" aria-label="Channels">
          ${CHANNELS.map(
            (ch) =>
              html`<label class="check"
                ><input
                  type="checkbox"
                  name=${`channel-${ch}`}
                  checked=${f.channels.includes(ch)}
                  onChange=${() => toggle(ch)}
                />
                ${ch}</label
              >`,
          )}
        </div>
        <div class="row">
          <${Field} label="Category">
            <select name="category" value=${f.category} onChange=${set('category')}>
              <option value="marketing">marketing (needs opt-in)</option>
              <option value="transactional">transactional</option>
            </select>
          </${Field}>
          <${Field} label="Holdout" hint="share kept back, e.g. 0.1">
            <input name="holdout" type="number" min="0" max="0.99" step="0.01" value=${f.holdout} onInput=${set('holdout')} />
          </${Field}>
        </div>
      </fieldset>
      <fieldset class="stack">
        <legend>Schedule</legend>
        <${Field} label="When">
          <select name="schedule" value=${f.schedule} onChange=${set('schedule')}>
            <option value="now">Now, once scheduled</option>
            <option value="at">At a time</option>
            <option value="recurring">Recurring (cron)</option>
          </select>
        </${Field}>
        ${
          f.schedule === 'at'
            ? html`<${Field} label="At (your local time)"><input name="at" type="datetime-local" required value=${f.at} onInput=${set('at')} /></${Field}>`
            : null
        }
        ${
          f.schedule === 'recurring'
            ? html`<div class="row">
              <${Field} label="Cron" hint="minute hour day month weekday"><input name="cron" value=${f.cron} onInput=${set('cron')} /></${Field}>
              <${Field} label="Time zone" hint="an IANA zone, or user: each user's own"><input name="timezone" value=${f.timezone} onInput=${set('timezone')} /></${Field}>
            </div>`
            : null
        }
      </fieldset>
      <${ErrorBox} error=${error} />
      <div class="row"><${Button} type="submit" disabled=${busy}>Create draft</${Button}></div>
    </form>
  </section>`;
}

// ------------------------------------------------------------------ one campaign
const ACTIVE = new Set(['scheduled', 'running']);
const SETTLE_MS = 5 * 60_000;

function Campaign({ id }) {
  const { data, error, loading, reload } = useApi(`/v1/campaigns/${enc(id)}`, [id]);
  const [actionError, setActionError] = useState(null);
  const [history, setHistory] = useState([]);
  const state = data && data.campaign.state;
  const endedAt = data && data.campaign.endedAt;
  // Refreshes while the campaign is scheduled or running, and for a while after it ended:
  // sent, suppressed and failed come from analytics, which trails delivery.
  const settling = !!endedAt && Date.now() - Date.parse(endedAt) < SETTLE_MS;
  useEffect(() => {
    if (!state || !(ACTIVE.has(state) || settling)) return undefined;
    const timer = window.setInterval(reload, 2000);
    return () => window.clearInterval(timer);
  }, [state, settling]);
  useEffect(() => {
    if (!data) return;
    const p = data.progress;
    const o = p.outcomes || {};
    setHistory((h) =>
      [
        ...h,
        {
          at: new Date().toISOString(),
          planned: p.planned,
          fannedOut: p.fannedOut,
          sent: o.sent ?? 0,
          suppressed: o.suppressed ?? 0,
          failed: o.failed ?? 0,
        },
      ].slice(-60),
    );
  }, [data]);
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data) return null;
  const c = data.campaign;
  const p = data.progress;
  const o = p.outcomes;
  const act = async (action) => {
    setActionError(null);
    try {
      await api(`/v1/campaigns/${enc(c.id)}/${action}`, {
        method: 'POST',
        body: { revision: c.revision },
      });
      notify(
        `Campaign ${action === 'schedule' ? 'scheduled' : action === 'stop' ? 'stopped' : 'cancelled'}`,
      );
      reload();
    } catch (err) {
      setActionError(err);
    }
  };
  const edit = canEdit();
  return html`<section>
    <p><a href="#/campaigns">Campaigns</a></p>
    <h1>${c.name} <${Badge} status=${c.state} /></h1>
    <dl class="facts">
      <dt>Audience</dt>
      <dd>${audienceText(c)}</dd>
      <dt>Message</dt>
      <dd>
        ${c.message.template} via ${c.message.channels.join(', ')}
        (${c.message.category || 'marketing'})
      </dd>
      <dt>Schedule</dt>
      <dd>${scheduleText(c.schedule)}</dd>
      <dt>Started</dt>
      <dd>${time(c.startedAt)}</dd>
      <dt>Ended</dt>
      <dd>${time(c.endedAt)}</dd>
    </dl>
    ${
      edit
        ? html`<div class="row">
            ${c.state === 'draft' ? html`<${Button} onClick=${() => act('schedule')}>Schedule</${Button}>` : null}
            ${c.state === 'running' ? html`<${Button} kind="danger" onClick=${() => act('stop')}>Stop</${Button}>` : null}
            ${c.state === 'draft' || c.state === 'scheduled' ? html`<${Button} kind="danger" onClick=${() => act('cancel')}>Cancel</${Button}>` : null}
          </div>`
        : null
    }
    <${ErrorBox} error=${actionError} />
    <div class="row"><h2>Progress</h2><${Button} kind="secondary" onClick=${reload}>Refresh</${Button}></div>
    <dl class="facts progress">
      <dt>Planned</dt>
      <dd data-progress="planned">${p.planned}</dd>
      <dt>Fanned out</dt>
      <dd data-progress="fannedOut">${p.fannedOut}</dd>
      <dt>Sent</dt>
      <dd data-progress="sent">${o ? o.sent : '—'}</dd>
      <dt>Suppressed</dt>
      <dd data-progress="suppressed">${o ? o.suppressed : '—'}</dd>
      <dt>Failed</dt>
      <dd data-progress="failed">${o ? o.failed : '—'}</dd>
      <dt>Holdout</dt>
      <dd>${o ? o.holdout : '—'}</dd>
      <dt>Runs</dt>
      <dd>${p.runs} (${p.skippedRuns} skipped)</dd>
    </dl>
    ${p.outcomesError ? html`<p class="muted">Outcomes: ${p.outcomesError}</p>` : null}
    ${o ? html`<p class="muted">Outcomes as of ${time(o.asOf)} (analytics trails delivery a little).</p>` : null}
    ${
      history.length > 1
        ? html`<${Chart}
            kind="line"
            rows=${history}
            x="at"
            series=${['planned', 'fannedOut', 'sent', 'suppressed', 'failed']}
          />`
        : null
    }
    ${
      c.list
        ? html`<h2>List</h2>
            <p>
              ${c.list.accepted} users (${c.list.rows} rows, ${c.list.duplicates} duplicates,
              ${c.list.rejected} rejected), uploaded ${time(c.list.uploadedAt)}
            </p>`
        : null
    }
    <details>
      <summary>JSON</summary>
      <${Json} value=${c} />
    </details>
    <p class="muted">${text(c.description)}</p>
  </section>`;
}

function Campaigns({ path }) {
  const id = decodeURIComponent((path || '').replace(/^\//, '').split('/')[0] || '');
  if (!id) return html`<${List} />`;
  if (id === 'new') return html`<${NewCampaign} />`;
  return html`<${Campaign} key=${id} id=${id} />`;
}

export default {
  id: 'campaigns',
  title: 'Campaigns',
  roles: ['marketer', 'analyst', 'admin'],
  route: '/campaigns',
  component: Campaigns,
};
