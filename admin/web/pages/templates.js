// Templates (marketer): every managed template with its channels, latest and published
// versions; one template's versions, an editor of a version's files saved as a new version,
// a live preview (POST /v1/templates/:name/preview, debounced; of the unsaved draft while the
// editor holds changes) for sample data or a real user
// in a chosen locale, the HTML only in a sandboxed frame, diffs, publish, rollback and test
// sends. Routes: #/templates, #/templates/new, #/templates/<name>.
import {
  Button,
  ErrorBox,
  Field,
  Loading,
  Table,
  Tabs,
  api,
  html,
  navigate,
  notify,
  time,
  useApi,
  useEffect,
  useState,
} from '../lib.js';

const enc = encodeURIComponent;
const CHANNELS = ['email', 'inapp', 'push', 'sms', 'webhook'];
// The preview frame runs nothing, loads nothing remote (no pixel fires) and follows no link:
// a link clicked opens a window, which the sandbox refuses.
const FRAME_POLICY = "default-src 'none'; img-src data:";

/** `channel -> locale -> version` as short text: `email: en v3, * v2`. */
function publication(published) {
  const entries = Object.entries(published || {});
  if (entries.length === 0) return 'not published';
  return entries
    .map(
      ([ch, locales]) =>
        `${ch}: ${Object.entries(locales)
          .map(([l, v]) => `${l} v${v}`)
          .join(', ')}`,
    )
    .join('; ');
}

/** Channel and locale of a template file name (`email.en.hbs`), null for other files. */
function channelLocale(file) {
  const m = /^([a-z]+)\.([A-Za-z-]+)\.hbs$/.exec(file);
  return m && CHANNELS.includes(m[1]) ? { channel: m[1], locale: m[2] } : null;
}

// ------------------------------------------------------------------ list
function List() {
  const { data, error, loading } = useApi('/v1/templates');
  return html`<section>
    <div class="row">
      <h1>Templates</h1>
      <${Button} onClick=${() => navigate('#/templates/new')}>New template</${Button}>
    </div>
    ${loading ? html`<${Loading} />` : null}
    <${ErrorBox} error=${error} />
    ${
      data
        ? html`<${Table}
            rowKey=${(t) => t.name}
            columns=${[
              {
                key: 'name',
                title: 'Template',
                render: (t) => html`<a href=${`#/templates/${enc(t.name)}`}>${t.name}</a>`,
              },
              { key: 'channels', title: 'Channels', render: (t) => (t.channels || []).join(', ') },
              {
                key: 'latest',
                title: 'Latest',
                render: (t) => (t.latest ? `v${t.latest.version} ${t.latest.message || ''}` : '—'),
              },
              { key: 'published', title: 'Published', render: (t) => publication(t.published) },
            ]}
            rows=${data.templates}
            empty="No templates yet."
          />`
        : null
    }
  </section>`;
}

/** Problems of a refused save, each next to the file it is in. */
function FileProblems({ problems, file }) {
  const mine = (problems || []).filter((p) => p.file === file || (!file && !p.file));
  if (mine.length === 0) return null;
  return html`<ul class="error problems" role="alert">
    ${mine.map((p) => html`<li>${p.file ? `${p.file}: ` : ''}${p.message}</li>`)}
  </ul>`;
}

/** The refusal of a save: the coded error, and its problems by file when the API gave them. */
async function saveVersion(name, body) {
  return api(`/v1/templates/${enc(name)}/versions`, { method: 'POST', body });
}

