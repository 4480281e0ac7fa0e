//go:build browser

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/temporalui"
)

// TestBrowserTemporalUIListShowsEachOutcome makes one repair of each
// outcome on `relink dev` and reads its Web UI's list of workflows in
// headless Chromium, as an operator's first visit shows it, with no
// setup: each close status (Completed, Failed, Canceled), the Relink
// columns with each outcome and reason code, and the saved views, one of
// which it opens. RELINK_SCREENSHOTS=1 rewrites docs/temporal-ui/list.png.
func TestBrowserTemporalUIListShowsEachOutcome(t *testing.T) {
	t.Parallel()
	gatewayPort, uiPort := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	ui := fmt.Sprintf("http://localhost:%d", uiPort)
	env := map[string]string{
		"RELINK_DATA_DIR":           filepath.Join(t.TempDir(), "relink"),
		"RELINK_DEV_TEMPORAL_PORT":  fmt.Sprint(freePort(t)),
		"RELINK_DEV_UI_PORT":        fmt.Sprint(uiPort),
		"RELINK_LISTEN_ADDR":        fmt.Sprintf("127.0.0.1:%d", gatewayPort),
		"RELINK_PUBLIC_URL":         base,
		"RELINK_SANDBOX_SYNC_DELAY": "0s",
	}
	api := apiClient{base: base, key: cli.DevAPIKey}
	stop := startDev(t, env)
	defer stop()

	bank := `{"profileId":"profile_1","institution":"First Sandbox Bank"}`
	// REPAIRED: the user reconnects.
	call(t, api, http.MethodPost, "/sandbox/connections/conn_repaired/break", bank)
	waitConnection(t, api, "conn_repaired", "AWAITING_USER")
	call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_repaired/reconnect", "")
	login := call(t, api, http.MethodPost, "/sandbox/connections/conn_repaired/login", "")
	call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_repaired/complete", login)
	// UNREPAIRABLE: a connection the provider has never heard of.
	call(t, api, http.MethodPost, "/v1/repairs", `{"provider":"sandbox","connectionId":"conn_unknown"}`)
	// EXPIRED: a one-second window nobody answers.
	call(t, api, http.MethodPost, "/sandbox/connections/conn_expired/break", `{"profileId":"profile_1","loseWebhook":true}`)
	call(t, api, http.MethodPost, "/v1/repairs", `{"provider":"sandbox","connectionId":"conn_expired","repairWindow":"1s"}`)
	// CANCELED: the app withdraws it.
	call(t, api, http.MethodPost, "/sandbox/connections/conn_canceled/break", bank)
	waitConnection(t, api, "conn_canceled", "AWAITING_USER")
	call(t, api, http.MethodPost, "/v1/repairs/sandbox/conn_canceled/cancel", `{"reason":"account closed"}`)
	for conn, outcome := range map[string]string{"conn_repaired": "REPAIRED", "conn_unknown": "UNREPAIRABLE",
		"conn_expired": "EXPIRED", "conn_canceled": "CANCELED"} {
		waitConnection(t, api, conn, outcome)
		// Listed (the UI reads the same visibility) and closed.
		require.Eventually(t, func() bool {
			_, out := api.send(t, http.MethodGet, "/v1/repairs?status="+outcome, "")
			return strings.Contains(out, `"connectionId":"`+conn+`"`) && strings.Contains(out, `"running":false`)
		}, time.Minute, 100*time.Millisecond, "%s listed %s and closed", conn, outcome)
	}

	b := newBrowser(t)
	b.do("viewport", chromedp.EmulateViewport(1600, 900))
	list := ui + "/namespaces/default/workflows"
	assert.Equal(t, int64(http.StatusOK), b.open(list))
	rows := `[...document.querySelectorAll('table tbody tr')]`
	b.waitUntil("the four repairs listed", rows+`.filter(r => r.innerText.includes('repair:sandbox:')).length === 4`, waitTimeout)
	headers := eval[[]string](b, `[...document.querySelectorAll('table thead th')].map(h => h.innerText.trim())`)
	for _, c := range temporalui.Columns {
		assert.Contains(t, headers, c, "the list's columns, with no setup")
	}
	for conn, want := range map[string][]string{
		// The UI shows close statuses in capitals.
		"conn_repaired": {"COMPLETED\n\tREPAIRED\tconfirmed_on_close"},
		"conn_unknown":  {"FAILED\n\tUNREPAIRABLE\tconnection_not_found"},
		"conn_expired":  {"FAILED\n\tEXPIRED\twindow_ended"},
		"conn_canceled": {"CANCELED\n\tCANCELED\tcanceled"},
	} {
		row := eval[string](b, rows+`.map(r => r.innerText).find(t => t.includes('repair:sandbox:`+conn+`')) || ''`)
		for _, w := range want {
			assert.Contains(t, row, w, "%s's row", conn)
		}
	}
	if os.Getenv("RELINK_SCREENSHOTS") == "1" {
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		dir := filepath.Join("..", "docs", "temporal-ui")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "list.png"), png, 0o644))
	}

	// The saved views are there, and one shows only its outcome.
	var saved map[string][]struct{ Name, Query string }
	savedViews := eval[string](b, `localStorage.getItem('saved-workflow-queries') || '{}'`)
	require.NoError(t, json.Unmarshal([]byte(savedViews), &saved))
	require.Len(t, saved["default"], len(temporalui.Views()))
	for i, v := range temporalui.Views() {
		assert.Equal(t, v.Name, saved["default"][i].Name)
		assert.Equal(t, v.Query, saved["default"][i].Query)
	}
	unrepairable := temporalui.Views()[2]
	require.Equal(t, "Relink: unrepairable", unrepairable.Name)
	b.open(unrepairable.OpenURL(ui, "default"))
	b.waitUntil("only the unrepairable repair listed", rows+`.filter(r => r.innerText.includes('repair:sandbox:')).length === 1 && `+
		rows+`.some(r => r.innerText.includes('repair:sandbox:conn_unknown'))`, waitTimeout)
	assert.Equal(t, savedViews, eval[string](b, `localStorage.getItem('saved-workflow-queries')`), "opening a view saves nothing")

	// In a browser with no Relink views (any other UI; here the
	// namespace's list emptied, which the seed leaves alone), a link of
	// relink ui-views saves its view, once.
	eval[chromedp.Void](b, `localStorage.setItem('saved-workflow-queries', JSON.stringify({default: []}))`)
	expired := temporalui.Views()[3]
	require.Equal(t, "Relink: expired", expired.Name)
	b.open(expired.SaveURL(ui, "default"))
	b.waitUntil("the expired view saved", `(JSON.parse(localStorage.getItem('saved-workflow-queries')).default || []).length === 1`, waitTimeout)
	b.waitUntil("only the expired repair listed", rows+`.filter(r => r.innerText.includes('repair:sandbox:')).length === 1 && `+
		rows+`.some(r => r.innerText.includes('repair:sandbox:conn_expired'))`, waitTimeout)
	require.NoError(t, json.Unmarshal([]byte(eval[string](b, `localStorage.getItem('saved-workflow-queries')`)), &saved))
	require.Len(t, saved["default"], 1)
	assert.Equal(t, expired.Name, saved["default"][0].Name)
	assert.Equal(t, expired.Query, saved["default"][0].Query)
	assert.Empty(t, b.pageErrors())
}

// waitConnection waits for a sandbox connection's repair to be in status.
func waitConnection(t *testing.T, api apiClient, conn, status string) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, out := api.send(t, http.MethodGet, "/v1/repairs/sandbox/"+conn, "")
		return code == http.StatusOK && strings.Contains(out, `"status":"`+status+`"`)
	}, time.Minute, 100*time.Millisecond, "waiting for %s to be %s", conn, status)
}
