// Command dev is the dev binary: `go run ./dev` runs the whole stack in
// one process (Temporal server, Web UI, worker, gateway, sandbox), and
// every command of `relink` works too (`go run ./dev list`), with `dev`,
// `dev-server` and `bench`. It links the Temporal server; production runs
// ./starter/relink (relink) and ./worker/relink-worker (relink-worker) instead.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli/dev"
)

func main() {
	os.Exit(dev.Run(os.Args[1:], os.Stdout, os.Stderr))
}
