// Fetch helpers: JSON in, JSON out, and the API's own error message on
// failure (Lumen's `{"error"}`, Prometheus's `{"error"}`, Jaeger's `errors`).
export class ApiError extends Error {}

// With tokens configured, the APIs want one: the dashboard keeps it in this
// browser's local storage and sends it with every request.
const TOKEN_KEY = 'lumen.token';
export const token = () => localStorage.getItem(TOKEN_KEY) ?? '';
export function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
}
const authHeaders = () => (token() ? { authorization: `Bearer ${token()}` } : {});

export async function getJSON(path, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    for (const x of Array.isArray(v) ? v : [v]) qs.append(k, x);
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  return handle(await fetch(url, { headers: authHeaders() }), url);
}

export async function postJSON(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', ...authHeaders() }, body: JSON.stringify(body) });
  return handle(res, path);
}

async function handle(res, url) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const msg = body?.error ?? body?.errors?.[0]?.msg ?? `${res.status} ${res.statusText}`;
    // No or a wrong token: ask for one.
    if (res.status === 401) dispatchEvent(new CustomEvent('lumen-auth', { detail: msg }));
    throw new ApiError(`${msg}`);
  }
  if (body === null) throw new ApiError(`${url}: not a JSON answer`);
  return body;
}

/** The PromQL API's data, or its error. */
export async function prom(path, params) {
  const body = await getJSON(path, params);
  if (body.status !== 'success') throw new ApiError(body.error ?? 'query failed');
  return body.data;
}
