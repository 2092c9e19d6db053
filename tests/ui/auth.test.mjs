// With API tokens configured the dashboard asks for one, keeps it in this
// browser, sends it with every request (and the live tail), and forgets it
// on sign-out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLumen, launchBrowser, SHOTS } from './lumen.mjs';

const READ = 'dashboard-read-token-0123456789';
const INGEST = 'dashboard-ingest-token-0123456789';
let lumen, browser;
before(async () => {
  const conf = join(mkdtempSync(join(tmpdir(), 'lumen-ui-auth-')), 'lumen.toml');
  writeFileSync(conf, `[[auth.tokens]]\nname = "viewer"\ntoken = "${READ}"\nscopes = ["read"]\n\n[[auth.tokens]]\nname = "sender"\ntoken = "${INGEST}"\nscopes = ["ingest"]\n`);
  lumen = await startLumen(['--config', conf]);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  assert.equal(await lumen?.stop(), 0, 'lumen exits cleanly');
});

async function send(body) {
  const res = await fetch(`${lumen.otlpHttp}/v1/logs`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${INGEST}` },
    body: JSON.stringify({ resourceLogs: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'secure' } }] },
      scopeLogs: [{ logRecords: [{ timeUnixNano: String(BigInt(Date.now()) * 1_000_000n), body: { stringValue: body } }] }] }] }),
  });
  assert.equal(res.status, 200);
}

test('the dashboard asks for a token, uses it everywhere, and signs out', async () => {
  await send('a line behind a token');
  const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
  await page.goto(`${lumen.http}/#/logs`);
  await page.locator('#login').waitFor();
  await page.screenshot({ path: join(SHOTS, 'login.png') });
  await page.fill('#login-token', 'not-the-token-0123456789');
  await page.press('#login-token', 'Enter');
  await page.waitForFunction(() => /refused/.test(document.querySelector('#login')?.textContent ?? ''));
  await page.fill('#login-token', READ);
  await page.press('#login-token', 'Enter');
  await page.locator('.row', { hasText: 'a line behind a token' }).waitFor();
  assert.equal(await page.locator('#login').count(), 0);
  // The live tail authenticates too.
  await page.click('#live');
  await page.locator('#tail-rate').waitFor();
  await page.waitForTimeout(300);
  await send('a live line behind a token');
  await page.locator('.row', { hasText: 'a live line behind a token' }).waitFor();
  await page.click('#signout');
  await page.locator('#login').waitFor();
  await page.close();
});
