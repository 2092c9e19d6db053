// Metrics over the Prometheus API: a metric picker with search, label
// filters, aggregation and grouping (rate for counters, quantiles for
// histograms), or any PromQL; line charts drawn by uPlot (loaded only here).
import { html, useEffect, useRef, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { prom, getJSON } from '../lib/api.js';
import { bounds, fmtTime } from '../lib/time.js';
import { go, makeHash } from '../lib/url.js';
import { RangePicker } from '../lib/range.js';

let uplot = null;
async function loadUPlot() {
  if (!uplot) {
    const css = document.createElement('link');
    css.rel = 'stylesheet'; css.href = '/vendor/uPlot-1.6.32.min.css';
    document.head.append(css);
    uplot = (await import('../vendor/uPlot-1.6.32.esm.js')).default;
  }
  return uplot;
}

const COLORS = ['#2f6fde', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8', '#0c8599', '#e67700', '#5c940d', '#862e9c', '#1864ab'];

/** What a metric is, from its family's metadata type and its name:
 * `classic` (`_bucket` series), `native` (native histogram), `counter`, or
 * `gauge`. */
export function metricKind(metric, types = {}) {
  if (metric.endsWith('_bucket')) return 'classic';
  const family = types[metric] ?? types[metric.replace(/_(count|sum)$/, '')];
  if (family === 'histogram' && !/_(count|sum)$/.test(metric)) return 'native';
  if (family === 'counter' || /_(total|count|sum)$/.test(metric)) return 'counter';
  return 'gauge';
}

/** PromQL for a metric, its filters, aggregation and grouping: a rate for
 * counters, a quantile of the rate for histograms. */
export function buildQuery({ metric, filters = [], agg = 'sum', by = [], quantile = '0.99' }, types = {}) {
  if (!metric) return '';
  const sel = `${metric}${filters.length ? `{${filters.map(f => `${f.name}${f.op}${JSON.stringify(f.value)}`).join(', ')}}` : ''}`;
  const grp = by.length ? ` by (${by.join(', ')})` : '';
  switch (metricKind(metric, types)) {
    case 'classic': return `histogram_quantile(${quantile}, sum by (le${by.length ? ', ' + by.join(', ') : ''}) (rate(${sel}[5m])))`;
    case 'native': return `histogram_quantile(${quantile}, sum${grp} (rate(${sel}[5m])))`;
    case 'counter': return agg === 'none' ? `rate(${sel}[5m])` : `${agg}${grp} (rate(${sel}[5m]))`;
    default: return agg === 'none' ? sel : `${agg}${grp} (${sel})`;
  }
}

function seriesName(metric) {
  const { __name__, ...rest } = metric;
  const labels = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(', ');
  return `${__name__ ?? ''}${labels ? `{${labels}}` : ''}` || '{}';
}

export function MetricsView({ route }) {
  const p = route.params;
  const range = { from: p.from ?? 'now-1h', to: p.to ?? 'now' };
  const [names, setNames] = useState(null);
  const [types, setTypes] = useState({});
  const [find, setFind] = useState('');
  const [builder, setBuilder] = useState(() => { try { return JSON.parse(p.b ?? 'null') ?? {}; } catch { return {}; } });
  const [labels, setLabels] = useState({});
  const [text, setText] = useState(p.query ?? '');
  const [err, setErr] = useState(null);
  const [data, setData] = useState(null);
  useEffect(() => {
    getJSON('/api/v1/label/__name__/values').then(r => setNames(r.data ?? [])).catch(e => setErr(e.message));
    getJSON('/api/v1/metadata').then(r => setTypes(Object.fromEntries(Object.entries(r.data ?? {}).map(([k, v]) => [k, v[0]?.type])))).catch(() => {});
  }, []);
  useEffect(() => setText(p.query ?? ''), [p.query]);
  // The chosen metric's labels and their values, for filters and grouping.
  useEffect(() => {
    if (!builder.metric) { setLabels({}); return; }
    const [a, b] = bounds(range);
    getJSON('/api/v1/series', { 'match[]': builder.metric, start: a / 1000, end: b / 1000 }).then(r => {
      const out = {};
      for (const s of r.data ?? []) for (const [k, v] of Object.entries(s)) if (k !== '__name__') (out[k] ??= new Set()).add(v);
      setLabels(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort()])));
    }).catch(() => setLabels({}));
  }, [builder.metric]);
  useEffect(() => {
    if (!p.query) { setData(null); return; }
    let gone = false;
    const [a, b] = bounds(range);
    const step = Math.max(1, Math.round((b - a) / 1000 / 240));
    setErr(null);
    prom('/api/v1/query_range', { query: p.query, start: a / 1000, end: b / 1000, step })
      .then(d => { if (!gone) setData({ ...d, start: a / 1000, end: b / 1000, step }); })
      .catch(e => { if (!gone) { setErr(e.message); setData(null); } });
    return () => { gone = true; };
  }, [p.query, range.from, range.to]);
  const run = (query, b = builder) => go(makeHash('metrics', { query, from: range.from, to: range.to, b: b.metric ? JSON.stringify(b) : '' }));
  const update = b => { setBuilder(b); const q = buildQuery(b, types); setText(q); run(q, b); };
  const needle = find.trim().toLowerCase();
  const shown = (names ?? []).filter(n => n.toLowerCase().includes(needle)).slice(0, 300);
  return html`
    <div class="bar">
      <input id="promql" class="grow mono" data-search placeholder="PromQL, e.g. sum by (job) (rate(http_server_requests_total[5m]))" value=${text}
        onInput=${e => setText(e.target.value)} onKeyDown=${e => { if (e.key === 'Enter') run(text); }} />
      <${RangePicker} range=${range} onChange=${r => go(makeHash('metrics', { ...p, from: r.from, to: r.to }))} />
      <button id="promql-run" class="primary" onClick=${() => run(text)}>Run</button>
    </div>
    <div class="split">
      <div class="left">
        ${builder.metric && html`<${Builder} b=${builder} kind=${metricKind(builder.metric, types)} labels=${labels} onChange=${update} />`}
        ${err && html`<div class="error" id="metrics-error">${err}</div>`}
        ${data && html`<${Chart} data=${data} />`}
        ${data?.result?.some(s => s.histograms) && html`<div class="muted" style="margin: 0 16px">Native histograms are not drawn as lines: take a <code>histogram_quantile</code>, <code>histogram_count</code> or <code>histogram_sum</code> of them.</div>`}
        ${!p.query && names && names.length > 0 && html`<div class="empty"><b>Pick a metric</b>or write PromQL above.</div>`}
        ${names && names.length === 0 && html`<div class="empty" id="metrics-empty"><b>No data yet</b>Point your exporter at <code>:4317</code> (OTLP/gRPC) or <code>:4318</code> (OTLP/HTTP) and metrics show up here.</div>`}
      </div>
      <div class="right" style="width: 320px">
        <input id="metric-find" style="width: 100%" placeholder="Find a metric" value=${find} onInput=${e => setFind(e.target.value)} />
        <div id="metric-list" style="margin-top: 6px">${shown.map(n => html`<div class=${`mono${n === builder.metric ? ' on' : ''}`} style="padding: 2px 4px; cursor: pointer" onClick=${() => update({ metric: n, filters: [], agg: 'sum', by: [] })}>${n}</div>`)}</div>
      </div>
    </div>`;
}

