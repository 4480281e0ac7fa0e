// The hosted reconnect page: opens the provider's widget in update mode
// with a session from reconnect, reports success (complete) or exit, and
// follows the repair to its outcome. It acts with the client token the
// page was given, on its one connection, through the browser routes.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const page = $('page');
  const d = page.dataset;
  const api = '/v1/repairs/' + encodeURIComponent(d.provider) + '/' + encodeURIComponent(d.connection);
  const title = $('title'), message = $('message'), progress = $('progress'), button = $('reconnect');
  const widget = $('widget'), frame = $('widget-frame'), closeWidget = $('close-widget'), back = $('back');
  let session = null, frameOrigin = '', plaid = null, retriedExpiredToken = false, polling = false;
  // attemptAtComplete: a failed attempt brings the repair back to the user
  // with a higher attempt number.
  let attemptAtComplete = Number(d.attempt) || 0;
  // spec is the provider's widget record, served by the gateway from its
  // registration: the widget kinds its sessions open ('plaid-link',
  // 'frame') and how a framed widget's messages map to complete and exit.
  // The script names no provider.
  let spec = { widgets: [], messages: [] };
  try { spec = Object.assign(spec, JSON.parse(d.widget || '{}')); } catch (_) { /* none: nothing opens */ }
  const opens = (kind) => Array.isArray(spec.widgets) && spec.widgets.indexOf(kind) >= 0;

  function show(state, heading, text, o) {
    o = o || {};
    page.dataset.state = state;
    title.textContent = heading;
    message.textContent = text;
    progress.hidden = !o.busy;
    progress.setAttribute('aria-busy', o.busy ? 'true' : 'false');
    button.hidden = !o.button;
    button.disabled = false;
    if (o.buttonText) button.textContent = o.buttonText;
    widget.hidden = !o.widget;
    if (!o.widget) frame.removeAttribute('src');
    if (back) {
      back.hidden = !o.status;
      if (o.status) back.href = returnURL(o.status);
    }
    if (!o.widget) title.focus();
  }

  function returnURL(status) {
    const u = new URL(d.return, location.href);
    u.searchParams.set('status', status);
    u.searchParams.set('provider', d.provider);
    u.searchParams.set('connectionId', d.connection);
    return u.toString();
  }

  async function call(method, path, body) {
    try {
      const r = await fetch(api + path, {
        method, cache: 'no-store', credentials: 'omit',
        headers: { 'Authorization': 'Bearer ' + d.token, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      let json = null;
      try { json = await r.json(); } catch (_) { /* an empty answer */ }
      return { status: r.status, json };
    } catch (_) {
      return { status: 0, json: null };
    }
  }

  function retry(text) {
    show('ready', title.textContent, text, { button: true, buttonText: 'Try again' });
  }

  function stale() {
    show('expired', 'This page has been open a while', 'Reload it, or open the link again from your message, to carry on.', {});
  }

  async function reconnect(forceNewSession) {
    show('opening', 'Opening your bank\u2019s sign-in\u2026', 'One moment.', { busy: true });
    const r = await call('POST', '/reconnect', forceNewSession ? { forceNewSession: true } : {});
    if (r.status === 401) return stale();
    if (r.status === 409) return follow();
    if (r.status !== 200 || !r.json) return retry('Your bank isn\u2019t answering right now. Please try again in a minute.');
    if (r.json.connectorStatus === 'CONTINUE') return follow();
    session = r.json.session || {};
    if (session.linkToken && opens('plaid-link')) return openPlaid();
    if (session.widgetUrl && opens('frame')) return openFrame();
    return retry('Something went wrong opening the sign-in. Please try again.');
  }

  // Plaid Link ('plaid-link': Plaid directly, or a provider fronting it).
  function loadPlaid() {
    if (window.Plaid) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = d.plaidScript;
      s.onload = resolve;
      s.onerror = reject;
      document.head.appendChild(s);
    });
  }

  async function openPlaid() {
    try { await loadPlaid(); } catch (_) { return retry('Your bank\u2019s sign-in could not be loaded. Please try again.'); }
    show('widget', 'Sign in to your bank', 'Follow the steps in the window that opened.', { busy: true });
    plaid = window.Plaid.create({
      token: session.linkToken,
      onSuccess: (publicToken, metadata) => complete({ connectorToken: session.connectorToken, publicToken, metadata }),
      onExit: (err, metadata) => {
        metadata = metadata || {};
        const code = err && err.error_code;
        exit({ reason: err ? 'error' : (metadata.status || 'user_exit'), errorCode: code || undefined, providerRequestId: metadata.request_id || undefined });
        if (plaid) { plaid.destroy(); plaid = null; }
        if (code === 'INVALID_LINK_TOKEN' && !retriedExpiredToken) {
          // The session expired while the page was open: a new one, once.
          retriedExpiredToken = true;
          return reconnect(true);
        }
        retry(err ? 'Your bank\u2019s sign-in stopped with an error. Please try again.' : 'You left before finishing. Your connection still needs you.');
      },
    });
    plaid.open();
  }

  // Widgets opened from a URL ('frame'): their outcome comes in messages,
  // accepted only from the widget's own origin, mapped by the provider's
  // message rules.
  function openFrame() {
    frameOrigin = new URL(session.widgetUrl, location.href).origin;
    frame.src = session.widgetUrl;
    show('widget', 'Sign in to your bank', 'Sign in below. Your password goes to your bank, not to us.', { widget: true });
    frame.focus();
  }

  // set: what JavaScript counts as true (so {} and [] are set).
  const set = (v) => v !== undefined && v !== null && v !== false && v !== 0 && v !== '';
  const field = (data, name) => (name === '.' ? data : data[name]);

  // outcome maps a message through the first rule that matches it: every
  // match field equal, every present field set. No rule: ignored.
  function outcome(data) {
    if (typeof data === 'string') { try { data = JSON.parse(data); } catch (_) { return null; } }
    if (!data || typeof data !== 'object') return null;
    const rules = Array.isArray(spec.messages) ? spec.messages : [];
    for (const rule of rules) {
      const match = rule.match || {};
      if (!Object.keys(match).every((k) => data[k] === match[k])) continue;
      if (!(rule.present || []).every((k) => set(data[k]))) continue;
      if (rule.complete) return { ok: completeBody(rule.complete, data) };
      if (rule.exit) {
        const code = rule.exit.errorCode ? String(data[rule.exit.errorCode] || '').slice(0, 200) : '';
        return { exit: { reason: rule.exit.reason, errorCode: code || undefined } };
      }
    }
    return null;
  }

  function completeBody(m, data) {
    if (m.body) return data[m.body];
    let metadata = {};
    for (const name of m.metadata || []) {
      if (set(field(data, name))) { metadata = field(data, name); break; }
    }
    if (Array.isArray(m.metadataFields) && m.metadataFields.length) {
      const kept = {};
      for (const k of m.metadataFields) kept[k] = metadata[k];
      metadata = kept;
    }
    return { connectorToken: session.connectorToken, metadata };
  }

  window.addEventListener('message', (e) => {
    if (!session || !frameOrigin || e.origin !== frameOrigin || e.source !== frame.contentWindow) return;
    const o = outcome(e.data);
    if (!o) return;
    if (o.ok) return complete(o.ok);
    exit(o.exit);
    retry(o.exit.reason === 'error'
      ? 'Your bank\u2019s sign-in stopped with an error. Please try again.'
      : 'You left before finishing. Your connection still needs you.');
  });

  closeWidget.addEventListener('click', () => {
    exit({ reason: 'user_closed' });
    retry('You closed the sign-in. Your connection still needs you.');
  });

  function exit(body) {
    session = session && { ...session, closed: true };
    frameOrigin = '';
    call('POST', '/exit', body);
  }

  async function complete(body) {
    frameOrigin = '';
    show('verifying', 'Checking with your bank\u2026', 'This usually takes less than a minute. You can keep this page open.', { busy: true });
    const before = await call('GET', '');
    attemptAtComplete = (before.json && before.json.repair && before.json.repair.attempt) || attemptAtComplete;
    // The widget's success is worth keeping: a gateway or network hiccup
    // is retried (the same completion is recorded once), not thrown away.
    let r;
    for (const wait of [0, 1000, 2000, 4000]) {
      if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
      r = await call('POST', '/complete', body);
      if (r.status !== 0 && r.status !== 429 && r.status < 500) break;
    }
    if (r.status === 401) return stale();
    if (r.status !== 202 && r.status !== 409) return retry('We could not confirm your sign-in. Please try again.');
    follow();
  }

  // follow reads the repair until it has an outcome.
  async function follow() {
    if (polling) return;
    polling = true;
    const until = Date.now() + 10 * 60 * 1000;
    while (Date.now() < until) {
      const r = await call('GET', '');
      if (r.status === 401) { polling = false; return stale(); }
      const st = r.json && r.json.repair && r.json.repair.status;
      if (st && settle(st, r.json.repair)) { polling = false; return; }
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
    polling = false;
    show('verifying', 'Still checking with your bank', 'You can close this page: the app will let you know when it is done. Or check again.', { button: true, buttonText: 'Check again' });
  }

  // settle shows a status; it reports whether the page has its answer.
  function settle(status, repair) {
    switch (status) {
      case 'REPAIRED':
        show('repaired', 'Your bank is connected', 'Thanks! Your accounts will update shortly.', { status });
        return true;
      case 'EXPIRED':
        show('ended', 'This request has expired', 'The time to reconnect ran out. Go back to the app to start again.', { status });
        return true;
      case 'UNREPAIRABLE':
        show('ended', 'This connection can\u2019t be repaired here', 'Go back to the app to connect your bank again.', { status });
        return true;
      case 'CANCELED':
        show('ended', 'No longer needed', 'This request was withdrawn.', { status });
        return true;
      case 'AWAITING_USER':
        if (page.dataset.state === 'verifying' && attemptAtComplete && repair.attempt > attemptAtComplete) {
          show('failed', 'That didn\u2019t work', 'Your bank did not accept the sign-in. Please try once more.', { button: true, buttonText: 'Try again' });
          return true;
        }
        if (page.dataset.state !== 'verifying') {
          show('ready', title.textContent, message.textContent, { button: true });
          return true;
        }
        return false;
      default:
        return false; // PENDING, COMPLETING, VERIFYING: still working
    }
  }

  button.addEventListener('click', () => {
    if (page.dataset.state === 'verifying') { // "Check again"
      show('verifying', 'Checking with your bank\u2026', 'One moment.', { busy: true });
      return follow();
    }
    reconnect(page.dataset.state === 'failed');
  });
  // A repair already past the user (completed in another tab) is followed.
  if (d.status === 'COMPLETING' || d.status === 'VERIFYING') {
    show('verifying', 'Checking with your bank\u2026', 'This usually takes less than a minute.', { busy: true });
    follow();
  } else {
    show('ready', title.textContent, message.textContent, { button: true });
  }
})();
