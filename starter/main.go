// Command starter is the dev binary: every production command of `relink`
// plus `relink dev` (the whole stack in one process: Temporal server, Web
// UI, worker, gateway, sandbox) and `relink bench`. It links the Temporal
// server; production runs cmd/relink and cmd/relink-worker instead.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/cli/dev"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr, dev.Commands()...))
}
