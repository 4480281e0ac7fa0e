package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/relink-dev/relink/client"
	"github.com/relink-dev/relink/workflows"
)

// runStats prints GET /v1/stats as a table: one row per provider, one
// column per status.
func runStats(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	connect := gatewayFlags(fs)
	provider := fs.String("provider", "", "only this provider")
	since := fs.String("since", "", "only repairs started since: an RFC 3339 time or a duration such as 24h")
	if err := fs.Parse(args); err != nil {
		return err
	}
	gw, err := connect()
	if err != nil {
		return err
	}
	params := client.GetStatsParams{}
	if *provider != "" {
		params.Provider = provider
	}
	if *since != "" {
		params.Since = since
	}
	res, err := check(gw.api.GetStatsWithResponse(ctx, &params))
	if err == nil && res.JSON200 == nil {
		err = unexpected(res)
	}
	if err != nil {
		return err
	}
	return printStats(stdout, res.JSON200.ByProvider, res.JSON200.ByStatus)
}

// printStats prints counts keyed by status (the API's JSON keys).
func printStats(w io.Writer, byProvider map[string]map[string]int64, byStatus map[string]int64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "provider\t")
	for _, s := range workflows.Statuses {
		fmt.Fprintf(tw, "%s\t", s)
	}
	fmt.Fprint(tw, "total\t\n")
	providers := make([]string, 0, len(byProvider))
	for p := range byProvider {
		providers = append(providers, p)
	}
	slices.Sort(providers)
	row := func(name string, counts map[string]int64) {
		fmt.Fprintf(tw, "%s\t", name)
		var sum int64
		for _, s := range workflows.Statuses {
			fmt.Fprintf(tw, "%d\t", counts[string(s)])
			sum += counts[string(s)]
		}
		fmt.Fprintf(tw, "%d\t\n", sum)
	}
	for _, p := range providers {
		row(p, byProvider[p])
	}
	row("all", byStatus)
	return tw.Flush()
}
