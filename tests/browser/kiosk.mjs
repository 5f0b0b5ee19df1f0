#!/usr/bin/env node
// End-to-end check of the gate's kiosk in a real headless browser, against `passage demo`.
//
// Usage:
//   node tests/browser/kiosk.mjs --url https://127.0.0.1:PORT/ --input-key-file F --photo FACE.jpg
//        --photo2 FACE2.jpg --stranger OTHER.png --wrong-ticket CODE --qr TICKET.png
//        --visitor2 VISITOR2.jpg --ticket2 CODE2 --out DIR
//
// The visitor registers through the portal API with consent, FACE.jpg and a ticket for
// another zone (CODE); their "phone" (the portal page with only the access key entered)
// follows their gate refusals in its notices panel. Then, at kiosk /gate/arena/north-1:
//   1. the visitor's face: red (their ticket is for another area); the kiosk shows only the
//      neutral message, the phone receives the precise reason;
//   2. a second visitor (VISITOR2, registered with CODE2, a ticket for this gate's area): green;
//   3. an unregistered face (OTHER: a single face cut from a group photo): red; the phone
//      receives nothing more;
//   4. a QR ticket (TICKET.png) held up to the camera: green;
//   5. the visitor withdraws consent; their face (FACE2.jpg) is refused at the next request.
// Every state is screenshotted (DIR/kiosk-*.png, DIR/phone-refusal.png). Requests to any host other than loopback
// fail the run, as do console errors. Last stdout line is JSON: {"ok":true,...} or
// {"ok":false,"error":"..."} with exit status 1. Progress goes to stderr.

import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const NAMES = ['url', 'input-key-file', 'photo', 'photo2', 'stranger', 'wrong-ticket', 'qr', 'visitor2', 'ticket2', 'out'];

class CheckError extends Error {}
const fail = (message) => {
  throw new CheckError(message);
};
const log = (message) => process.stderr.write(`kiosk: ${message}\n`);

function options() {
  const { values } = parseArgs({ options: Object.fromEntries(NAMES.map((n) => [n, { type: 'string' }])), strict: true });
  for (const n of NAMES) if (!values[n]) fail(`--${n} is required`);
  const url = new URL(values.url);
  if (!LOCAL_HOSTS.has(url.hostname)) fail(`--url must point at loopback, not ${url.hostname}`);
  return { ...values, url, out: path.resolve(values.out) };
}