// ------------------------------------------------------------------ new
function NewTemplate() {
  const [name, setName] = useState('');
  const [channel, setChannel] = useState('email');
  const [locale, setLocale] = useState('en');
  const [body, setBody] = useState(
    '---\nsubject: Hello {{user.firstName}}\n---\n<p>Hello {{user.firstName}}!</p>\n',
  );
  const [sample, setSample] = useState(
    '{\n  "user": { "firstName": "Ada", "email": "ada@example.com" }\n}\n',
  );
  const [message, setMessage] = useState('First version');
  const [error, setError] = useState(null);
  const [problems, setProblems] = useState([]);
  const file = `${channel}.${locale}.hbs`;
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setProblems([]);
    try {
      await saveVersion(name.trim(), { files: { [file]: body, 'sample.json': sample }, message });
      notify(`Template ${name.trim()} saved as version 1`);
      navigate(`#/templates/${enc(name.trim())}`);
    } catch (err) {
      setError(err);
      setProblems((err.details && err.details.errors) || []);
    }
  };
  return html`<section>
    <h1>New template</h1>
    <form class="card stack" onSubmit=${submit}>
      <${Field} label="Name" hint="letters, digits, _ and -">
        <input name="name" value=${name} required pattern="[A-Za-z0-9_-]+" onInput=${(e) => setName(e.currentTarget.value)} />
      </${Field}>
      <div class="row">
        <${Field} label="Channel">
          <select name="channel" value=${channel} onChange=${(e) => setChannel(e.currentTarget.value)}>
            ${CHANNELS.map((c) => html`<option value=${c}>${c}</option>`)}
          </select>
        </${Field}>
        <${Field} label="Locale">
          <input name="locale" value=${locale} required onInput=${(e) => setLocale(e.currentTarget.value)} />
        </${Field}>
      </div>
      <${Field} label=${file}>
        <textarea name="body" rows="10" class="code" value=${body} onInput=${(e) => setBody(e.currentTarget.value)}></textarea>
      </${Field}>
      <${FileProblems} problems=${problems} file=${file} />
      <${Field} label="sample.json" hint="the data previews use">
        <textarea name="sample" rows="5" class="code" value=${sample} onInput=${(e) => setSample(e.currentTarget.value)}></textarea>
      </${Field}>
      <${FileProblems} problems=${problems} file="sample.json" />
      <${Field} label="Version message">
        <input name="message" value=${message} required onInput=${(e) => setMessage(e.currentTarget.value)} />
      </${Field}>
      <${ErrorBox} error=${error} />
      <div class="row"><${Button} type="submit">Save</${Button}></div>
    </form>
  </section>`;
}

// ------------------------------------------------------------------ preview
function HtmlFrame({ body }) {
  const doc = `<meta http-equiv="Content-Security-Policy" content="${FRAME_POLICY}"><base target="_blank">${body}`;
  return html`<iframe
    class="message-body"
    title="Preview (HTML)"
    sandbox=""
    referrerpolicy="no-referrer"
    srcdoc=${doc}
  ></iframe>`;
}

function Preview({ name, version, channels, draft }) {
  const [channel, setChannel] = useState(channels[0] || 'email');
  const [locale, setLocale] = useState('en');
  const [userId, setUserId] = useState('');
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    if (!channels.includes(channel) && channels[0]) setChannel(channels[0]);
  }, [channels.join(',')]);
  useEffect(() => {
    let live = true;
    // Debounced: typing a user id or locale renders once it settles.
    const timer = setTimeout(() => {
      api(`/v1/templates/${enc(name)}/preview`, {
        method: 'POST',
        body: {
          channel,
          locale,
          // The editor's unsaved files when there are changes, else the saved version.
          ...(draft ? { files: draft } : { version }),
          ...(userId.trim() ? { userId: userId.trim() } : {}),
        },
      }).then(
        (data) => live && setState({ data, error: null }),
        (error) => live && setState({ data: null, error }),
      );
    }, 300);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [name, version, channel, locale, userId, draft ? JSON.stringify(draft) : '']);
  const c = state.data && state.data.content;
  return html`<div class="card stack preview">
    <h2 data-preview-of=${draft ? 'draft' : `v${version}`}>
      ${draft ? `Preview of your changes to v${version} (not saved)` : `Preview of v${version}`}
    </h2>
    <div class="row">
      <${Field} label="Channel">
        <select name="preview-channel" value=${channel} onChange=${(e) => setChannel(e.currentTarget.value)}>
          ${channels.map((ch) => html`<option value=${ch}>${ch}</option>`)}
        </select>
      </${Field}>
      <${Field} label="Locale">
        <input name="preview-locale" value=${locale} onInput=${(e) => setLocale(e.currentTarget.value)} />
      </${Field}>
      <${Field} label="User id" hint="empty: the sample data">
        <input name="preview-user" value=${userId} onInput=${(e) => setUserId(e.currentTarget.value)} />
      </${Field}>
    </div>
    <${ErrorBox} error=${state.error} />
    ${
      c
        ? html`<dl class="facts">
              ${
                c.subject !== undefined
                  ? html`<dt>Subject</dt>
                      <dd data-preview="subject">${c.subject}</dd>`
                  : null
              }
              ${
                c.title !== undefined
                  ? html`<dt>Title</dt>
                      <dd data-preview="title">${c.title}</dd>`
                  : null
              }
              ${
                c.body !== undefined && typeof c.body === 'string'
                  ? html`<dt>Body</dt>
                      <dd data-preview="body">${c.body}</dd>`
                  : null
              }
              <dt>Rendered</dt>
              <dd>${state.data.locale}, v${state.data.version}</dd>
            </dl>
            ${typeof c.html === 'string' ? html`<${HtmlFrame} body=${c.html} />` : null}
            ${typeof c.text === 'string' ? html`<pre class="json">${c.text}</pre>` : null}`
        : null
    }
  </div>`;
}

