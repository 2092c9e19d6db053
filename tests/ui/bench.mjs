// The dashboard's first view, measured (not a test): bytes of static files
// transferred and time to the first rendered log row, in fresh browser
// contexts (nothing cached), over RUNS runs; medians printed.
import { startLumen, launchBrowser, seedShop } from './lumen.mjs';

const RUNS = Number(process.env.RUNS ?? 15);
const lumen = await startLumen();
await seedShop(lumen);
const browser = await launchBrowser();
const median = xs => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const bytes = [], firstRow = [], loaded = [];
for (let i = 0; i < RUNS; i++) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const pending = [];
  page.on('requestfinished', r => { if (!r.url().includes('/api/')) pending.push(r.sizes().then(s => s.responseBodySize)); });
  await page.goto(`${lumen.http}/#/logs`);
  await page.locator('.row').first().waitFor();
  // Times from the navigation's start, by the page's own clock.
  const t = await page.evaluate(() => ({ row: performance.now(), load: performance.getEntriesByType('navigation')[0].loadEventEnd }));
  await page.waitForLoadState('networkidle');
  const total = (await Promise.all(pending)).reduce((a, b) => a + b, 0);
  bytes.push(total); firstRow.push(t.row); loaded.push(t.load);
  await ctx.close();
}
console.log(`first view over ${RUNS} fresh loads: ${median(bytes)} bytes of static files (gzip), load event ${median(loaded).toFixed(0)} ms, first log row rendered ${median(firstRow).toFixed(0)} ms (median; min ${Math.min(...firstRow).toFixed(0)}, max ${Math.max(...firstRow).toFixed(0)})`);
await browser.close();
await lumen.stop();
