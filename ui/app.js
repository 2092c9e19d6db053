// Lumen's dashboard: a shell with one view per signal, routed by the URL
// hash. Plain ES modules over the public HTTP APIs; no build step.
import { html, render, useEffect, useState } from './vendor/htm-preact-standalone-3.1.1.js';
import { parseHash } from './lib/url.js';
import { setToken, token } from './lib/api.js';
import { LogsView } from './views/logs.js';
import { TracesView } from './views/traces.js';
import { MetricsView } from './views/metrics.js';
import { ServicesView } from './views/services.js';
import { SqlView } from './views/sql.js';

const VIEWS = [
  ['logs', 'Logs', LogsView],
  ['traces', 'Traces', TracesView],
  ['metrics', 'Metrics', MetricsView],
  ['services', 'Services', ServicesView],
  ['sql', 'SQL', SqlView],
];

function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    addEventListener('popstate', on);
    return () => { removeEventListener('hashchange', on); removeEventListener('popstate', on); };
  }, []);
  return route;
}

function ThemeToggle() {
  const [theme, setTheme] = useState(document.documentElement.dataset.theme);
  const flip = () => {
    const t = theme === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = t;
    localStorage.setItem('lumen.theme', t);
    setTheme(t);
  };
  return html`<button id="theme" title="Switch theme" onClick=${flip}>${theme === 'dark' ? '☀ Light' : '☾ Dark'}</button>`;
}

// `/` focuses the view's search box; 1–5 switch views (when not typing).
addEventListener('keydown', e => {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName);
  if (e.key === '/' && !typing) {
    const box = document.querySelector('[data-search]');
    if (box) { e.preventDefault(); box.focus(); box.select?.(); }
  } else if (e.key === 'Escape' && typing) {
    document.activeElement.blur();
  } else if (!typing && !e.ctrlKey && !e.metaKey && !e.altKey && /^[1-5]$/.test(e.key)) {
    location.hash = `#/${VIEWS[Number(e.key) - 1][0]}`;
  }
});

/** Asks for a token when an API answered 401. */
function Login({ message, onDone }) {
  const [value, setValue] = useState('');
  const submit = e => { e.preventDefault(); if (value) { setToken(value.trim()); onDone(); } };
  return html`<div class="login-back"><form class="login" id="login" onSubmit=${submit}>
    <b>Sign in to Lumen</b>
    <p class="muted">${token() ? 'That token was refused. ' : ''}This Lumen wants an API token with the <code>read</code> scope (from its configuration file).</p>
    ${message && html`<div class="error" style="margin: 0 0 8px">${message}</div>`}
    <input id="login-token" type="password" autocomplete="current-password" placeholder="API token" value=${value} onInput=${e => setValue(e.target.value)} autofocus />
    <button class="primary" type="submit">Sign in</button>
  </form></div>`;
}

function App() {
  const route = useRoute();
  const [login, setLogin] = useState(null);
  const [session, setSession] = useState(0);
  useEffect(() => {
    const on = e => setLogin(e.detail ?? '');
    addEventListener('lumen-auth', on);
    return () => removeEventListener('lumen-auth', on);
  }, []);
  const entry = VIEWS.find(([v]) => v === route.view) ?? VIEWS[0];
  const View = entry[2];
  useEffect(() => { document.title = `${entry[1]} · Lumen`; }, [entry[1]]);
  return html`
    <header class="top">
      <span class="brand"><i></i>Lumen</span>
      <nav>${VIEWS.map(([v, name], i) => html`<a href="#/${v}" class=${v === entry[0] ? 'on' : ''} title="${name} (${i + 1})">${name}</a>`)}</nav>
      <span class="spacer"></span>
      <span class="muted" title="Keyboard: / search, 1–5 views, Esc leaves a box"><span class="kbd">/</span> search</span>
      ${token() && html`<button id="signout" title="Forget the API token in this browser" onClick=${() => { setToken(''); setSession(n => n + 1); }}>Sign out</button>`}
      <${ThemeToggle} />
    </header>
    <main><${View} route=${route} key=${`${entry[0]}/${session}`} /></main>
    ${login !== null && html`<${Login} message=${login} onDone=${() => { setLogin(null); setSession(n => n + 1); }} />`}`;
}

render(html`<${App} />`, document.getElementById('app'));
