package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/relink-dev/relink/workflows"
)

// runStats prints GET /v1/stats as a table: one row per provider, one
// column per status.
func runStats(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	gatewayURL := fs.String("url", envOr("RELINK_URL", "http://localhost:8080"), "gateway base URL (RELINK_URL)")
	apiKey := fs.String("api-key", envOr("RELINK_API_KEY", DevAPIKey), "gateway API key (RELINK_API_KEY)")
	provider := fs.String("provider", "", "only this provider")
	since := fs.String("since", "", "only repairs started since: an RFC 3339 time or a duration such as 24h")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := url.Values{}
	if *provider != "" {
		q.Set("provider", *provider)
	}
	if *since != "" {
		q.Set("since", *since)
	}
	path := "/v1/stats"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	c := apiClient{base: strings.TrimRight(*gatewayURL, "/"), key: *apiKey}
	body, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	var st struct {
		ByStatus   map[workflows.Status]int64
		ByProvider map[string]map[workflows.Status]int64
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	return printStats(stdout, st.ByProvider, st.ByStatus)
}

func printStats(w io.Writer, byProvider map[string]map[workflows.Status]int64, byStatus map[workflows.Status]int64) error {
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
	row := func(name string, counts map[workflows.Status]int64) {
		fmt.Fprintf(tw, "%s\t", name)
		var sum int64
		for _, s := range workflows.Statuses {
			fmt.Fprintf(tw, "%d\t", counts[s])
			sum += counts[s]
		}
		fmt.Fprintf(tw, "%d\t\n", sum)
	}
	for _, p := range providers {
		row(p, byProvider[p])
	}
	row("all", byStatus)
	return tw.Flush()
}
