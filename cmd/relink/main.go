// Command relink is the production gateway and CLI (see package cli). It
// links no Temporal server; the dev stack is `go run ./starter dev`.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
