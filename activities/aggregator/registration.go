package aggregator

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"time"
)

// Registration is everything Relink needs to know of one adapter, in one
// record its package exports (quiltt.Registration, …): its name, its
// settings, how to build its API client and its webhook receiver, and
// what the hosted reconnect page needs to run its widget. Package
// activities/providers lists the registrations; config, app and the
// gateway read that list and name no provider.
type Registration struct {
	// Name is the provider's path segment, workflow id part and search
	// attribute value ("quiltt"): lower case, [a-z0-9_-].
	Name string
	// NewSettings returns a new zero settings struct (a pointer), whose
	// fields carry go-envconfig `env:` tags; package config loads it from
	// the environment with the rest of the configuration.
	NewSettings func() Settings
	// NewProvider builds the adapter from its loaded settings, when they
	// enable it (Settings.Enabled).
	NewProvider func(s Settings, env Env) (Provider, error)
	// NewReceiver builds the verifier of the provider's webhooks
	// (POST /webhooks/{Name}) from its settings.
	NewReceiver func(s Settings, env Env) (WebhookReceiver, error)
	// Supplied: the process supplies the provider itself rather than
	// building it from settings (the sandbox, which the dev stack's worker
	// and gateway share); it is enabled exactly when supplied.
	Supplied bool
	// Browser is what the hosted reconnect page and the embeddable
	// Reconnect button need for the provider's widget.
	Browser Browser
	// ReconcileRate is the default pace of a reconciliation sweep's calls
	// to the provider, per second, for all workers together: below the
	// provider's documented rate limit, leaving room for the app's own
	// calls. RELINK_RECONCILE_RATE overrides it.
	ReconcileRate float64
}

// Settings are one adapter's settings: a pointer to a struct whose fields
// carry go-envconfig `env:` tags (variable names and defaults).
type Settings interface {
	// Enabled reports whether the settings turn the provider on.
	Enabled() bool
	// Validate reports settings that are wrong or do not go together;
	// it is called whether or not they enable the provider.
	Validate() error
	// Describe says what each variable is for, by name, for the
	// README's configuration table (Markdown, one line each).
	Describe() map[string]string
}

// SecretsInTemporal is implemented by the settings of an adapter that
// keeps the app's secrets in Temporal (a checkpoint of tokens not yet
// delivered): such a provider is enabled only with RELINK_PAYLOAD_KEYS,
// so they are never there in clear. Why says which secrets, for the
// refusal.
type SecretsInTemporal interface {
	SecretsInTemporal() (why string)
}

// Env is what an adapter's constructors get besides its settings: what
// every provider shares.
type Env struct {
	// HTTP is the client for the provider's API (with a timeout).
	HTTP *http.Client
	// WebhookTolerance is how old a webhook's signed time may be
	// (RELINK_WEBHOOK_TOLERANCE).
	WebhookTolerance time.Duration
	// PublicURL is where the gateway is reachable (RELINK_PUBLIC_URL).
	PublicURL string
	Now       func() time.Time
	Logger    *slog.Logger
}

// Widget kinds the widget engine (gateway/hosted/engine.js, behind the
// hosted reconnect page and the embeddable button) can run. A provider
// whose widget is one of these needs no change to the engine.
const (
	// WidgetPlaidLink: Plaid Link, opened with the session's LinkToken
	// (Plaid.create); its onSuccess completes, its onExit exits. The page
	// loads its script from RELINK_PLAID_LINK_SCRIPT_URL.
	WidgetPlaidLink = "plaid-link"
	// WidgetFrame: the session's WidgetURL in a frame; the widget's
	// messages (from the frame's own origin only) are mapped by
	// Browser.Messages.
	WidgetFrame = "frame"
	// WidgetRedirect: the browser goes to the session's WidgetURL (the
	// provider's sign-in, TrueLayer's user_input_link) and comes back on
	// the gateway's return route (GET /r/return/{provider}), which binds
	// the return to the repair and completes it with the returned code.
	// The page goes through the gateway's GET /r/go/{ticket} first, which
	// remembers, in the browser, which repair the return belongs to.
	WidgetRedirect = "redirect"
	// WidgetReconfirm: nothing to open at the provider: the user confirms,
	// on Relink's page, that they keep sharing their data (the UK's
	// reconfirmation of consent); the click completes the session.
	WidgetReconfirm = "reconfirm"
)

