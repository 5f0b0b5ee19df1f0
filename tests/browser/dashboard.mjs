#!/usr/bin/env node
// End-to-end check of the analytics dashboard in a real headless browser.
//
// Usage (after ./scripts/browser-deps, with a demo running):
//   node tests/browser/dashboard.mjs --url https://127.0.0.1:8443/venues/arena --out DIR [--wait-secs 60]
//
// It drives Debian's /usr/bin/chromium through playwright-core (no browser download), with a
// fresh profile and ignoreHTTPSErrors (the demo's certificate is self-signed); plain http://
// URLs work too. The URL must point at 127.0.0.1 or localhost, and the page may not reach any
// other host: every such request is aborted and fails the run, as does any console error,
// uncaught page error, non-2xx page load or failed check below.
//
// DOM contract the dashboard renders:
//   * <html lang="..."> and an <h1>.
//   * Every chart is <svg data-chart="NAME" data-points="N" data-from="UNIX_S" data-to="UNIX_S"
//     role="img" aria-label="...">, with NAME unique on the page; N is the number of data points
//     drawn, data-from/data-to the time range shown (unix seconds). Required charts:
//     zone-occupancy (live occupancy per zone against capacity), occupancy-series,
//     gate-throughput and flows. The demo fills the database while it runs, so the script
//     reloads the page every 5 s until every required chart has N > 0 (up to --wait-secs).
//   * The time-range picker: <form id="range"> with <select name="range"> offering at least the
//     values "1h" and "24h", and a <button type="submit">. Submitting 1h (24h when 1h is already
//     selected) must load a page whose occupancy-series has a new data-from and
//     data-to - data-from == 3600 (86400 for 24h), with every required chart still there.
//   * Export links: at least one <a data-export="csv" href="..."> (200, Content-Type text/csv,
//     a header line and at least one data line) and one <a data-export="parquet" href="...">
//     (200, a Parquet file: starts and ends with the magic bytes PAR1).
//
// Writes DIR/dashboard.png and DIR/dashboard-range.png (full page). Its last stdout line is JSON:
//   {"ok":true,"charts":{"zone-occupancy":3,...},"screenshots":[...],"blocked_requests":[]}
// or {"ok":false,"error":"..."} with exit status 1. Progress goes to stderr.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const REQUIRED_CHARTS = ['zone-occupancy', 'occupancy-series', 'gate-throughput', 'flows'];
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const RANGE_SECONDS = { '1h': 3600, '24h': 86400 };
const RELOAD_EVERY_MS = 5000;

const USAGE =
  'usage: node tests/browser/dashboard.mjs --url https://127.0.0.1:PORT/venues/VENUE --out DIR [--wait-secs 60]';

class CheckError extends Error {}

function fail(message) {
  throw new CheckError(message);
}

function log(message) {
  process.stderr.write(`dashboard: ${message}\n`);
}

function isLocal(url) {
  return LOCAL_HOSTS.has(url.hostname);
}

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        out: { type: 'string' },
        'wait-secs': { type: 'string', default: '60' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`${err.message}\n${USAGE}`);
  }
  if (values.help) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (!values.url || !values.out) fail(`--url and --out are required\n${USAGE}`);
  let url;
  try {
    url = new URL(values.url);
  } catch {
    fail(`--url ${values.url} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(`--url must be https:// (or http://), not ${url.protocol}`);
  if (!isLocal(url)) fail(`--url must point at 127.0.0.1 or localhost, not ${url.hostname}`);
  const waitSecs = Number(values['wait-secs']);
  if (!Number.isFinite(waitSecs) || waitSecs < 0) fail(`--wait-secs must be a number of seconds >= 0, not ${values['wait-secs']}`);
  return { url: url.href, out: path.resolve(values.out), waitSecs };
}

// Everything that fails the run whenever it happens: requests to other hosts, console errors
// and uncaught exceptions in the page.
class Watch {
  constructor() {
    this.blocked = [];
    this.errors = [];
  }

  async attach(context) {
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.protocol === 'data:' || url.protocol === 'blob:' || isLocal(url)) return route.continue();
      this.blocked.push(route.request().url());
      return route.abort('blockedbyclient');
    });
    context.on('page', (page) => this.attachPage(page));
  }

  attachPage(page) {
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        const where = msg.location()?.url ? ` (${msg.location().url})` : '';
        this.errors.push(`console error: ${msg.text()}${where}`);
      }
    });
    page.on('pageerror', (err) => this.errors.push(`page error: ${err.message}`));
    page.on('websocket', (ws) => {
      const url = new URL(ws.url());
      if (!isLocal(url)) this.blocked.push(ws.url());
    });
  }

  check() {
    if (this.blocked.length) fail(`the page requested hosts other than 127.0.0.1/localhost: ${this.blocked.join(', ')}`);
    if (this.errors.length) fail(this.errors.join('; '));
  }
}