async function main() {
  const opts = options();
  mkdirSync(opts.out, { recursive: true });
  const inputKey = readFileSync(opts['input-key-file'], 'utf8').trim();
  const errors = [];
  const blocked = [];
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1024, height: 640 } });
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (LOCAL_HOSTS.has(url.hostname)) return route.continue();
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    });
    const api = context.request;
    const base = opts.url.href.replace(/\/$/, '');

    // Registrations through the portal API.
    const venues = await (await api.get(`${base}/api/v1/venues`)).json();
    const version = venues.venues[0].notice_version;
    const register = async (photo, ticket) => {
      const answer = await api.post(`${base}/api/v1/register`, {
        data: { venue: 'arena', notice_version: version, consent: true, photo: readFileSync(photo).toString('base64'), ticket },
      });
      if (answer.status() !== 201) fail(`registration: ${answer.status()} ${await answer.text()}`);
      return (await answer.json()).access_key;
    };
    const key = await register(opts.photo, opts['wrong-ticket']);
    await register(opts.visitor2, opts.ticket2);
    log('visitor registered');

    // The visitor's phone: the portal page following the visitor's refusals with the key.
    const phone = await context.newPage();
    phone.on('pageerror', (err) => errors.push(`phone page error: ${err.message}`));
    await phone.goto(`${base}/`);
    await phone.fill('#key-input', key);
    await phone.click('#notices-follow');
    await phone.waitForFunction(() => /Following/.test(document.getElementById('notices-status').textContent));
    const refusals = () => phone.locator('#notices li').count();

    // The kiosk.
    const kiosk = await context.newPage();
    kiosk.on('console', (msg) => msg.type() === 'error' && errors.push(`console error: ${msg.text()}`));
    kiosk.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
    const response = await kiosk.goto(`${base}/gate/arena/north-1`);
    if (!response || response.status() !== 200) fail(`kiosk page: ${response?.status()}`);
    await kiosk.waitForSelector('body.idle[data-seq]');
    if ((await kiosk.getAttribute('#sign', 'role')) !== 'status') fail('the sign is not a status region');
    if ((await kiosk.getAttribute('#msg-de', 'lang')) !== 'de') fail('the German message is not marked as German');
    await kiosk.screenshot({ path: path.join(opts.out, 'kiosk-idle.png') });

    const post = async (what, body, contentType) => {
      const answer = await api.post(`${base}/gate/arena/north-1/${what}`, {
        headers: { Authorization: `Bearer ${inputKey}`, 'Content-Type': contentType },
        data: body,
      });
      if (answer.status() !== 200) fail(`${what}: ${answer.status()} ${await answer.text()}`);
      return answer.json();
    };
    const frame = (file) => post('frame', readFileSync(file), file.endsWith('.png') ? 'image/png' : 'image/jpeg');
    const shows = async (state, shot) => {
      await kiosk.waitForSelector(`body.${state}`, { timeout: 10_000 });
      await kiosk.screenshot({ path: path.join(opts.out, shot) });
      return kiosk.locator('#kiosk').innerText();
    };
    const idle = () => kiosk.waitForSelector('body.idle', { timeout: 15_000 });

    // 1. The registered visitor, ticket for another area: red, reason on the phone only.
    const first = await frame(opts.photo);
    if (first.decision !== 'red' || first.reason !== 'ticket_wrong_gate') fail(`own face: ${JSON.stringify(first)}`);
    const redText = await shows('red', 'kiosk-red.png');
    if (/ticket is for another|anderen Eingang/.test(redText)) fail(`the kiosk shows the personal reason: ${redText}`);
    if (!/Not admitted here/.test(redText) || !/Kein Zutritt hier/.test(redText)) fail(`kiosk text: ${redText}`);
    const notice = phone.locator('#notices li').first();
    await notice.waitFor({ timeout: 10_000 });
    const noticeText = await notice.innerText();
    if ((await notice.getAttribute('data-reason')) !== 'ticket_wrong_gate' || !/another entrance/.test(noticeText)) {
      fail(`notice: ${noticeText}`);
    }
    await phone.screenshot({ path: path.join(opts.out, 'phone-refusal.png'), fullPage: true });
    log('red with the reason on the phone only');
    await idle();

    // 2. A second registered visitor whose ticket is for this gate's area: green by face.
    const welcome = await frame(opts.visitor2);
    if (welcome.decision !== 'green' || welcome.via !== 'face') fail(`registered face, valid ticket: ${JSON.stringify(welcome)}`);
    const welcomeText = await shows('green', 'kiosk-green-face.png');
    if (!/Go ahead/.test(welcomeText)) fail(`kiosk text: ${welcomeText}`);
    log('registered face with a valid ticket: green');
    await idle();

    // 3. An unregistered face: red; nobody's phone hears of it.
    const stranger = await frame(opts.stranger);
    if (stranger.decision !== 'red' || stranger.reason !== 'not_recognised') fail(`stranger: ${JSON.stringify(stranger)}`);
    await shows('red', 'kiosk-stranger.png');
    await idle();

    // 4. A QR ticket held up to the camera: green.
    const qr = await post('frame', readFileSync(opts.qr), 'image/png');
    if (qr.decision !== 'green' || qr.via !== 'ticket') fail(`QR ticket: ${JSON.stringify(qr)}`);
    const greenText = await shows('green', 'kiosk-green.png');
    if (!/Go ahead/.test(greenText) || !/Eintreten/.test(greenText)) fail(`kiosk text: ${greenText}`);
    log('QR ticket: green');
    await idle();

    // 5. Withdrawal: refused at the very next request (a new approach: past the window).
    const withdrawn = await api.post(`${base}/api/v1/me/withdraw`, {
      headers: { Authorization: `Bearer ${key}` },
      data: { venue: 'arena' },
    });
    if (withdrawn.status() !== 200) fail(`withdraw: ${withdrawn.status()}`);
    await new Promise((r) => setTimeout(r, 11_000));
    const after = await frame(opts.photo2);
    if (after.decision !== 'red' || !['not_recognised', 'consent_withdrawn'].includes(after.reason)) {
      fail(`after withdrawal: ${JSON.stringify(after)}`);
    }
    await shows('red', 'kiosk-withdrawn.png');
    const received = await refusals();
    if (received !== 1) fail(`the phone received ${received} notices, expected only its own one`);
    if (errors.length) fail(errors.join('\n'));
    if (blocked.length) fail(`requests off loopback: ${blocked.join(', ')}`);
    console.log(JSON.stringify({ ok: true, own: first.reason, second: welcome.reason, stranger: stranger.reason, qr: qr.reason, after: after.reason }));
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  if (!(err instanceof CheckError)) process.stderr.write(`${err.stack}\n`);
  console.log(JSON.stringify({ ok: false, error: err.message }));
  process.exit(1);
});
