// SQL over the `logs`, `spans` and `metrics` tables (POST /api/v1/sql).
import { html, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { postJSON } from '../lib/api.js';
import { go, makeHash } from '../lib/url.js';

const DEFAULT = 'SELECT timestamp, service_name, severity_text, body FROM logs ORDER BY timestamp DESC LIMIT 50';

export function SqlView({ route }) {
  const [text, setText] = useState(route.params.q ?? DEFAULT);
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    go(makeHash('sql', { q: text }), true);
    setBusy(true); setErr(null);
    try { setRes(await postJSON('/api/v1/sql', { query: text })); } catch (e) { setErr(e.message); setRes(null); }
    setBusy(false);
  };
  const n = res?.rows.length ?? 0;
  const cell = v => v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return html`
    <div class="bar" style="flex-direction: column; align-items: stretch">
      <textarea id="q" data-search rows="4" value=${text} onInput=${e => setText(e.target.value)}
        onKeyDown=${e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) run(); }}></textarea>
      <div style="display: flex; gap: 10px; align-items: center">
        <button id="run" class="primary" onClick=${run} disabled=${busy}>Run</button>
        <span id="meta" class="muted">${res ? `${n} row${n === 1 ? '' : 's'}${res.truncated ? ' (truncated)' : ''} in ${res.elapsed_ms} ms` : 'Tables: logs, spans, metrics. Ctrl+Enter runs.'}</span>
      </div>
    </div>
    <div id="out" class="scroll">
      ${err && html`<div class="error err">${err}</div>`}
      ${res && html`<table class="grid mono">
        <thead><tr>${res.columns.map(c => html`<th title=${c.type}>${c.name}</th>`)}</tr></thead>
        <tbody>${res.rows.map(r => html`<tr>${res.columns.map(c => html`<td>${cell(r[c.name])}</td>`)}</tr>`)}</tbody>
      </table>`}
    </div>`;
}