// Reads every svg[data-chart] and checks its attributes; returns { NAME: {points, from, to} }.
async function readCharts(page) {
  const raw = await page.$$eval('svg[data-chart]', (svgs) =>
    svgs.map((svg) => ({
      name: svg.getAttribute('data-chart'),
      points: svg.getAttribute('data-points'),
      from: svg.getAttribute('data-from'),
      to: svg.getAttribute('data-to'),
      role: svg.getAttribute('role'),
      label: svg.getAttribute('aria-label'),
    })),
  );
  const charts = {};
  for (const c of raw) {
    const what = `<svg data-chart="${c.name}">`;
    if (!c.name) fail('an <svg data-chart> has an empty data-chart name');
    if (c.name in charts) fail(`${what} appears more than once`);
    if (!/^\d+$/.test(c.points ?? '')) fail(`${what} has data-points="${c.points}", not a count`);
    if (!/^-?\d+$/.test(c.from ?? '') || !/^-?\d+$/.test(c.to ?? ''))
      fail(`${what} has data-from="${c.from}" data-to="${c.to}", not unix seconds`);
    if (Number(c.to) < Number(c.from)) fail(`${what} has data-to ${c.to} before data-from ${c.from}`);
    if (c.role !== 'img') fail(`${what} has role="${c.role}", not "img"`);
    if (!c.label || !c.label.trim()) fail(`${what} has no aria-label`);
    charts[c.name] = { points: Number(c.points), from: Number(c.from), to: Number(c.to) };
  }
  const missing = REQUIRED_CHARTS.filter((name) => !(name in charts));
  if (missing.length) fail(`required chart(s) missing: ${missing.join(', ')} (found: ${Object.keys(charts).join(', ') || 'none'})`);
  return charts;
}

function checkResponse(response, what) {
  if (!response) fail(`${what}: no response`);
  if (!response.ok()) fail(`${what}: HTTP ${response.status()} for ${response.url()}`);
}

// Waits for network quiet after a load, so late script errors are seen; a page that keeps a
// connection open (live updates) simply ends the wait after a few seconds.
async function settle(page) {
  await page.waitForLoadState('networkidle', { timeout: 3000 }).catch(() => {});
}

// Loads the page, then reloads it every 5 s until every required chart has data points.
async function waitForData(page, url, watch, waitSecs) {
  const deadline = Date.now() + waitSecs * 1000;
  let response = await page.goto(url, { waitUntil: 'load' });
  for (;;) {
    checkResponse(response, `GET ${url}`);
    await settle(page);
    watch.check();
    const charts = await readCharts(page);
    const empty = REQUIRED_CHARTS.filter((name) => charts[name].points === 0);
    if (!empty.length) return charts;
    const left = deadline - Date.now();
    if (left <= 0) fail(`after ${waitSecs} s these charts still have data-points="0": ${empty.join(', ')}`);
    log(`waiting for data in ${empty.join(', ')}`);
    await sleep(Math.min(RELOAD_EVERY_MS, left));
    response = await page.reload({ waitUntil: 'load' });
  }
}

async function checkAccessibility(page) {
  const a11y = await page.evaluate(() => ({
    lang: document.documentElement.getAttribute('lang'),
    h1: [...document.querySelectorAll('h1')].map((h) => h.textContent.trim()),
    unlabelled: [...document.querySelectorAll('svg[data-chart]')]
      .filter((svg) => !(svg.getAttribute('aria-label') || '').trim())
      .map((svg) => svg.getAttribute('data-chart')),
  }));
  if (!a11y.lang || !a11y.lang.trim()) fail('<html> has no lang attribute');
  if (!a11y.h1.length) fail('the page has no <h1>');
  if (!a11y.h1.some((text) => text)) fail('the page has only empty <h1> elements');
  if (a11y.unlabelled.length) fail(`charts without aria-label: ${a11y.unlabelled.join(', ')}`);
}