// ------------------------------------------------------------------ one template
function Editor({ name, version, onSaved, onDraft }) {
  const { data, error, loading } = useApi(`/v1/templates/${enc(name)}/versions/${version}`, [
    version,
  ]);
  const [files, setFiles] = useState({});
  const [active, setActive] = useState(null);
  const [message, setMessage] = useState('');
  const [saveError, setSaveError] = useState(null);
  const [problems, setProblems] = useState([]);
  useEffect(() => {
    if (!data) return;
    setFiles({ ...data.files });
    setActive(Object.keys(data.files).sort()[0] || null);
  }, [data]);
  const changed = data
    ? Object.fromEntries(Object.entries(files).filter(([f, t]) => data.files[f] !== t))
    : {};
  const dirty = Object.keys(changed).length > 0;
  // The preview follows what is typed: the whole draft while it differs from the version.
  useEffect(() => onDraft && onDraft(dirty ? files : null), [dirty ? JSON.stringify(files) : '']);
  if (loading) return html`<${Loading} />`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data || !active) return null;
  const save = async (e) => {
    e.preventDefault();
    setSaveError(null);
    setProblems([]);
    try {
      const saved = await saveVersion(name, { files: changed, from: version, message });
      notify(`Saved as version ${saved.version.version}`);
      setMessage('');
      onSaved();
    } catch (err) {
      setSaveError(err);
      setProblems((err.details && err.details.errors) || []);
    }
  };
  return html`<form class="card stack" onSubmit=${save}>
    <h2>Edit v${version}</h2>
    <${Tabs} tabs=${Object.keys(files)
      .sort()
      .map((f) => ({ id: f, title: f }))} active=${active} onChange=${setActive} />
    <textarea
      name="file"
      aria-label=${active}
      rows="14"
      class="code"
      value=${files[active]}
      onInput=${(e) => setFiles({ ...files, [active]: e.currentTarget.value })}
    ></textarea>
    <${FileProblems} problems=${problems} file=${active} />
    ${problems.filter((p) => p.file !== active).map((p) => html`<p class="error">${p.file || 'version'}: ${p.message}</p>`)}
    <${Field} label="Why (version message)">
      <input name="message" value=${message} required onInput=${(e) => setMessage(e.currentTarget.value)} />
    </${Field}>
    <${ErrorBox} error=${saveError} />
    <div class="row">
      <${Button} type="submit" disabled=${Object.keys(changed).length === 0}>Save as new version</${Button}>
      <span class="muted">${Object.keys(changed).length} file(s) changed</span>
    </div>
  </form>`;
}

function Diff({ name, versions }) {
  const last = versions.length;
  const [from, setFrom] = useState(Math.max(1, last - 1));
  const [to, setTo] = useState(last);
  const { data, error } = useApi(
    from && to && from !== to ? `/v1/templates/${enc(name)}/diff?from=${from}&to=${to}` : null,
    [from, to],
  );
  const pick = (value, set) =>
    html`<select value=${value} onChange=${(e) => set(Number(e.currentTarget.value))}>
      ${versions.map((v) => html`<option value=${v.version}>v${v.version}</option>`)}
    </select>`;
  return html`<div class="card stack">
    <h2>Diff</h2>
    <div class="row">
      <${Field} label="From">${pick(from, setFrom)}</${Field}>
      <${Field} label="To">${pick(to, setTo)}</${Field}>
    </div>
    <${ErrorBox} error=${error} />
    ${
      data
        ? data.files.length === 0
          ? html`<p class="muted">No difference.</p>`
          : data.files.map(
              (f) =>
                html`<div>
                  <h3>${f.file} (${f.change})</h3>
                  <pre class="json diff">${f.patch}</pre>
                </div>`,
            )
        : null
    }
  </div>`;
}

