package meld

import (
	"errors"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Settings are Meld's settings; MELD_API_KEY and MELD_WEBHOOK_SECRET
// enable it.
type Settings struct {
	APIKey        string `env:"MELD_API_KEY"`
	WebhookSecret string `env:"MELD_WEBHOOK_SECRET"`
	APIURL        string `env:"MELD_API_URL, default=https://api.meld.io"`
	Version       string `env:"MELD_VERSION, default=2025-03-04"`
	// WebhookURL is the URL registered with Meld; its signature covers it.
	// Empty means RELINK_PUBLIC_URL + /webhooks/meld.
	WebhookURL       string `env:"MELD_WEBHOOK_URL"`
	ProactiveRepairs bool   `env:"MELD_PROACTIVE_REPAIRS, default=false"`
}

// Enabled implements aggregator.Settings.
func (s *Settings) Enabled() bool { return s.APIKey != "" }

// Validate implements aggregator.Settings.
func (s *Settings) Validate() error {
	if (s.APIKey == "") != (s.WebhookSecret == "") {
		return errors.New("MELD_API_KEY and MELD_WEBHOOK_SECRET go together")
	}
	return nil
}

// Describe implements aggregator.Settings.
func (s *Settings) Describe() map[string]string {
	return map[string]string{
		"MELD_API_KEY":           "Meld API key; with `MELD_WEBHOOK_SECRET`, enables Meld",
		"MELD_WEBHOOK_SECRET":    "Meld webhook profile secret (`POST /webhooks/meld`)",
		"MELD_API_URL":           "Meld host (`https://api-sb.meld.io` for the sandbox)",
		"MELD_VERSION":           "the `Meld-Version` every call pins",
		"MELD_WEBHOOK_URL":       "the webhook URL registered with Meld, which its signature covers (default `RELINK_PUBLIC_URL` + `/webhooks/meld`)",
		"MELD_PROACTIVE_REPAIRS": "start proactive repairs on `ACTIVE` with `ACCESS_EXPIRING_SOON` or `NEW_ACCOUNTS_AVAILABLE`",
	}
}

// Registration is Meld's entry in the provider list
// (activities/providers).
var Registration = aggregator.Registration{
	Name: Name,
	// Meld documents no rate limit for its connection reads; 10 a second leaves the app room.
	ReconcileRate: 10,
	NewSettings:   func() aggregator.Settings { return &Settings{} },
	NewProvider: func(s aggregator.Settings, env aggregator.Env) (aggregator.Provider, error) {
		m := s.(*Settings)
		return &Provider{APIURL: m.APIURL, APIKey: m.APIKey, Version: m.Version, HTTP: env.HTTP}, nil
	},
	NewReceiver: func(s aggregator.Settings, env aggregator.Env) (aggregator.WebhookReceiver, error) {
		m := s.(*Settings)
		url := m.WebhookURL
		if url == "" {
			url = strings.TrimRight(env.PublicURL, "/") + "/webhooks/" + Name
		}
		now := env.Now
		if now == nil {
			now = time.Now
		}
		return &WebhookReceiver{Secret: m.WebhookSecret, URL: url, Tolerance: env.WebhookTolerance, Now: now, Proactive: m.ProactiveRepairs}, nil
	},
	Browser: Browser,
}

// Browser is the hosted page's record of Meld Connect, the WidgetURL in a
// frame (institution-connect, production and sandbox). It posts
// {domain: "meld-connect", eventName} messages: connect_complete with
// the institution, error with a reason.
var Browser = aggregator.Browser{
	Widgets:      []string{aggregator.WidgetFrame},
	FrameOrigins: []string{"https://institution-connect.meld.io", "https://institution-connect-sb.meld.io"},
	Messages: []aggregator.MessageRule{{
		Match: map[string]any{"domain": "meld-connect", "eventName": "connect_complete"},
		Complete: &aggregator.CompleteMapping{Metadata: []string{"metadata", "."},
			MetadataFields: []string{"institutionId", "institutionName", "accountCount"}},
	}, {
		Match: map[string]any{"domain": "meld-connect", "eventName": "error"},
		Exit:  &aggregator.ExitMapping{Reason: "error", ErrorCode: "reason"},
	}},
}
