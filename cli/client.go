package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/client"
)

// runClient runs a client subcommand against the gateway's HTTP API, through
// the client generated from its OpenAPI document (package client), and
// prints its answer: the JSON, or for client-token and reconnect-link the
// one value a script wants.
func runClient(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	connect := gatewayFlags(fs)
	var provider *string
	switch cmd {
	case "state", "client-token", "reconnect-link":
		provider = fs.String("provider", "", "provider name (default: the provider of the connection's repairs, found through the API)")
	default:
		provider = fs.String("provider", "sandbox", "provider name")
	}
	var (
		profile, institution, reason, status *string
	)
	switch cmd {
	case "start", "simulate-error":
		profile = fs.String("profile", "", "profile (end user) id")
		institution = fs.String("institution", "", "institution name")
		reason = fs.String("reason", "", "why (start only)")
	case "cancel":
		reason = fs.String("reason", "", "why the repair is canceled")
	case "list":
		status = fs.String("status", "", "only repairs in this status, e.g. AWAITING_USER")
		profile = fs.String("profile", "", "only this profile's repairs")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: relink %s [flags]%s\n", cmd, map[bool]string{true: " <connection-id>", false: ""}[cmd != "list"])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	gw, err := connect()
	if err != nil {
		return err
	}

	var conn string
	if cmd != "list" {
		if fs.NArg() != 1 {
			return UsageError("give exactly one connection id")
		}
		conn = fs.Arg(0)
	}
	switch cmd {
	case "state", "client-token", "reconnect-link":
		if *provider == "" {
			if *provider, err = gw.providerOf(ctx, conn); err != nil {
				return err
			}
		}
	}
	p := client.ProviderName(*provider)
	switch cmd {
	case "start":
		res, err := check(gw.api.StartRepairWithResponse(ctx, nil, client.StartRepairRequest{
			Provider: p, ConnectionId: conn, ProfileId: profile, Institution: institution, Reason: reason,
		}))
		return printAnswer(stdout, res, err)
	case "state":
		res, err := check(gw.api.GetRepairWithResponse(ctx, p, conn, nil))
		return printAnswer(stdout, res, err)
	case "client-token":
		res, err := check(gw.api.MintClientTokenWithResponse(ctx, p, conn, nil))
		if err == nil && res.JSON201 == nil {
			err = unexpected(res)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, res.JSON201.Token)
		return err
	case "reconnect-link":
		res, err := check(gw.api.MintReconnectLinkWithResponse(ctx, p, conn, nil))
		if err == nil && res.JSON201 == nil {
			err = unexpected(res)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, res.JSON201.Url)
		return err
	case "cancel":
		requestedBy := "relink CLI"
		res, err := check(gw.api.CancelWithResponse(ctx, p, conn, nil, client.CancelRequest{
			Reason: reason, RequestedBy: &requestedBy,
		}))
		return printAnswer(stdout, res, err)
	case "simulate-error":
		if *provider == quiltt.Name {
			return simulateQuilttError(ctx, stdout, *profile, conn)
		}
		res, err := check(gw.api.SandboxBreakWithResponse(ctx, conn, nil, client.SandboxBreakRequest{
			ProfileId: profile, Institution: institution,
		}))
		return printAnswer(stdout, res, err)
	default: // list
		params := client.ListRepairsParams{}
		if *status != "" {
			params.Status = (*client.Status)(status)
		}
		if *profile != "" {
			params.ProfileId = profile
		}
		if isSet(fs, "provider") {
			params.Provider = provider
		}
		res, err := check(gw.api.ListRepairsWithResponse(ctx, &params))
		return printAnswer(stdout, res, err)
	}
}

// providerOf finds the provider of a connection's repairs, for the
// commands that name a repair by its connection alone: a connection id
// is the provider's, so two providers may each have one of that id, and
// then the caller must say which (-provider).
func (gw gateway) providerOf(ctx context.Context, connectionID string) (string, error) {
	var found []string
	pageSize := 1000
	params := client.ListRepairsParams{ConnectionId: &connectionID, PageSize: &pageSize}
	for {
		res, err := check(gw.api.ListRepairsWithResponse(ctx, &params))
		if err == nil && res.JSON200 == nil {
			err = unexpected(res)
		}
		if err != nil {
			return "", fmt.Errorf("find the provider of connection %s: %w", connectionID, err)
		}
		for _, r := range res.JSON200.Repairs {
			if r.ConnectionId == connectionID && !slices.Contains(found, r.Provider) {
				found = append(found, r.Provider)
			}
		}
		if res.JSON200.NextPageToken == nil || *res.JSON200.NextPageToken == "" {
			break
		}
		params.PageToken = res.JSON200.NextPageToken
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no repair of connection %s with any provider (give -provider to ask one)", connectionID)
	case 1:
		return found[0], nil
	default:
		slices.Sort(found)
		return "", UsageError("connection %s has repairs with several providers (%s): give -provider", connectionID, strings.Join(found, ", "))
	}
}

// simulateQuilttError runs Quiltt's connectionSimulateError (Quiltt's
// sandbox environment only) with the QUILTT_* settings. Quiltt then sends
// the repairable webhook to the gateway, which starts the repair.
func simulateQuilttError(ctx context.Context, stdout io.Writer, profileID, connectionID string) error {
	if profileID == "" {
		return UsageError("Quiltt needs -profile (its API is scoped to the profile)")
	}
	cfg, _, err := app.LoadConfig(ctx)
	if err != nil {
		return err
	}
	q, _ := app.NewProviders(cfg, nil).API(quiltt.Name).(*quiltt.Provider)
	if q == nil {
		return errors.New("Quiltt is not enabled: set QUILTT_API_SECRET and QUILTT_WEBHOOK_SECRET")
	}
	if err := q.SimulateError(ctx, profileID, connectionID); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "quiltt connection %s is now ERROR_REPAIRABLE; Quiltt sends the webhook to your gateway\n", connectionID)
	return nil
}

