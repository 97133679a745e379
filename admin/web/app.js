// The admin pages: the login form, then the navigation of the pages the signed-in role may
// use and the page of the current hash route (`#/users/u42`).
import {
  ErrorBox,
  Toast,
  currentRoute,
  html,
  login,
  logout,
  onSession,
  registerPages,
  render,
  session,
  useEffect,
  useState,
} from './lib.js';
import pages from './pages/index.js';

registerPages(pages);

/** The pages a role may use: admin every page, others those that list the role. */
export const pagesFor = (role) => pages.filter((p) => role === 'admin' || p.roles.includes(role));

/** The page of a route: the longest matching prefix (`/users` for `/users/u42`). */
function match(list, route) {
  let best = null;
  for (const p of list) {
    const prefix = p.route === '/' ? '/' : p.route.replace(/\/$/, '');
    const hit = prefix === '/' ? route === '/' : route === prefix || route.startsWith(`${prefix}/`);
    if (hit && (!best || prefix.length > best.prefix.length)) best = { page: p, prefix };
  }
  return best;
}

function Login({ reason }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(value);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card" onSubmit=${submit} autocomplete="off">
      <h1>Lifecycle admin</h1>
      <p class="muted">
        Log in with a staff API key (<code>lc_…</code>), a token of your identity provider (JWT) or
        the break-glass admin token. It is kept in this tab only and forgotten when you log out or
        close the tab.
      </p>
      ${reason && !error ? html`<p class="notice" id="login-reason">${reason}</p>` : null}
      <label class="field">
        <span class="label">Credential</span>
        <input
          id="credential"
          name="credential"
          type="password"
          autocomplete="off"
          spellcheck="false"
          value=${value}
          onInput=${(e) => setValue(e.currentTarget.value)}
          required
        />
      </label>
      <div id="login-error"><${ErrorBox} error=${error} /></div>
      <button class="btn primary" type="submit" disabled=${busy}>Log in</button>
    </form>
  </main>`;
}

function Shell({ who }) {
  const [route, setRoute] = useState(currentRoute());
  const [menu, setMenu] = useState(false);
  useEffect(() => {
    const on = () => {
      setRoute(currentRoute());
      setMenu(false);
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const allowed = pagesFor(who.role);
  const found = match(allowed, route.route);
  const forbidden = !found && match(pages, route.route);
  const Page = found && found.page.component;
  const rest = found
    ? route.route.slice(found.prefix === '/' ? 1 : found.prefix.length).replace(/^\//, '')
    : '';
  useEffect(() => {
    document.title = `${found ? found.page.title : 'Not found'} · Lifecycle admin`;
  }, [found && found.page.id]);
  return html`<div class="shell">
    <header class="top">
      <button
        type="button"
        class="menu-toggle"
        aria-expanded=${menu ? 'true' : 'false'}
        aria-controls="nav"
        onClick=${() => setMenu(!menu)}
      >
        Menu
      </button>
      <a class="brand" href="#/">Lifecycle admin</a>
      <span class="who" title=${who.actor}>
        ${who.name} <span class="badge neutral role">${who.role}</span>
      </span>
      <button type="button" class="btn secondary logout" onClick=${() => logout('You logged out.')}>
        Log out
      </button>
    </header>
    <nav id="nav" class=${menu ? 'open' : ''} aria-label="Pages">
      ${allowed.map(
        (p) =>
          html`<a
            href=${`#${p.route}`}
            data-page=${p.id}
            class=${found && found.page.id === p.id ? 'active' : ''}
            aria-current=${found && found.page.id === p.id ? 'page' : undefined}
            >${p.title}</a
          >`,
      )}
    </nav>
    <main class="content" id="main">
      ${
        Page
          ? html`<${Page} key=${found.page.id} path=${rest} params=${route.query} />`
          : html`<div class="card">
              <h1>${forbidden ? 'Not for your role' : 'Not found'}</h1>
              <p>
                ${
                  forbidden
                    ? `The role ${who.role} cannot use this page.`
                    : 'No page has this address.'
                }
                ${' '}<a href="#/">Home</a>
              </p>
            </div>`
      }
    </main>
    <${Toast} />
  </div>`;
}

function App() {
  const [state, setState] = useState({ who: session(), reason: null });
  useEffect(() => onSession((reason) => setState({ who: session(), reason })), []);
  return state.who
    ? html`<${Shell} who=${state.who} />`
    : html`<${Login} reason=${state.reason} />`;
}

render(html`<${App} />`, document.getElementById('app'));
