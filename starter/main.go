// Command relink is Relink's gateway, dev stack and CLI; see package cli.
package main

import (
	"os"

	"github.com/relink-dev/relink/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
