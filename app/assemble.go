package app

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities"
	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/clienttoken"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/gateway"
	"github.com/relink-dev/relink/workflows"
)

// NewSandbox builds the sandbox provider; its webhooks go to the gateway at
// RELINK_PUBLIC_URL.
func NewSandbox(c config.Config, logger *slog.Logger) *sandbox.Provider {
	base := strings.TrimRight(c.Gateway.PublicURL, "/")
	settings := config.SettingsOf[*sandbox.Settings](c)
	return &sandbox.Provider{
		WidgetURL: base + "/sandbox/widget",
		SyncDelay: settings.SyncDelay,
		Now:       time.Now,
		Logger:    logger.With("component", "sandbox"),
		Webhooks: &sandbox.WebhookSender{
			URL:    base + "/webhooks/" + sandbox.Name,
			Secret: settings.WebhookSecret,
			Client: &http.Client{Timeout: 10 * time.Second},
			Now:    time.Now,
		},
	}
}

// NewActivities builds the activities over the enabled providers.
func NewActivities(c config.Config, logger *slog.Logger, providers Providers) (*activities.Activities, error) {
	notifier, err := NewNotifier(c.Notify, logger.With("component", "notifier"))
	if err != nil {
		return nil, err
	}
	acts := &activities.Activities{
		Providers: aggregator.NewRegistry(providers.APIs...),
		Notifier:  notifier,
	}
	if keys := c.Gateway.ClientKeys(); len(keys) > 0 {
		tokens, err := clienttoken.New(keys, c.Gateway.ClientTokenTTL, time.Now)
		if err != nil {
			return nil, err
		}
		acts.ReconnectLinks = links(c, tokens)
	}
	return acts, nil
}

// NewGateway builds the HTTP gateway with the enabled providers' webhook
// receivers; sb enables the sandbox's controls (dev stack only).
func NewGateway(c config.Config, tc client.Client, logger *slog.Logger, providers Providers, sb *sandbox.Provider) (*gateway.Gateway, error) {
	enc, err := PayloadCodec(c.Temporal)
	if err != nil {
		return nil, err
	}
	var tokens *clienttoken.Authority
	if keys := c.Gateway.ClientKeys(); len(keys) > 0 {
		if tokens, err = clienttoken.New(keys, c.Gateway.ClientTokenTTL, time.Now); err != nil {
			return nil, err
		}
	}
	var operators *gateway.OperatorTokens
	if c.Gateway.CodecJWKSURL != "" {
		operators = &gateway.OperatorTokens{JWKSURL: c.Gateway.CodecJWKSURL, Issuer: c.Gateway.CodecJWTIssuer,
			Audience: c.Gateway.CodecJWTAudience, HTTP: &http.Client{Timeout: 10 * time.Second}, Now: time.Now}
	}
	institutions := map[string]gateway.InstitutionLookup{}
	for _, api := range providers.APIs {
		if l, ok := api.(gateway.InstitutionLookup); ok {
			institutions[api.Name()] = l
		}
	}
	sweeps := map[string]workflows.SweepInput{}
	for _, plan := range SweepPlans(c, providers) {
		sweeps[plan.Provider] = plan.Input()
	}
	return &gateway.Gateway{
		Sweeps:         sweeps,
		OperatorTokens: operators,
		Temporal:       tc,
		Namespace:      c.Temporal.Namespace,
		TaskQueue:      c.Temporal.TaskQueue,
		APIKeys:        c.Gateway.AllAPIKeys(),
		ClientTokens:   tokens,
		CORSOrigins:    c.Gateway.CORSOrigins,
		BrowserRate:    c.Gateway.BrowserRate,
		BrowserBurst:   c.Gateway.BrowserBurst,
		StartsInFlight: c.Gateway.StartsInFlight,
		StartWait:      c.Gateway.StartWait,
		Codec:          enc,
		CodecOrigins:   c.Gateway.CodecOrigins,
		Receivers:      providers.Webhooks,
		Institutions:   institutions,
		Browsers:       providers.Browsers,
		Defaults:       c.Repair.Options(),
		Sandbox:        sb,
		Logger:         logger.With("component", "gateway"),
		Links:          links(c, tokens),

		ReconnectReturnURL:    c.Gateway.ReconnectReturnURL,
		PlaidLinkScriptURL:    c.Gateway.PlaidLinkScriptURL,
		ReconnectFrameOrigins: c.Gateway.ReconnectFrameOrigins,
	}, nil
}

// ErrNoPayloadKeys: `relink codec-server` has nothing to decrypt with.
var ErrNoPayloadKeys = errors.New("RELINK_PAYLOAD_KEYS is not set: the codec server decrypts with the keys the workers encrypt with; set it in this shell")

// NewLocalCodec builds `relink codec-server`'s handler: the payload keys
// of c, for namespace, called from the Web UI at uiOrigins.
func NewLocalCodec(c config.Config, namespace string, uiOrigins []string, logger *slog.Logger) (*gateway.LocalCodec, error) {
	enc, err := PayloadCodec(c.Temporal)
	if err != nil {
		return nil, err
	}
	if enc == nil {
		return nil, ErrNoPayloadKeys
	}
	return &gateway.LocalCodec{Codec: enc, Namespace: namespace, UIOrigins: uiOrigins, Logger: logger.With("component", "codec-server")}, nil
}

// links mints reconnect links when browser tokens are on (the same keys
// sign both; their audiences keep them apart).
func links(c config.Config, tokens *clienttoken.Authority) *gateway.Links {
	if tokens == nil {
		return nil
	}
	return &gateway.Links{Tokens: tokens, PublicURL: c.Gateway.PublicURL, TTL: c.Gateway.ReconnectLinkTTL, Now: time.Now}
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
		// "OPTIONS *" goes to h like any request (404 there): net/http's
		// own answer, 200 with nothing, is not one the API documents.
		DisableGeneralOptionsHandler: true,
	}
}
