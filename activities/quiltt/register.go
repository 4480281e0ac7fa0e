package quiltt

import (
	"errors"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Settings are Quiltt's settings; QUILTT_API_SECRET and
// QUILTT_WEBHOOK_SECRET enable it.
type Settings struct {
	APISecret     string `env:"QUILTT_API_SECRET"`
	WebhookSecret string `env:"QUILTT_WEBHOOK_SECRET"`
	APIURL        string `env:"QUILTT_API_URL, default=https://api.quiltt.io"`
	AuthURL       string `env:"QUILTT_AUTH_URL, default=https://auth.quiltt.io"`
}

// Enabled implements aggregator.Settings.
func (s *Settings) Enabled() bool { return s.APISecret != "" }

// Validate implements aggregator.Settings.
func (s *Settings) Validate() error {
	if (s.APISecret == "") != (s.WebhookSecret == "") {
		return errors.New("QUILTT_API_SECRET and QUILTT_WEBHOOK_SECRET go together")
	}
	return nil
}

// Describe implements aggregator.Settings.
func (s *Settings) Describe() map[string]string {
	return map[string]string{
		"QUILTT_API_SECRET":     "Quiltt API key secret (mints profile session tokens); with `QUILTT_WEBHOOK_SECRET`, enables Quiltt",
		"QUILTT_WEBHOOK_SECRET": "Quiltt webhook subscription secret (`POST /webhooks/quiltt`)",
		"QUILTT_API_URL":        "Quiltt GraphQL host",
		"QUILTT_AUTH_URL":       "Quiltt session-token host",
	}
}

// Registration is Quiltt's entry in the provider list
// (activities/providers).
var Registration = aggregator.Registration{
	Name: Name,
	// Quiltt documents no limit for its connection reads; 10 a second leaves the app room.
	ReconcileRate: 10,
	NewSettings:   func() aggregator.Settings { return &Settings{} },
	NewProvider: func(s aggregator.Settings, env aggregator.Env) (aggregator.Provider, error) {
		q := s.(*Settings)
		return &Provider{APIURL: q.APIURL, AuthURL: q.AuthURL, APISecret: q.APISecret, HTTP: env.HTTP, Now: env.Now}, nil
	},
	NewReceiver: func(s aggregator.Settings, env aggregator.Env) (aggregator.WebhookReceiver, error) {
		return &WebhookReceiver{Secret: s.(*Settings).WebhookSecret, Tolerance: env.WebhookTolerance, Now: nowOr(env.Now)}, nil
	},
	Browser: Browser,
}

// Browser is the hosted page's record of Quiltt's widgets: Plaid Link
// for its Plaid connector, MX Connect in a frame for its MX connector.
// (MX: its widget hosts, production and integration; MX Connect posts
// mx/connect/memberConnected with the member's metadata.)
var Browser = aggregator.Browser{
	Widgets:        []string{aggregator.WidgetPlaidLink, aggregator.WidgetFrame},
	FrameOrigins:   []string{"https://cdn.plaid.com", "https://widgets.moneydesktop.com", "https://int-widgets.moneydesktop.com"},
	ConnectOrigins: []string{"https://production.plaid.com", "https://sandbox.plaid.com"},
	Messages: []aggregator.MessageRule{{
		Match:    map[string]any{"mx": true, "type": "mx/connect/memberConnected"},
		Complete: &aggregator.CompleteMapping{Metadata: []string{"metadata"}},
	}},
}

func nowOr(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
