// The widget engine: one connection's reconnect in the browser, shared by
// the hosted reconnect page (reconnect.js) and the embeddable Reconnect
// button (relink-button.js). The gateway serves each of those two with
// this file before it, in one function scope (hosted.go: bundle), so
// there is one copy of the widget logic and no global is left behind.
//
// It asks reconnect for a session, opens the widget the answer's widget
// record names (Plaid Link, or the session's URL in a frame whose messages
// the record's rules map onto complete and exit), reports the widget's
// success (complete, retried) or exit, and follows the repair to its
// outcome. It names no provider and shows nothing: its consumer shows each
// step it is told of and hosts the framed widget.

// plaidScripts are Plaid Link's scripts being loaded, by URL: one load
// for every engine of the page.
const plaidScripts = new Map();

function loadPlaid(src) {
  if (window.Plaid) return Promise.resolve();
  if (!src) return Promise.reject(new Error('no Plaid Link script'));
  if (!plaidScripts.has(src)) {
    plaidScripts.set(src, new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = resolve;
      s.onerror = () => { plaidScripts.delete(src); s.remove(); reject(new Error('Plaid Link did not load')); };
      document.head.appendChild(s);
    }));
  }
  return plaidScripts.get(src);
}

// OAuth institutions (plaid.com/docs/link/oauth): Link leaves the page
// for the bank, which sends the user back to the link token's
// redirect_uri with ?oauth_state_id=…; there Link opens again with the
// same link token and receivedRedirectUri (the whole URL), and finishes.
// While Link is away at the bank its session is kept, with what the
// consumer needs to go on (o.keep), in localStorage: the bank's redirect
// may land in another tab of the same browser (on a phone, the bank's app
// often opens it in a new one), which sessionStorage (one tab's) would
// not reach. Plaid's own OAuth example (react-plaid-link, for
// plaid.com/docs/link/oauth "Reinitializing Link") keeps the link token
// there too.
//
// One entry per provider and connection (oauthKey/provider/connection)
// rather than one shared map: each engine writes and removes only its
// own key, so two repairs going on in two tabs never overwrite each
// other's session (a map read, changed and written back by two tabs at
// once could lose one).
const oauthKey = 'relink.plaid-oauth';
// oauthTabKey (sessionStorage) names the entry this tab left with: a
// return in the same tab finishes its own session even if another tab
// has left for a bank since. A return in another tab has no such name
// and takes the most recent entry still valid: the bank's redirect
// carries only oauth_state_id, nothing that tells two sessions apart.
const oauthTabKey = 'relink.plaid-oauth.tab';
// A link token for update mode lives 30 minutes.
const oauthMaxAge = 30 * 60 * 1000;

function oauthEntryKey(provider, connection) {
  return oauthKey + '/' + encodeURIComponent(provider) + '/' + encodeURIComponent(connection);
}

// oauthStores are the storages an OAuth session may be kept in:
// localStorage, and sessionStorage where localStorage refuses it (full,
// say): then only a return in the same tab finishes, as before
// localStorage was used. A storage that is off (private modes, site data
// blocked) throws on access and is left out; with neither, nothing is
// kept and a return says to open the link again.
function oauthStores() {
  const out = [];
  for (const name of ['localStorage', 'sessionStorage']) {
    try { if (window[name]) out.push(window[name]); } catch (_) { /* storage off */ }
  }
  return out;
}

// oauthEntries are the kept OAuth sessions still valid, as {store, key,
// saved}. Reading them forgets the others: an entry past its link
// token's life (or from a clock moved by more than that) is of no use,
// and it may hold a client token, which localStorage would otherwise keep
// after the tab is closed. (The bare oauthKey is where earlier engines
// kept their one session, in sessionStorage: a return across an upgrade
// still finishes.)
function oauthEntries() {
  const found = [];
  for (const store of oauthStores()) {
    let keys = [];
    try {
      for (let i = 0; i < store.length; i++) keys.push(store.key(i));
    } catch (_) { continue; }
    for (const key of keys) {
      if (key !== oauthKey && !(key && key.startsWith(oauthKey + '/'))) continue;
      let saved = null;
      try { saved = JSON.parse(store.getItem(key)); } catch (_) { /* unreadable: forgotten below */ }
      if (!saved || typeof saved !== 'object' || !(Math.abs(Date.now() - saved.savedAt) < oauthMaxAge)) {
        try { store.removeItem(key); } catch (_) { /* storage off */ }
        continue;
      }
      found.push({ store, key, saved });
    }
  }
  return found;
}

