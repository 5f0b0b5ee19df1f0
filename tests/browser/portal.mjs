#!/usr/bin/env node
// End-to-end check of the visitor portal in a real headless browser.
//
// Usage (after ./scripts/browser-deps, with a demo running):
//   node tests/browser/portal.mjs --url https://127.0.0.1:PORT/ --photo FACE.jpg --group GROUP.jpg
//        --contact C --ticket T --out DIR
//
// Drives /usr/bin/chromium through playwright-core (fresh profile, ignoreHTTPSErrors for the
// demo's certificate). Requests to any host other than 127.0.0.1/localhost are aborted and
// fail the run, as do console errors and uncaught page errors.
//
// Steps: the notice shows (English, then German, then English again) with its version; a
// submit without consent is refused on the page; a group photo is refused by the server
// ("more than one face"); the visitor's photo with consent, ticket and contact registers and
// the access key is shown once; "Download a copy of my data" downloads JSON naming the
// consent, the contact and the ticket; withdrawal answers that the template was erased;
// erasure (confirmed in the dialog) answers with the count of records shredded, after which
// the key is refused. Every form control has an accessible name.
//
// Writes DIR/portal.png, DIR/portal-registered.png, DIR/portal-erased.png and
// DIR/portal-export.json. Last stdout line is JSON:
//   {"ok":true,"notice_version":N,"subject":"v-...","records":3,"shredded":4,...}
// or {"ok":false,"error":"..."} with exit status 1. Progress goes to stderr.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const USAGE =
  'usage: node tests/browser/portal.mjs --url https://127.0.0.1:PORT/ --photo F --group G --contact C --ticket T --out DIR';

class CheckError extends Error {}

function fail(message) {
  throw new CheckError(message);
}

function log(message) {
  process.stderr.write(`portal: ${message}\n`);
}

function options() {
  let values;
  const names = ['url', 'photo', 'group', 'contact', 'ticket', 'out'];
  try {
    ({ values } = parseArgs({ options: Object.fromEntries(names.map((n) => [n, { type: 'string' }])), strict: true }));
  } catch (err) {
    fail(`${err.message}\n${USAGE}`);
  }
  for (const n of names) if (!values[n]) fail(`--${n} is required\n${USAGE}`);
  const url = new URL(values.url);
  if (!LOCAL_HOSTS.has(url.hostname)) fail(`--url must point at 127.0.0.1 or localhost, not ${url.hostname}`);
  return { ...values, url, out: path.resolve(values.out) };
}

async function statusText(page, id, pattern) {
  const locator = page.locator(`#${id}`);
  await locator.filter({ hasText: pattern }).waitFor({ timeout: 60_000 }).catch(async () => {
    fail(`#${id} never matched ${pattern}: "${await locator.textContent()}"`);
  });
  return locator.textContent();
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
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      acceptDownloads: true,
      viewport: { width: 900, height: 1000 },
    });
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (['data:', 'blob:'].includes(url.protocol) || LOCAL_HOSTS.has(url.hostname)) return route.continue();
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    page.on('console', (msg) => {
      // A refused request (4xx by design) is reported by Chromium as a console error.
      if (msg.type() === 'error' && !/status of 4\d\d/.test(msg.text())) errors.push(`console error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));

    log(`loading ${opts.url.href}`);
    const response = await page.goto(opts.url.href);
    if (!response || response.status() !== 200) fail(`GET ${opts.url.href}: ${response?.status()}`);
    const csp = response.headers()['content-security-policy'] ?? '';
    if (!csp.includes("default-src 'none'")) fail(`no strict CSP: ${csp}`);
    await page.locator('#notice p').first().waitFor();
    const version = Number(await page.locator('#notice-version').getAttribute('data-notice-version'));
    if (!(version > 0)) fail('no notice version shown');
    const english = await page.locator('#notice').textContent();
    if (!english.includes('explicit consent')) fail(`the English notice lacks the consent paragraph: ${english}`);
    await page.click('#lang-de');
    const german = await page.locator('#notice').textContent();
    if (!german.includes('Einwilligung') || (await page.locator('#notice').getAttribute('lang')) !== 'de') {
      fail('the German notice did not show');
    }
    await page.click('#lang-en');

    // Every control has an accessible name.
    const unnamed = await page.$$eval('input, select, button', (els) =>
      els.filter((e) => !e.labels?.length && !e.getAttribute('aria-label') && !e.textContent.trim()).map((e) => e.id),
    );
    if (unnamed.length) fail(`controls without an accessible name: ${unnamed.join(', ')}`);
    await page.screenshot({ path: path.join(opts.out, 'portal.png'), fullPage: true });

    // Without consent: refused on the page, nothing sent.
    await page.setInputFiles('#photo', opts.photo);
    await page.click('#submit');
    await statusText(page, 'register-status', /consent box/);

    // A group photo: the server refuses it.
    await page.setInputFiles('#photo', opts.group);
    await page.check('#consent');
    await page.click('#submit');
    await statusText(page, 'register-status', /more than one face/);
    log('consent and one-face rules enforced');

    // The visitor's own photo.
    await page.setInputFiles('#photo', opts.photo);
    await page.fill('#ticket', opts.ticket);
    await page.fill('#contact', opts.contact);
    await page.click('#submit');
    await statusText(page, 'register-status', /^Registered for /);
    const key = await page.locator('#access-key').getAttribute('data-access-key');
    if (!key || key.length < 43) fail(`no access key shown: ${key}`);
    await page.screenshot({ path: path.join(opts.out, 'portal-registered.png'), fullPage: true });
    log('registered');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
    writeFileSync(path.join(opts.out, 'portal-export.json'), JSON.stringify(exported, null, 2));
    const kinds = exported.records.map((r) => r.kind).join(',');
    if (kinds !== 'consent,contact,ticket') fail(`export records: ${kinds}`);
    if (exported.records[1].value !== opts.contact || exported.records[2].ticket !== opts.ticket) {
      fail('the export does not hold the contact and ticket given');
    }
    if (exported.venues[0].encrypted_template_stored_at_matcher !== true) fail('the export shows no template');
    await statusText(page, 'mine-status', /^Your data: 3 record/);

    await page.click('#withdraw');
    await statusText(page, 'mine-status', /template was erased/);

    page.once('dialog', (dialog) => dialog.accept());
    await page.click('#erase');
    const erased = await statusText(page, 'mine-status', /^Erased: /);
    const shredded = Number(/(\d+) record/.exec(erased)?.[1]);
    await page.screenshot({ path: path.join(opts.out, 'portal-erased.png'), fullPage: true });
    const after = await context.request.get(new URL('/api/v1/me', opts.url).href, {
      headers: { Authorization: `Bearer ${key}` },
    });
    if (after.status() !== 401) fail(`the erased visitor's key still answers ${after.status()}`);
    log('exported, withdrawn, erased');

    if (blocked.length) fail(`requests to other hosts: ${blocked.join(', ')}`);
    if (errors.length) fail(errors.join('; '));
    await context.close();
    return {
      ok: true,
      notice_version: version,
      subject: exported.subject,
      records: exported.records.length,
      shredded,
      screenshots: ['portal.png', 'portal-registered.png', 'portal-erased.png'].map((f) => path.join(opts.out, f)),
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
