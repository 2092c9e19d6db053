// The dashboard in headless chromium against a real `lumen serve` seeded
// over OTLP/HTTP: the points of the dashboard issue's test list, with a
// screenshot of every view in test-artifacts/screenshots.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startLumen, launchBrowser, sendLogs, seedShop, SHOTS } from './lumen.mjs';

let lumen, browser, page, traceId;
const shot = name => page.screenshot({ path: join(SHOTS, `${name}.png`) });
const hash = () => page.evaluate(() => location.hash);
const open = async h => { await page.goto(`${lumen.http}/${h}`); };

before(async () => {
  lumen = await startLumen();
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  page.on('pageerror', e => { throw e; });
});
after(async () => {
  await browser?.close();
  assert.equal(await lumen?.stop(), 0, 'lumen exits cleanly');
});

test('an empty store says where to point the exporter', async () => {
  await open('#/logs');
  const empty = page.locator('#logs-empty');
  await empty.waitFor();
  assert.match(await empty.innerText(), /No data yet[\s\S]*:4317/);
  await shot('logs-empty');
  await open('#/metrics');
  await page.locator('#metrics-empty').waitFor();
  ({ traceId } = await seedShop(lumen));
});

test('the first view is small and compressed', async () => {
  // A fresh context: nothing cached.
  const ctx = await browser.newContext();
  const fresh = await ctx.newPage();
  const pending = [];
  fresh.on('requestfinished', r => pending.push(Promise.all([r.sizes(), r.response()]).then(([s, res]) => [r.url(), s.responseBodySize, res?.headers()['content-encoding']])));
  const t0 = Date.now();
  await fresh.goto(`${lumen.http}/#/logs`);
  await fresh.locator('.row').first().waitFor();
  const ms = Date.now() - t0;
  await fresh.waitForLoadState('networkidle');
  const sizes = await Promise.all(pending);
  await ctx.close();
  const statics = sizes.filter(([u]) => !u.includes('/api/'));
  const total = statics.reduce((s, [, n]) => s + n, 0);
  console.log(`first view: ${statics.length} files, ${total} bytes transferred, rendered with data in ${ms} ms`);
  assert.ok(total < 200 * 1024, `first view is ${total} bytes`);
  assert.ok(statics.filter(([u]) => /\.(js|css)$/.test(u)).every(([, , enc]) => enc === 'gzip'), JSON.stringify(statics));
  assert.ok(!statics.some(([u]) => u.includes('uPlot')), 'the chart library loads only with the metrics view');
});

test('search finds a known line, with its histogram', async () => {
  await open('#/logs');
  await page.fill('#logs-q', 'declined');
  await page.press('#logs-q', 'Enter');
  const row = page.locator('.row', { hasText: 'card declined for order 4712' });
  await row.waitFor();
  await page.waitForFunction(() => document.querySelector('#logs-count')?.textContent === '1');
  assert.match(await hash(), /q=declined/);
  assert.ok(await page.locator('#logs-histogram rect.b').count() > 0);
  assert.equal(await page.locator('.row .sev').first().innerText(), 'ERROR');
  await shot('logs-search');
});

