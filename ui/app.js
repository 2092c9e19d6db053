// Lumen's dashboard: a shell with one view per signal, routed by the URL
// hash. Plain ES modules over the public HTTP APIs; no build step.
import { html, render, useEffect, useState } from './vendor/htm-preact-standalone-3.1.1.js';
import { parseHash } from './lib/url.js';
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

function App() {
  const route = useRoute();
  const entry = VIEWS.find(([v]) => v === route.view) ?? VIEWS[0];
  const View = entry[2];
  useEffect(() => { document.title = `${entry[1]} · Lumen`; }, [entry[1]]);
  return html`
    <header class="top">
      <span class="brand"><i></i>Lumen</span>
      <nav>${VIEWS.map(([v, name], i) => html`<a href="#/${v}" class=${v === entry[0] ? 'on' : ''} title="${name} (${i + 1})">${name}</a>`)}</nav>
      <span class="spacer"></span>
      <span class="muted" title="Keyboard: / search, 1–5 views, Esc leaves a box"><span class="kbd">/</span> search</span>
      <${ThemeToggle} />
    </header>
    <main><${View} route=${route} key=${entry[0]} /></main>`;
}

render(html`<${App} />`, document.getElementById('app'));
