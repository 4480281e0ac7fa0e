// The sandbox's simulated widget: signs in with its session and tells the
// page that opened it, as a provider's widget does, by a message to its
// parent, addressed to the gateway's own origin only.
(() => {
  'use strict';
  const main = document.getElementById('sandbox-widget');
  const status = document.getElementById('sandbox-status');
  const tell = (msg) => { if (window.parent !== window) window.parent.postMessage(msg, location.origin); };
  document.getElementById('sandbox-sign-in').addEventListener('click', async () => {
    status.textContent = 'Signing in\u2026';
    const r = await fetch('/sandbox/widget/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, cache: 'no-store',
      body: JSON.stringify({ connectionId: main.dataset.connection, session: main.dataset.session }),
    });
    if (!r.ok) { status.textContent = 'The bank refused the sign-in (' + r.status + ').'; return; }
    status.textContent = 'Signed in.';
    tell({ type: 'relink-sandbox/success', login: await r.json() });
  });
  document.getElementById('sandbox-cancel').addEventListener('click', () => tell({ type: 'relink-sandbox/exit' }));
})();
