// Package cli is the production `relink` command: the gateway, namespace
// setup, keys, an operator's local codec server, and client subcommands that call the gateway's HTTP API.
// It links no Temporal server; the dev stack's commands (package cli/dev)
// are added by the dev binary (./dev).
package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/version"
)

// DevAPIKey is the API key the dev stack uses when RELINK_API_KEY is unset;
// the client subcommands default to it too. No production gateway takes it.
const DevAPIKey = config.DevAPIKey

// DevCodecOpen says whether the embedded Web UI (which has no login) may
// call /codec without a key: only while the stack has no secret to keep,
// i.e. its only API key is the published dev key and it listens on
// loopback. An Origin header is no credential; it is merely all the UI
// can send. Set your own RELINK_API_KEY, or listen elsewhere, and the UI
// shows payloads encoded.
func DevCodecOpen(g config.Gateway) bool {
	keys := g.AllAPIKeys()
	return len(keys) == 1 && keys[0] == DevAPIKey && OnLoopback(g.ListenAddr)
}

// OnLoopback reports that a listen address (host:port) reaches this
// machine only.
func OnLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && (host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// DevExposureWarning is what `relink dev` says when its gateway listens
// beyond this machine: the dev stack is for one machine (its Web UI has no
// login, its defaults are public); production runs `relink gateway`,
// which refuses the dev key.
func DevExposureWarning(g config.Gateway) string {
	if OnLoopback(g.ListenAddr) {
		return ""
	}
	w := "the dev stack listens on " + g.ListenAddr + ", beyond this machine; it is not for production (run `relink gateway` and `relink-worker`)"
	if slices.Contains(g.AllAPIKeys(), DevAPIKey) {
		w += ", and anyone who can reach it can use the published API key " + DevAPIKey
	}
	return w
}

// Command is a subcommand added to the production ones: the dev stack's
// `dev` and `bench` (package cli/dev), which embed the Temporal server and
// so live only in the dev binary.
type Command struct {
	Name    string
	Summary string // the usage lines, indented as the built-in ones
	Run     func(ctx context.Context, args []string, stdout io.Writer) error
}

const usageHead = `relink repairs broken bank connections with durable Temporal workflows.

Usage: relink <command> [flags]

Servers:
`

const usageServers = `  gateway         run the HTTP gateway against the Temporal cluster
                  (TEMPORAL_* / TEMPORAL_PROFILE, as the Temporal CLI)
  setup           register Relink's search attributes in the namespace and
                  create or update the reconciliation sweeps' schedules
                  (waits up to -wait, 2m, for Temporal and the namespace)
  keygen          print a new key: -kind payload (RELINK_PAYLOAD_KEYS),
                  client-token (RELINK_CLIENT_TOKEN_KEYS), notify
                  (RELINK_NOTIFY_SECRET) or api-key (RELINK_API_KEY);
                  -id names payload and client-token keys
  codec-server    decode payloads for the Temporal Web UI in this machine's
                  browser and for the temporal CLI, with this shell's
                  RELINK_PAYLOAD_KEYS; loopback only (-listen, default
                  127.0.0.1:8888), answering the Web UI origins of
                  -ui-origin (required, repeatable)
  ui-views        print the links that save Relink's views (by outcome)
                  in a Temporal Web UI at -ui, and the columns to add
  version         print the version
`

const usageClient = `
Client (talk to the gateway at RELINK_URL with RELINK_API_KEY):
  start           start a repair by hand
  state           show a repair's state (the connection's provider is
                  found through the API unless -provider names it)
  list            list repairs (filter by status, provider, profile)
  client-token    print a client token for a connection's browser calls
                  (-provider as for state)
  reconnect-link  print a fresh reconnect link to send the user
                  (-provider as for state)
  stats           repair counts by provider and status (-provider, -since 24h)
  reconcile       sweep for breaks no webhook announced, now (-provider P,
                  -wait for the totals, -list to start nothing)
  cancel          cancel a repair
  simulate-error  break a sandbox connection (sends the repairable webhook)

Run "relink <command> -h" for a command's flags. Configuration comes from
the environment; see the README's configuration table.
`

func usage(extra []Command) string {
	var b strings.Builder
	b.WriteString(usageHead)
	for _, c := range extra {
		b.WriteString(c.Summary)
	}
	b.WriteString(usageServers)
	b.WriteString(usageClient)
	return b.String()
}

// Run runs the command in args and returns the process exit code. extra
// adds commands (the dev binary's); the production binary passes none.
func Run(args []string, stdout, stderr io.Writer, extra ...Command) int {
	help := usage(extra)
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "gateway":
		err = runGateway(ctx, rest)
	case "setup":
		err = runSetup(ctx, rest, stdout)
	case "stats":
		err = runStats(ctx, rest, stdout)
	case "reconcile":
		err = runReconcile(ctx, rest, stdout)
	case "keygen":
		err = runKeygen(rest, stdout)
	case "codec-server":
		err = runCodecServer(ctx, rest, stdout)
	case "ui-views":
		err = runUIViews(rest, stdout)
	case "version":
		fmt.Fprintln(stdout, version.String())
		return 0
	case "start", "state", "list", "cancel", "simulate-error", "client-token", "reconnect-link":
		err = runClient(ctx, cmd, rest, stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, help)
		return 0
	default:
		i := slices.IndexFunc(extra, func(c Command) bool { return c.Name == cmd })
		if i < 0 {
			if cmd == "dev" || cmd == "bench" {
				// The production binary links no Temporal server.
				run := "go run ./dev" // the dev binary's default is dev
				if cmd != "dev" {
					run += " " + cmd
				}
				fmt.Fprintf(stderr, "relink: %q is in the dev binary: %s\n", cmd, run)
				return 2
			}
			fmt.Fprintf(stderr, "relink: unknown command %q\n\n%s", cmd, help)
			return 2
		}
		err = extra[i].Run(ctx, rest, stdout)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
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
	kind := fs.String("kind", "payload", "payload, client-token, notify or api-key")
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
			return UsageError("%v", err)
		}
		fmt.Fprintln(stdout, key.Format())
	case "notify":
		fmt.Fprintln(stdout, "whsec_"+base64.StdEncoding.EncodeToString(key.Secret))
	case "api-key":
		fmt.Fprintln(stdout, base64.RawURLEncoding.EncodeToString(key.Secret))
	default:
		return UsageError("-kind must be payload, client-token, notify or api-key")
	}
	return nil
}

// ErrUsage marks a bad command line: the exit code is 2.
var ErrUsage = errors.New("usage")

// UsageError is a bad command line, exit code 2.
func UsageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}