function Builder({ b, kind, labels, onChange }) {
  const [lname, setLname] = useState('');
  const [lval, setLval] = useState('');
  const names = Object.keys(labels);
  return html`<div class="bar" id="metric-builder">
    <b class="mono">${b.metric}</b>
    <span class="chips">${(b.filters ?? []).map((f, i) => html`<span class="chip mono">${f.name}${f.op}"${f.value}"<button onClick=${() => onChange({ ...b, filters: b.filters.filter((_, j) => j !== i) })}>×</button></span>`)}</span>
    <select id="filter-label" value=${lname} onChange=${e => { setLname(e.target.value); setLval(''); }}><option value="">+ filter</option>${names.map(n => html`<option value=${n}>${n}</option>`)}</select>
    ${lname && html`<select id="filter-value" value=${lval} onChange=${e => { const v = e.target.value; setLval(''); setLname(''); if (v) onChange({ ...b, filters: [...(b.filters ?? []), { name: lname, op: '=', value: v }] }); }}>
      <option value="">value…</option>${(labels[lname] ?? []).map(v => html`<option value=${v}>${v}</option>`)}</select>`}
    ${kind === 'classic' || kind === 'native'
      ? html`<select id="quantile" value=${b.quantile ?? '0.99'} onChange=${e => onChange({ ...b, quantile: e.target.value })}>${['0.5', '0.9', '0.95', '0.99'].map(q => html`<option value=${q}>p${Math.round(q * 100)}</option>`)}</select>`
      : html`<select id="agg" value=${b.agg ?? 'sum'} onChange=${e => onChange({ ...b, agg: e.target.value })}>${['sum', 'avg', 'max', 'min', 'count', 'none'].map(a => html`<option value=${a}>${a === 'none' ? 'no aggregation' : a}</option>`)}</select>`}
    <select id="group-by" value="" onChange=${e => { const v = e.target.value; if (v) onChange({ ...b, by: [...new Set([...(b.by ?? []), v])] }); }}>
      <option value="">+ group by</option>${names.filter(n => n !== 'le').map(n => html`<option value=${n}>${n}</option>`)}</select>
    <span class="chips">${(b.by ?? []).map(l => html`<span class="chip mono">by ${l}<button onClick=${() => onChange({ ...b, by: b.by.filter(x => x !== l) })}>×</button></span>`)}</span>
  </div>`;
}

