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
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/app"
)

// runClient runs a client subcommand against the gateway's HTTP API and
// prints its JSON answer.
func runClient(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	gatewayURL := fs.String("url", envOr("RELINK_URL", "http://localhost:8080"), "gateway base URL (RELINK_URL)")
	apiKey := fs.String("api-key", envOr("RELINK_API_KEY", DevAPIKey), "gateway API key (RELINK_API_KEY)")
	provider := fs.String("provider", "sandbox", "provider name")
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
	c := apiClient{base: strings.TrimRight(*gatewayURL, "/"), key: *apiKey}

	var conn string
	if cmd != "list" {
		if fs.NArg() != 1 {
			return UsageError("give exactly one connection id")
		}
		conn = url.PathEscape(fs.Arg(0))
	}
	repair := "/v1/repairs/" + url.PathEscape(*provider) + "/" + conn
	switch cmd {
	case "start":
		return c.do(ctx, stdout, http.MethodPost, "/v1/repairs", map[string]string{
			"provider": *provider, "connectionId": fs.Arg(0), "profileId": *profile,
			"institution": *institution, "reason": *reason,
		})
	case "state":
		return c.do(ctx, stdout, http.MethodGet, repair, nil)
	case "cancel":
		return c.do(ctx, stdout, http.MethodPost, repair+"/cancel", map[string]string{"reason": *reason, "requestedBy": "relink CLI"})
	case "simulate-error":
		if *provider == quiltt.Name {
			return simulateQuilttError(ctx, stdout, *profile, fs.Arg(0))
		}
		return c.do(ctx, stdout, http.MethodPost, "/sandbox/connections/"+conn+"/break", map[string]string{
			"profileId": *profile, "institution": *institution,
		})
	default: // list
		q := url.Values{}
		for k, v := range map[string]string{"status": *status, "profileId": *profile} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if isSet(fs, "provider") {
			q.Set("provider", *provider)
		}
		path := "/v1/repairs"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		return c.do(ctx, stdout, http.MethodGet, path, nil)
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

type apiClient struct {
	base, key string
}

// do sends one request and prints the answer; a non-2xx answer is an error
// carrying the API's error message.
func (c apiClient) do(ctx context.Context, stdout io.Writer, method, path string, body any) error {
	out, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") != nil {
		_, err = stdout.Write(out)
		return err
	}
	pretty.WriteByte('\n')
	_, err = pretty.WriteTo(stdout)
	return err
}

// send sends one request and returns a 2xx answer's body.
func (c apiClient) send(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway at %s: %w (is `relink dev` running?)", c.base, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(out, &e) == nil && e.Error.Message != "" {
			return nil, &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	return out, nil
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
