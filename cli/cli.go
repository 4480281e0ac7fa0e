// Package cli is the `relink` command: the dev stack, the production
// gateway, namespace setup, and client subcommands that call the gateway's
// HTTP API.
package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/version"
)

// DevAPIKey is the API key the dev stack uses when RELINK_API_KEY is unset;
// the client subcommands default to it too.
const DevAPIKey = "dev-api-key"

const usage = `relink repairs broken bank connections with durable Temporal workflows.

Usage: relink <command> [flags]

Servers:
  dev             run everything in one process: Temporal server, Web UI,
                  worker, gateway and sandbox provider
  gateway         run the HTTP gateway against TEMPORAL_ADDRESS
  setup           register Relink's search attributes in TEMPORAL_NAMESPACE
  bench           Relink's own benchmark on the embedded stack (see README)
  keygen          print a new key: -kind payload (RELINK_PAYLOAD_KEYS),
                  client-token (RELINK_CLIENT_TOKEN_KEYS) or notify
                  (RELINK_NOTIFY_SECRET); -id names it
  version         print the version

Client (talk to the gateway at RELINK_URL with RELINK_API_KEY):
  start           start a repair by hand
  state           show a repair's state
  list            list repairs (filter by status, provider, profile)
  stats           repair counts by provider and status (-provider, -since 24h)
  cancel          cancel a repair
  simulate-error  break a sandbox connection (sends the repairable webhook)

Run "relink <command> -h" for a command's flags. Configuration comes from
the environment; see the README's configuration table.
`

// Run runs the command in args and returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "dev":
		err = runDev(ctx, rest, stdout)
	case "gateway":
		err = runGateway(ctx, rest)
	case "setup":
		err = runSetup(ctx, rest, stdout)
	case "bench":
		err = runBench(ctx, rest, stdout)
	case "stats":
		err = runStats(ctx, rest, stdout)
	case "keygen":
		err = runKeygen(rest, stdout)
	case "version":
		fmt.Fprintln(stdout, version.String())
		return 0
	case "start", "state", "list", "cancel", "simulate-error":
		err = runClient(ctx, cmd, rest, stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "relink: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "relink %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "relink %s: %v\n", cmd, err)
		return 1
	}
}

// runKeygen prints a new key in the form its setting takes.
func runKeygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	kind := fs.String("kind", "payload", "payload, client-token or notify")
	id := fs.String("id", "k"+time.Now().UTC().Format("20060102"), "key id (payload and client-token keys)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := keyring.Generate(*id)
	if err != nil {
		return err
	}
	switch *kind {
	case "payload", "client-token":
		if _, err := keyring.Parse("-id", key.Format()); err != nil {
			return usageError("%v", err)
		}
		fmt.Fprintln(stdout, key.Format())
	case "notify":
		fmt.Fprintln(stdout, "whsec_"+base64.StdEncoding.EncodeToString(key.Secret))
	default:
		return usageError("-kind must be payload, client-token or notify")
	}
	return nil
}

var errUsage = errors.New("usage")

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}
