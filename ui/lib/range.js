// The time range picker: relative ranges, or absolute from/to.
import { html, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { RELATIVE, bounds, label, toLocalInput } from './time.js';

export function RangePicker({ range, onChange }) {
  const [open, setOpen] = useState(false);
  const [a, b] = bounds(range);
  const [from, setFrom] = useState(toLocalInput(a));
  const [to, setTo] = useState(toLocalInput(b));
  const apply = () => {
    const f = Date.parse(from), t = Date.parse(to);
    if (Number.isFinite(f) && Number.isFinite(t) && f < t) { onChange({ from: String(f), to: String(t) }); setOpen(false); }
  };
  return html`<span style="position: relative">
    <button id="range" onClick=${() => { setFrom(toLocalInput(a)); setTo(toLocalInput(b)); setOpen(!open); }}>${label(range)} ▾</button>
    ${open && html`<div class="help" style="position: absolute; z-index: 5; top: 32px; right: 0; margin: 0; width: 330px; background: var(--bg)">
      ${RELATIVE.map(([v, name]) => html`<div><a href="javascript:void 0" onClick=${() => { onChange({ from: v, to: 'now' }); setOpen(false); }}>${name}</a></div>`)}
      <div style="margin-top: 8px" class="muted">Absolute</div>
      <div style="display: flex; gap: 4px; align-items: center; flex-wrap: wrap">
        <input type="datetime-local" id="range-from" value=${from} onInput=${e => setFrom(e.target.value)} />
        <input type="datetime-local" id="range-to" value=${to} onInput=${e => setTo(e.target.value)} />
        <button id="range-apply" onClick=${apply}>Apply</button>
      </div>
    </div>`}
  </span>`;
}
