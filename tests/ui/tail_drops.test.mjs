// A live tail that falls behind says so: with a tail buffer of 5 records, a
// burst of 100 matching lines arrives as the newest 5 and a notice that 95
// were dropped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startLumen, launchBrowser, sendLogs, SHOTS } from './lumen.mjs';

let lumen, browser;
before(async () => {
  lumen = await startLumen(['--tail-buffer', '5']);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  assert.equal(await lumen?.stop(), 0, 'lumen exits cleanly');
});

test('dropped tail lines are counted on the page', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 600 } });
  await page.goto(`${lumen.http}/#/logs?q=burst&live=1`);
  await page.locator('#tail-rate').waitFor();
  await page.waitForTimeout(300);
  await sendLogs(lumen, Array.from({ length: 100 }, (_, i) => ({ service: 'burst-svc', body: `burst ${i}`, timeMs: Date.now() - 100 + i })));
  const notice = page.locator('#tail-dropped');
  await notice.waitFor();
  assert.match(await notice.innerText(), /^95 lines dropped/);
  await page.locator('.row', { hasText: 'burst 99' }).waitFor();
  assert.equal(await page.locator('.row', { hasText: 'burst 0' }).count(), 0);
  await page.screenshot({ path: join(SHOTS, 'logs-live-dropped.png') });
  await page.close();
});
