// View state in the URL hash: `#/<view>[/<id>]?k=v&...`, so a view can be
// shared and the back button steps through searches.
export function parseHash(hash = location.hash) {
  const h = hash.replace(/^#\/?/, '');
  const [path, qs = ''] = h.split('?');
  const [view = 'logs', ...rest] = path.split('/');
  return { view: view || 'logs', id: rest.join('/') || null, params: Object.fromEntries(new URLSearchParams(qs)) };
}

export function makeHash(view, params = {}, id = null) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') qs.set(k, v);
  const s = qs.toString();
  return `#/${view}${id ? '/' + encodeURIComponent(id) : ''}${s ? '?' + s : ''}`;
}

/** Navigates (a new history entry), or replaces the entry when `replace`. */
export function go(hash, replace = false) {
  if (hash === location.hash) return;
  if (replace) { history.replaceState(null, '', hash); dispatchEvent(new HashChangeEvent('hashchange')); }
  else location.hash = hash;
}