// gateway is the generated client of one gateway, with the CLI's
// credential.
type gateway struct {
	api *client.ClientWithResponses
}

// gatewayFlags adds -url and -api-key to fs; the function it returns,
// called after fs.Parse, connects the client to them.
func gatewayFlags(fs *flag.FlagSet) func() (gateway, error) {
	gatewayURL := fs.String("url", envOr("RELINK_URL", "http://localhost:8080"), "gateway base URL (RELINK_URL)")
	apiKey := fs.String("api-key", envOr("RELINK_API_KEY", DevAPIKey), "gateway API key (RELINK_API_KEY)")
	return func() (gateway, error) {
		return newGateway(*gatewayURL, *apiKey)
	}
}

func newGateway(baseURL, apiKey string) (gateway, error) {
	base := strings.TrimRight(baseURL, "/")
	api, err := client.NewClientWithResponses(base,
		// Each request, its answer read included, within two minutes: a
		// gateway that stopped answering fails the command.
		client.WithHTTPClient(&http.Client{Timeout: 2 * time.Minute}),
		client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+apiKey)
			return nil
		}))
	if err != nil {
		return gateway{}, UsageError("-url %q: %v", baseURL, err)
	}
	return gateway{api: api}, nil
}

// answer is what every generated response has.
type answer interface {
	StatusCode() int
	Bytes() []byte
}

// check turns a call that did not reach the gateway, or a non-2xx answer,
// into an error: for the gateway's JSON error, its message, status and
// code (apiError).
func check[R answer](res R, err error) (R, error) {
	if err != nil {
		// The error names the URL.
		return res, fmt.Errorf("gateway: %w (is `relink dev` running?)", err)
	}
	if res.StatusCode()/100 != 2 {
		var e client.Error
		if json.Unmarshal(res.Bytes(), &e) == nil && e.Error.Message != "" {
			return res, &apiError{Status: res.StatusCode(), Code: string(e.Error.Code), Message: e.Error.Message}
		}
		return res, fmt.Errorf("HTTP %d: %s", res.StatusCode(), bytes.TrimSpace(res.Bytes()))
	}
	return res, nil
}

// unexpected is a 2xx answer that is not the JSON the document promises.
func unexpected(res answer) error {
	return fmt.Errorf("unexpected answer from the gateway (HTTP %d): %.200s", res.StatusCode(), bytes.TrimSpace(res.Bytes()))
}

// printAnswer prints a checked answer's JSON, indented.
func printAnswer[R answer](stdout io.Writer, res R, err error) error {
	if err != nil {
		return err
	}
	out := res.Bytes()
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") != nil {
		_, err = stdout.Write(out)
		return err
	}
	pretty.WriteByte('\n')
	_, err = pretty.WriteTo(stdout)
	return err
}

// apiError is the gateway's JSON error answer.
type apiError struct {
	Status        int
	Code, Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
