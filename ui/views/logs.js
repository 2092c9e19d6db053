// The logs explorer: search (the query language of /api/v1/logs/search), a
// histogram of matches that can be brushed to zoom, a virtualised list of
// expandable rows, and live tail over the /api/v1/tail WebSocket.
import { html, useEffect, useRef, useState, useCallback } from '../vendor/htm-preact-standalone-3.1.1.js';
import { getJSON, token } from '../lib/api.js';
import { bounds, fmtTime, recordMs, toSeconds } from '../lib/time.js';
import { go, makeHash } from '../lib/url.js';
import { RangePicker } from '../lib/range.js';
import { VList } from '../lib/vlist.js';

const PAGE = 500;
const MAX_ROWS = 10000;
const RECENT_KEY = 'lumen.recent-log-queries';

export function severityClass(rec) {
  const n = rec.severity_number;
  if (n >= 21) return 'fatal';
  if (n >= 17) return 'error';
  if (n >= 13) return 'warn';
  if (n >= 9) return 'info';
  if (n >= 5) return 'debug';
  if (n >= 1) return 'trace';
  const t = (rec.severity_text ?? '').toLowerCase();
  return ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].find(s => t.startsWith(s)) ?? 'info';
}

const recent = () => { try { return JSON.parse(localStorage.getItem(RECENT_KEY)) ?? []; } catch { return []; } };
function remember(q) {
  if (!q) return;
  localStorage.setItem(RECENT_KEY, JSON.stringify([q, ...recent().filter(x => x !== q)].slice(0, 12)));
}

/** A filter term for a clicked field, quoted when it needs to be. */
function term(field, value) {
  const v = String(value);
  return `${field}:${/^[\w.\-/]+$/.test(v) ? v : JSON.stringify(v)}`;
}

const HELP = [
  ['timeout', 'a word of the body (any case)'], ['"connection refused"', 'a phrase'], ['time*, t?meout', 'wildcards in a word'],
  ['a b, a AND b', 'both'], ['a OR b', 'either'], ['-debug, NOT debug', 'not'], ['(a OR b) c', 'grouping'],
  ['service:checkout', 'the service'], ['severity:error, severity>=warn', 'severity'],
  ['trace_id:4bf9…', 'a trace'], ['attr.http.method:GET', 'an attribute (record or resource)'],
];

