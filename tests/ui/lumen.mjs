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

/** Starts Lumen; resolves to { http, otlpHttp, stop } once it printed its ready line. */
export async function startLumen() {
  const dir = mkdtempSync(join(tmpdir(), 'lumen-ui-'));
  const proc = spawn(BIN, ['serve', '--data-dir', dir, '--otlp-grpc-addr', '127.0.0.1:0',
    '--otlp-http-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0'],
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
