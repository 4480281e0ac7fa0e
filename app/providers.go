package app

import (
	"net/http"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/config"
)

// Providers are the enabled providers: the APIs the worker calls and the
// webhook receivers the gateway serves, by name.
type Providers struct {
	APIs     []aggregator.Provider
	Webhooks map[string]aggregator.WebhookReceiver
	// Quiltt is the Quiltt adapter, if enabled (the CLI's simulate-error
	// uses it).
	Quiltt *quiltt.Provider
}

// providerHTTPTimeout bounds one call to a provider's API; the activity's
// retries handle the rest.
const providerHTTPTimeout = 20 * time.Second

// NewProviders builds every provider whose settings are present, plus the
// sandbox when sb is not nil (the dev stack and tests).
func NewProviders(c config.Config, sb *sandbox.Provider) Providers {
	p := Providers{Webhooks: map[string]aggregator.WebhookReceiver{}}
	hc := &http.Client{Timeout: providerHTTPTimeout}
	if sb != nil {
		p.APIs = append(p.APIs, sb)
		p.Webhooks[sandbox.Name] = &quiltt.WebhookReceiver{Secret: c.Sandbox.WebhookSecret, Tolerance: c.Webhooks.Tolerance, Now: time.Now}
	}
	if q := c.Quiltt; q.Enabled() {
		p.Quiltt = &quiltt.Provider{APIURL: q.APIURL, AuthURL: q.AuthURL, APISecret: q.APISecret, HTTP: hc, Now: time.Now}
		p.APIs = append(p.APIs, p.Quiltt)
		p.Webhooks[quiltt.Name] = &quiltt.WebhookReceiver{Secret: q.WebhookSecret, Tolerance: c.Webhooks.Tolerance, Now: time.Now}
	}
	if m := c.Meld; m.Enabled() {
		p.APIs = append(p.APIs, &meld.Provider{APIURL: m.APIURL, APIKey: m.APIKey, Version: m.Version, HTTP: hc})
		webhookURL := m.WebhookURL
		if webhookURL == "" {
			webhookURL = strings.TrimRight(c.Gateway.PublicURL, "/") + "/webhooks/" + meld.Name
		}
		p.Webhooks[meld.Name] = &meld.WebhookReceiver{Secret: m.WebhookSecret, URL: webhookURL,
			Tolerance: c.Webhooks.Tolerance, Now: time.Now, Proactive: m.ProactiveRepairs}
	}
	if pl := c.Plaid; pl.Enabled() {
		var tokens plaid.AccessTokens = plaid.StaticAccessTokens(pl.AccessTokens)
		if pl.AccessTokenURL != "" {
			tokens = &plaid.HTTPAccessTokens{URL: pl.AccessTokenURL, Secret: pl.AccessTokenSecret, HTTP: hc}
		}
		p.APIs = append(p.APIs, &plaid.Provider{APIURL: pl.APIURL, ClientID: pl.ClientID, Secret: pl.Secret,
			ClientName: pl.ClientName, Language: pl.Language, CountryCodes: pl.CountryCodes,
			LinkWebhookURL: pl.LinkWebhookURL, RedirectURI: pl.RedirectURI, Tokens: tokens, HTTP: hc})
		p.Webhooks[plaid.Name] = &plaid.WebhookReceiver{
			Keys:   &plaid.VerificationKeys{APIURL: pl.APIURL, ClientID: pl.ClientID, Secret: pl.Secret, HTTP: hc, Now: time.Now},
			MaxAge: c.Webhooks.Tolerance, DedupeWindow: pl.DedupeWindow, Now: time.Now, Proactive: pl.ProactiveRepairs,
		}
	}
	return p
}
