// Services: request rate, error rate and p50/p95/p99 latency per service and
// operation over the range (SQL over the spans table, entry spans: server
// and consumer kinds, and roots), and the dependency graph (Jaeger API).
import { html, useEffect, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { getJSON, postJSON } from '../lib/api.js';
import { bounds, fmtDuration } from '../lib/time.js';
import { go, makeHash } from '../lib/url.js';
import { RangePicker } from '../lib/range.js';

export function ServicesView({ route }) {
  const p = route.params;
  const range = { from: p.from ?? 'now-1h', to: p.to ?? 'now' };
  const [rows, setRows] = useState(null);
  const [deps, setDeps] = useState([]);
  const [err, setErr] = useState(null);
  useEffect(() => {
    let gone = false;
    const [a, b] = bounds(range);
    const secs = Math.max(1, (b - a) / 1000);
    const query = `SELECT service_name, name, count(*) AS n,
        sum(CASE WHEN status_code = 'STATUS_CODE_ERROR' THEN 1 ELSE 0 END) AS errors,
        approx_percentile_cont(duration_ns, 0.5) AS p50, approx_percentile_cont(duration_ns, 0.95) AS p95,
        approx_percentile_cont(duration_ns, 0.99) AS p99
      FROM spans
      WHERE start_time >= to_timestamp_millis(${Math.floor(a)}) AND start_time <= to_timestamp_millis(${Math.ceil(b)})
        AND (kind IN ('SPAN_KIND_SERVER', 'SPAN_KIND_CONSUMER') OR parent_span_id IS NULL)
      GROUP BY service_name, name ORDER BY service_name, n DESC LIMIT 1000`;
    setErr(null);
    postJSON('/api/v1/sql', { query })
      .then(r => { if (!gone) setRows(r.rows.map(x => ({ ...x, rate: x.n / secs }))); })
      .catch(e => { if (!gone) setErr(e.message); });
    getJSON('/api/dependencies', { endTs: Math.ceil(b), lookback: Math.ceil(b - a) })
      .then(r => { if (!gone) setDeps(r.data ?? []); }).catch(() => {});
    return () => { gone = true; };
  }, [range.from, range.to]);
  const services = rows ? [...new Set(rows.map(r => r.service_name))] : [];
  return html`
    <div class="bar">
      <b>Services</b><span class="muted">entry spans (server, consumer, roots)</span><span class="grow"></span>
      <${RangePicker} range=${range} onChange=${r => go(makeHash('services', { from: r.from, to: r.to }))} />
    </div>
    ${err && html`<div class="error" id="services-error">${err}</div>`}
    ${rows && !rows.length && html`<div class="empty" id="services-empty"><b>No spans in this range</b>Point your exporter at <code>:4317</code> (OTLP/gRPC) or <code>:4318</code> (OTLP/HTTP), or widen the range.</div>`}
    <div class="scroll">
      ${deps.length > 0 && html`<${DepGraph} deps=${deps} />`}
      ${rows && rows.length > 0 && html`<table class="grid" id="services-table">
        <thead><tr><th>Service</th><th>Operation</th><th class="num">Requests/s</th><th class="num">Errors</th><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th></tr></thead>
        <tbody>${rows.map(r => html`<tr>
          <td><a href=${makeHash('traces', { service: r.service_name, from: range.from, to: range.to })}>${r.service_name}</a></td>
          <td class="mono"><a href=${makeHash('traces', { service: r.service_name, operation: r.name, from: range.from, to: range.to })}>${r.name}</a></td>
          <td class="num">${r.rate >= 100 ? r.rate.toFixed(0) : r.rate.toPrecision(3)}</td>
          <td class="num" style=${r.errors ? 'color: var(--err)' : ''}>${((100 * r.errors) / r.n).toFixed(1)}%</td>
          <td class="num">${fmtDuration(r.p50 / 1000)}</td><td class="num">${fmtDuration(r.p95 / 1000)}</td><td class="num">${fmtDuration(r.p99 / 1000)}</td>
        </tr>`)}</tbody></table>
        <div class="status">${services.length} services · ${rows.length} operations</div>`}
    </div>`;
}

/** Services in layers by call depth, calls as arrows with their counts. */
function DepGraph({ deps }) {
  const nodes = [...new Set(deps.flatMap(d => [d.parent, d.child]))];
  const depth = new Map(nodes.map(n => [n, 0]));
  for (let i = 0; i < nodes.length; i++) for (const d of deps) if (d.parent !== d.child) depth.set(d.child, Math.max(depth.get(d.child), Math.min(nodes.length, depth.get(d.parent) + 1)));
  const layers = [];
  for (const n of nodes) (layers[depth.get(n)] ??= []).push(n);
  const W = 170, H = 34, GX = 70, GY = 18;
  const at = new Map();
  layers.forEach((l, x) => l.forEach((n, y) => at.set(n, [16 + x * (W + GX), 12 + y * (H + GY)])));
  const width = 32 + layers.length * (W + GX), height = 24 + Math.max(...layers.map(l => l.length)) * (H + GY);
  return html`<svg class="graph" id="dep-graph" width=${width} height=${height}>
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="currentColor" /></marker></defs>
    ${deps.filter(d => d.parent !== d.child).map(d => { const [x1, y1] = at.get(d.parent), [x2, y2] = at.get(d.child);
      return html`<g><line x1=${x1 + W} y1=${y1 + H / 2} x2=${x2} y2=${y2 + H / 2} marker-end="url(#arrow)" /><text x=${(x1 + W + x2) / 2} y=${(y1 + y2) / 2 + H / 2 - 4} text-anchor="middle">${d.callCount}</text></g>`; })}
    ${nodes.map(n => { const [x, y] = at.get(n); return html`<g><rect class="node" x=${x} y=${y} width=${W} height=${H} rx="6" /><text x=${x + W / 2} y=${y + H / 2 + 4} text-anchor="middle">${n}</text></g>`; })}
  </svg>`;
}
