// Home: who is signed in, what their role can do here, and the server's health.
import {
  Badge,
  ErrorBox,
  Loading,
  html,
  session,
  time,
  useEffect,
  useState,
  visiblePages,
} from '../lib.js';

const ROLE_WORDS = {
  admin: 'everything: staff keys, the audit log, and every page below.',
  support: 'find a user, read what they were sent, resend a message, change their preferences.',
  analyst: 'read the dashboards.',
  marketer: 'templates, campaigns and rules.',
  service: "the product backend's calls (the send API); no page is made for this role.",
};

function Health() {
  const [state, setState] = useState({ loading: true });
  useEffect(() => {
    // Public, and not a staff call: a 503 is an answer here, not an error.
    fetch('/health', { headers: { accept: 'application/json' } })
      .then(async (res) =>
        setState({ status: res.status, body: await res.json().catch(() => null) }),
      )
      .catch((error) => setState({ error }));
  }, []);
  if (state.loading) return html`<${Loading} />`;
  if (state.error) return html`<${ErrorBox} error=${state.error} />`;
  const checks = (state.body && state.body.checks) || {};
  return html`<div data-health=${state.status === 200 ? 'ok' : 'down'}>
    <p>
      Server: <${Badge} status=${state.status === 200 ? 'ok' : 'error'} />
      ${state.status === 200 ? ' every check passes' : ` HTTP ${state.status}`}
    </p>
    <dl class="facts">
      ${Object.entries(checks).map(
        ([name, ok]) =>
          html`<dt>${name}</dt>
            <dd><${Badge} status=${ok ? 'ok' : 'error'} /></dd>`,
      )}
    </dl>
  </div>`;
}

function Home() {
  const who = session();
  const mine = visiblePages().filter((p) => p.id !== 'home');
  return html`<section>
    <h1>Welcome, ${who.name}</h1>
    <div class="card">
      <dl class="facts">
        <dt>Signed in as</dt>
        <dd>${who.actor}</dd>
        <dt>Role</dt>
        <dd>${who.role}</dd>
        <dt>With</dt>
        <dd>
          ${{ key: 'an API key', jwt: 'a JWT of the identity provider', token: 'the admin token' }[who.via] || who.via}
        </dd>
        <dt>Expires</dt>
        <dd>${who.expiresAt ? time(who.expiresAt) : 'never'}</dd>
      </dl>
      <p>Your role can ${ROLE_WORDS[who.role] || 'use the pages below.'}</p>
    </div>
    <h2>Pages</h2>
    ${
      mine.length === 0
        ? html`<p class="muted">No page is made for this role.</p>`
        : html`<ul class="links">
            ${mine.map((p) => html`<li><a href=${`#${p.route}`}>${p.title}</a></li>`)}
          </ul>`
    }
    <h2>Health</h2>
    <div class="card"><${Health} /></div>
  </section>`;
}

export default {
  id: 'home',
  title: 'Home',
  roles: ['admin', 'support', 'analyst', 'marketer', 'service'],
  route: '/',
  component: Home,
};