// Picks 1h (24h when 1h is selected) in <form id="range"> and submits it.
async function changeRange(page, watch, before) {
  const select = page.locator('form#range select[name="range"]');
  const submit = page.locator('form#range button[type="submit"]');
  if ((await select.count()) !== 1) fail('expected one <form id="range"> with a <select name="range">');
  if ((await submit.count()) < 1) fail('<form id="range"> has no <button type="submit">');
  const options = await select.locator('option').evaluateAll((opts) => opts.map((o) => o.value));
  for (const value of Object.keys(RANGE_SECONDS)) {
    if (!options.includes(value)) fail(`<select name="range"> has no option "${value}" (options: ${options.join(', ')})`);
  }
  const current = await select.inputValue();
  const choice = current === '1h' ? '24h' : '1h';
  log(`range ${current || '(none)'} -> ${choice}`);
  await select.selectOption(choice);
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), submit.first().click()]);
  checkResponse(response, `submitting range ${choice}`);
  await settle(page);
  watch.check();

  const charts = await readCharts(page);
  const series = charts['occupancy-series'];
  if (series.from === before['occupancy-series'].from)
    fail(`occupancy-series data-from stayed ${series.from} after choosing range ${choice}`);
  const span = series.to - series.from;
  if (span !== RANGE_SECONDS[choice])
    fail(`occupancy-series shows ${span} s (data-from ${series.from}, data-to ${series.to}) for range ${choice}, expected ${RANGE_SECONDS[choice]}`);
  return charts;
}

async function exportLinks(page, kind) {
  const hrefs = await page.$$eval(`a[data-export="${kind}"][href]`, (links) => links.map((a) => a.href));
  if (!hrefs.length) fail(`no <a data-export="${kind}" href="..."> export link`);
  const url = new URL(hrefs[0]);
  if (!isLocal(url)) fail(`the ${kind} export link points at another host: ${hrefs[0]}`);
  return url.href;
}

async function checkExports(context, page) {
  const csvUrl = await exportLinks(page, 'csv');
  const csv = await context.request.get(csvUrl);
  if (csv.status() !== 200) fail(`GET ${csvUrl}: HTTP ${csv.status()}`);
  const csvType = csv.headers()['content-type'] || '';
  if (!csvType.toLowerCase().startsWith('text/csv')) fail(`GET ${csvUrl}: Content-Type "${csvType}", not text/csv`);
  const lines = (await csv.text()).split(/\r?\n/).filter((line) => line.trim());
  if (lines.length < 2) fail(`GET ${csvUrl}: expected a header line and at least one data line, got ${lines.length} line(s)`);

  const parquetUrl = await exportLinks(page, 'parquet');
  const parquet = await context.request.get(parquetUrl);
  if (parquet.status() !== 200) fail(`GET ${parquetUrl}: HTTP ${parquet.status()}`);
  const body = await parquet.body();
  const magic = Buffer.from('PAR1');
  if (body.length < 8 || !body.subarray(0, 4).equals(magic) || !body.subarray(-4).equals(magic))
    fail(`GET ${parquetUrl}: not a Parquet file (${body.length} bytes, must start and end with PAR1)`);
  log(`exports ok: ${csvUrl} (${lines.length} lines), ${parquetUrl} (${body.length} bytes)`);
}

async function main() {
  const opts = parseOptions();
  mkdirSync(opts.out, { recursive: true });
  const screenshots = [];
  const watch = new Watch();
  // launch() (not a persistent context) runs on a new temporary profile, deleted on close.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    await watch.attach(context);
    const page = await context.newPage();

    log(`loading ${opts.url}`);
    const charts = await waitForData(page, opts.url, watch, opts.waitSecs);
    await checkAccessibility(page);
    const first = path.join(opts.out, 'dashboard.png');
    await page.screenshot({ path: first, fullPage: true });
    screenshots.push(first);

    await changeRange(page, watch, charts);
    await checkAccessibility(page);
    const second = path.join(opts.out, 'dashboard-range.png');
    await page.screenshot({ path: second, fullPage: true });
    screenshots.push(second);

    await checkExports(context, page);
    watch.check();
    await context.close();
    const points = Object.fromEntries(Object.entries(charts).map(([name, c]) => [name, c.points]));
    return { ok: true, charts: points, screenshots, blocked_requests: watch.blocked };
  } finally {
    await browser.close();
  }
}

try {
  const result = await main();
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  // Playwright's own errors carry a colored call log; the first part says what went wrong.
  const message =
    err instanceof CheckError
      ? err.message
      : `${err.name}: ${String(err.message).split('\nCall log:')[0].replace(/\u001b\[[0-9;]*m/g, '').trim()}`;
  process.stdout.write(`${JSON.stringify({ ok: false, error: message })}\n`);
  process.exit(1);
}
