package cli

import (
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/relink-dev/relink/temporalui"
)

// runUIViews prints the links that save Relink's views in a Temporal Web
// UI (one click each), and the columns to add there.
func runUIViews(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ui-views", flag.ContinueOnError)
	ui := fs.String("ui", "", "the Temporal Web UI's address, e.g. https://temporal.example.com (required)")
	namespace := fs.String("namespace", envOr("TEMPORAL_NAMESPACE", "default"), "the namespace of the repairs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if u, err := url.Parse(*ui); *ui == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return UsageError("-ui must be the Web UI's http(s) address")
	}
	PrintUIViews(stdout, *ui, *namespace, "")
	fmt.Fprintf(stdout, "Columns (Configure columns in the list, once per browser): %s and %s\n",
		temporalui.Columns[1], temporalui.Columns[2])
	return nil
}

// PrintUIViews prints one line per saved view: its name and the link that
// opens and saves it, each line after indent.
func PrintUIViews(w io.Writer, uiURL, namespace, indent string) {
	for _, v := range temporalui.Views() {
		fmt.Fprintf(w, "%s%-27s %s\n", indent, v.Name, v.URL(uiURL, namespace))
	}
}