// dropOAuth forgets the kept session under key, wherever it is kept.
function dropOAuth(key) {
  for (const store of oauthStores()) {
    try { store.removeItem(key); } catch (_) { /* storage off */ }
  }
  try {
    if (sessionStorage.getItem(oauthTabKey) === key) sessionStorage.removeItem(oauthTabKey);
  } catch (_) { /* storage off */ }
}

// relinkOAuthReturn is the kept Plaid Link session to finish when this
// page is the bank's return (oauth_state_id in the query): of the
// consumer via ('page' or 'button', what its keep() saved: an app served
// from the gateway's origin shares its storage), this tab's own if it
// left from here, else the most recent one still valid; else null. It
// forgets expired sessions on every load, return or not.
function relinkOAuthReturn(via) {
  const entries = oauthEntries();
  if (!new URLSearchParams(location.search).has('oauth_state_id')) return null;
  const usable = entries.filter((e) => e.saved.linkToken && e.saved.via === via);
  let mine = null;
  try { mine = sessionStorage.getItem(oauthTabKey); } catch (_) { /* storage off */ }
  const pick = usable.find((e) => e.key === mine) || usable.sort((a, b) => b.saved.savedAt - a.saved.savedAt)[0];
  return pick ? Object.assign({}, pick.saved, { key: pick.key }) : null;
}

