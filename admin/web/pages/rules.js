// Rules (marketer; analysts read): the rules in force with their status and the problems of
// refused rule files; one rule's JSON; a simulation of a draft (prefilled with the rule) over
// pasted or uploaded events, and a backtest over the stored history.
// Routes: #/rules, #/rules/<id>.
import {
  Badge,
  Button,
  ErrorBox,
  Field,
  Json,
  Loading,
  Table,
  api,
  html,
  session,
  time,
  useApi,
  useState,
} from '../lib.js';

const enc = encodeURIComponent;
const canTry = () => {
  const who = session();
  return !!who && (who.role === 'marketer' || who.role === 'admin');
};

function List() {
  const { data, error, loading } = useApi('/v1/rules');
  return html`<section>
    <h1>Rules</h1>
    ${loading ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data && data.errors.length
        ? html`<div class="error" role="alert" data-rule-errors>
            <strong
              >The rule files were refused ${time(data.rejectedAt)}; the rules below stay in force
              until they are fixed:</strong
            >
            <ul>
              ${data.errors.map((e) => html`<li>${e.file} ${e.path}: ${e.message}</li>`)}
            </ul>
          </div>`
        : null
    }
    ${
      data
        ? html`<${Table}
            rowKey=${(r) => r.id}
            columns=${[
              {
                key: 'id',
                title: 'Rule',
                render: (r) => html`<a href=${`#/rules/${enc(r.id)}`}>${r.id}</a>`,
              },
              {
                key: 'enabled',
                title: 'Status',
                render: (r) => html`<${Badge} status=${r.enabled ? 'active' : 'paused'} />`,
              },
              { key: 'category', title: 'Category' },
              { key: 'triggerSummary', title: 'Trigger' },
              { key: 'action', title: 'Sends' },
              { key: 'file', title: 'File' },
            ]}
            rows=${data.rules}
            empty="No rules in force."
          />`
        : null
    }
  </section>`;
}

/** A draft rule from the editor's text, or an error to show next to it. */
function parseDraft(textValue) {
  try {
    return { ok: true, rule: JSON.parse(textValue) };
  } catch (err) {
    return {
      ok: false,
      error: {
        code: 'LC_ERR_BAD_REQUEST',
        message: `the draft is not JSON: ${err.message}`,
        details: { field: 'rule' },
      },
    };
  }
}

function DraftProblems({ error }) {
  const problems = (error && error.details && error.details.errors) || [];
  if (problems.length === 0) return html`<${ErrorBox} error=${error} />`;
  return html`<div class="error" role="alert" data-code=${error.code}>
    <strong>${error.code}</strong>
    <ul>
      ${problems.map((p) => html`<li><code>${p.path}</code>: ${p.message}</li>`)}
    </ul>
  </div>`;
}

