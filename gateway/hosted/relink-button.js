// The embeddable Reconnect button, for an app that keeps the user on its
// own page. The app includes this script from its gateway and marks a
// button with the connection and a client token its backend minted:
//
//   <script src="https://relink.example.com/r/assets/relink-button.js" async></script>
//   <button type="button" data-relink-provider="plaid" data-relink-connection="conn_1"
//     data-relink-token="…">Reconnect</button>
//
// A click runs the widget engine (engine.js, which the gateway serves
// before this file, in one function scope) for that connection, as the
// hosted page does: Plaid Link over the page, or a framed widget in an
// overlay this script makes. The button is disabled while it works, and
// tells the app what happened with events that bubble (and cross shadow
// roots), each detail naming provider and connectionId:
//
//   relink:status    {state}  opening, widget, verifying, ready, still_verifying
//   relink:repaired  {status: 'REPAIRED'}
//   relink:exit      {reason, errorCode?}  the user left the widget, or it failed
//   relink:error     {code, message, httpStatus?, retryAfter?, status?}
//
// The token is read at every call, so the app may replace an expired one
// (data-relink-token) at any time.
//
// OAuth banks with Plaid Link: the bank sends the user back to
// PLAID_REDIRECT_URI, which must then be the app's page with the button,
// with ?oauth_state_id=…, in the same tab or another of the same browser.
// When the script sees that query and a Link session a button of this
// origin kept in localStorage (engine.js: oauthKey), it finishes the
// reconnect on the button of the same provider and connection (as soon as
// the page has it, for up to 30 seconds), just as a click would have gone
// on. The API calls go to the gateway the script came from (its src, or
// data-relink-gateway on the script).

const buttonScript = document.currentScript;
const gateway = gatewayOf(buttonScript);
const flows = new WeakMap();

function gatewayOf(s) {
  if (!s) return '';
  if (s.dataset.relinkGateway) return s.dataset.relinkGateway.replace(/\/+$/, '');
  const i = s.src.lastIndexOf('/r/assets/');
  return i >= 0 ? s.src.slice(0, i) : new URL(s.src).origin;
}

// A second copy of the script on the page leaves the clicks to the first.
const loaded = Symbol.for('relink.button');
if (!window[loaded]) {
  window[loaded] = true;
  document.addEventListener('click', (e) => {
    // The button, or what it holds; in an open shadow root too.
    const el = e.composedPath().find((n) => n instanceof Element && n.hasAttribute('data-relink-connection'));
    if (!el || e.defaultPrevented) return; // the app may cancel a click
    e.preventDefault(); // a button in a form does not submit it
    run(el);
  });
}

// The bank's return: finish on the button that left for it.
const oauthReturn = relinkOAuthReturn('button');
if (oauthReturn && !window[Symbol.for('relink.button.oauth')]) {
  window[Symbol.for('relink.button.oauth')] = true;
  const find = () => Array.from(document.querySelectorAll('[data-relink-connection]')).find((el) =>
    el.getAttribute('data-relink-provider') === oauthReturn.provider && el.getAttribute('data-relink-connection') === oauthReturn.connection);
  const el = find();
  if (el) {
    run(el, oauthReturn);
  } else {
    const watch = new MutationObserver(() => { const e = find(); if (e) { watch.disconnect(); run(e, oauthReturn); } });
    watch.observe(document.documentElement, { childList: true, subtree: true });
    setTimeout(() => watch.disconnect(), 30000);
  }
}