test('dragging across the histogram zooms into that span; absolute ranges apply', async () => {
  await open('#/logs?q=request&from=now-6h');
  await page.waitForFunction(() => Number(document.querySelector('#logs-count')?.textContent) >= 40);
  const box = await page.locator('#logs-histogram svg').boundingBox();
  await page.mouse.move(box.x + box.width * 0.80, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.95, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => /from=\d+&to=\d+/.test(location.hash));
  const h = new URLSearchParams((await hash()).split('?')[1]);
  const span = Number(h.get('to')) - Number(h.get('from'));
  assert.ok(span > 30 * 60_000 && span < 70 * 60_000, `zoomed to ${span} ms`);
  await page.waitForFunction(() => !/Searching/.test(document.querySelector('#logs-status').textContent));
  assert.match(await page.locator('#range').innerText(), /\d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
  // An absolute range typed into the picker.
  await page.click('#range');
  const day = new Date(Date.now() - 86_400_000), pad = n => String(n).padStart(2, '0');
  const local = d => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  await page.fill('#range-from', local(day));
  await page.fill('#range-to', local(new Date(Date.now() + 60_000)));
  await page.click('#range-apply');
  await page.waitForFunction(() => Number(document.querySelector('#logs-count')?.textContent) >= 40);
});

test('a row expands, and clicking an attribute adds it as a filter', async () => {
  await open('#/logs?q=order');
  const row = page.locator('.row', { hasText: 'card declined for order 4712' });
  await row.locator('.line').click();
  const attr = row.locator('.attrs .v', { hasText: 'acme' });
  await attr.waitFor();
  assert.match(await row.locator('.detail').innerText(), /service\.name[\s\S]*payment/);
  await shot('logs-expanded');
  await attr.click();
  await page.waitForFunction(() => document.querySelector('#logs-q').value === 'order attr.payment.provider:acme');
  await page.waitForFunction(() => document.querySelector('#logs-count')?.textContent === '1');
});

test("clicking a log's trace id opens the waterfall with the right spans", async () => {
  await open('#/logs?q=declined');
  const row = page.locator('.row', { hasText: 'card declined' });
  await row.locator('.line').click();
  await row.locator('a.trace-link').click();
  await page.locator('#waterfall .sp').first().waitFor();
  assert.equal(await hash(), `#/traces/${traceId}`);
  const names = await page.locator('#waterfall .sp .label').allInnerTexts();
  assert.deepEqual(names.map(n => n.replace(/[▾▸⚠\s]+/g, ' ').trim()), [
    'frontend GET /checkout', 'frontend render cart', 'checkout PlaceOrder', 'checkout reserve stock', 'payment Charge', 'checkout fraud check']);
  // The critical path runs through Charge, not through the parallel fraud check.
  const crit = async name => page.locator('#waterfall .sp', { hasText: name }).locator('.span-bar').evaluate(e => e.classList.contains('crit'));
  assert.equal(await crit('Charge'), true);
  assert.equal(await crit('fraud check'), false);
  await page.locator('#waterfall .sp', { hasText: 'Charge' }).click();
  const detail = page.locator('#span-detail');
  await detail.waitFor();
  assert.match(await detail.innerText(), /exception[\s\S]*card declined/);
  await shot('trace-waterfall');
  // Collapsing PlaceOrder hides its three children.
  await page.locator('#waterfall .sp', { hasText: 'PlaceOrder' }).locator('.tog').click();
  assert.equal(await page.locator('#waterfall .sp').count(), 3);
  // And back to the trace's logs.
  await page.click('#trace-logs');
  await page.waitForFunction(() => document.querySelector('#logs-count')?.textContent === '3');
  assert.equal(await page.inputValue('#logs-q'), `trace_id:${traceId}`);
});

test('trace search lists traces with duration bars and errors', async () => {
  await open('#/traces');
  const tr = page.locator('#trace-results .tr').first();
  await tr.waitFor();
  assert.match(await tr.innerText(), /frontend: GET \/checkout[\s\S]*6 spans[\s\S]*1 error[\s\S]*480ms/);
  await page.selectOption('#trace-service', 'payment');
  await page.fill('#trace-min', '1s');
  await page.click('#trace-find');
  await page.locator('#traces-empty').waitFor();
  await page.fill('#trace-min', '100ms');
  await page.click('#trace-find');
  await page.locator('#trace-results .tr').first().waitFor();
  await shot('traces-search');
});

test('live tail shows a line sent after the page opened; pause holds lines back', async () => {
  await open('#/logs?q=service:tailsvc');
  await page.locator('#logs-empty').waitFor();
  await page.click('#live');
  await page.locator('#tail-rate').waitFor();
  await page.waitForTimeout(300); // the WebSocket subscribes
  await sendLogs(lumen, [{ service: 'tailsvc', body: 'fresh line from the tail test', severity: 'WARN', severityNumber: 13 }]);
  await page.locator('.row', { hasText: 'fresh line from the tail test' }).waitFor();
  await page.waitForFunction(() => /[1-9][\d.]* lines\/s|0\.[1-9]\d* lines\/s/.test(document.querySelector('#tail-rate').textContent));
  await page.click('#pause');
  await sendLogs(lumen, [{ service: 'tailsvc', body: 'held while paused' }]);
  await page.waitForFunction(() => /paused · 1 waiting/.test(document.querySelector('#tail-rate').textContent));
  assert.equal(await page.locator('.row', { hasText: 'held while paused' }).count(), 0);
  await page.click('#pause');
  await page.locator('.row', { hasText: 'held while paused' }).waitFor();
  await shot('logs-live');
  await page.click('#live');
});

test('a metric chart draws points, built from the picker or written in PromQL', async () => {
  await open('#/metrics');
  await page.locator('#metric-list div', { hasText: 'http_server_requests_total' }).click();
  await page.waitForFunction(() => /^1 series · [1-9]\d* points$/.test(document.querySelector('#chart-status')?.textContent));
  assert.equal(await page.inputValue('#promql'), 'sum (rate(http_server_requests_total[5m]))');
  await page.locator('#chart canvas').waitFor();
  await page.selectOption('#group-by', 'http_route');
  await page.waitForFunction(() => /^2 series/.test(document.querySelector('#chart-status')?.textContent));
  const legend = await page.locator('#chart .u-legend').innerText();
  assert.match(legend, /http_route="\/cart"/);
  // Hovering shows the values at that time.
  const plot = await page.locator('#chart .u-over').boundingBox();
  await page.mouse.move(plot.x + plot.width * 0.97, plot.y + plot.height / 2);
  await page.locator('#chart .tooltip').waitFor();
  assert.match(await page.locator('#chart .tooltip').innerText(), /http_route="\/cart"\}: \d/);
  await shot('metrics-chart');
  // A label filter narrows the series.
  await page.selectOption('#filter-label', 'http_route');
  await page.selectOption('#filter-value', '/cart');
  await page.waitForFunction(() => document.querySelector('#promql').value === 'sum by (http_route) (rate(http_server_requests_total{http_route="/cart"}[5m]))');
  await page.waitForFunction(() => /^1 series/.test(document.querySelector('#chart-status')?.textContent));
  // A native histogram (an OTLP exponential histogram) is charted as a quantile.
  await page.locator('#metric-list div', { hasText: /^payment_latency_milliseconds$/ }).click();
  await page.waitForFunction(() => document.querySelector('#promql').value === 'histogram_quantile(0.99, sum (rate(payment_latency_milliseconds[5m])))');
  await page.waitForFunction(() => /^1 series · [1-9]\d* points$/.test(document.querySelector('#chart-status')?.textContent));
  await page.fill('#promql', 'sum(rate(');
  await page.press('#promql', 'Enter');
  await page.locator('#metrics-error').waitFor();
  assert.match(await page.locator('#metrics-error').innerText(), /invalid parameter "query"/);
});

