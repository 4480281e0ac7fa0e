package cli

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"

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
	fmt.Fprintln(stdout, "Open each link once in each browser: it saves the view (the UI saves a copy at every visit).")
	for _, v := range temporalui.Views() {
		fmt.Fprintf(stdout, "%-27s %s\n", v.Name, v.SaveURL(*ui, *namespace))
	}
	fmt.Fprintf(stdout, "Columns (Configure columns in the list, once per browser): %s\n", strings.Join(temporalui.RelinkColumns, " and "))
	return nil
}

// PrintUIViews prints one line per saved view of a UI that has them (the
// dev stack's): its name and the link to its list, each after indent.
func PrintUIViews(w io.Writer, uiURL, namespace, indent string) {
	for _, v := range temporalui.Views() {
		fmt.Fprintf(w, "%s%-27s %s\n", indent, v.Name, v.OpenURL(uiURL, namespace))
	}
}
