package app

import (
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/config"
)

// Providers are the enabled providers: the APIs the worker calls, the
// webhook receivers the gateway serves and what the hosted page needs
// for their widgets, by name.
type Providers struct {
	APIs     []aggregator.Provider
	Webhooks map[string]aggregator.WebhookReceiver
	Browsers map[string]aggregator.Browser
}

// API returns the enabled provider named name, or nil.
func (p Providers) API(name string) aggregator.Provider {
	for _, api := range p.APIs {
		if api.Name() == name {
			return api
		}
	}
	return nil
}

// providerHTTPTimeout bounds one call to a provider's API; the activity's
// retries handle the rest.
const providerHTTPTimeout = 20 * time.Second

// NewProviders builds every registered provider (activities/providers)
// whose settings enable it, plus the sandbox when sb is not nil (the dev
// stack and tests).
func NewProviders(c config.Config, sb *sandbox.Provider) Providers {
	var supplied []aggregator.Provider
	if sb != nil {
		supplied = append(supplied, sb)
	}
	p, err := BuildProviders(c, providers.All, supplied...)
	if err != nil {
		// The registered adapters' constructors fail on nothing that
		// config.Load let through.
		panic(err)
	}
	return p
}

// BuildProviders builds the providers of list (providers.All but in
// tests) that c's settings enable, plus those supplied (a Supplied
// registration is enabled exactly when the process supplies it).
func BuildProviders(c config.Config, list []aggregator.Registration, supplied ...aggregator.Provider) (Providers, error) {
	p := Providers{Webhooks: map[string]aggregator.WebhookReceiver{}, Browsers: map[string]aggregator.Browser{}}
	env := aggregator.Env{
		HTTP:             &http.Client{Timeout: providerHTTPTimeout},
		WebhookTolerance: c.Webhooks.Tolerance,
		PublicURL:        c.Gateway.PublicURL,
		Now:              time.Now,
	}
	given := map[string]aggregator.Provider{}
	for _, s := range supplied {
		if s != nil && !reflect.ValueOf(s).IsNil() {
			given[s.Name()] = s
		}
	}
	if err := providers.Check(list); err != nil {
		return p, err
	}
	for _, reg := range list {
		settings := c.Provider(reg.Name)
		if settings == nil {
			return p, fmt.Errorf("provider %s: the configuration was loaded without its settings", reg.Name)
		}
		api, ok := given[reg.Name]
		switch {
		case ok:
		case reg.Supplied || !settings.Enabled():
			continue
		default:
			var err error
			if api, err = reg.NewProvider(settings, env); err != nil {
				return p, fmt.Errorf("provider %s: %w", reg.Name, err)
			}
		}
		receiver, err := reg.NewReceiver(settings, env)
		if err != nil {
			return p, fmt.Errorf("provider %s webhooks: %w", reg.Name, err)
		}
		p.APIs = append(p.APIs, api)
		p.Webhooks[reg.Name] = receiver
		p.Browsers[reg.Name] = reg.Browser
	}
	return p, nil
}