export function LogsView({ route }) {
  const p = route.params;
  const range = { from: p.from ?? 'now-1h', to: p.to ?? 'now' };
  const q = p.q ?? '';
  const live = p.live === '1';
  const [text, setText] = useState(q);
  const [help, setHelp] = useState(false);
  const [rows, setRows] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [hist, setHist] = useState(null);
  const [err, setErr] = useState(null);
  const [state, setState] = useState('loading'); // loading | ready | empty | nodata
  const [took, setTook] = useState(null);
  const [open, setOpen] = useState(() => new Set());
  const loadingMore = useRef(false);
  // Searching again for the same query (the URL unchanged) runs it again.
  const [again, setAgain] = useState(0);
  useEffect(() => setText(q), [q]);

  const nav = (params, replace = false) => {
    const h = makeHash('logs', { q, from: range.from, to: range.to, live: live ? '1' : '', ...params });
    if (h === location.hash) setAgain(n => n + 1);
    else go(h, replace);
  };
  const search = (nextQ = text) => { remember(nextQ); nav({ q: nextQ }); };
  const addFilter = t => search([text.trim(), t].filter(Boolean).join(' '));

  // Search and histogram whenever the URL's query or range changes.
  useEffect(() => {
    let gone = false;
    const [a, b] = bounds(range);
    const params = { q, start: toSeconds(a), end: toSeconds(b) };
    setState('loading'); setErr(null); setOpen(new Set());
    const t0 = performance.now();
    Promise.all([
      getJSON('/api/v1/logs/search', { ...params, limit: PAGE }),
      getJSON('/api/v1/logs/histogram', { ...params, buckets: 80 }),
    ]).then(async ([page, h]) => {
      if (gone) return;
      setRows(page.logs); setCursor(page.next_cursor); setHist({ ...h, from: a, to: b });
      setTook(Math.round(performance.now() - t0));
      if (page.logs.length) setState('ready');
      else {
        // Nothing at all, or nothing matching?
        const any = await getJSON('/api/v1/logs/search', { limit: 1 }).catch(() => ({ logs: [] }));
        if (!gone) setState(any.logs.length ? 'empty' : 'nodata');
      }
    }).catch(e => { if (!gone) { setErr(e.message); setState('ready'); setRows([]); setHist(null); } });
    return () => { gone = true; };
  }, [q, range.from, range.to, again]);

  const more = useCallback(async () => {
    if (!cursor || loadingMore.current || rows.length >= MAX_ROWS) return;
    loadingMore.current = true;
    const [a, b] = bounds(range);
    try {
      const page = await getJSON('/api/v1/logs/search', { q, start: toSeconds(a), end: toSeconds(b), limit: PAGE, cursor });
      setRows(r => [...r, ...page.logs].slice(0, MAX_ROWS)); setCursor(page.next_cursor);
    } catch (e) { setErr(e.message); }
    loadingMore.current = false;
  }, [cursor, rows.length, q, range.from, range.to]);

  const tail = useTail(live, q, recs => setRows(r => [...recs.reverse(), ...r].slice(0, MAX_ROWS)));

  const toggle = key => setOpen(s => { const n = new Set(s); n.has(key) ? n.delete(key) : n.add(key); return n; });
  const keyOf = r => r._key ??= `${r.timestamp}|${r.span_id ?? ''}|${r.body?.length ?? 0}|${Math.random().toString(36).slice(2, 8)}`;

  return html`
    <div class="bar">
      <input id="logs-q" class="grow mono" data-search list="recent-queries" placeholder='Search logs: timeout service:checkout severity>=warn "connection refused"'
        value=${text} onInput=${e => setText(e.target.value)} onKeyDown=${e => { if (e.key === 'Enter') search(); }} />
      <datalist id="recent-queries">${recent().map(r => html`<option value=${r} />`)}</datalist>
      <button id="logs-run" class="primary" onClick=${() => search()}>Search</button>
      <button id="logs-help" class=${help ? 'on' : ''} title="Query syntax" onClick=${() => setHelp(!help)}>?</button>
      <${RangePicker} range=${range} onChange=${r => nav({ from: r.from, to: r.to })} />
      <button id="live" class=${live ? 'on' : ''} title="Stream new lines as they arrive" onClick=${() => nav({ live: live ? '' : '1' })}>${live ? '● Live' : '○ Live tail'}</button>
      ${live && html`<button id="pause" onClick=${tail.togglePause}>${tail.paused ? '▶ Resume' : '❚❚ Pause'}</button>`}
    </div>
    ${help && html`<div class="help" id="syntax-help"><table>${HELP.map(([a, b]) => html`<tr><td><code>${a}</code></td><td class="muted">${b}</td></tr>`)}</table></div>`}
    ${err && html`<div class="error" id="logs-error">${err}</div>`}
    ${hist && html`<${Histogram} hist=${hist} onZoom=${(a, b) => nav({ from: String(Math.floor(a)), to: String(Math.ceil(b)), live: '' })} />`}
    <div class="status" id="logs-status">
      <span>${state === 'loading' ? 'Searching…' : html`<b id="logs-count">${rows.length.toLocaleString()}</b> ${rows.length === 1 ? 'line' : 'lines'}${cursor && rows.length < MAX_ROWS ? '+' : ''}${hist ? ` · ${hist.buckets.reduce((s, b) => s + b.count, 0).toLocaleString()} in range` : ''}${took !== null ? ` · ${took} ms` : ''}`}</span>
      ${live && html`<span class="live" id="tail-rate">${tail.paused ? `paused · ${tail.pending} waiting` : `live · ${tail.rate.toFixed(1)} lines/s`}</span>`}
      ${tail.dropped > 0 && html`<span class="notice" id="tail-dropped">${tail.dropped.toLocaleString()} lines dropped: the stream was faster than this page read it</span>`}
      ${tail.error && html`<span class="notice">${tail.error}</span>`}
    </div>
    ${state === 'nodata' && !rows.length && html`<div class="empty" id="logs-empty"><b>No data yet</b>Point your exporter at <code>:4317</code> (OTLP/gRPC) or <code>:4318</code> (OTLP/HTTP) and the lines show up here.</div>`}
    ${state === 'empty' && !rows.length && html`<div class="empty" id="logs-empty"><b>No logs match</b>Try a wider time range or a simpler query.</div>`}
    ${rows.length > 0 && html`<${VList} id="logs-list" items=${rows} keyOf=${keyOf} onNearEnd=${more}
      renderRow=${r => html`<${LogRow} rec=${r} open=${open.has(keyOf(r))} onToggle=${() => toggle(keyOf(r))} onFilter=${addFilter} />`} />`}`;
}

