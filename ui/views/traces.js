// Traces over the Jaeger query API: a search form, results with duration
// bars and error marks, and a trace's waterfall (collapsible, critical path
// marked) with span details and a link to the trace's logs.
import { html, useEffect, useMemo, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { getJSON } from '../lib/api.js';
import { bounds, fmtDuration, fmtTime } from '../lib/time.js';
import { go, makeHash } from '../lib/url.js';
import { RangePicker } from '../lib/range.js';

export function TracesView({ route }) {
  return route.id ? html`<${TraceView} id=${route.id} />` : html`<${TraceSearch} params=${route.params} />`;
}

/** Jaeger's `tags` JSON from `key=value` words. */
function tagsJSON(s) {
  const out = {};
  for (const w of (s ?? '').match(/(?:[^\s"]+|"[^"]*")+/g) ?? []) {
    const i = w.indexOf('=');
    if (i > 0) out[w.slice(0, i)] = w.slice(i + 1).replace(/^"|"$/g, '');
  }
  return Object.keys(out).length ? JSON.stringify(out) : '';
}

/** A Jaeger trace's summary: root, duration, errors. */
export function summarize(t) {
  const ids = new Set(t.spans.map(s => s.spanID));
  const root = t.spans.find(s => !(s.references ?? []).some(r => r.refType === 'CHILD_OF' && ids.has(r.spanID)))
    ?? t.spans[0];
  let start = Infinity, end = -Infinity;
  for (const s of t.spans) { start = Math.min(start, s.startTime); end = Math.max(end, s.startTime + s.duration); }
  const errors = t.spans.filter(isError).length;
  const services = new Set(t.spans.map(s => t.processes[s.processID]?.serviceName));
  return { id: t.traceID, root, service: t.processes[root.processID]?.serviceName ?? '?', start, duration: end - start, spans: t.spans.length, errors, services: services.size };
}

const PALETTE = ['#4c8bf5', '#20a39e', '#9b6dd6', '#e0a100', '#d9668f', '#5aa469', '#6c7fd8', '#c97b40'];

const isError = s => (s.tags ?? []).some(t => t.key === 'error' && (t.value === true || t.value === 'true'));

function TraceSearch({ params }) {
  const range = { from: params.from ?? 'now-1h', to: params.to ?? 'now' };
  const [form, setForm] = useState({ service: params.service ?? '', operation: params.operation ?? '', tags: params.tags ?? '', minDuration: params.minDuration ?? '', maxDuration: params.maxDuration ?? '', limit: params.limit ?? '20' });
  const [services, setServices] = useState([]);
  const [servicesLoaded, setServicesLoaded] = useState(false);
  const [ops, setOps] = useState([]);
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    getJSON('/api/services').then(r => { setServices(r.data ?? []); setServicesLoaded(true); }).catch(e => setErr(e.message));
  }, []);
  useEffect(() => {
    if (!form.service) { setOps([]); return; }
    getJSON(`/api/services/${encodeURIComponent(form.service)}/operations`).then(r => setOps(r.data ?? [])).catch(() => setOps([]));
  }, [form.service]);
  const submit = () => go(makeHash('traces', { ...form, from: range.from, to: range.to }));
  useEffect(() => {
    let gone = false;
    const [a, b] = bounds(range);
    const limit = Number(params.limit ?? 20);
    // Jaeger's API searches one service: "all services" asks each.
    const wanted = params.service ? [params.service] : services;
    if (!params.service && !servicesLoaded) return undefined;
    setErr(null); setRes(null);
    Promise.all(wanted.map(service => getJSON('/api/traces', {
      service, operation: params.operation, tags: tagsJSON(params.tags),
      minDuration: params.minDuration, maxDuration: params.maxDuration,
      start: Math.floor(a * 1000), end: Math.ceil(b * 1000), limit,
    }))).then(answers => {
      if (gone) return;
      const seen = new Map();
      for (const r of answers) for (const t of r.data ?? []) if (!seen.has(t.traceID)) seen.set(t.traceID, summarize(t));
      setRes([...seen.values()].sort((x, y) => y.start - x.start).slice(0, limit));
    }).catch(e => { if (!gone) setErr(e.message); });
    return () => { gone = true; };
  }, [JSON.stringify(params), servicesLoaded]);
  const set = k => e => setForm({ ...form, [k]: e.target.value });
  const maxDur = Math.max(1, ...(res ?? []).map(t => t.duration));
  const enter = e => { if (e.key === 'Enter') submit(); };
  return html`
    <div class="bar">
      <select id="trace-service" value=${form.service} onChange=${e => setForm({ ...form, service: e.target.value, operation: '' })}>
        <option value="">All services</option>${services.map(s => html`<option value=${s}>${s}</option>`)}
      </select>
      <select id="trace-operation" value=${form.operation} onChange=${set('operation')} disabled=${!form.service}>
        <option value="">All operations</option>${ops.map(o => html`<option value=${o}>${o}</option>`)}
      </select>
      <input id="trace-tags" class="grow mono" data-search placeholder="Tags: http.status_code=500 error=true" value=${form.tags} onInput=${set('tags')} onKeyDown=${enter} />
      <input id="trace-min" style="width: 90px" placeholder="min 100ms" value=${form.minDuration} onInput=${set('minDuration')} onKeyDown=${enter} />
      <input id="trace-max" style="width: 90px" placeholder="max 2s" value=${form.maxDuration} onInput=${set('maxDuration')} onKeyDown=${enter} />
      <${RangePicker} range=${range} onChange=${r => go(makeHash('traces', { ...params, from: r.from, to: r.to }))} />
      <select id="trace-limit" value=${form.limit} onChange=${set('limit')}>${['20', '50', '100', '500'].map(l => html`<option value=${l}>${l} traces</option>`)}</select>
      <button id="trace-find" class="primary" onClick=${submit}>Find traces</button>
    </div>
    ${err && html`<div class="error" id="traces-error">${err}</div>`}
    ${res && !res.length && html`<div class="empty" id="traces-empty">${services.length ? html`<b>No traces match</b>Try a wider time range or fewer conditions.` : html`<b>No data yet</b>Point your exporter at <code>:4317</code> (OTLP/gRPC) or <code>:4318</code> (OTLP/HTTP) and traces show up here.`}</div>`}
    ${res && res.length > 0 && html`<div class="status">${res.length} trace${res.length === 1 ? '' : 's'}</div>
      <div class="scroll tresults" id="trace-results">${res.map(t => html`
        <div class=${`tr${t.errors ? ' err' : ''}`} onClick=${() => go(makeHash('traces', {}, t.id))} data-trace=${t.id}>
          <div class="name"><b>${t.service}</b>: ${t.root.operationName}
            <span class="badge">${t.spans} spans</span>${t.services > 1 && html`<span class="badge">${t.services} services</span>`}
            ${t.errors > 0 && html`<span class="badge err">${t.errors} error${t.errors > 1 ? 's' : ''}</span>`}
            <div class="dur" style=${`width: ${Math.max(0.5, (t.duration / maxDur) * 100)}%`}></div></div>
          <div class="mono">${fmtDuration(t.duration)}</div>
          <div class="muted mono">${t.id.slice(0, 8)}</div>
          <div class="muted mono">${fmtTime(t.start / 1000)}</div>
        </div>`)}</div>`}`;
}

/** Spans on the critical path: from the root, the child that ends last
 * before the cursor blocks its parent; the cursor moves to its start. */
export function criticalPath(spans, children) {
  const on = new Set();
  const walk = (s, limit) => {
    on.add(s.spanID);
    let cursor = Math.min(limit, s.startTime + s.duration);
    const kids = [...(children.get(s.spanID) ?? [])].sort((a, b) => (b.startTime + b.duration) - (a.startTime + a.duration));
    for (const c of kids) {
      if (c.startTime < cursor && c.startTime + c.duration > s.startTime) {
        walk(c, cursor);
        cursor = c.startTime;
      }
    }
  };
  for (const r of spans.filter(s => !s._parent)) walk(r, Infinity);
  return on;
}

function TraceView({ id }) {
  const [trace, setTrace] = useState(null);
  const [err, setErr] = useState(null);
  const [collapsed, setCollapsed] = useState(() => new Set());
  const [sel, setSel] = useState(null);
  useEffect(() => {
    setErr(null); setTrace(null);
    getJSON(`/api/traces/${encodeURIComponent(id)}`).then(r => setTrace(r.data?.[0] ?? null)).catch(e => setErr(e.message));
  }, [id]);
  const model = useMemo(() => {
    if (!trace) return null;
    const byId = new Map(trace.spans.map(s => [s.spanID, s]));
    const children = new Map();
    for (const s of trace.spans) {
      const p = (s.references ?? []).find(r => r.refType === 'CHILD_OF' && byId.has(r.spanID));
      s._parent = p ? p.spanID : null;
      if (p) { if (!children.has(p.spanID)) children.set(p.spanID, []); children.get(p.spanID).push(s); }
    }
    for (const c of children.values()) c.sort((a, b) => a.startTime - b.startTime);
    const roots = trace.spans.filter(s => !s._parent).sort((a, b) => a.startTime - b.startTime);
    const order = [];
    const visit = (s, depth) => { order.push([s, depth]); for (const c of children.get(s.spanID) ?? []) visit(c, depth + 1); };
    roots.forEach(r => visit(r, 0));
    const colors = new Map();
    for (const [s] of order) { const svc = trace.processes[s.processID]?.serviceName ?? '?'; if (!colors.has(svc)) colors.set(svc, PALETTE[colors.size % PALETTE.length]); }
    return { order, children, crit: criticalPath(trace.spans, children), sum: summarize(trace), colors };
  }, [trace]);
  if (err) return html`<div class="error" id="trace-error">${err}</div>`;
  if (!model) return html`<div class="empty">Loading trace ${id}…</div>`;
  const { order, children, crit, sum, colors } = model;
  const hidden = new Set();
  for (const [s] of order) if (collapsed.has(s._parent) || hidden.has(s._parent)) hidden.add(s.spanID);
  const pos = us => ((us - sum.start) / Math.max(1, sum.duration)) * 100;
  const selected = sel && trace.spans.find(s => s.spanID === sel);
  const from = Math.floor(sum.start / 1000 - 300000), to = Math.ceil((sum.start + sum.duration) / 1000 + 300000);
  return html`
    <div class="bar">
      <a href="#/traces">← Traces</a>
      <b id="trace-title">${sum.service}: ${sum.root.operationName}</b>
      <span class="muted mono">${id}</span>
      <span>${fmtDuration(sum.duration)} · ${sum.spans} spans · ${sum.services} service${sum.services > 1 ? 's' : ''}${sum.errors ? ` · ${sum.errors} error${sum.errors > 1 ? 's' : ''}` : ''}</span>
      <span class="muted"><span class="legend-crit"></span> critical path</span>
      ${[...colors].map(([svc, c]) => html`<span class="muted"><span class="legend-svc" style=${`background: ${c}`}></span> ${svc}</span>`)}
      <span class="grow"></span>
      <a id="trace-logs" href=${makeHash('logs', { q: `trace_id:${id}`, from: String(from), to: String(to) })}>Logs of this trace →</a>
    </div>
    <div class="split">
      <div class="left"><div class="wf" id="waterfall">
        <div class="hdr"><span style="padding-left: 16px">Service: operation</span>
          <span class="lane">${[0, 0.25, 0.5, 0.75].map(f => html`<span class="tick" style=${`left: ${f * 100}%`}>${fmtDuration(f * sum.duration)}</span>`)}</span></div>
        ${order.filter(([s]) => !hidden.has(s.spanID)).map(([s, depth]) => {
          const kids = children.get(s.spanID)?.length ?? 0;
          const svc = trace.processes[s.processID]?.serviceName ?? '?';
          const left = pos(s.startTime), width = Math.max(0.2, (s.duration / Math.max(1, sum.duration)) * 100);
          return html`<div class=${`sp${sel === s.spanID ? ' sel' : ''}`} data-span=${s.spanID} onClick=${() => setSel(s.spanID)}>
            <span class="label" style=${`padding-left: ${8 + depth * 14}px`}>
              <span class="tog" onClick=${e => { e.stopPropagation(); if (!kids) return; setCollapsed(c => { const n = new Set(c); n.has(s.spanID) ? n.delete(s.spanID) : n.add(s.spanID); return n; }); }}>${kids ? (collapsed.has(s.spanID) ? '▸' : '▾') : ''}</span>
              ${isError(s) && html`<span style="color: var(--sev-error)" title="error">⚠ </span>`}<b>${svc}</b><span class="op">${s.operationName}</span>
            </span>
            <span class="lane">
              <span class=${`span-bar${crit.has(s.spanID) ? ' crit' : ''}${isError(s) ? ' err' : ''}`} style=${`left: ${left}%; width: ${width}%; background: ${colors.get(svc)}`}></span>
              <span class=${`span-dur${left + width > 80 ? ' inside' : ''}`} style=${left + width > 80 ? `right: calc(${100 - left - width}% + 4px)` : `left: calc(${left + width}% + 4px)`}>${fmtDuration(s.duration)}</span>
            </span>
          </div>`;
        })}
      </div></div>
      ${selected && html`<div class="right" id="span-detail"><${SpanDetail} span=${selected} trace=${trace} /></div>`}
    </div>`;
}

function Tags({ title, tags }) {
  if (!tags?.length) return null;
  return html`<h4>${title}</h4><div class="kv mono">${tags.map(t => html`<span class="k">${t.key}</span><span class="v">${String(t.value)}</span>`)}</div>`;
}

function SpanDetail({ span, trace }) {
  const proc = trace.processes[span.processID];
  const links = (span.references ?? []).filter(r => r.refType === 'FOLLOWS_FROM');
  return html`<div class="detail" style="padding: 0">
    <b>${proc?.serviceName}: ${span.operationName}</b>
    <div class="kv mono" style="margin-top: 6px">
      <span class="k">span</span><span class="v">${span.spanID}</span>
      <span class="k">start</span><span class="v">${fmtTime(span.startTime / 1000)}</span>
      <span class="k">duration</span><span class="v">${fmtDuration(span.duration)}</span>
    </div>
    <${Tags} title="Attributes" tags=${span.tags} />
    ${(span.logs ?? []).length > 0 && html`<h4>Events</h4>${span.logs.map(l => html`<div class="mono" style="margin-bottom: 4px">
      <span class="muted">+${fmtDuration(l.timestamp - span.startTime)}</span> ${l.fields.map(f => html`<span class="chip">${f.key}=${String(f.value)}</span> `)}</div>`)}`}
    ${links.length > 0 && html`<h4>Links</h4>${links.map(r => html`<div class="mono"><a href=${`#/traces/${r.traceID}`}>${r.traceID}</a> / ${r.spanID}</div>`)}`}
    <${Tags} title="Resource" tags=${proc?.tags} />
  </div>`;
}
