package sandbox

import (
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
)

// Settings are the sandbox's settings. The sandbox is never enabled by
// them: the dev stack supplies it (Registration.Supplied), and its worker
// and gateway share it.
type Settings struct {
	WebhookSecret string        `env:"RELINK_SANDBOX_WEBHOOK_SECRET, default=sandbox-webhook-secret"`
	SyncDelay     time.Duration `env:"RELINK_SANDBOX_SYNC_DELAY, default=2s"`
}

// Enabled implements aggregator.Settings: never from settings.
func (s *Settings) Enabled() bool { return false }

// Validate implements aggregator.Settings.
func (s *Settings) Validate() error { return nil }

// Describe implements aggregator.Settings.
func (s *Settings) Describe() map[string]string {
	return map[string]string{
		"RELINK_SANDBOX_WEBHOOK_SECRET": "secret the sandbox signs its webhooks with",
		"RELINK_SANDBOX_SYNC_DELAY":     "how long the sandbox's sync takes after a reconnect",
	}
}

// Registration is the sandbox's entry in the provider list
// (activities/providers). Its webhooks are Quiltt's format, signed with
// RELINK_SANDBOX_WEBHOOK_SECRET.
var Registration = aggregator.Registration{
	Name:          Name,
	ReconcileRate: 50,
	NewSettings:   func() aggregator.Settings { return &Settings{} },
	Supplied:      true,
	NewReceiver: func(s aggregator.Settings, env aggregator.Env) (aggregator.WebhookReceiver, error) {
		now := env.Now
		if now == nil {
			now = time.Now
		}
		return &quiltt.WebhookReceiver{Secret: s.(*Settings).WebhookSecret, Tolerance: env.WebhookTolerance, Now: now}, nil
	},
	Browser: Browser,
}

// Browser is the hosted page's record of the sandbox's simulated widget,
// served by the gateway itself (same origin): it posts
// relink-sandbox/success with the whole complete body, or
// relink-sandbox/exit.
var Browser = aggregator.Browser{
	Widgets: []string{aggregator.WidgetFrame},
	Messages: []aggregator.MessageRule{{
		Match:    map[string]any{"type": "relink-sandbox/success"},
		Present:  []string{"login"},
		Complete: &aggregator.CompleteMapping{Body: "login"},
	}, {
		Match: map[string]any{"type": "relink-sandbox/exit"},
		Exit:  &aggregator.ExitMapping{Reason: "user_exit"},
	}},
}
