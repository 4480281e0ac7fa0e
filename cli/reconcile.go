package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/workflows"
)

// sweepList is GET /v1/reconcile/{provider}'s answer.
type sweepList struct {
	Provider string
	Source   string
	Sweeps   []struct {
		ID, RunID, Status, Error string
		Running                  bool
		workflows.SweepTotals
	}
}

// runReconcile sweeps providers for breaks no webhook announced (POST
// /v1/reconcile/{provider}), every swept provider unless -provider names
// one; -wait waits for the sweeps to end; -list only shows the last
// sweeps. Either way it prints each provider's last sweeps.
func runReconcile(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	gatewayURL := fs.String("url", envOr("RELINK_URL", "http://localhost:8080"), "gateway base URL (RELINK_URL)")
	apiKey := fs.String("api-key", envOr("RELINK_API_KEY", DevAPIKey), "gateway API key (RELINK_API_KEY)")
	provider := fs.String("provider", "", "only this provider (default: every provider the gateway sweeps)")
	wait := fs.Bool("wait", false, "wait until the sweeps end, then print their totals")
	list := fs.Bool("list", false, "start nothing: print the last sweeps")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := apiClient{base: strings.TrimRight(*gatewayURL, "/"), key: *apiKey}
	names := providers.Names()
	if *provider != "" {
		names = []string{*provider}
	}
	started := map[string]string{} // provider → the sweep's workflow id
	for _, p := range names {
		if *list {
			started[p] = ""
			continue
		}
		body, err := c.send(ctx, http.MethodPost, "/v1/reconcile/"+p, nil)
		var apiErr *apiError
		if errors.As(err, &apiErr) && *provider == "" && (apiErr.Code == "unknown_provider" || apiErr.Code == "not_swept") {
			continue // not enabled, or nothing to sweep it from
		}
		if err != nil {
			return fmt.Errorf("sweep %s: %w", p, err)
		}
		var s struct{ ID, RunID string }
		if err := json.Unmarshal(body, &s); err != nil {
			return fmt.Errorf("sweep %s: %w", p, err)
		}
		fmt.Fprintf(stdout, "sweeping %s: %s (run %s)\n", p, s.ID, s.RunID)
		started[p] = s.ID
	}
	if len(started) == 0 {
		return errors.New("no provider is swept: enable one with a listing (meld, quiltt) or set RELINK_INVENTORY_URL (README: Finding every break)")
	}
	for _, p := range names {
		id, ok := started[p]
		if !ok {
			continue
		}
		l, err := lastSweeps(ctx, c, p, *wait && id != "", id)
		if err != nil {
			var apiErr *apiError
			if *list && *provider == "" && errors.As(err, &apiErr) {
				continue
			}
			return err
		}
		printSweeps(stdout, l)
	}
	return nil
}

// lastSweeps reads provider's last sweeps; with wait, until the sweep id
// (whichever run it is in: a long sweep continues as new) is listed and
// has ended. Visibility may list a new sweep a moment late.
func lastSweeps(ctx context.Context, c apiClient, provider string, wait bool, id string) (sweepList, error) {
	for {
		var l sweepList
		body, err := c.send(ctx, http.MethodGet, "/v1/reconcile/"+provider, nil)
		if err != nil {
			return l, fmt.Errorf("sweeps of %s: %w", provider, err)
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return l, fmt.Errorf("sweeps of %s: %w", provider, err)
		}
		ended := false
		for _, s := range l.Sweeps {
			ended = ended || (s.ID == id && !s.Running)
		}
		if !wait || ended {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return l, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func printSweeps(w io.Writer, l sweepList) {
	fmt.Fprintf(w, "\n%s (from its %s):\n", l.Provider, l.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "started\tfinished\tstatus\tchecked\tneed user\tfound\terrors\texpiry arranged\t")
	var failures []string
	for _, s := range l.Sweeps {
		finished := "running"
		if !s.FinishedAt.IsZero() {
			finished = s.FinishedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", s.StartedAt.Local().Format(time.DateTime), finished,
			s.Status, s.Checked, s.NeedUser, s.Found, s.Errors, s.ExpiryArranged)
		if s.Error != "" {
			failures = append(failures, fmt.Sprintf("  %s (started %s): %s", s.ID, s.StartedAt.Local().Format(time.DateTime), s.Error))
		}
	}
	tw.Flush()
	for _, f := range failures {
		fmt.Fprintln(w, f)
	}
}
