// The sandbox's simulated widget: signs in with its session and tells the
// page that opened it, as a provider's widget does, by a message to its
// parent, addressed only to the origins that may frame it: the gateway's
// own (the hosted page) and the app's (RELINK_CORS_ORIGINS, a page with
// the embeddable button). Where the browser names the parent's origin
// (location.ancestorOrigins), to that one alone.
(() => {
  'use strict';
  const main = document.getElementById('sandbox-widget');
  const status = document.getElementById('sandbox-status');
  const allowed = [location.origin].concat((main.dataset.origins || '').split(' ').filter(Boolean));
  const parent = location.ancestorOrigins && location.ancestorOrigins[0];
  const targets = parent ? allowed.filter((o) => o === parent) : allowed;
  const tell = (msg) => {
    if (window.parent === window) return;
    for (const origin of targets) window.parent.postMessage(msg, origin);
  };
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
