// The page at / runs SQL over the store: a log sent over OTLP shows up in
// the table, and a bad query shows the API's error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startLumen, launchBrowser, sendLogs, SHOTS } from './lumen.mjs';

let lumen, browser;
before(async () => {
  lumen = await startLumen();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  assert.equal(await lumen?.stop(), 0, 'lumen exits cleanly');
});

test('a query finds a log line sent over OTLP', async () => {
  await sendLogs(lumen, [
    { service: 'checkout', body: 'payment accepted for order 4711', severity: 'INFO' },
    { service: 'checkout', body: 'card declined for order 4712', severity: 'ERROR', severityNumber: 17 },
  ]);
  const page = await browser.newPage();
  await page.goto(lumen.http + '/#/sql');
  await page.fill('#q', "SELECT service_name, severity_text, body FROM logs WHERE body LIKE '%4712%'");
  await page.click('#run');
  const row = page.locator('#out table tr', { hasText: 'card declined for order 4712' });
  await row.waitFor();
  assert.match(await row.innerText(), /checkout\s+ERROR/);
  assert.match(await page.textContent('#meta'), /^1 row in \d+ ms$/);
  await page.screenshot({ path: join(SHOTS, 'sql-page.png'), fullPage: true });
  await page.close();
});

test('a bad query shows the error from the API', async () => {
  const page = await browser.newPage();
  await page.goto(lumen.http + '/#/sql');
  await page.fill('#q', 'SELECT nope FROM logs');
  await page.keyboard.press('Control+Enter');
  const err = page.locator('#out .err');
  await err.waitFor();
  assert.match(await err.innerText(), /nope/);
  await page.screenshot({ path: join(SHOTS, 'sql-page-error.png'), fullPage: true });
  await page.close();
});
