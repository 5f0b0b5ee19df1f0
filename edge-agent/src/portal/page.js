// The visitor portal: notice, consent, photo (upload or camera), registration, and the
// visitor's own export, withdrawal, erasure and gate-refusal notices with their access key.
// No third-party code; talks only to this origin.
'use strict';

const $ = (id) => document.getElementById(id);
let venues = [];
let lang = 'en';
let photoBlob = null;
let stream = null;
let following = null;

function status(el, text, ok) {
  el.textContent = text;
  el.className = ok === undefined ? '' : ok ? 'ok' : 'bad';
}

function currentVenue() {
  return venues.find((v) => v.id === $('venue').value);
}

function showNotice() {
  const venue = currentVenue();
  const notice = $('notice');
  notice.replaceChildren();
  if (!venue) return;
  const text = venue.notice[lang];
  const h = document.createElement('h3');
  h.textContent = text.title;
  notice.append(h);
  for (const paragraph of text.paragraphs) {
    const p = document.createElement('p');
    p.textContent = paragraph;
    notice.append(p);
  }
  notice.lang = lang;
  $('notice-version').textContent = String(venue.notice_version);
  $('notice-version').dataset.noticeVersion = String(venue.notice_version);
  $('consent').checked = false;
}

function setLang(next) {
  lang = next;
  $('lang-en').setAttribute('aria-pressed', String(next === 'en'));
  $('lang-de').setAttribute('aria-pressed', String(next === 'de'));
  showNotice();
}

async function loadVenues() {
  const response = await fetch('/api/v1/venues', { cache: 'no-store' });
  const body = await response.json();
  venues = body.venues;
  const select = $('venue');
  for (const v of venues) {
    const option = document.createElement('option');
    option.value = v.id;
    option.textContent = v.name;
    select.append(option);
  }
  showNotice();
  if (!body.face_models) {
    status($('register-status'), 'Face registration is not available here right now. Your ticket works at every gate.', false);
    $('submit').disabled = true;
  }
}

function blobToBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(',', 2)[1] || '');
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function preview(blob) {
  const img = $('preview');
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
}

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user' }, audio: false });
  } catch (err) {
    status($('register-status'), `The camera is not available (${err.name}); upload a photo instead.`, false);
    return;
  }
  const video = $('camera');
  video.srcObject = stream;
  video.hidden = false;
  $('camera-take').hidden = false;
  await video.play();
}

function takePhoto() {
  const video = $('camera');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    photoBlob = blob;
    preview(blob);
  }, 'image/jpeg', 0.92);
  for (const track of stream ? stream.getTracks() : []) track.stop();
  video.hidden = true;
  $('camera-take').hidden = true;
}

async function register(event) {
  event.preventDefault();
  const out = $('register-status');
  const venue = currentVenue();
  if (!venue) return status(out, 'Choose a venue.', false);
  if (!$('consent').checked) return status(out, 'Tick the consent box to register (or simply use your ticket).', false);
  if (!photoBlob) return status(out, 'Add a photo of your face.', false);
  status(out, 'Registering…');
  $('submit').disabled = true;
  try {
    const headers = { 'Content-Type': 'application/json' };
    const key = $('key-input').value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch('/api/v1/register', {
      method: 'POST',
      headers,
      body: JSON.stringify({
        venue: venue.id,
        notice_version: venue.notice_version,
        consent: true,
        photo: await blobToBase64(photoBlob),
        ticket: $('ticket').value,
        contact: $('contact').value,
      }),
    });
    const body = await response.json();
    if (!response.ok) return status(out, body.error || `Registration failed (${response.status}).`, false);
    status(out, `Registered for ${venue.name}. You can now walk through its gates.`, true);
    if (body.access_key) {
      $('access-key').textContent = body.access_key;
      $('access-key').dataset.accessKey = body.access_key;
      $('key-section').hidden = false;
      $('key-input').value = body.access_key;
    }
  } catch (err) {
    status(out, `Registration failed: ${err.message}`, false);
  } finally {
    $('submit').disabled = false;
  }
}

