// Package dev holds the commands only the dev binary (./dev) has:
// `relink dev`, the whole stack in one process, and `relink bench`. They
// embed the Temporal server and Web UI, which the production binaries
// (./starter/relink, ./worker) must not link.
package dev

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/devstack"
	"github.com/relink-dev/relink/keyring"
)

// Run is the dev binary (./dev): every command of `relink` and the dev
// stack's. With no command, or only flags (`go run ./dev
// -embedded-temporal=false`), it runs `relink dev`. It returns the process
// exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (strings.HasPrefix(args[0], "-") && !slices.Contains([]string{"-h", "-help", "--help"}, args[0])) {
		args = append([]string{"dev"}, args...)
	}
	return cli.Run(args, stdout, stderr, Commands()...)
}

// Commands are the dev binary's additions to the production commands.
func Commands() []cli.Command {
	return []cli.Command{
		{Name: "dev", Run: runDev, Summary: `  dev             run everything in one process: Temporal server, Web UI,
                  worker, gateway and sandbox provider (the dev binary's
                  default: go run ./dev)
`},
		{Name: "dev-server", Run: runDevServer, Summary: `  dev-server      run only the embedded Temporal server and Web UI, for a
                  worker and gateway run as processes of their own
`},
		{Name: "bench", Run: runBench, Summary: `  bench           Relink's own benchmark on the embedded stack (see README)
`},
	}
}

// runDev is the README's first command: the whole of Relink in one process.
func runDev(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	embedded := fs.Bool("embedded-temporal", true, "run Temporal in-process; false connects to the Temporal of TEMPORAL_ADDRESS or the profile")
	terminate := fs.Bool("terminate-unreplayable", false, "terminate the open repairs this build cannot replay (recorded by older workflow code) instead of refusing to start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The first line, at once: after a first build that printed nothing
	// for minutes, the stack takes seconds more before it is ready, and
	// each slow step below says what it is doing.
	fmt.Fprintln(stdout, "relink dev starting: Temporal server, Web UI, worker, gateway and sandbox")
	progress := stepPrinter(stdout)
	cfg, logger, err := app.LoadDevConfig(ctx)
	if err != nil {
		return err
	}
	if len(cfg.Gateway.AllAPIKeys()) == 0 {
		cfg.Gateway.APIKey = cli.DevAPIKey
	}
	if cfg.Gateway.ListenAddr == "" {
		// The dev key is published: only this machine may use it.
		cfg.Gateway.ListenAddr = "127.0.0.1:8080"
	}
	if err := devKeys(&cfg); err != nil {
		return err
	}
	if w := cli.DevExposureWarning(cfg.Gateway); w != "" {
		logger.Warn(w, "addr", cfg.Gateway.ListenAddr)
		fmt.Fprintln(stdout, "WARNING: "+w)
	}
	// One process, one build: nothing to roll out, and a versioned worker
	// would wait for a current version no one sets.
	cfg.Worker.DeploymentName = ""

	var uiURL string
	var uiOrigins []string
	if *embedded {
		t, err := devstack.StartTemporal(devstack.Options{
			DataDir:       cfg.Dev.DataDir,
			Namespace:     cfg.Temporal.Namespace,
			FrontendPort:  cfg.Dev.TemporalPort,
			UIPort:        cfg.Dev.UIPort,
			CodecEndpoint: strings.TrimRight(cfg.Gateway.PublicURL, "/") + "/codec",
			Progress:      progress,
		})
		if err != nil {
			return err
		}
		defer t.Stop()
		cfg.Temporal.UseLocalServer(t.Address)
		uiURL = t.UIURL
		if cfg.Dev.UIPort != 0 && cli.DevCodecOpen(cfg.Gateway) {
			uiOrigins = []string{uiURL, fmt.Sprintf("http://127.0.0.1:%d", cfg.Dev.UIPort)}
		}
	}
	reg, stopMetrics, err := app.StartMetrics(cfg, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	progress("connecting to Temporal at %s (namespace %s)", cfg.Temporal.Address, cfg.Temporal.Namespace)
	tc, err := app.DialWhenReady(ctx, cfg.Temporal, logger, reg.Handler)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := app.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); err != nil {
		return err
	}
	// Before the worker: open repairs an older build recorded that this
	// build cannot replay would fail on it over and over.
	if err := checkReplay(ctx, tc, cfg, logger, *embedded, *terminate, stdout, progress); err != nil {
		return err
	}

	progress("starting the worker and the sandbox provider")

	sb := app.NewSandbox(cfg, logger)
	if err := sb.Load(filepath.Join(cfg.Dev.DataDir, "sandbox.json")); err != nil {
		return err
	}
	defer sb.Flush() // last: after the worker and gateway have stopped
	providers := app.NewProviders(cfg, sb)
	acts, err := app.NewActivities(cfg, logger, providers)
	if err != nil {
		return err
	}
	w, err := app.NewWorker(tc, cfg, logger, providers, acts)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()
	if err := app.EnsureSweepSchedules(ctx, tc, cfg, app.SweepPlans(cfg, providers), logger); err != nil {
		return err
	}

	progress("starting the gateway on %s", cfg.Gateway.ListenAddr)
	gw, err := app.NewGateway(cfg, tc, logger, providers, sb)
	if err != nil {
		return err
	}
	gw.DevCodecOrigins = uiOrigins
	gw.Metrics = reg
	ln, err := net.Listen("tcp", cfg.Gateway.ListenAddr)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	srv := app.NewHTTPServer(cfg.Gateway.ListenAddr, gw.Handler())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	fmt.Fprintf(stdout, "Relink dev stack\n")
	fmt.Fprintf(stdout, "  Temporal      %s (namespace %s)\n", cfg.Temporal.Address, cfg.Temporal.Namespace)
	if uiURL != "" {
		fmt.Fprintf(stdout, "  Temporal UI   %s/namespaces/%s/workflows\n", uiURL, cfg.Temporal.Namespace)
		fmt.Fprintf(stdout, "  Saved views   (already in this UI, with the outcome and reason columns)\n")
		cli.PrintUIViews(stdout, uiURL, cfg.Temporal.Namespace, "    ")
	}
	fmt.Fprintf(stdout, "  Gateway       %s on %s (API key: %s)\n", cfg.Gateway.PublicURL, cfg.Gateway.ListenAddr, redactKey(cfg.Gateway.APIKey))
	fmt.Fprintf(stdout, "  Encryption    payloads AES-256-GCM; Web UI decodes through %s/codec\n", cfg.Gateway.PublicURL)
	fmt.Fprintf(stdout, "  Metrics       %s/metrics (API key; worker and gateway)\n", cfg.Gateway.PublicURL)
	fmt.Fprintf(stdout, "  Sandbox       %s/sandbox/connections/{id}/break\n", cfg.Gateway.PublicURL)
	fmt.Fprintf(stdout, "  Data          %s\n", cfg.Dev.DataDir)
	fmt.Fprintf(stdout, "relink dev ready; Ctrl-C stops\n")

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("gateway: %w", err)
	}
	fmt.Fprintln(stdout, "relink dev stopping")
	cli.Shutdown(srv, logger)
	return nil
}

