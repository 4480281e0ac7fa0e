package app

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/gateway"
)

// dedupeCapacity bounds the gateway's in-memory webhook event ids.
const dedupeCapacity = 100_000

// NewSandbox builds the sandbox provider; its webhooks go to the gateway at
// RELINK_PUBLIC_URL.
func NewSandbox(c config.Config, logger *slog.Logger) *sandbox.Provider {
	base := strings.TrimRight(c.Gateway.PublicURL, "/")
	return &sandbox.Provider{
		WidgetURL: base + "/sandbox/widget",
		SyncDelay: c.Sandbox.SyncDelay,
		Now:       time.Now,
		Logger:    logger.With("component", "sandbox"),
		Webhooks: &sandbox.WebhookSender{
			URL:    base + "/webhooks/" + sandbox.Name,
			Secret: c.Sandbox.WebhookSecret,
			Client: &http.Client{Timeout: 10 * time.Second},
			Now:    time.Now,
		},
	}
}

// NewActivities builds the activities over the enabled providers. sb is the
// sandbox, or nil outside the dev stack.
func NewActivities(c config.Config, logger *slog.Logger, sb *sandbox.Provider) *activities.Activities {
	var providers []activities.Provider
	if sb != nil {
		providers = append(providers, sb)
	}
	return &activities.Activities{
		Providers: activities.NewRegistry(providers...),
		Notifier:  NewNotifier(c.Notify, logger.With("component", "notifier")),
	}
}

// NewGateway builds the HTTP gateway with a webhook receiver per enabled
// provider.
func NewGateway(c config.Config, tc client.Client, logger *slog.Logger, sb *sandbox.Provider) *gateway.Gateway {
	receivers := map[string]activities.WebhookReceiver{}
	if sb != nil {
		receivers[sandbox.Name] = &quiltt.WebhookReceiver{Secret: c.Sandbox.WebhookSecret, Tolerance: c.Webhooks.Tolerance, Now: time.Now}
	}
	if c.Webhooks.QuilttSecret != "" {
		receivers["quiltt"] = &quiltt.WebhookReceiver{Secret: c.Webhooks.QuilttSecret, Tolerance: c.Webhooks.Tolerance, Now: time.Now}
	}
	return &gateway.Gateway{
		Temporal:  tc,
		TaskQueue: c.Temporal.TaskQueue,
		APIKey:    c.Gateway.APIKey,
		Receivers: receivers,
		Defaults:  c.Repair.Options(),
		Sandbox:   sb,
		Logger:    logger.With("component", "gateway"),
		Seen:      gateway.NewSeenEvents(c.Gateway.DedupeTTL, dedupeCapacity, time.Now),
	}
}

// NewHTTPServer serves h on addr with timeouts fit for webhooks and the API
// (the reconnect update may take up to 90 seconds).
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
}