// Browser is what a browser needs to run a provider's widget. The gateway
// answers it with every reconnect session (the widget record the hosted
// page and the embeddable button read) and builds the hosted page's
// Content-Security-Policy from it.
type Browser struct {
	// Widgets are the kinds of widget the provider's sessions open:
	// WidgetPlaidLink for a session with a LinkToken, WidgetFrame or
	// WidgetRedirect for one with a WidgetURL, WidgetReconfirm for one
	// whose Widget says so.
	Widgets []string `json:"widgets"`
	// RedirectOrigins are the origins a WidgetRedirect session's URL may
	// lead to (the gateway's GET /r/go refuses any other).
	RedirectOrigins []string `json:"-"`
	// FrameOrigins are the origins the widget's frames come from (the
	// WidgetURL's hosts, production and sandbox).
	FrameOrigins []string `json:"-"`
	// ConnectOrigins are the origins the widget's script calls from the
	// page (Plaid Link's API hosts).
	ConnectOrigins []string `json:"-"`
	// Messages map a framed widget's messages onto the page's complete
	// and exit calls; the first rule that matches a message applies, and
	// a message no rule matches is ignored.
	Messages []MessageRule `json:"messages,omitempty"`
}

// Has reports whether the provider's sessions may open a widget of kind.
func (b Browser) Has(kind string) bool {
	for _, w := range b.Widgets {
		if w == kind {
			return true
		}
	}
	return false
}

// MessageRule maps one kind of message from a framed widget. A message (a
// JSON object, or a string holding one) matches when each Match field
// equals the message's field of that name and each Present field is set
// (neither absent, null, false, 0 nor "").
type MessageRule struct {
	Match   map[string]any `json:"match"`
	Present []string       `json:"present,omitempty"`
	// Exactly one of Complete and Exit.
	Complete *CompleteMapping `json:"complete,omitempty"`
	Exit     *ExitMapping     `json:"exit,omitempty"`
}

// CompleteMapping says how a success message becomes the complete call's
// body.
type CompleteMapping struct {
	// Body, if set, names the message's field that is the whole body
	// (connectorToken and the rest: the sandbox's widget sends it).
	// Otherwise the body is the session's connectorToken and the
	// metadata below.
	Body string `json:"body,omitempty"`
	// Metadata names the fields to take the metadata from, the first one
	// set winning; "." is the message itself. None set: {}.
	Metadata []string `json:"metadata,omitempty"`
	// MetadataFields, if set, keeps only these fields of the metadata.
	MetadataFields []string `json:"metadataFields,omitempty"`
}

// ExitMapping says how a message becomes the exit call's body.
type ExitMapping struct {
	// Reason is the exit's reason ("user_exit", "error").
	Reason string `json:"reason"`
	// ErrorCode, if set, names the message's field whose text (at most
	// 200 characters) is the exit's errorCode.
	ErrorCode string `json:"errorCode,omitempty"`
}

// Check reports a registration that cannot work: no name, a missing
// constructor, or a browser record the page cannot run.
func (r Registration) Check() error {
	var errs []error
	if !validName(r.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1 to 32 of [a-z0-9_-]", r.Name))
	}
	if r.NewSettings == nil || r.NewReceiver == nil || (r.NewProvider == nil && !r.Supplied) {
		errs = append(errs, errors.New("NewSettings, NewReceiver and NewProvider (unless Supplied) are required"))
	} else if s := r.NewSettings(); s == nil || reflect.TypeOf(s).Kind() != reflect.Pointer || reflect.TypeOf(s).Elem().Kind() != reflect.Struct {
		errs = append(errs, errors.New("NewSettings must return a pointer to a struct"))
	}
	if len(r.Browser.Widgets) == 0 {
		errs = append(errs, errors.New("Browser.Widgets: name at least one widget kind"))
	}
	for _, w := range r.Browser.Widgets {
		if w != WidgetPlaidLink && w != WidgetFrame && w != WidgetRedirect && w != WidgetReconfirm {
			errs = append(errs, fmt.Errorf("Browser.Widgets: unknown widget kind %q", w))
		}
	}
	if r.Browser.Has(WidgetFrame) && len(r.Browser.Messages) == 0 {
		errs = append(errs, errors.New("Browser.Messages: a framed widget needs its messages mapped"))
	}
	if r.Browser.Has(WidgetRedirect) && len(r.Browser.RedirectOrigins) == 0 {
		errs = append(errs, errors.New("Browser.RedirectOrigins: a redirect widget needs the origins it may send the browser to"))
	}
	for i, m := range r.Browser.Messages {
		if len(m.Match) == 0 || (m.Complete == nil) == (m.Exit == nil) {
			errs = append(errs, fmt.Errorf("Browser.Messages[%d]: needs Match and exactly one of Complete and Exit", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("provider registration %q: %w", r.Name, err)
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