function LogRow({ rec, open, onToggle, onFilter }) {
  const sev = severityClass(rec);
  return html`<div class=${`row sev-row-${sev}`}>
    <div class="line" onClick=${onToggle}>
      <span class="t mono">${fmtTime(recordMs(rec.timestamp))}</span>
      <span class=${`sev sev-${sev}`}>${rec.severity_text || sev}</span>
      <span class="svc">${rec.service_name}</span>
      <span class="body mono">${rec.body}</span>
    </div>
    ${open && html`<div class="detail">
      <div class="fullbody mono">${rec.body}</div>
      <div class="kv mono">
        <span class="k">service</span><span class="v click" onClick=${() => onFilter(term('service', rec.service_name))}>${rec.service_name}</span>
        <span class="k">severity</span><span class="v click" onClick=${() => onFilter(`severity:${sev}`)}>${rec.severity_text} (${rec.severity_number})</span>
        ${rec.trace_id && html`<span class="k">trace_id</span><span class="v"><a class="trace-link" href=${`#/traces/${rec.trace_id}`}>${rec.trace_id}</a> <a class="muted" href="javascript:void 0" onClick=${() => onFilter(`trace_id:${rec.trace_id}`)}>(filter)</a></span>`}
        ${rec.span_id && html`<span class="k">span_id</span><span class="v">${rec.span_id}</span>`}
        ${rec.scope_name && html`<span class="k">scope</span><span class="v">${rec.scope_name}</span>`}
      </div>
      <${Attrs} title="Attributes" attrs=${rec.attributes} onFilter=${onFilter} />
      <${Attrs} title="Resource" attrs=${rec.resource_attributes} onFilter=${onFilter} />
    </div>`}
  </div>`;
}

function Attrs({ title, attrs, onFilter }) {
  const entries = Object.entries(attrs ?? {});
  if (!entries.length) return null;
  return html`<h4>${title}</h4><div class="kv mono attrs">${entries.map(([k, v]) => html`
    <span class="k">${k}</span><span class="v click" title="Add as a filter" onClick=${() => onFilter(term(`attr.${k}`, v))}>${typeof v === 'object' ? JSON.stringify(v) : String(v)}</span>`)}</div>`;
}

/** Bars of matches per interval; drag across them to zoom into that span. */
function Histogram({ hist, onZoom }) {
  const ref = useRef(null);
  const [drag, setDrag] = useState(null);
  const n = hist.buckets.length;
  if (!n) return null;
  const starts = hist.buckets.map(b => recordMs(b.start));
  const step = hist.interval_ms ?? (n > 1 ? starts[1] - starts[0] : 60000);
  const t0 = starts[0], t1 = starts[n - 1] + step;
  const max = Math.max(1, ...hist.buckets.map(b => b.count));
  const W = 1000, H = 70, top = 4, bottom = 0;
  const x = t => ((t - t0) / (t1 - t0)) * W;
  const tAt = ev => { const r = ref.current.getBoundingClientRect(); return t0 + ((ev.clientX - r.left) / r.width) * (t1 - t0); };
  const up = ev => {
    if (drag) {
      const a = Math.min(drag.a, tAt(ev)), b = Math.max(drag.a, tAt(ev));
      setDrag(null);
      if (b - a > step / 4) onZoom(a, b);
    }
  };
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(f => t0 + f * (t1 - t0));
  return html`<div class="hist" id="logs-histogram" title="Drag to zoom">
    <svg ref=${ref} viewBox="0 0 ${W} ${H}" preserveAspectRatio="none"
      onMouseDown=${ev => setDrag({ a: tAt(ev), b: tAt(ev) })} onMouseMove=${ev => drag && setDrag({ ...drag, b: tAt(ev) })}
      onMouseUp=${up} onMouseLeave=${() => setDrag(null)}>
      ${hist.buckets.map((b, i) => {
        const h = (b.count / max) * (H - top - bottom);
        return html`<rect class="b" x=${x(starts[i]) + 0.5} width=${Math.max(1, x(starts[i] + step) - x(starts[i]) - 1)} y=${H - bottom - h} height=${h}><title>${fmtTime(starts[i])}: ${b.count}</title></rect>`;
      })}
      ${drag && html`<rect class="sel" x=${x(Math.min(drag.a, drag.b))} width=${Math.abs(x(drag.b) - x(drag.a))} y="0" height=${H - bottom} />`}
    </svg>
    <div class="ticks">${ticks.map((t, i) => html`<span style=${`left: ${i * 25}%`}>${fmtTime(t).slice(5, 19)}</span>`)}</div>
  </div>`;
}

/** Live tail: new records with the current filter, pause and resume, the
 * arrival rate over the last 5 s, and the server's dropped counts. */
function useTail(on, q, onRecords) {
  const [paused, setPaused] = useState(false);
  const [rate, setRate] = useState(0);
  const [dropped, setDropped] = useState(0);
  const [pending, setPending] = useState(0);
  const [error, setError] = useState(null);
  const held = useRef([]);
  const pausedRef = useRef(false);
  const cb = useRef(onRecords);
  cb.current = onRecords;
  useEffect(() => {
    setDropped(0); setError(null); held.current = []; setPending(0);
    if (!on) return undefined;
    const arrivals = [];
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    // A browser cannot put a header on a WebSocket: the token goes as a parameter.
    const params = { signal: 'logs', q, ...(token() ? { access_token: token() } : {}) };
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/tail?${new URLSearchParams(params)}`);
    ws.onmessage = ev => {
      const m = JSON.parse(ev.data);
      if (m.type === 'records') {
        arrivals.push([Date.now(), m.records.length]);
        if (pausedRef.current) { held.current.push(...m.records); held.current = held.current.slice(-MAX_ROWS); setPending(held.current.length); }
        else cb.current(m.records);
      } else if (m.type === 'dropped') setDropped(d => d + m.count);
      else if (m.type === 'error') setError(m.message);
    };
    ws.onerror = () => setError('the live stream failed');
    const timer = setInterval(() => {
      const cut = Date.now() - 5000;
      while (arrivals.length && arrivals[0][0] < cut) arrivals.shift();
      setRate(arrivals.reduce((s, a) => s + a[1], 0) / 5);
    }, 1000);
    return () => { clearInterval(timer); ws.close(); };
  }, [on, q]);
  const togglePause = () => {
    const p = !pausedRef.current;
    pausedRef.current = p; setPaused(p);
    if (!p && held.current.length) { cb.current(held.current); held.current = []; setPending(0); }
  };
  return { paused, rate, dropped, pending, error, togglePause };
}
