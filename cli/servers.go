package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/config"
	"github.com/relink-dev/relink/devstack"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/metrics"
)

func loadConfig(ctx context.Context) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(ctx)
	if err != nil {
		return cfg, nil, err
	}
	logger, err := app.NewLogger(cfg.Log)
	return cfg, logger, err
}

// runDev is the README's first command: the whole of Relink in one process.
func runDev(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	embedded := fs.Bool("embedded-temporal", true, "run Temporal in-process; false connects to TEMPORAL_ADDRESS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, logger, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	if len(cfg.Gateway.AllAPIKeys()) == 0 {
		cfg.Gateway.APIKey = DevAPIKey
	}
	if cfg.Gateway.ListenAddr == "" {
		// The dev key is published: only this machine may use it.
		cfg.Gateway.ListenAddr = "127.0.0.1:8080"
	}
	if err := devKeys(&cfg); err != nil {
		return err
	}

	var uiURL string
	var uiOrigins []string
	if *embedded {
		logger.Info("starting embedded Temporal server", "dataDir", cfg.Dev.DataDir)
		t, err := devstack.StartTemporal(devstack.Options{
			DataDir:       cfg.Dev.DataDir,
			Namespace:     cfg.Temporal.Namespace,
			FrontendPort:  cfg.Dev.TemporalPort,
			UIPort:        cfg.Dev.UIPort,
			CodecEndpoint: strings.TrimRight(cfg.Gateway.PublicURL, "/") + "/codec",
		})
		if err != nil {
			return err
		}
		defer t.Stop()
		cfg.Temporal.Address = t.Address
		cfg.Temporal.TLSCertFile, cfg.Temporal.TLSKeyFile, cfg.Temporal.TLSCAFile, cfg.Temporal.APIKey = "", "", "", ""
		uiURL = t.UIURL
		if cfg.Dev.UIPort != 0 && devCodecOpen(cfg.Gateway) {
			uiOrigins = []string{uiURL, fmt.Sprintf("http://127.0.0.1:%d", cfg.Dev.UIPort)}
		}
	}
	reg, stopMetrics, err := startMetrics(cfg, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	tc, err := app.DialWhenReady(ctx, cfg.Temporal, logger, reg.Handler)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := app.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); err != nil {
		return err
	}

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
	w := app.NewWorker(tc, cfg, acts)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()

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
	shutdown(srv, logger)
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

// devCodecOpen says whether the embedded Web UI (which has no login) may
// call /codec without a key: only while the stack has no secret to keep,
// i.e. its only API key is the published dev key and it listens on
// loopback. An Origin header is no credential; it is merely all the UI
// can send. Set your own RELINK_API_KEY, or listen elsewhere, and the UI
// shows payloads encoded.
func devCodecOpen(g config.Gateway) bool {
	keys := g.AllAPIKeys()
	host, _, err := net.SplitHostPort(g.ListenAddr)
	ip := net.ParseIP(host)
	return err == nil && len(keys) == 1 && keys[0] == DevAPIKey &&
		(host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// redactKey shows the dev key, which is public, and hides any other.
func redactKey(key string) string {
	if key == DevAPIKey {
		return key
	}
	return "from RELINK_API_KEY"
}

// runGateway runs the production gateway against TEMPORAL_ADDRESS.
func runGateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, logger, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	if err := cfg.RequireAPIKey(); err != nil {
		return err
	}
	if cfg.Gateway.ListenAddr == "" {
		cfg.Gateway.ListenAddr = ":8080"
	}
	reg, stopMetrics, err := startMetrics(cfg, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	tc, err := app.Dial(ctx, cfg.Temporal, logger, reg.Handler)
	if err != nil {
		return err
	}
	defer tc.Close()
	providers := app.NewProviders(cfg, nil)
	if len(providers.APIs) == 0 {
		return errNoProvider
	}
	gw, err := app.NewGateway(cfg, tc, logger, providers, nil)
	if err != nil {
		return err
	}
	gw.Metrics = reg
	srv := app.NewHTTPServer(cfg.Gateway.ListenAddr, gw.Handler())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ListenAndServe() }()
	logger.Info("gateway listening", "addr", cfg.Gateway.ListenAddr, "temporal", cfg.Temporal.Address, "namespace", cfg.Temporal.Namespace,
		"payloadEncryption", gw.Codec != nil, "clientTokens", gw.ClientTokens != nil, "corsOrigins", cfg.Gateway.CORSOrigins)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	shutdown(srv, logger)
	return nil
}

// errNoProvider: production processes need at least one real provider.
var errNoProvider = errors.New("no provider is enabled: set Quiltt's, Meld's or Plaid's settings (see the README); the sandbox lives in `relink dev`")

// runSetup registers the search attributes on a cluster.
func runSetup(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, logger, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	tc, err := app.Dial(ctx, cfg.Temporal, logger, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := app.EnsureSearchAttributes(ctx, tc, cfg.Temporal.Namespace); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "search attributes registered in namespace %s\n", cfg.Temporal.Namespace)
	return nil
}

// startMetrics builds the process's metrics, served on RELINK_METRICS_ADDR
// when it is set (and by the gateway at /metrics).
func startMetrics(cfg config.Config, logger *slog.Logger) (*metrics.Registry, func(), error) {
	reg, err := metrics.New()
	if err != nil {
		return nil, nil, err
	}
	if cfg.Metrics.Addr == "" {
		return reg, func() {}, nil
	}
	stop, err := app.ServeMetrics(cfg.Metrics.Addr, reg, logger)
	return reg, stop, err
}

func shutdown(srv *http.Server, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("gateway shutdown", "error", err)
	}
}
