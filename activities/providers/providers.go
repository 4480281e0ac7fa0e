// Package providers is the list of provider adapters Relink is built
// with: one line per provider. Configuration, the worker, the gateway,
// the hosted reconnect page, the OpenAPI document and the README's
// configuration table all read it, so adding a provider is a folder of
// its own under activities/ plus its line here (see the README's
// "How to write a provider").
//
// Like the adapters, it links no Temporal SDK.
package providers

import (
	"fmt"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/activities/truelayer"
)

// All are the registered providers, in the order configuration and the
// documentation list them.
var All = []aggregator.Registration{
	sandbox.Registration,
	quiltt.Registration,
	meld.Registration,
	plaid.Registration,
	mx.Registration,
	truelayer.Registration,
}

// Names are the registered providers' names, in list order.
func Names() []string {
	names := make([]string, len(All))
	for i, r := range All {
		names[i] = r.Name
	}
	return names
}

// Check reports a list that cannot work: a registration that does not
// check, or a name registered twice.
func Check(list []aggregator.Registration) error {
	seen := map[string]bool{}
	for _, r := range list {
		if err := r.Check(); err != nil {
			return err
		}
		if seen[r.Name] {
			return fmt.Errorf("provider %q is registered twice", r.Name)
		}
		seen[r.Name] = true
	}
	return nil
}
