// The kiosk: follows the gate's state over server-sent events and shows it full screen.
// It shows no name, no face and no personal reason: only green or red and a neutral message.
'use strict';

const WORDS = {
  idle: { en: 'Welcome', de: 'Willkommen', symbol: '' },
  green: { en: 'Go ahead', de: 'Eintreten', symbol: '✓' },
  red: { en: 'Stop', de: 'Halt', symbol: '✕' },
};

function show(state) {
  const words = WORDS[state.state] || WORDS.idle;
  document.body.className = state.state;
  document.getElementById('symbol').textContent = words.symbol;
  document.getElementById('state-en').textContent = words.en;
  document.getElementById('state-de').textContent = words.de;
  document.getElementById('msg-en').textContent = state.en;
  document.getElementById('msg-de').textContent = state.de;
  document.body.dataset.seq = String(state.seq);
}

function connect() {
  const link = document.getElementById('link');
  const source = new EventSource(location.pathname.replace(/\/$/, '') + '/events');
  source.addEventListener('state', (event) => {
    link.textContent = '';
    show(JSON.parse(event.data));
  });
  source.onerror = () => {
    // Never keep a green on screen without a live connection.
    show({ seq: -1, state: 'red', en: 'Gate offline. Please ask staff.', de: 'Eingang offline. Bitte Personal fragen.' });
    link.textContent = 'Reconnecting… / Verbindung wird hergestellt…';
  };
}

connect();
