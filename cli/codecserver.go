package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/sethvargo/go-envconfig"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/config"
)

// DefaultCodecListen is where `relink codec-server` listens unless told.
const DefaultCodecListen = "127.0.0.1:8888"

// originFlags collects a repeated -ui-origin.
type originFlags []string

func (o *originFlags) String() string { return strings.Join(*o, ",") }

func (o *originFlags) Set(v string) error {
	if err := config.CheckOrigin(v); err != nil {
		return err
	}
	// A page of that origin may decrypt with the operator's keys: plain
	// http only from this machine, where no one on the network can put
	// script into it.
	u, _ := url.Parse(v)
	ip := net.ParseIP(u.Hostname())
	if u.Scheme != "https" && u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("UI origin %q: https, or http on this machine (localhost, 127.0.0.1)", v)
	}
	*o = append(*o, v)
	return nil
}

// runCodecServer is `relink codec-server` with the process environment.
func runCodecServer(ctx context.Context, args []string, stdout io.Writer) error {
	return CodecServer(ctx, args, nil, stdout)
}

// CodecServer runs `relink codec-server` until ctx ends: a codec server on
// the operator's own machine, for the Web UI in their browser and the
// temporal CLI where neither the gateway's /codec nor single sign-on is
// available (`temporal server start-dev`, the compose file). It decrypts
// with RELINK_PAYLOAD_KEYS from env (nil: the process environment); the
// keys never leave this machine, and since it takes no credential it
// listens on loopback only and answers only the origins of -ui-origin
// (gateway.LocalCodec, built by app.NewLocalCodec). It prints where it listens, and how to point the
// UI and the CLI at it, to stdout.
func CodecServer(ctx context.Context, args []string, env envconfig.Lookuper, stdout io.Writer) error {
	fs := flag.NewFlagSet("codec-server", flag.ContinueOnError)
	listen := fs.String("listen", DefaultCodecListen, "loopback address to listen on (127.0.0.1, [::1] or localhost, and a port)")
	var origins originFlags
	fs.Var(&origins, "ui-origin", "origin of a Temporal Web UI whose pages may call it, e.g. http://localhost:8233 (required; repeat for several)")
	namespace := fs.String("namespace", "", "the namespace whose payloads it serves (default: the Temporal connection's, TEMPORAL_NAMESPACE or the profile's, else default)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: relink codec-server -ui-origin <Web UI origin> [-ui-origin …] [-listen 127.0.0.1:8888] [-namespace N]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	if !OnLoopback(*listen) {
		return UsageError("-listen %s is not a loopback address: the codec server decrypts for whoever reaches it, "+
			"so it listens on this machine only (127.0.0.1, [::1] or localhost, with a port)", *listen)
	}
	if len(origins) == 0 {
		return UsageError("-ui-origin is required: the origin of the Temporal Web UI you open in this machine's browser, " +
			"e.g. -ui-origin http://localhost:8233 (as the address bar shows it; repeat it for each)")
	}
	var (
		cfg config.Config
		err error
	)
	if env == nil {
		cfg, err = config.Load(ctx)
	} else {
		cfg, err = config.LoadFrom(ctx, env)
	}
	if err != nil {
		return err
	}
	logger, err := app.NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	if *namespace == "" {
		*namespace = cfg.Temporal.Namespace
	}
	local, err := app.NewLocalCodec(cfg, *namespace, origins, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	// localhost is a name: what it resolved to is what counts.
	if addr, ok := ln.Addr().(*net.TCPAddr); !ok || !addr.IP.IsLoopback() {
		_ = ln.Close()
		return fmt.Errorf("-listen %s resolved to %s, which is not a loopback address", *listen, ln.Addr())
	}
	srv := app.NewHTTPServer(ln.Addr().String(), local.Handler())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	endpoint := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "relink codec-server: namespace %s at %s, for the Web UI at %s\n", *namespace, endpoint, strings.Join(origins, ", "))
	fmt.Fprintf(stdout, "  Web UI: set its codec server (data encoder) endpoint to %s in this browser\n", endpoint)
	fmt.Fprintf(stdout, "  CLI:    temporal workflow show -w <workflow id> --codec-endpoint %s\n", endpoint)
	logger.Info("codec server listening", "addr", ln.Addr().String(), "namespace", *namespace, "uiOrigins", []string(origins))
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	Shutdown(srv, logger)
	return nil
}
