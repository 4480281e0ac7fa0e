// Command relink is the program that starts repairs: the production
// gateway and the CLI (see package cli). It links no Temporal server; the
// dev stack is `go run ./dev`.
//
// It lives in starter/relink, not in starter/ itself, because Go names a
// binary after its package's folder: `go build`, `go install
// ./starter/relink` and `go install github.com/relink-dev/relink/...` all
// make a binary named relink, with no -o to remember.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