function Actions({ name, version, channels, onChanged }) {
  const [to, setTo] = useState('');
  const [channel, setChannel] = useState(channels[0] || 'email');
  const [locales, setLocales] = useState('');
  const [error, setError] = useState(null);
  const localeList = locales
    .split(',')
    .map((l) => l.trim())
    .filter(Boolean);
  const scope = { channels: [channel], ...(localeList.length ? { locales: localeList } : {}) };
  const run = async (what, path, body) => {
    setError(null);
    try {
      await api(`/v1/templates/${enc(name)}/${path}`, { method: 'POST', body });
      notify(what);
      onChanged();
    } catch (err) {
      setError(err);
    }
  };
  return html`<div class="card stack">
    <h2>Publish, roll back, test</h2>
    <div class="row">
      <${Field} label="Channel">
        <select name="publish-channel" value=${channel} onChange=${(e) => setChannel(e.currentTarget.value)}>
          ${channels.map((ch) => html`<option value=${ch}>${ch}</option>`)}
        </select>
      </${Field}>
      <${Field} label="Locales" hint="comma separated; empty: every locale">
        <input name="publish-locales" value=${locales} onInput=${(e) => setLocales(e.currentTarget.value)} />
      </${Field}>
    </div>
    <div class="row">
      <${Button} onClick=${() => run(`Published v${version}`, 'publish', { version, ...scope })}>Publish v${version}</${Button}>
      <${Button} kind="secondary" onClick=${() => run('Rolled back', 'rollback', scope)}>Roll back</${Button}>
    </div>
    <div class="row">
      <${Field} label="Test send to">
        <input name="test-to" type="email" value=${to} placeholder="you@example.com" onInput=${(e) => setTo(e.currentTarget.value)} />
      </${Field}>
      <${Button} kind="secondary" disabled=${!to} onClick=${() => run(`Test sent to ${to}`, 'test-send', { to, channel, version })}>Send test</${Button}>
    </div>
    <${ErrorBox} error=${error} />
  </div>`;
}

function Template({ name }) {
  const { data, error, loading, reload } = useApi(`/v1/templates/${enc(name)}`, [name]);
  const [version, setVersion] = useState(null);
  const [draft, setDraft] = useState(null);
  useEffect(() => {
    if (data && data.versions.length) setVersion(data.versions[data.versions.length - 1].version);
  }, [data]);
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data || version === null) return null;
  const current = data.versions.find((v) => v.version === version);
  const channels = [
    ...new Set(
      Object.keys((current && current.files) || {})
        .map(channelLocale)
        .filter(Boolean)
        .map((c) => c.channel),
    ),
  ];
  return html`<section>
    <p><a href="#/templates">Templates</a></p>
    <h1>${name}</h1>
    <p>Published: <span data-published>${publication(data.published)}</span></p>
    <${Table}
      rowKey=${(v) => v.version}
      columns=${[
        {
          key: 'version',
          title: 'Version',
          render: (v) =>
            html`<button
              type="button"
              class=${v.version === version ? 'link active' : 'link'}
              onClick=${() => setVersion(v.version)}
            >
              v${v.version}
            </button>`,
        },
        { key: 'message', title: 'Message' },
        { key: 'author', title: 'Author' },
        { key: 'createdAt', title: 'Saved', render: (v) => time(v.createdAt) },
      ]}
      rows=${[...data.versions].reverse()}
    />
    <div class="grid-2">
      <${Editor} name=${name} version=${version} onSaved=${reload} onDraft=${setDraft} />
      <${VersionPreview} name=${name} version=${version} draft=${draft} />
    </div>
    <${Actions}
      name=${name}
      version=${version}
      channels=${channels.length ? channels : CHANNELS}
      onChanged=${reload}
    />
    <${Diff} name=${name} versions=${data.versions} />
  </section>`;
}

/** The preview, with the channels of the version's files. */
function VersionPreview({ name, version, draft }) {
  const { data } = useApi(`/v1/templates/${enc(name)}/versions/${version}`, [version]);
  if (!data) return null;
  const channels = [
    ...new Set(
      Object.keys(data.files)
        .map(channelLocale)
        .filter(Boolean)
        .map((c) => c.channel),
    ),
  ];
  return html`<${Preview}
    name=${name}
    version=${version}
    draft=${draft}
    channels=${channels.length ? channels : ['email']}
  />`;
}

function Templates({ path }) {
  const name = decodeURIComponent((path || '').replace(/^\//, '').split('/')[0] || '');
  if (!name) return html`<${List} />`;
  if (name === 'new') return html`<${NewTemplate} />`;
  return html`<${Template} key=${name} name=${name} />`;
}

export default {
  id: 'templates',
  title: 'Templates',
  roles: ['marketer', 'admin'],
  route: '/templates',
  component: Templates,
};