test('the services view shows rates, errors, latency and dependencies', async () => {
  await open('#/services');
  const row = page.locator('#services-table tr', { hasText: 'Charge' });
  await row.waitFor();
  assert.match(await row.innerText(), /payment\s+Charge\s+[\d.]+\s+100\.0%\s+300ms\s+300ms\s+300ms/);
  assert.equal(await page.locator('#dep-graph rect.node').count(), 3);
  await shot('services');
});

test('URL state restores a view, and the back button steps back', async () => {
  await open('#/logs?q=request&from=now-6h');
  assert.equal(await page.inputValue('#logs-q'), 'request');
  assert.match(await page.locator('#range').innerText(), /Last 6 hours/);
  await page.waitForFunction(() => Number(document.querySelector('#logs-count')?.textContent) >= 40);
  await page.fill('#logs-q', 'declined');
  await page.press('#logs-q', 'Enter');
  await page.waitForFunction(() => document.querySelector('#logs-count')?.textContent === '1');
  await page.goBack();
  await page.waitForFunction(() => document.querySelector('#logs-q').value === 'request');
  await page.waitForFunction(() => Number(document.querySelector('#logs-count')?.textContent) >= 40);
});

test('a bad query shows the API error; / focuses search; the theme switches', async () => {
  await open('#/logs');
  await page.locator('.row').first().waitFor();
  await page.click('body');
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'logs-q');
  await page.fill('#logs-q', '(unclosed');
  await page.press('#logs-q', 'Enter');
  await page.locator('#logs-error').waitFor();
  assert.match(await page.locator('#logs-error').innerText(), /never closed/);
  await page.click('#logs-help');
  await page.locator('#syntax-help').waitFor();
  await page.click('#theme');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await open('#/logs?q=order');
  await page.locator('.row').first().waitFor();
  await shot('logs-dark');
  await open('#/traces/' + traceId);
  await page.locator('#waterfall .sp').first().waitFor();
  await shot('trace-dark');
  await page.click('#theme');
});

test('the list stays virtualised with thousands of rows', async () => {
  const now = Date.now();
  for (let b = 0; b < 10; b++) {
    await sendLogs(lumen, Array.from({ length: 1000 }, (_, i) => ({ service: 'bulk', body: `bulk line ${b * 1000 + i}`, timeMs: now - (b * 1000 + i) * 10 })));
  }
  await open('#/logs?q=service:bulk');
  await page.waitForFunction(() => document.querySelector('#logs-count')?.textContent === '500');
  // Scrolling to the end loads the next pages, up to 10,000 lines.
  for (let i = 0; i < 60; i++) {
    await page.locator('#logs-list').evaluate(e => { e.scrollTop = e.scrollHeight; });
    await page.waitForTimeout(100);
    if ((await page.locator('#logs-count').innerText()).replace(/\D/g, '') === '10000') break;
  }
  assert.equal((await page.locator('#logs-count').innerText()).replace(/\D/g, ''), '10000');
  await page.locator('#logs-list').evaluate(e => { e.scrollTop = e.scrollHeight; });
  await page.locator('.row', { hasText: 'bulk line 9999' }).waitFor();
  // Expanding a row far down shifts the rows below it, not the list.
  await page.locator('.row', { hasText: 'bulk line 9990' }).locator('.line').click();
  await page.locator('.row', { hasText: 'bulk line 9990' }).locator('.detail').waitFor();
  const inDom = await page.locator('#logs-list .row').count();
  assert.ok(inDom < 150, `${inDom} rows in the DOM`);
  await shot('logs-many');
});