async function mine(path, method, body) {
  const out = $('mine-status');
  const key = $('key-input').value.trim();
  if (!key) {
    status(out, 'Enter your access key.', false);
    return null;
  }
  const init = { method, headers: { Authorization: `Bearer ${key}` } };
  if (body) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const json = await response.json();
  if (!response.ok) {
    status(out, json.error || `Failed (${response.status}).`, false);
    return null;
  }
  return json;
}

async function exportData() {
  const data = await mine('/api/v1/me', 'GET');
  if (!data) return;
  const text = JSON.stringify(data, null, 2);
  const view = $('export-view');
  view.textContent = text;
  view.hidden = false;
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  link.download = 'passage-my-data.json';
  link.click();
  status($('mine-status'), `Your data: ${data.records.length} record(s), ${data.history.length} logged event(s).`, true);
}

async function withdraw() {
  const venue = currentVenue();
  const data = await mine('/api/v1/me/withdraw', 'POST', { venue: venue ? venue.id : '' });
  if (data) status($('mine-status'), 'Consent withdrawn: your template was erased and the gates no longer recognise you. Your ticket still works.', true);
}

async function erase() {
  if (!window.confirm('Erase everything? Your registration and this key stop working.')) return;
  const data = await mine('/api/v1/me/erase', 'POST');
  if (data) {
    status($('mine-status'), `Erased: ${data.templates_erased} template(s), ${data.records_shredded} record(s). Your access key no longer works.`, true);
    $('export-view').hidden = true;
  }
}

function showRefusal(notice) {
  const item = document.createElement('li');
  item.dataset.reason = notice.reason;
  const when = new Date(notice.at * 1000);
  const time = document.createElement('time');
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleString(lang === 'de' ? 'de-DE' : 'en-GB');
  const venue = venues.find((v) => v.id === notice.venue);
  const where = document.createElement('span');
  where.textContent = ` ${venue ? venue.name : notice.venue}, gate ${notice.gate}: `;
  const reason = document.createElement('span');
  reason.lang = lang;
  reason.textContent = notice[lang] || notice.en;
  item.append(time, where, reason);
  $('notices').prepend(item);
}

// The notice stream needs the access key in a header, which EventSource cannot send: read the
// server-sent events from a fetch body instead.
async function followRefusals() {
  const out = $('notices-status');
  const key = $('key-input').value.trim();
  if (!key) return status(out, 'Enter your access key above.', false);
  if (following) following.abort();
  const controller = new AbortController();
  following = controller;
  $('notices').replaceChildren();
  try {
    const response = await fetch('/api/v1/me/notices', {
      headers: { Authorization: `Bearer ${key}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      return status(out, body.error || `Failed (${response.status}).`, false);
    }
    status(out, 'Following: a refusal at a gate appears here at once.', true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const lines = buffered.slice(0, end).split('\n');
        buffered = buffered.slice(end + 2);
        const event = (lines.find((l) => l.startsWith('event:')) || '').slice(6).trim();
        const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('\n');
        if (event === 'notice' && data) showRefusal(JSON.parse(data));
      }
    }
    status(out, 'The connection closed; follow again to reconnect.', false);
  } catch (err) {
    if (err.name !== 'AbortError') status(out, `Refusals cannot be followed: ${err.message}`, false);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('venue').addEventListener('change', showNotice);
  $('lang-en').addEventListener('click', () => setLang('en'));
  $('lang-de').addEventListener('click', () => setLang('de'));
  $('photo').addEventListener('change', () => {
    const file = $('photo').files[0];
    photoBlob = file || null;
    if (file) preview(file);
  });
  $('camera-start').addEventListener('click', startCamera);
  $('camera-take').addEventListener('click', takePhoto);
  $('register-form').addEventListener('submit', register);
  $('export').addEventListener('click', exportData);
  $('withdraw').addEventListener('click', withdraw);
  $('erase').addEventListener('click', erase);
  $('notices-follow').addEventListener('click', followRefusals);
  loadVenues().catch((err) => status($('register-status'), `The page could not load: ${err.message}`, false));
});
