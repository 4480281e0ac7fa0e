// The hosted reconnect page: what the user sees of the widget engine
// (engine.js, which the gateway serves before this file, in one function
// scope), which opens the provider's widget in update mode with a session
// from reconnect, reports success (complete) or exit, and follows the
// repair to its outcome. It acts with the client token the page was
// given, on its one connection, through the browser routes.
const $ = (id) => document.getElementById(id);
const page = $('page');
const d = page.dataset;
const title = $('title'), message = $('message'), progress = $('progress'), button = $('reconnect');
const widget = $('widget'), frame = $('widget-frame'), closeWidget = $('close-widget'), back = $('back');

// The bank's return (GET /r/oauth, the hosted page's PLAID_REDIRECT_URI),
// in this tab or another of the same browser: the page that left for the
// bank kept its connection and client token with the Link session, in
// this origin's localStorage (engine.js: oauthKey).
// (Read on every load: it also forgets kept sessions past their life.)
const kept = relinkOAuthReturn('page');
const oauth = d.state === 'oauth' ? kept : null;
if (oauth) {
  d.provider = oauth.provider;
  d.connection = oauth.connection;
  d.token = oauth.token || '';
  d.attempt = oauth.attempt || '';
  if (oauth.title) title.textContent = oauth.title;
  if (oauth.button) button.textContent = oauth.button;
}

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

function retry(text) {
  show('ready', title.textContent, text, { button: true, buttonText: 'Try again' });
}

function stale() {
  show('expired', 'This page has been open a while', 'Reload it, or open the link again from your message, to carry on.', {});
}

const exits = {
  error: 'Your bank\u2019s sign-in stopped with an error. Please try again.',
  left: 'You left before finishing. Your connection still needs you.',
  closed: 'You closed the sign-in. Your connection still needs you.',
};

const problems = {
  reconnect: 'Your bank isn\u2019t answering right now. Please try again in a minute.',
  no_widget: 'Something went wrong opening the sign-in. Please try again.',
  widget_load: 'Your bank\u2019s sign-in could not be loaded. Please try again.',
  complete: 'We could not confirm your sign-in. Please try again.',
};

const outcomes = {
  REPAIRED: ['repaired', 'Your bank is connected', 'Thanks! Your accounts will update shortly.'],
  EXPIRED: ['ended', 'This request has expired', 'The time to reconnect ran out. Go back to the app to start again.'],
  UNREPAIRABLE: ['ended', 'This connection can\u2019t be repaired here', 'Go back to the app to connect your bank again.'],
  CANCELED: ['ended', 'No longer needed', 'This request was withdrawn.'],
};

const steps = {
  opening: () => show('opening', 'Opening your bank\u2019s sign-in\u2026', 'One moment.', { busy: true }),
  widget: (x) => {
    if (x.kind === 'redirect') return show('widget', 'Taking you to your bank\u2026', 'You will come back here when you are done.', { busy: true });
    if (x.kind === 'reconfirm') {
      confirmConsent = x.confirm;
      return show('reconfirm', 'Keep sharing your account data?',
        'To keep your bank connected, confirm that you still want to share your account information (balances, transactions and account details) for another 90 days. You can stop sharing at any time in the app.',
        { button: true, buttonText: 'Confirm and keep sharing' });
    }
    if (x.kind !== 'frame') return show('widget', 'Sign in to your bank', 'Follow the steps in the window that opened.', { busy: true });
    show('widget', 'Sign in to your bank', 'Sign in below. Your password goes to your bank, not to us.', { widget: true });
    frame.focus();
  },
  exit: (x) => retry(exits[x.why]),
  verifying: () => show('verifying', 'Checking with your bank\u2026', 'This usually takes less than a minute. You can keep this page open.', { busy: true }),
  outcome: (x) => {
    const [state, heading, text] = outcomes[x.status];
    show(state, heading, text, { status: x.status });
  },
  failed: () => show('failed', 'That didn\u2019t work', 'Your bank did not accept the sign-in. Please try once more.', { button: true, buttonText: 'Try again' }),
  ready: () => show('ready', title.textContent, message.textContent, { button: true }),
  pending: () => show('verifying', 'Still checking with your bank', 'You can close this page: the app will let you know when it is done. Or check again.', { button: true, buttonText: 'Check again' }),
  problem: (x) => (x.code === 'unauthorized' ? stale() : retry(problems[x.code])),
};

// confirmConsent reports the user's reconfirmation (a 'reconfirm' session).
let confirmConsent = null;

const engine = relinkEngine({
  base: '', provider: d.provider, connection: d.connection, attempt: Number(d.attempt) || 0,
  navigate: (url) => location.assign(url),
  // Read at every call: a page whose token has expired says so (stale).
  token: () => d.token,
  keep: () => ({ via: 'page', token: d.token, attempt: d.attempt, title: title.textContent, button: button.textContent }),
  frame: { open: (url) => { frame.src = url; }, window: () => frame.contentWindow, close: () => frame.removeAttribute('src') },
  emit: (step, detail) => steps[step](detail),
});

closeWidget.addEventListener('click', () => engine.close());
button.addEventListener('click', () => {
  if (page.dataset.state === 'reconfirm' && confirmConsent) {
    const confirm = confirmConsent;
    confirmConsent = null;
    return confirm();
  }
  if (page.dataset.state === 'verifying') { // "Check again"
    show('verifying', 'Checking with your bank\u2026', 'One moment.', { busy: true });
    return engine.follow(true);
  }
  engine.start(page.dataset.state === 'failed');
});
if (d.state === 'oauth') {
  if (oauth) {
    show('opening', 'Finishing with your bank\u2026', 'One moment.', { busy: true });
    engine.resume(oauth);
  } else {
    // Another browser, a session long gone or already finished, or
    // storage off: the link starts afresh.
    show('expired', 'We couldn\u2019t finish here', 'Open the link from your message again to reconnect your bank.', {});
  }
} else if (d.status === 'COMPLETING' || d.status === 'VERIFYING') {
  // A repair already past the user (completed in another tab) is followed.
  show('verifying', 'Checking with your bank\u2026', 'This usually takes less than a minute.', { busy: true });
  engine.follow(true);
} else {
  show('ready', title.textContent, message.textContent, { button: true });
}
