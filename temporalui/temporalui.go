// Package temporalui is what Relink shows operators in the Temporal Web UI's
// list of workflows: saved views per outcome (links that save themselves
// in the UI) and the columns that say each repair's outcome and reason.
//
// Every UI shows a repair's outcome in its Status column without setup,
// because the run closes the way the outcome reads (workflows/outcome.go):
// Completed for REPAIRED, Failed for EXPIRED and UNREPAIRABLE, Canceled
// for CANCELED. The Relink columns (the outcome and its reason code, from
// search attributes) are a per-browser setting in the UI; the dev stack's
// UI starts with them (Seed), any other UI adds them once.
package temporalui

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/relink-dev/relink/workflows"
)

// View is a saved view of repairs: a name and a visibility query.
type View struct {
	Name  string
	Query string
}

// repairs selects the repair workflows.
var repairs = fmt.Sprintf("WorkflowType = %q", workflows.WorkflowName)

// Views are the saved views Relink offers: the open repairs waiting for
// their users, then one per outcome.
func Views() []View {
	status := workflows.SearchAttrStatus.GetName()
	views := []View{{
		Name:  "Relink: waiting for users",
		Query: fmt.Sprintf("%s AND %s = %q AND ExecutionStatus = %q", repairs, status, workflows.StatusAwaitingUser, "Running"),
	}}
	for _, s := range []workflows.Status{workflows.StatusRepaired, workflows.StatusUnrepairable, workflows.StatusExpired, workflows.StatusCanceled} {
		views = append(views, View{
			Name:  "Relink: " + strings.ToLower(string(s)),
			Query: fmt.Sprintf("%s AND %s = %q", repairs, status, s),
		})
	}
	return views
}

// SaveURL is the link that opens view in the UI at uiURL and saves it
// there: the UI saves the query of a link with savedQuery=<name> as a
// view of that name, again at each visit (so it is to be opened once).
func (v View) SaveURL(uiURL, namespace string) string {
	return v.url(uiURL, namespace, url.Values{"query": {v.Query}, "savedQuery": {v.Name}})
}

// OpenURL is the link that opens view's list in the UI at uiURL, saving
// nothing: for a UI that has the view already (the dev stack's).
func (v View) OpenURL(uiURL, namespace string) string {
	return v.url(uiURL, namespace, url.Values{"query": {v.Query}})
}

func (v View) url(uiURL, namespace string, q url.Values) string {
	return strings.TrimRight(uiURL, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows?" + q.Encode()
}

// RelinkColumns are the columns Relink adds to the list: the outcome and
// its reason code.
var RelinkColumns = []string{workflows.SearchAttrStatus.GetName(), workflows.SearchAttrReasonCode.GetName()}

// Columns are the list's columns with Relink's: the UI's default six with
// RelinkColumns after Status (and without Run ID, to make room).
var Columns = slices.Concat([]string{"Status"}, RelinkColumns, []string{"Workflow ID", "Type", "Start", "End"})

// Local-storage keys of the Temporal UI (ui-server v2.55) that hold a
// browser's columns and saved views, per namespace.
const (
	columnsKey = "namespace-workflow-table-columns"
	viewsKey   = "saved-workflow-queries"
)

// Seed is a script for the UI's page that gives a browser the Relink
// columns and saved views in namespace, each only if that browser has
// none of its own for the namespace yet: it never overrides an
// operator's choice.
func Seed(namespace string) string {
	columns := make([]map[string]string, len(Columns))
	for i, c := range Columns {
		columns[i] = map[string]string{"label": c}
	}
	views := make([]map[string]string, 0, len(Views()))
	for i, v := range Views() {
		views = append(views, map[string]string{"id": fmt.Sprintf("relink-%d", i), "name": v.Name, "query": v.Query, "type": "user"})
	}
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	return `(function(){try{var ns=` + js(namespace) + `;` +
		`function seed(key,value){var s=localStorage.getItem(key),all=s?JSON.parse(s):{};` +
		`if(!all||typeof all!=="object"||all[ns]){return}all[ns]=value;localStorage.setItem(key,JSON.stringify(all))}` +
		`seed(` + js(columnsKey) + `,` + js(columns) + `);seed(` + js(viewsKey) + `,` + js(views) + `)}catch(e){}})();`
}