// runDevServer runs only the embedded Temporal server and Web UI (as
// `temporal server start-dev` does, with Relink's search attributes), so a
// worker and gateway can run as processes of their own on one machine; the
// integration tests run their shared server this way too.
func runDevServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev-server", flag.ContinueOnError)
	var more namespaceList
	fs.Var(&more, "namespace", "another namespace to create (repeatable); TEMPORAL_NAMESPACE is the first")
	inMemory := fs.Bool("in-memory", false, "keep Temporal's state in memory, lost on stop (as temporal server start-dev without --db-filename)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "relink dev-server starting: Temporal server and Web UI")
	cfg, _, err := app.LoadConfig(ctx)
	if err != nil {
		return err
	}
	t, err := devstack.StartTemporal(devstack.Options{
		DataDir:        cfg.Dev.DataDir,
		Namespace:      cfg.Temporal.Namespace,
		MoreNamespaces: more,
		FrontendPort:   cfg.Dev.TemporalPort,
		UIPort:         cfg.Dev.UIPort,
		CodecEndpoint:  strings.TrimRight(cfg.Gateway.PublicURL, "/") + "/codec",
		InMemory:       *inMemory,
		Progress:       stepPrinter(stdout),
	})
	if err != nil {
		return err
	}
	defer t.Stop()
	fmt.Fprintf(stdout, "Temporal dev server\n")
	fmt.Fprintf(stdout, "  Temporal      %s (namespaces %s)\n", t.Address, strings.Join(append([]string{cfg.Temporal.Namespace}, more...), ", "))
	if t.UIURL != "" {
		fmt.Fprintf(stdout, "  Temporal UI   %s/namespaces/%s/workflows\n", t.UIURL, cfg.Temporal.Namespace)
	}
	database := t.Database
	if database == "" {
		database = "in memory"
	}
	fmt.Fprintf(stdout, "  Data          %s (log: %s)\n", database, t.LogFile)
	fmt.Fprintf(stdout, "relink dev-server ready; Ctrl-C stops\n")
	select {
	case <-ctx.Done():
	case err := <-t.UIErrors():
		return fmt.Errorf("Temporal Web UI: %w", err)
	}
	fmt.Fprintln(stdout, "relink dev-server stopping")
	return nil
}

// stepPrinter prints one step of a start, indented under its first line.
func stepPrinter(stdout io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(stdout, "  "+format+"\n", args...)
	}
}

// namespaceList is a repeatable -namespace flag.
type namespaceList []string

func (l *namespaceList) String() string { return strings.Join(*l, ",") }

func (l *namespaceList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty namespace")
	}
	*l = append(*l, v)
	return nil
}

// devKeys gives the dev stack the keys production sets by hand: a payload
// key and a client-token key, generated in the data directory (0600) on
// first start and kept, so restarts read the old histories and tokens.
func devKeys(cfg *config.Config) error {
	if err := devstack.SecureDataDir(cfg.Dev.DataDir, "payload-keys", "client-token-keys", "sandbox.json", "sandbox.json.tmp"); err != nil {
		return err
	}
	for _, k := range []struct {
		setting *string
		file    string
	}{
		{&cfg.Temporal.PayloadKeys, "payload-keys"},
		{&cfg.Gateway.ClientTokenKeys, "client-token-keys"},
	} {
		if *k.setting != "" {
			continue
		}
		keys, err := keyring.LoadOrCreate(filepath.Join(cfg.Dev.DataDir, k.file), "dev-"+time.Now().UTC().Format("20060102"))
		if err != nil {
			return err
		}
		formatted := make([]string, len(keys))
		for i, key := range keys {
			formatted[i] = key.Format()
		}
		*k.setting = strings.Join(formatted, ",")
	}
	return nil
}

// redactKey shows the dev key, which is public, and hides any other.
func redactKey(key string) string {
	if key == cli.DevAPIKey {
		return key
	}
	return "from RELINK_API_KEY"
}