// relinkEngine runs the widget of one connection. o:
//   base         the gateway's URL ('' for the page's own origin)
//   provider, connection
//   token()      the client token, read at every call (an app may replace
//                an expired one while the engine runs)
//   attempt      the repair's attempt number when known, else 0
//   frame        where a framed widget shows: { open(url), window(), close() }
//   keep()       optional: what the consumer needs back if the user
//                returns from an OAuth bank (saved with the Link session)
//   navigate(url) leaves the page for a redirect widget (location.assign)
//   emit(step, detail), the steps being:
//     opening                      the reconnect call is under way
//     widget   {kind, confirm?}     the widget is open ('plaid-link', 'frame',
//                                  'redirect': the page is being left, or
//                                  'reconfirm': show the consent and call
//                                  confirm() on the user's click)
//     exit     {why, reason, errorCode?, providerRequestId?}
//                                  the user left the widget, or it failed
//                                  (why: 'left', 'error' or 'closed')
//     verifying                    the widget's success was sent; checking
//     outcome  {status}            the repair ended (REPAIRED, EXPIRED,
//                                  UNREPAIRABLE, CANCELED)
//     failed   {attempt}           the provider refused the sign-in: the
//                                  repair waits for the user again
//     ready                        the repair waits for the user
//     pending                      still checking after ten minutes
//     problem  {code, status?, error?, retryAfter?}
//                                  it could not go on: code 'unauthorized'
//                                  (401), 'reconnect' (no session: status 0
//                                  is the network), 'no_widget' (the session
//                                  opens no widget the record has),
//                                  'widget_load' (Plaid Link did not load),
//                                  'complete' (the success was not taken);
//                                  error is the gateway's {code, message}
// It returns { start(forceNewSession), resume(saved), follow(verifying),
// close(), destroy() }; resume finishes the Link session kept
// (relinkOAuthReturn) on the bank's return.
function relinkEngine(o) {
  const api = o.base + '/v1/repairs/' + encodeURIComponent(o.provider) + '/' + encodeURIComponent(o.connection);
  let session = null, spec = null, frameOrigin = '', plaid = null, retriedExpiredToken = false;
  let polling = false, verifying = false, ended = false;
  // attemptAtComplete: a failed attempt brings the repair back to the user
  // with a higher attempt number.
  let attemptAtComplete = o.attempt || 0;
  // unsent is a widget success the gateway did not take for a reason that
  // passes (the network, an expired token): the next start sends it again
  // rather than making the user sign in once more.
  let unsent = null;
  const emit = (step, detail) => { if (!ended) o.emit(step, detail || {}); };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // spec is the provider's widget record, from the reconnect answer: the
  // widget kinds its sessions open ('plaid-link', 'frame', 'redirect',
  // 'reconfirm'), how a framed widget's messages map to complete and exit,
  // where Plaid Link loads from, and a redirect session's gateway path.
  const opens = (kind) => !!spec && Array.isArray(spec.widgets) && spec.widgets.indexOf(kind) >= 0;

  async function call(method, path, body) {
    try {
      const r = await fetch(api + path, {
        method, cache: 'no-store', credentials: 'omit',
        headers: { 'Authorization': 'Bearer ' + o.token(), 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      let json = null;
      try { json = await r.json(); } catch (_) { /* an empty answer */ }
      return { status: r.status, json, retryAfter: Number(r.headers.get('Retry-After')) || undefined };
    } catch (_) {
      return { status: 0, json: null };
    }
  }

  function problem(code, r) {
    const detail = { code };
    if (r) {
      detail.status = r.status;
      if (r.json && r.json.error) detail.error = r.json.error;
      if (r.retryAfter) detail.retryAfter = r.retryAfter;
    }
    emit('problem', detail);
  }

  async function start(forceNewSession) {
    verifying = false;
    if (unsent) return complete(unsent);
    emit('opening');
    const r = await call('POST', '/reconnect', forceNewSession ? { forceNewSession: true } : {});
    if (r.status === 401) return problem('unauthorized', r);
    if (r.status === 409) return follow(false);
    if (r.status !== 200 || !r.json) return problem('reconnect', r);
    if (r.json.connectorStatus === 'CONTINUE') return follow(false);
    session = r.json.session || {};
    spec = r.json.widget || null;
    if (session.widget === 'redirect' && opens('redirect')) return openRedirect();
    if (session.widget === 'reconfirm' && opens('reconfirm')) return openReconfirm();
    if (session.linkToken && opens('plaid-link')) return openPlaid();
    if (session.widgetUrl && opens('frame')) return openFrame();
    return problem('no_widget');
  }

  // Plaid Link ('plaid-link': Plaid directly, or a provider fronting it).
  // received: the URL the bank sent the user back to (an OAuth return),
  // and taken(), which forgets the kept session it finishes.
  async function openPlaid(received, taken) {
    try { await loadPlaid(spec.plaidLinkScript); } catch (_) {
      if (taken) taken();
      return problem('widget_load');
    }
    if (ended) return;
    emit('widget', { kind: 'plaid-link' });
    const config = {
      token: session.linkToken,
      onSuccess: (publicToken, metadata) => {
        forgetOAuth();
        complete({ connectorToken: session.connectorToken, publicToken, metadata });
      },
      onExit: (err, metadata) => {
        forgetOAuth();
        metadata = metadata || {};
        const code = err && err.error_code;
        const body = { reason: err ? 'error' : (metadata.status || 'user_exit'), errorCode: code || undefined, providerRequestId: metadata.request_id || undefined };
        report(body);
        if (plaid) { plaid.destroy(); plaid = null; }
        if (code === 'INVALID_LINK_TOKEN' && !retriedExpiredToken) {
          // The session expired while the page was open: a new one, once.
          retriedExpiredToken = true;
          return start(true);
        }
        emit('exit', Object.assign({ why: err ? 'error' : 'left' }, body));
      },
      // Link is about to leave for an OAuth bank: only then is the
      // session kept for the return (a bank without OAuth keeps nothing).
      onEvent: (name) => { if (name === 'OPEN_OAUTH') keepForOAuth(); },
    };
    if (received) {
      config.receivedRedirectUri = received;
      // Link has it now: a reload, or the same return in another tab,
      // must not finish it twice.
      taken();
      const u = new URL(location.href);
      u.searchParams.delete('oauth_state_id');
      history.replaceState(history.state, '', u.href);
    }
    plaid = window.Plaid.create(config);
    plaid.open();
  }

  // keepForOAuth saves the Link session that is leaving the page for an
  // OAuth bank (see oauthKey), in the first storage that takes it, and
  // names it as this tab's. Storage refused: no OAuth return.
  function keepForOAuth() {
    const key = oauthEntryKey(o.provider, o.connection);
    const saved = JSON.stringify(Object.assign({}, o.keep ? o.keep() : {}, {
      provider: o.provider, connection: o.connection, linkToken: session.linkToken,
      connectorToken: session.connectorToken, widget: spec, savedAt: Date.now(),
    }));
    for (const store of oauthStores()) {
      try { store.setItem(key, saved); break; } catch (_) { /* full or off: the next */ }
    }
    try { sessionStorage.setItem(oauthTabKey, key); } catch (_) { /* storage off */ }
  }

  // forgetOAuth forgets this connection's kept session once its Link
  // session is over here (success or exit): only if it is this engine's
  // link token, since another tab may have left for a bank with a session
  // of its own for the same connection. over: the repair has ended, so a
  // session of any tab is of no use.
  function forgetOAuth(over) {
    const key = oauthEntryKey(o.provider, o.connection);
    for (const store of oauthStores()) {
      try {
        const saved = JSON.parse(store.getItem(key) || 'null');
        if (saved && (over || (session && saved.linkToken === session.linkToken))) dropOAuth(key);
      } catch (_) { /* storage off, or unreadable (forgotten on the next load) */ }
    }
  }

  // resume opens Link again on the bank's return, with the session that
  // left for it (relinkOAuthReturn); Link then finishes as usual. The
  // kept session is forgotten once Link has the return, or on failing to
  // open it (the user's next try is a new session).
  function resume(saved) {
    verifying = false;
    session = { linkToken: saved.linkToken, connectorToken: saved.connectorToken };
    spec = saved.widget || null;
    const taken = () => dropOAuth(saved.key);
    if (!opens('plaid-link')) {
      taken();
      return problem('no_widget');
    }
    return openPlaid(location.href, taken);
  }

  // Widgets opened from a URL ('frame'): their outcome comes in messages,
  // accepted only from the widget's own window and origin, mapped by the
  // provider's message rules.
  function openFrame() {
    const base = o.base ? o.base + '/' : location.href;
    const url = new URL(session.widgetUrl, base);
    // Only the provider's own widget hosts (its record's, and the
    // gateway's, for the sandbox) are framed, over https (http on this
    // machine alone): a URL in a provider's answer is not trusted as
    // such, and an app's page may have no frame-src of its own.
    const allowed = (spec.frameOrigins || []).concat([new URL(base).origin]);
    const local = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
    if (!(url.protocol === 'https:' || (url.protocol === 'http:' && local)) || allowed.indexOf(url.origin) < 0) {
      return problem('no_widget');
    }
    frameOrigin = url.origin;
    o.frame.open(url.href);
    emit('widget', { kind: 'frame' });
  }

  // A provider's sign-in the browser goes to ('redirect'): through the
  // gateway's GET /r/go, which remembers the repair in a cookie of its
  // return route, where the provider sends the browser back; the return
  // completes the repair and lands on its hosted page. The page is left.
  function openRedirect() {
    if (!spec.redirectUrl) return problem('no_widget');
    emit('widget', { kind: 'redirect' });
    o.navigate(new URL(spec.redirectUrl, o.base ? o.base + '/' : location.href).href);
  }

  // A click on Relink's own page ('reconfirm', the UK's reconfirmation of
  // consent): the consumer shows what the user confirms, and confirm()
  // reports it as the session's success.
  function openReconfirm() {
    const token = session.connectorToken;
    emit('widget', { kind: 'reconfirm', confirm: () => complete({ connectorToken: token, metadata: { reconfirmed: true } }) });
  }

  // set: what JavaScript counts as true (so {} and [] are set).
  const set = (v) => v !== undefined && v !== null && v !== false && v !== 0 && v !== '';
  const field = (data, name) => (name === '.' ? data : data[name]);

  // outcome maps a message through the first rule that matches it: every
  // match field equal, every present field set. No rule: ignored.
  function outcome(data) {
    if (typeof data === 'string') { try { data = JSON.parse(data); } catch (_) { return null; } }
    if (!data || typeof data !== 'object') return null;
    const rules = Array.isArray(spec && spec.messages) ? spec.messages : [];
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

  function onMessage(e) {
    if (!session || !frameOrigin || e.origin !== frameOrigin || e.source !== o.frame.window()) return;
    const m = outcome(e.data);
    if (!m) return;
    if (m.ok) return complete(m.ok);
    report(m.exit);
    emit('exit', Object.assign({ why: m.exit.reason === 'error' ? 'error' : 'left' }, m.exit));
  }
  window.addEventListener('message', onMessage);

  // report tells the repair the user left the widget (the repair keeps
  // waiting), and closes a framed one.
  function report(body) {
    frameOrigin = '';
    o.frame.close();
    call('POST', '/exit', body);
  }

  async function complete(body) {
    unsent = null;
    frameOrigin = '';
    o.frame.close();
    verifying = true;
    emit('verifying');
    // The attempt the user finished, to tell a failed one from a wait:
    // read now (a hiccup retried), or else when the repair is seen
    // checking with the bank (follow).
    for (const wait of [0, 500, 1000]) {
      if (wait) await sleep(wait);
      const before = await call('GET', '');
      if (before.json && before.json.repair) { attemptAtComplete = before.json.repair.attempt || attemptAtComplete; break; }
    }
    // The widget's success is worth keeping: a gateway or network hiccup
    // is retried (the same completion is recorded once), not thrown away.
    let r;
    for (const wait of [0, 1000, 2000, 4000]) {
      if (wait) await sleep(wait);
      r = await call('POST', '/complete', body);
      if (r.status !== 0 && r.status !== 429 && r.status < 500) break;
    }
    if (r.status === 401 || r.status === 0 || r.status === 429 || r.status >= 500) unsent = body;
    if (r.status === 401) return problem('unauthorized', r);
    if (r.status !== 202 && r.status !== 409) return problem('complete', r);
    follow(true);
  }

  // follow reads the repair until it has an outcome (verifying: the user
  // has done their part, so a repair waiting for them again means the
  // attempt failed).
  async function follow(asVerifying) {
    verifying = asVerifying;
    if (polling) return;
    polling = true;
    const until = Date.now() + 10 * 60 * 1000;
    while (Date.now() < until && !ended) {
      const r = await call('GET', '');
      if (r.status === 401) { polling = false; return problem('unauthorized', r); }
      const st = r.json && r.json.repair && r.json.repair.status;
      if (verifying && !attemptAtComplete && (st === 'COMPLETING' || st === 'VERIFYING')) attemptAtComplete = r.json.repair.attempt || 0;
      if (st && settle(st, r.json.repair)) { polling = false; return; }
      await sleep(1500);
    }
    polling = false;
    emit('pending');
  }

  // settle tells the consumer where the repair is; it reports whether
  // that is an answer.
  function settle(status, repair) {
    switch (status) {
      case 'REPAIRED':
      case 'EXPIRED':
      case 'UNREPAIRABLE':
      case 'CANCELED':
        forgetOAuth(true);
        emit('outcome', { status });
        return true;
      case 'AWAITING_USER':
        if (verifying && attemptAtComplete && repair.attempt > attemptAtComplete) {
          verifying = false;
          emit('failed', { attempt: repair.attempt });
          return true;
        }
        if (!verifying) {
          emit('ready');
          return true;
        }
        return false;
      default:
        return false; // PENDING, COMPLETING, VERIFYING: still working
    }
  }

  return {
    start,
    resume,
    follow,
    // close is the user closing a framed widget (its host's Close).
    close() { report({ reason: 'user_closed' }); emit('exit', { why: 'closed', reason: 'user_closed' }); },
    destroy() {
      ended = true;
      window.removeEventListener('message', onMessage);
      frameOrigin = '';
      o.frame.close();
      if (plaid) { plaid.destroy(); plaid = null; }
    },
  };
}
