// Command openapigen writes the registered providers (activities/providers)
// into gateway/openapi.json as the ProviderName schema's enum. Run it with
// `go generate ./gateway` after adding a provider; the gateway's tests
// check the document is current.
package main

import (
	"fmt"
	"os"

	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/gateway/internal/openapienum"
)

func main() {
	const path = "openapi.json"
	doc, err := os.ReadFile(path)
	if err == nil {
		doc, err = openapienum.Write(doc, providers.Names())
	}
	if err == nil {
		err = os.WriteFile(path, doc, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapigen:", err)
		os.Exit(1)
	}
}
