package mx

import (
	"errors"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// minWebhookPassword is the shortest webhook password accepted: the
// credentials are all that tells MX's webhooks from anyone's.
const minWebhookPassword = 16

// Settings are MX's settings; MX_CLIENT_ID and MX_API_KEY enable it, and
// then the webhook credentials MX is given are required.
type Settings struct {
	ClientID string `env:"MX_CLIENT_ID"`
	APIKey   string `env:"MX_API_KEY"`
	APIURL   string `env:"MX_API_URL, default=https://api.mx.com"`
	// WebhookUsername and WebhookPassword are the HTTP basic credentials
	// given to MX for the webhook URL: MX authenticates its webhooks with
	// them and signs nothing.
	WebhookUsername string        `env:"MX_WEBHOOK_USERNAME"`
	WebhookPassword string        `env:"MX_WEBHOOK_PASSWORD"`
	DedupeWindow    time.Duration `env:"MX_WEBHOOK_DEDUPE_WINDOW, default=10m"`
}

// Enabled implements aggregator.Settings.
func (s *Settings) Enabled() bool { return s.ClientID != "" }

// Validate implements aggregator.Settings.
func (s *Settings) Validate() error {
	var errs []error
	if (s.ClientID == "") != (s.APIKey == "") {
		errs = append(errs, errors.New("MX_CLIENT_ID and MX_API_KEY go together"))
	}
	if s.Enabled() && (s.WebhookUsername == "" || s.WebhookPassword == "") {
		errs = append(errs, errors.New("MX_WEBHOOK_USERNAME and MX_WEBHOOK_PASSWORD are required with MX: MX authenticates its webhooks with them"))
	}
	if s.WebhookPassword != "" && len(s.WebhookPassword) < minWebhookPassword {
		errs = append(errs, errors.New("MX_WEBHOOK_PASSWORD: use at least 16 random characters (relink keygen -kind api-key makes one)"))
	}
	if s.DedupeWindow < 0 {
		errs = append(errs, errors.New("MX_WEBHOOK_DEDUPE_WINDOW must not be negative"))
	}
	return errors.Join(errs...)
}

// Describe implements aggregator.Settings.
func (s *Settings) Describe() map[string]string {
	return map[string]string{
		"MX_CLIENT_ID":             "MX Platform API client id; with `MX_API_KEY`, enables MX (direct, not through Quiltt)",
		"MX_API_KEY":               "MX Platform API key",
		"MX_API_URL":               "MX Platform API host (`https://int-api.mx.com` for MX's integration environment)",
		"MX_WEBHOOK_USERNAME":      "the HTTP basic username given to MX for `POST /webhooks/mx` (required with MX)",
		"MX_WEBHOOK_PASSWORD":      "the HTTP basic password given to MX for it, at least 16 characters: MX signs nothing, so these credentials are what authenticates its webhooks",
		"MX_WEBHOOK_DEDUPE_WINDOW": "MX sends no event id: the same member and status within this window of the last delivery is a retry",
	}
}

// Registration is MX's entry in the provider list (activities/providers).
var Registration = aggregator.Registration{
	Name: Name,
	// MX documents its 429 but no rate for member reads; 10 a second
	// leaves the app room.
	ReconcileRate: 10,
	NewSettings:   func() aggregator.Settings { return &Settings{} },
	NewProvider: func(s aggregator.Settings, env aggregator.Env) (aggregator.Provider, error) {
		m := s.(*Settings)
		return &Provider{APIURL: m.APIURL, ClientID: m.ClientID, APIKey: m.APIKey, HTTP: env.HTTP, Now: env.Now}, nil
	},
	NewReceiver: func(s aggregator.Settings, env aggregator.Env) (aggregator.WebhookReceiver, error) {
		m := s.(*Settings)
		return &WebhookReceiver{Username: m.WebhookUsername, Password: m.WebhookPassword, DedupeWindow: m.DedupeWindow, Now: env.Now}, nil
	},
	Browser: Browser,
}

// Browser is the hosted page's record of MX's Connect widget: the widget
// URL in a frame, from MX's widget hosts (production and integration).
// With ui_message_version 4 it posts {mx: true, type, metadata} messages:
// mx/connect/memberConnected (metadata: user_guid, session_guid,
// member_guid) completes; an OAuth error, or the member deleted in the
// widget, is an exit with the message type as its code. The widget has
// no exit of its own: the page's Close button is one.
var Browser = aggregator.Browser{
	Widgets:      []string{aggregator.WidgetFrame},
	FrameOrigins: []string{"https://widgets.moneydesktop.com", "https://int-widgets.moneydesktop.com"},
	Messages: []aggregator.MessageRule{{
		Match: map[string]any{"mx": true, "type": "mx/connect/memberConnected"},
		Complete: &aggregator.CompleteMapping{Metadata: []string{"metadata"},
			MetadataFields: []string{"user_guid", "member_guid", "session_guid"}},
	}, {
		Match: map[string]any{"mx": true, "type": "mx/connect/oauthError"},
		Exit:  &aggregator.ExitMapping{Reason: "error", ErrorCode: "type"},
	}, {
		Match: map[string]any{"mx": true, "type": "mx/connect/memberDeleted"},
		Exit:  &aggregator.ExitMapping{Reason: "error", ErrorCode: "type"},
	}},
}
