#!/usr/bin/env node
// End-to-end check of the DPO page in a real headless browser.
//
// Usage (after ./scripts/browser-deps, with a demo running):
//   node tests/browser/dpo.mjs --url https://127.0.0.1:8443/dpo --out DIR --name "Dana Officer"
//
// Drives /usr/bin/chromium through playwright-core (fresh profile, ignoreHTTPSErrors for the
// demo's self-signed certificate). Requests to any host other than 127.0.0.1/localhost are
// aborted and fail the run, as do console errors and uncaught page errors.
//
// DOM contract of the page:
//   * <p data-audit="verified" data-entries="N">: the audit log verified (N entries);
//   * <strong data-dpia-version>: the DPIA version;
//   * one <a download="FILE" href="/dpo/files/FILE"> per artifact (each must answer 200 with
//     a non-empty body of the right type);
//   * a sign-off <form method="post" action="/dpo/signoff"> with <input name="name">; after
//     submitting, the page shows <p role="status"> and a list [data-signoffs] naming the signer.
// Then /dpo/files/dataflow.svg must render as an SVG with its nine boxes (g[data-node]) and a
// non-empty bounding box, and /dpo/files/dpia.html must show its title.
//
// Writes DIR/dpo.html (the page as served, for the HTML validator), DIR/dpo.png,
// DIR/dpo-signed.png, DIR/dataflow.png and DIR/dpia.png. Last stdout line is JSON:
//   {"ok":true,"entries_before":N,"entries_after":M,"downloads":K,"svg_nodes":9,...}
// or {"ok":false,"error":"..."} with exit status 1. Progress goes to stderr.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const USAGE = 'usage: node tests/browser/dpo.mjs --url https://127.0.0.1:PORT/dpo --out DIR --name NAME';
const TYPES = { json: 'application/json', html: 'text/html', md: 'text/markdown', svg: 'image/svg+xml', csv: 'text/csv' };

class CheckError extends Error {}

function fail(message) {
  throw new CheckError(message);
}

function log(message) {
  process.stderr.write(`dpo: ${message}\n`);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: { url: { type: 'string' }, out: { type: 'string' }, name: { type: 'string' } },
      strict: true,
    }));
  } catch (err) {
    fail(`${err.message}\n${USAGE}`);
  }
  if (!values.url || !values.out || !values.name) fail(`--url, --out and --name are required\n${USAGE}`);
  const url = new URL(values.url);
  if (!LOCAL_HOSTS.has(url.hostname)) fail(`--url must point at 127.0.0.1 or localhost, not ${url.hostname}`);
  return { url, out: path.resolve(values.out), name: values.name };
}

async function main() {
  const opts = options();
  mkdirSync(opts.out, { recursive: true });
  const blocked = [];
  const errors = [];
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.protocol === 'data:' || LOCAL_HOSTS.has(url.hostname)) return route.continue();
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    page.on('console', (msg) => msg.type() === 'error' && errors.push(`console error: ${msg.text()}`));
    page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));

    log(`loading ${opts.url.href}`);
    const response = await page.goto(opts.url.href);
    if (!response || response.status() !== 200) fail(`GET ${opts.url.href}: ${response?.status()}`);
    writeFileSync(path.join(opts.out, 'dpo.html'), await response.text());
    const audit = page.locator('[data-audit]');
    if ((await audit.getAttribute('data-audit')) !== 'verified') fail(`audit log not verified: ${await audit.textContent()}`);
    const entriesBefore = Number(await audit.getAttribute('data-entries'));
    const version = (await page.locator('[data-dpia-version]').textContent()).trim();
    await page.screenshot({ path: path.join(opts.out, 'dpo.png'), fullPage: true });

    const links = await page.$$eval('a[download]', (as) => as.map((a) => [a.getAttribute('download'), a.href]));
    if (links.length < 7) fail(`expected at least 7 downloads, found ${links.length}`);
    for (const [file, href] of links) {
      const answer = await context.request.get(href);
      const body = await answer.body();
      const want = TYPES[file.split('.').pop()];
      const type = answer.headers()['content-type'] ?? '';
      if (answer.status() !== 200 || body.length === 0) fail(`${file}: ${answer.status()}, ${body.length} bytes`);
      if (!type.startsWith(want)) fail(`${file}: content type ${type}, expected ${want}`);
    }
    log(`${links.length} downloads answered`);

    await page.fill('input[name="name"]', opts.name);
    await Promise.all([page.waitForURL(/signed=1/), page.click('form[action="/dpo/signoff"] button[type="submit"]')]);
    const status = await page.locator('p[role="status"]').textContent();
    if (!status.includes('Sign-off recorded')) fail(`no confirmation after signing: ${status}`);
    const signoffs = await page.locator('[data-signoffs]').textContent();
    if (!signoffs.includes(opts.name) || !signoffs.includes(`DPIA version ${version}`)) {
      fail(`the sign-off list does not name ${opts.name} and version ${version}: ${signoffs}`);
    }
    const entriesAfter = Number(await page.locator('[data-audit]').getAttribute('data-entries'));
    if ((await page.locator('[data-audit]').getAttribute('data-audit')) !== 'verified' || entriesAfter <= entriesBefore) {
      fail(`after signing, the audit log shows ${entriesAfter} entries (before: ${entriesBefore})`);
    }
    await page.screenshot({ path: path.join(opts.out, 'dpo-signed.png'), fullPage: true });

    const svgUrl = new URL('/dpo/files/dataflow.svg', opts.url).href;
    await page.goto(svgUrl);
    const svg = await page.evaluate(() => {
      const root = document.documentElement;
      const box = root.getBBox();
      return { tag: root.tagName, nodes: root.querySelectorAll('g[data-node]').length, width: box.width, height: box.height };
    });
    if (svg.tag !== 'svg' || svg.nodes !== 9 || !(svg.width > 500 && svg.height > 400)) {
      fail(`dataflow.svg did not render as expected: ${JSON.stringify(svg)}`);
    }
    await page.screenshot({ path: path.join(opts.out, 'dataflow.png') });

    await page.goto(new URL('/dpo/files/dpia.html', opts.url).href);
    const title = await page.locator('h1').textContent();
    if (!title.startsWith('Data protection impact assessment')) fail(`dpia.html shows ${title}`);
    await page.screenshot({ path: path.join(opts.out, 'dpia.png') });

    if (blocked.length) fail(`requests to other hosts: ${blocked.join(', ')}`);
    if (errors.length) fail(errors.join('; '));
    await context.close();
    return {
      ok: true,
      version,
      entries_before: entriesBefore,
      entries_after: entriesAfter,
      downloads: links.length,
      svg_nodes: svg.nodes,
      screenshots: ['dpo.png', 'dpo-signed.png', 'dataflow.png', 'dpia.png'].map((f) => path.join(opts.out, f)),
    };
  } finally {
    await browser.close();
  }
}

try {
  process.stdout.write(`${JSON.stringify(await main())}\n`);
} catch (err) {
  const message =
    err instanceof CheckError ? err.message : `${err.name}: ${String(err.message).split('\nCall log:')[0].trim()}`;
  process.stdout.write(`${JSON.stringify({ ok: false, error: message })}\n`);
  process.exit(1);
}