function run(el, resumed) {
  const provider = el.getAttribute('data-relink-provider') || '';
  const connection = el.getAttribute('data-relink-connection') || '';
  let flow = flows.get(el);
  if (flow && flow.busy) return;
  if (flow && (flow.provider !== provider || flow.connection !== connection)) {
    flow.engine.destroy();
    flow = null;
  }
  if (!provider || !connection || !el.getAttribute('data-relink-token')) {
    fire(el, 'error', { provider, connectionId: connection, code: 'bad_button',
      message: 'the button needs data-relink-provider, data-relink-connection and data-relink-token' });
    return;
  }
  if (!flow) {
    flow = { el, provider, connection, busy: false, failed: false, disabled: false, refocus: false };
    flow.engine = relinkEngine({
      base: gateway, provider, connection, attempt: 0,
      token: () => el.getAttribute('data-relink-token') || '',
      keep: () => ({ via: 'button' }),
      frame: overlay(flow),
      // A redirect widget leaves the app's page; the user comes back to
      // the repair's hosted page (and from it to RELINK_RECONNECT_RETURN_URL).
      navigate: (url) => window.location.assign(url),
      emit: (step, detail) => onStep(flow, step, detail),
    });
    flows.set(el, flow);
  }
  busy(flow, true);
  if (resumed) return flow.engine.resume(resumed);
  // After a failed attempt, a new session, as the hosted page does.
  const force = flow.failed;
  flow.failed = false;
  flow.engine.start(force);
}

function onStep(flow, step, x) {
  switch (step) {
    case 'opening':
    case 'verifying':
      return fire(flow.el, 'status', detail(flow, { state: step }));
    case 'widget':
      if (x.kind === 'reconfirm') return reconfirm(flow, x.confirm);
      return fire(flow.el, 'status', detail(flow, { state: 'widget', widget: x.kind }));
    case 'ready':
      return done(flow, 'status', { state: 'ready' });
    case 'pending':
      return done(flow, 'status', { state: 'still_verifying' });
    case 'exit':
      return done(flow, 'exit', { reason: x.reason, errorCode: x.errorCode });
    case 'outcome':
      if (x.status === 'REPAIRED') return done(flow, 'repaired', { status: x.status });
      return done(flow, 'error', { code: 'repair_ended', status: x.status, message: 'the repair has ended: ' + x.status });
    case 'failed':
      flow.failed = true;
      return done(flow, 'error', { code: 'attempt_failed', message: 'the provider did not accept the sign-in; the user may try again' });
    case 'problem':
      return done(flow, 'error', problem(x));
  }
}

// problem is a relink:error's detail for what stopped the engine.
function problem(x) {
  switch (x.code) {
    case 'no_widget':
      return { code: 'no_widget', message: 'the session opens no widget this provider is known to open' };
    case 'widget_load':
      return { code: 'widget_load', message: 'Plaid Link did not load: does the page\u2019s Content-Security-Policy allow its script?' };
  }
  if (!x.status) {
    return { code: 'network', message: 'Relink at ' + (gateway || location.origin) +
      ' did not answer: the network, or this page\u2019s origin is not in the gateway\u2019s RELINK_CORS_ORIGINS' };
  }
  const error = x.error || {};
  return { code: error.code || 'http_' + x.status, message: (x.code === 'complete' ? 'complete: ' : '') + (error.message || 'HTTP ' + x.status),
    httpStatus: x.status, retryAfter: x.retryAfter };
}

function detail(flow, more) {
  const d = { provider: flow.provider, connectionId: flow.connection };
  for (const [k, v] of Object.entries(more)) if (v !== undefined) d[k] = v;
  return d;
}

function fire(el, name, d) {
  el.dispatchEvent(new CustomEvent('relink:' + name, { bubbles: true, composed: true, detail: d }));
}

// done ends a run: the button works again (before the app hears, so that
// its listener may disable or remove it), and has the focus back if a
// framed widget had taken it.
function done(flow, name, more) {
  busy(flow, false);
  if (flow.refocus) {
    flow.refocus = false;
    flow.el.focus();
  }
  fire(flow.el, name, detail(flow, more));
}

function busy(flow, on) {
  const el = flow.el;
  flow.busy = on;
  if (on) {
    flow.disabled = el.disabled;
    el.disabled = true;
    el.setAttribute('aria-busy', 'true');
  } else {
    el.disabled = flow.disabled;
    el.removeAttribute('aria-busy');
  }
}

