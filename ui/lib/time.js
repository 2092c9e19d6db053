// Time ranges as the URL holds them: `from`/`to` are `now`, `now-15m`, or
// milliseconds since the epoch; the APIs take RFC 3339 or Unix seconds.
const UNITS = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };

export const RELATIVE = [
  ['now-5m', 'Last 5 minutes'], ['now-15m', 'Last 15 minutes'], ['now-1h', 'Last hour'],
  ['now-6h', 'Last 6 hours'], ['now-24h', 'Last 24 hours'], ['now-7d', 'Last 7 days'],
];

/** Milliseconds of `now`, `now-15m` or a number of ms. */
export function resolve(t, now = Date.now()) {
  if (t === undefined || t === null || t === '' || t === 'now') return now;
  const m = /^now-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(t);
  if (m) return now - Number(m[1]) * UNITS[m[2]];
  const n = Number(t);
  return Number.isFinite(n) ? n : now;
}

/** The resolved [from, to] of a range, in ms. */
export function bounds(range, now = Date.now()) {
  return [resolve(range.from ?? 'now-1h', now), resolve(range.to ?? 'now', now)];
}

export const toSeconds = ms => (ms / 1000).toFixed(3);

export function label(range) {
  const rel = RELATIVE.find(([v]) => v === range.from && (!range.to || range.to === 'now'));
  if (rel) return rel[1];
  const [a, b] = bounds(range);
  return `${fmtTime(a)} – ${fmtTime(b)}`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
/** Local time, with milliseconds. */
export function fmtTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** For `<input type="datetime-local">`. */
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A duration in µs as people read it. */
export function fmtDuration(us) {
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1e6) return `${+(us / 1000).toFixed(us < 1e4 ? 2 : 1)}ms`;
  return `${+(us / 1e6).toFixed(2)}s`;
}

/** A timestamp field of a record (RFC 3339 string or ns number) in ms. */
export function recordMs(ts) {
  if (typeof ts === 'number') return ts / 1e6;
  const ms = Date.parse(String(ts).replace(/(\.\d{3})\d+/, '$1'));
  return Number.isFinite(ms) ? ms : 0;
}
