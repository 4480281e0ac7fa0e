// Command starter is `relink`, the program that starts repairs: the
// production gateway and the CLI (see package cli). It links no Temporal
// server; the dev stack is `go run ./dev`.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