// reconfirm asks the user, in a modal dialog over the app's page, to
// reconfirm their consent (the UK's 90-day reconfirmation); Confirm reports
// it, Cancel (or Escape) is the user leaving.
function reconfirm(flow, confirm) {
  fire(flow.el, 'status', detail(flow, { state: 'widget', widget: 'reconfirm' }));
  const make = (tag, style, attrs, text) => {
    const e = document.createElement(tag);
    Object.assign(e.style, style);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text) e.textContent = text;
    return e;
  };
  const root = make('div', { position: 'fixed', inset: '0', zIndex: '2147483647', background: 'rgba(0,0,0,.5)',
    display: 'flex', alignItems: 'center', justifyContent: 'center' }, { 'data-relink-overlay': '' });
  const box = make('div', { background: '#fff', borderRadius: '12px', padding: '1rem', width: 'min(28rem, 100vw)', boxSizing: 'border-box' },
    { role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Keep sharing your account data?' });
  const ok = make('button', { padding: '.6rem', marginRight: '.5rem' }, { type: 'button', 'data-relink-confirm': '' }, 'Confirm and keep sharing');
  const cancel = make('button', { padding: '.6rem' }, { type: 'button', 'data-relink-close': '' }, 'Cancel');
  box.append(make('h2', {}, {}, 'Keep sharing your account data?'),
    make('p', {}, {}, 'To keep your bank connected, confirm that you still want to share your account information for another 90 days. You can stop sharing at any time.'), ok, cancel);
  root.append(box);
  document.body.append(root);
  const end = () => { document.removeEventListener('keydown', onKey, true); root.remove(); };
  const leave = () => { end(); flow.engine.close(); };
  const onKey = (e) => { if (e.key === 'Escape') { e.preventDefault(); leave(); } };
  document.addEventListener('keydown', onKey, true);
  ok.addEventListener('click', () => { end(); confirm(); });
  cancel.addEventListener('click', leave);
  flow.refocus = true;
  ok.focus();
}

// overlay hosts a framed widget over the app's page: a modal dialog with
// the widget's frame and a Close button (Escape too). Styled through the
// CSSOM, which a Content-Security-Policy without 'unsafe-inline' allows.
function overlay(flow) {
  let root = null, frame = null;
  const onKey = (e) => {
    if (e.key === 'Escape') { e.preventDefault(); flow.engine.close(); }
  };
  const make = (tag, style, attrs) => {
    const e = document.createElement(tag);
    Object.assign(e.style, style);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  return {
    open(url) {
      root = make('div', { position: 'fixed', inset: '0', zIndex: '2147483647', background: 'rgba(0,0,0,.5)',
        display: 'flex', alignItems: 'center', justifyContent: 'center' }, { 'data-relink-overlay': '' });
      const box = make('div', { background: '#fff', borderRadius: '12px', padding: '.75rem', boxSizing: 'border-box',
        width: 'min(30rem, 100vw)', maxHeight: '100vh', display: 'flex', flexDirection: 'column', gap: '.5rem' },
      { role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Your bank\u2019s sign-in' });
      frame = make('iframe', { width: '100%', height: 'min(36rem, calc(100vh - 5rem))', border: '0' },
        { title: 'Your bank\u2019s sign-in', 'data-relink-frame': '' });
      frame.src = url;
      const close = make('button', { padding: '.6rem', font: 'inherit', cursor: 'pointer' }, { type: 'button', 'data-relink-close': '' });
      close.textContent = 'Close';
      close.addEventListener('click', () => flow.engine.close());
      box.append(frame, close);
      root.append(box);
      document.body.append(root);
      document.addEventListener('keydown', onKey, true);
      flow.refocus = true;
      frame.focus();
    },
    window: () => (frame ? frame.contentWindow : null),
    close() {
      if (!root) return;
      document.removeEventListener('keydown', onKey, true);
      root.remove();
      root = frame = null;
    },
  };
}