/** A tooltip at the cursor: the time and each series' value there. */
function tooltip(series) {
  let tip;
  return {
    hooks: {
      init: u => {
        tip = document.createElement('div');
        tip.className = 'tooltip';
        u.over.append(tip);
        u.over.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
      },
      setCursor: u => {
        const i = u.cursor.idx;
        if (i == null) { tip.style.display = 'none'; return; }
        const rows = series.map((s, k) => [COLORS[k % COLORS.length], seriesName(s.metric), u.data[k + 1][i]])
          .filter(r => r[2] != null).sort((a, b) => b[2] - a[2]).slice(0, 12);
        tip.replaceChildren();
        const head = document.createElement('b');
        head.textContent = fmtTime(u.data[0][i] * 1000).slice(0, 19);
        tip.append(head);
        for (const [c, name, v] of rows) {
          const line = document.createElement('div');
          const dot = document.createElement('i');
          dot.style.background = c;
          line.append(dot, ` ${name}: ${+v.toPrecision(6)}`);
          tip.append(line);
        }
        tip.style.display = rows.length ? 'block' : 'none';
        const left = u.cursor.left, top = u.cursor.top;
        tip.style.left = `${left + 14 + 260 > u.over.clientWidth ? left - 274 : left + 14}px`;
        tip.style.top = `${Math.max(0, top - 10)}px`;
      },
    },
  };
}

function Chart({ data }) {
  const box = useRef(null);
  const [count, setCount] = useState(0);
  useEffect(() => {
    let plot = null, gone = false;
    const series = data.resultType === 'matrix' ? data.result : [];
    setCount(series.reduce((n, s) => n + (s.values?.length ?? 0), 0));
    if (!series.length) return undefined;
    loadUPlot().then(U => {
      if (gone) return;
      // The steps any series has a point at (a gap where one has none).
      const xs = [...new Set(series.flatMap(s => (s.values ?? []).map(p => p[0])))].sort((a, b) => a - b);
      const ys = series.map(s => {
        const m = new Map((s.values ?? []).map(([t, v]) => [t, Number(v)]));
        return xs.map(t => m.has(t) ? m.get(t) : null);
      });
      const width = box.current.clientWidth || 800;
      plot = new U({
        width, height: 320,
        series: [{ value: (_, t) => t == null ? '' : fmtTime(t * 1000).slice(0, 19) },
          ...series.map((s, i) => ({ label: seriesName(s.metric), stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: false } }))],
        axes: [{ stroke: getComputedStyle(document.body).color }, { stroke: getComputedStyle(document.body).color, size: 60 }],
        cursor: { drag: { x: false, y: false } },
        plugins: [tooltip(series)],
      }, [xs, ...ys], box.current);
    });
    return () => { gone = true; plot?.destroy(); };
  }, [data]);
  const n = data.resultType === 'matrix' ? data.result.length : 0;
  return html`<div class="status" id="chart-status">${n} series · ${count} points</div>
    ${n === 0 && html`<div class="empty">No series in this range.</div>`}
    <div class="chart" id="chart" ref=${box}></div>`;
}