function Simulate({ draft }) {
  const [events, setEvents] = useState('');
  const [until, setUntil] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const upload = async (e) => {
    const file = e.currentTarget.files[0];
    if (file) setEvents(await file.text());
  };
  const run = async (e) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    const parsed = parseDraft(draft);
    if (!parsed.ok) return setError(parsed.error);
    setBusy(true);
    try {
      setResult(
        await api('/v1/rules/simulate', {
          method: 'POST',
          body: {
            rule: parsed.rule,
            events,
            ...(until ? { until: new Date(until).toISOString() } : {}),
          },
        }),
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card stack" onSubmit=${run} data-form="simulate">
    <h2>Simulate</h2>
    <p class="muted">The draft runs over these events on a virtual clock, as <code>lifecycle simulate</code> does; delays still pending after the last event fire. Nothing is sent.</p>
    <${Field} label="Events" hint="NDJSON or a JSON array of Segment messages or normalised events">
      <textarea name="events" rows="8" class="code" value=${events} onInput=${(e) => setEvents(e.currentTarget.value)}></textarea>
    </${Field}>
    <div class="row">
      <${Field} label="…or upload a file"><input name="events-file" type="file" accept=".json,.ndjson,.jsonl,application/json" onChange=${upload} /></${Field}>
      <${Field} label="Until (optional)" hint="stop the clock here instead"><input name="until" type="datetime-local" value=${until} onInput=${(e) => setUntil(e.currentTarget.value)} /></${Field}>
    </div>
    <div class="row"><${Button} type="submit" disabled=${busy || !events.trim()}>Simulate</${Button}></div>
    <${DraftProblems} error=${error} />
    ${
      result
        ? html`<div data-result="simulate">
            <p>
              <strong data-sends=${result.summary.sends}>${result.summary.sends} send(s)</strong>
              (${result.summary.holdouts} holdout) to ${result.users.length} user(s);
              ${result.summary.events} events, ${result.summary.timersFired} timers fired,
              ${result.summary.invalid.length} invalid line(s); clock at
              ${time(result.summary.clock)}.
            </p>
            <${Table}
              columns=${[
                { key: 'userId', title: 'User' },
                { key: 'template', title: 'Template' },
                { key: 'channels', title: 'Channels', render: (s) => s.channels.join(', ') },
                { key: 'createdAt', title: 'At', render: (s) => time(s.createdAt) },
                { key: 'holdout', title: 'Holdout', render: (s) => (s.holdout ? 'yes' : '') },
                { key: 'line', title: 'Line', render: (s) => (s.line ? s.line : 'after the last') },
              ]}
              rows=${result.sends}
              empty="The draft would send nothing for these events."
            />
            <details>
              <summary>Per event</summary>
              <${Table}
                columns=${[
                  { key: 'line', title: 'Line' },
                  { key: 'userId', title: 'User' },
                  { key: 'type', title: 'Event' },
                  { key: 'sends', title: 'Sends' },
                  { key: 'invalid', title: 'Problem' },
                ]}
                rows=${result.trace}
              />
            </details>
          </div>`
        : null
    }
  </form>`;
}

function Backtest({ draft, ruleId }) {
  const today = new Date().toISOString().slice(0, 10);
  const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString().slice(0, 10);
  const [from, setFrom] = useState(weekAgo);
  const [to, setTo] = useState(today);
  const [useDraft, setUseDraft] = useState(false);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (e) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    let which = { ruleId };
    if (useDraft) {
      const parsed = parseDraft(draft);
      if (!parsed.ok) return setError(parsed.error);
      which = { rule: parsed.rule };
    }
    setBusy(true);
    try {
      setResult(
        await api('/v1/rules/backtest', {
          method: 'POST',
          body: { ...which, from: `${from}T00:00:00Z`, to: `${to}T00:00:00Z` },
        }),
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const r = result && result.report;
  return html`<form class="card stack" onSubmit=${run} data-form="backtest">
    <h2>Backtest</h2>
    <p class="muted">The stored history replayed through the engine; sends created in the window are reported and compared with what the live rule sent.</p>
    <div class="row">
      <${Field} label="From (UTC day)"><input name="from" type="date" value=${from} onInput=${(e) => setFrom(e.currentTarget.value)} /></${Field}>
      <${Field} label="To (UTC day, exclusive)"><input name="to" type="date" value=${to} onInput=${(e) => setTo(e.currentTarget.value)} /></${Field}>
      <label class="check"><input type="checkbox" name="use-draft" checked=${useDraft} onChange=${() => setUseDraft(!useDraft)} /> the edited draft</label>
    </div>
    <div class="row"><${Button} type="submit" disabled=${busy}>Backtest</${Button}></div>
    <${DraftProblems} error=${error} />
    ${
      r
        ? html`<div data-result="backtest">
            <dl class="facts">
              <dt>Events replayed</dt>
              <dd>${r.eventsReplayed} (${r.eventsInWindow} in the window)</dd>
              <dt>Would send</dt>
              <dd>${r.sends - r.holdouts} to ${r.recipients} users, plus ${r.holdouts} holdout</dd>
              <dt>By template</dt>
              <dd>
                ${
                  Object.entries(r.byTemplate)
                    .map(([k, v]) => `${k}: ${v}`)
                    .join('; ') || '—'
                }
              </dd>
              <dt>By variant</dt>
              <dd>
                ${
                  Object.entries(r.byVariant)
                    .map(([k, v]) => `${k}: ${v}`)
                    .join('; ') || '—'
                }
              </dd>
              <dt>Live sends</dt>
              <dd>
                ${r.live.sends}; same sendId in both ${r.live.both}, only in the backtest
                ${r.live.onlyBacktest}, only live ${r.live.onlyLive}
              </dd>
            </dl>
          </div>`
        : null
    }
  </form>`;
}

function Rule({ id }) {
  const { data, error, loading } = useApi(`/v1/rules/${enc(id)}`, [id]);
  const [draft, setDraft] = useState(null);
  if (loading) return html`<${Loading} />`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data) return null;
  const r = data.rule;
  const textValue = draft ?? JSON.stringify(data.json, null, 2);
  return html`<section>
    <p><a href="#/rules">Rules</a></p>
    <h1>${r.id} <${Badge} status=${r.enabled ? 'active' : 'paused'} /></h1>
    <p>${r.description || ''}</p>
    <dl class="facts">
      <dt>Trigger</dt>
      <dd>${r.triggerSummary}</dd>
      <dt>Sends</dt>
      <dd>${r.action}</dd>
      <dt>Category</dt>
      <dd>${r.category}</dd>
      <dt>File</dt>
      <dd>${r.file}</dd>
    </dl>
    <h2>As it runs</h2>
    <${Json} value=${data.json} />
    ${
      canTry()
        ? html`<div class="card stack">
              <h2>Draft</h2>
              <p class="muted">Edit a copy to try it; the rule files are not changed.</p>
              <textarea
                name="draft"
                rows="14"
                class="code"
                value=${textValue}
                onInput=${(e) => setDraft(e.currentTarget.value)}
              ></textarea>
            </div>
            <${Simulate} draft=${textValue} />
            <${Backtest} draft=${textValue} ruleId=${r.id} />`
        : null
    }
  </section>`;
}

function Rules({ path }) {
  const id = decodeURIComponent((path || '').replace(/^\//, '').split('/')[0] || '');
  if (!id) return html`<${List} />`;
  return html`<${Rule} key=${id} id=${id} />`;
}

export default {
  id: 'rules',
  title: 'Rules',
  roles: ['marketer', 'analyst', 'admin'],
  route: '/rules',
  component: Rules,
};
