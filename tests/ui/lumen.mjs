// Starts the real `lumen serve` binary on ephemeral ports with a temporary
// data directory, and a headless Debian chromium, for the dashboard tests.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '../..');
export const BIN = process.env.LUMEN_BIN ?? join(root, 'target/debug/lumen');
/** Where the screenshots go (looked at after a run). */
export const SHOTS = process.env.LUMEN_SCREENSHOTS ?? join(root, 'test-artifacts/screenshots');

/** Starts Lumen (with `extra` flags); resolves to { http, otlpHttp, stop }
 * once it printed its ready line. */
export async function startLumen(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'lumen-ui-'));
  const proc = spawn(BIN, ['serve', '--data-dir', dir, '--otlp-grpc-addr', '127.0.0.1:0',
    '--otlp-http-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', ...extra],
  { env: { ...process.env, LUMEN_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout });
  const ready = await new Promise((ok, fail) => {
    proc.once('exit', code => fail(new Error(`lumen exited with ${code} before it was ready`)));
    lines.on('line', l => { if (l.startsWith('lumen ready')) ok(l); });
  });
  const addrs = Object.fromEntries(ready.split(/\s+/).slice(2).map(kv => kv.split('=')));
  return {
    http: `http://${addrs.http}`,
    otlpHttp: `http://${addrs.otlp_http}`,
    async stop() {
      const exited = new Promise(ok => proc.once('exit', ok));
      proc.kill('SIGTERM');
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A headless chromium as the tests run it: the network here is closed. */
export async function launchBrowser() {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** Sends OTLP/JSON logs: each entry { body, severity, service, traceId?, attrs? }. */
export async function sendLogs(lumen, entries) {
  const byService = new Map();
  for (const e of entries) {
    if (!byService.has(e.service)) byService.set(e.service, []);
    byService.get(e.service).push({
      timeUnixNano: String(BigInt(e.timeMs ?? Date.now()) * 1_000_000n),
      severityNumber: e.severityNumber ?? 9,
      severityText: e.severity ?? 'INFO',
      body: { stringValue: e.body },
      traceId: e.traceId ?? '',
      spanId: e.spanId ?? '',
      attributes: Object.entries(e.attrs ?? {}).map(([key, v]) => ({ key, value: { stringValue: v } })),
    });
  }
  const resourceLogs = [...byService].map(([service, logRecords]) => ({
    resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
    scopeLogs: [{ logRecords }],
  }));
  const res = await fetch(`${lumen.otlpHttp}/v1/logs`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ resourceLogs }),
  });
  if (res.status !== 200) throw new Error(`OTLP export failed: ${res.status} ${await res.text()}`);
}

const nanos = ms => String(BigInt(Math.round(ms)) * 1_000_000n);
const anyValue = v => typeof v === 'number' ? (Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v })
  : typeof v === 'boolean' ? { boolValue: v } : { stringValue: String(v) };
const attrList = attrs => Object.entries(attrs ?? {}).map(([key, v]) => ({ key, value: anyValue(v) }));

/** Sends OTLP/JSON spans: each { service, traceId, spanId, parentSpanId?, name,
 * kind (1 internal, 2 server, 3 client), startMs, durationMs, error?, attrs?, events? }. */
export async function sendSpans(lumen, spans) {
  const byService = new Map();
  for (const s of spans) {
    if (!byService.has(s.service)) byService.set(s.service, []);
    byService.get(s.service).push({
      traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind ?? 1,
      startTimeUnixNano: nanos(s.startMs), endTimeUnixNano: nanos(s.startMs + s.durationMs),
      attributes: attrList(s.attrs), status: s.error ? { code: 2, message: s.error } : { code: 1 },
      events: (s.events ?? []).map(e => ({ timeUnixNano: nanos(e.ms), name: e.name, attributes: attrList(e.attrs) })),
    });
  }
  const resourceSpans = [...byService].map(([service, list]) => ({
    resource: { attributes: attrList({ 'service.name': service, 'service.instance.id': `${service}-1` }) },
    scopeSpans: [{ scope: { name: 'ui-test' }, spans: list }],
  }));
  await post(lumen, '/v1/traces', { resourceSpans });
}

/** Sends OTLP/JSON gauges, monotonic sums and exponential histograms: each { name, kind: 'gauge'|'sum'|'exp',
 * service, attrs, points: [[ms, value], ...] }. */
