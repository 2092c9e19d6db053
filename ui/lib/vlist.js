// A virtualised list: only the rows in view (and a margin) are in the DOM.
// Rows may change height (expanded rows): each rendered row is measured and
// the offsets follow, so 10,000 rows scroll as smoothly as 10.
import { html, useEffect, useLayoutEffect, useRef, useState } from '../vendor/htm-preact-standalone-3.1.1.js';

const MARGIN = 600; // px rendered beyond the viewport, above and below

export function VList({ items, keyOf, renderRow, rowHeight = 25, onNearEnd, id }) {
  const box = useRef(null);
  const heights = useRef(new Map());
  const [scroll, setScroll] = useState(0);
  const [view, setView] = useState(800);
  const [, remeasured] = useState(0);
  useEffect(() => {
    const el = box.current;
    const ro = new ResizeObserver(() => setView(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  // Offsets of every row (heights measured, else the default).
  const offsets = new Float64Array(items.length + 1);
  for (let i = 0; i < items.length; i++) offsets[i + 1] = offsets[i] + (heights.current.get(keyOf(items[i])) ?? rowHeight);
  // First row ending below the top margin (binary search), then rows until the bottom margin.
  let lo = 0, hi = items.length;
  const top = scroll - MARGIN;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (offsets[mid + 1] < top) lo = mid + 1; else hi = mid; }
  const shown = [];
  for (let i = lo; i < items.length && offsets[i] < scroll + view + MARGIN; i++) shown.push(i);
  useLayoutEffect(() => {
    let changed = false;
    for (const el of box.current.querySelectorAll('[data-vkey]')) {
      const k = el.dataset.vkey, h = el.offsetHeight;
      if (heights.current.get(k) !== h) { heights.current.set(k, h); changed = true; }
    }
    if (changed) remeasured(n => n + 1);
  });
  const onScroll = e => {
    setScroll(e.target.scrollTop);
    if (onNearEnd && e.target.scrollTop + e.target.clientHeight > offsets[items.length] - 400) onNearEnd();
  };
  return html`<div class="vlist" id=${id} ref=${box} onScroll=${onScroll}>
    <div class="rows" style=${`height: ${offsets[items.length]}px`}>
      ${shown.map(i => { const k = String(keyOf(items[i])); return html`<div key=${k} data-vkey=${k} class="vrow" style=${`position: absolute; left: 0; right: 0; top: ${offsets[i]}px`}>${renderRow(items[i], i)}</div>`; })}
    </div>
  </div>`;
}
