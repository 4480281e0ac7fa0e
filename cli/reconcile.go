package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/client"
)

// runReconcile sweeps providers for breaks no webhook announced (POST
// /v1/reconcile/{provider}), every swept provider unless -provider names
// one; -wait waits for the sweeps to end; -list only shows the last
// sweeps. Either way it prints each provider's last sweeps.
func runReconcile(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	connect := gatewayFlags(fs)
	provider := fs.String("provider", "", "only this provider (default: every provider the gateway sweeps)")
	wait := fs.Bool("wait", false, "wait until the sweeps end, then print their totals")
	list := fs.Bool("list", false, "start nothing: print the last sweeps")
	if err := fs.Parse(args); err != nil {
		return err
	}
	gw, err := connect()
	if err != nil {
		return err
	}
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
		res, err := check(gw.api.TriggerSweepWithResponse(ctx, client.ProviderName(p), nil))
		var apiErr *apiError
		if errors.As(err, &apiErr) && *provider == "" && (apiErr.Code == "unknown_provider" || apiErr.Code == "not_swept") {
			continue // not enabled, or nothing to sweep it from
		}
		if err == nil && res.JSON202 == nil {
			err = unexpected(res)
		}
		if err != nil {
			return fmt.Errorf("sweep %s: %w", p, err)
		}
		s := res.JSON202
		fmt.Fprintf(stdout, "sweeping %s: %s (run %s)\n", p, s.Id, s.RunId)
		started[p] = s.Id
	}
	if len(started) == 0 {
		return errors.New("no provider is swept: enable one with a listing (meld, quiltt) or set RELINK_INVENTORY_URL (README: Finding every break)")
	}
	for _, p := range names {
		id, ok := started[p]
		if !ok {
			continue
		}
		l, err := lastSweeps(ctx, gw, p, *wait && id != "", id)
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
func lastSweeps(ctx context.Context, gw gateway, provider string, wait bool, id string) (client.SweepList, error) {
	for {
		res, err := check(gw.api.ListSweepsWithResponse(ctx, client.ProviderName(provider), nil))
		if err == nil && res.JSON200 == nil {
			err = unexpected(res)
		}
		if err != nil {
			return client.SweepList{}, fmt.Errorf("sweeps of %s: %w", provider, err)
		}
		l := *res.JSON200
		ended := false
		for _, s := range l.Sweeps {
			ended = ended || (s.Id == id && !s.Running)
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

func printSweeps(w io.Writer, l client.SweepList) {
	fmt.Fprintf(w, "\n%s (from its %s):\n", l.Provider, l.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "started\tfinished\tstatus\tchecked\tneed user\tfound\terrors\texpiry arranged\t")
	var failures []string
	for _, s := range l.Sweeps {
		finished := "running"
		if s.FinishedAt != nil && !s.FinishedAt.IsZero() {
			finished = s.FinishedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", s.StartedAt.Local().Format(time.DateTime), finished,
			s.Status, s.Checked, s.NeedUser, s.Found, s.Errors, s.ExpiryArranged)
		if s.Error != nil && *s.Error != "" {
			failures = append(failures, fmt.Sprintf("  %s (started %s): %s", s.Id, s.StartedAt.Local().Format(time.DateTime), *s.Error))
		}
	}
	tw.Flush()
	for _, f := range failures {
		fmt.Fprintln(w, f)
	}
}