export async function sendMetrics(lumen, metrics) {
  const resourceMetrics = metrics.map(m => {
    const base = ms => ({ timeUnixNano: nanos(ms), startTimeUnixNano: nanos(m.points[0][0] - 1000), attributes: attrList(m.attrs) });
    // An exponential histogram's point value: { count, sum, scale, offset, buckets }.
    const dataPoints = m.points.map(([ms, v]) => (m.kind === 'exp'
      ? { ...base(ms), count: String(v.count), sum: v.sum, scale: v.scale, zeroCount: '0', positive: { offset: v.offset, bucketCounts: v.buckets.map(String) } }
      : { ...base(ms), asDouble: v }));
    const body = m.kind === 'sum' ? { sum: { isMonotonic: true, aggregationTemporality: 2, dataPoints } }
      : m.kind === 'exp' ? { exponentialHistogram: { aggregationTemporality: 2, dataPoints } } : { gauge: { dataPoints } };
    return { resource: { attributes: attrList({ 'service.name': m.service }) }, scopeMetrics: [{ metrics: [{ name: m.name, unit: m.unit ?? '', ...body }] }] };
  });
  await post(lumen, '/v1/metrics', { resourceMetrics });
}

async function post(lumen, path, body) {
  const res = await fetch(`${lumen.otlpHttp}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`OTLP export to ${path} failed: ${res.status} ${await res.text()}`);
}

/** A shop: a checkout trace over three services with an error, logs that
 * belong to it and others, and request metrics. Returns the ids. */
export async function seedShop(lumen, now = Date.now()) {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const t0 = now - 60_000;
  await sendSpans(lumen, [
    { service: 'frontend', traceId, spanId: '00f067aa0ba902b7', name: 'GET /checkout', kind: 2, startMs: t0, durationMs: 480, attrs: { 'http.method': 'GET', 'http.route': '/checkout' } },
    { service: 'frontend', traceId, spanId: '1000000000000001', parentSpanId: '00f067aa0ba902b7', name: 'render cart', kind: 1, startMs: t0 + 5, durationMs: 40 },
    { service: 'checkout', traceId, spanId: '2000000000000002', parentSpanId: '00f067aa0ba902b7', name: 'PlaceOrder', kind: 2, startMs: t0 + 50, durationMs: 400, attrs: { 'order.id': '4712' } },
    { service: 'payment', traceId, spanId: '3000000000000003', parentSpanId: '2000000000000002', name: 'Charge', kind: 2, startMs: t0 + 120, durationMs: 300, error: 'card declined',
      events: [{ ms: t0 + 410, name: 'exception', attrs: { 'exception.message': 'card declined' } }] },
    { service: 'checkout', traceId, spanId: '4000000000000004', parentSpanId: '2000000000000002', name: 'reserve stock', kind: 3, startMs: t0 + 60, durationMs: 50 },
    // In parallel with Charge, which outlasts it: not on the critical path.
    { service: 'checkout', traceId, spanId: '5000000000000005', parentSpanId: '2000000000000002', name: 'fraud check', kind: 3, startMs: t0 + 130, durationMs: 70 },
  ]);
  const logs = [
    { service: 'checkout', body: 'placing order 4712 for customer ada', severity: 'INFO', severityNumber: 9, traceId, spanId: '2000000000000002', timeMs: t0 + 55, attrs: { 'order.id': '4712' } },
    { service: 'payment', body: 'card declined for order 4712', severity: 'ERROR', severityNumber: 17, traceId, spanId: '3000000000000003', timeMs: t0 + 400, attrs: { 'order.id': '4712', 'payment.provider': 'acme' } },
    { service: 'frontend', body: 'rendered cart with 3 items', severity: 'DEBUG', severityNumber: 5, traceId, spanId: '1000000000000001', timeMs: t0 + 30 },
  ];
  for (let i = 0; i < 40; i++) {
    logs.push({ service: ['frontend', 'checkout', 'payment'][i % 3], body: `request ${i} served in ${10 + (i * 7) % 90} ms`, severity: i % 10 === 0 ? 'WARN' : 'INFO', severityNumber: i % 10 === 0 ? 13 : 9, timeMs: now - 50 * 60_000 + i * 70_000, attrs: { 'http.route': i % 2 ? '/cart' : '/checkout' } });
  }
  await sendLogs(lumen, logs);
  const pts = Array.from({ length: 30 }, (_, k) => now - (29 - k) * 60_000);
  await sendMetrics(lumen, [
    { name: 'http.server.requests', kind: 'sum', service: 'frontend', attrs: { 'http.route': '/checkout' }, points: pts.map((t, k) => [t, 10 * k]) },
    { name: 'http.server.requests', kind: 'sum', service: 'frontend', attrs: { 'http.route': '/cart' }, points: pts.map((t, k) => [t, 25 * k]) },
    { name: 'queue.depth', kind: 'gauge', service: 'checkout', attrs: {}, points: pts.map((t, k) => [t, 5 + (k % 7)]) },
    // Latencies of 1–8 ms, growing by 4 observations a minute.
    { name: 'payment.latency', unit: 'ms', kind: 'exp', service: 'payment', attrs: {},
      points: pts.map((t, k) => [t, { count: 4 * k, sum: 14 * k, scale: 0, offset: 0, buckets: [k, 2 * k, k] }]) },
  ]);
  return { traceId };
}
