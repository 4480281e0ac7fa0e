// Command worker is relink-worker, Relink's production repair worker (see
// cli.RunWorker): the ConnectionRepair workflow and its activities against
// the configured Temporal. It links no Temporal server. It stops
// gracefully on SIGINT or SIGTERM.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli"
)

func main() {
	os.Exit(cli.RunWorker(os.Stderr))
}
