package integration

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/cli"
	relinkapi "github.com/relink-dev/relink/client"
	"github.com/relink-dev/relink/workflows"
)

// The Go client generated from openapi.json drives a repair through the
// real gateway from start to REPAIRED: an app's backend (API key) and its
// page (client token) each with the client, every answer decoded into the
// generated types (and validated against the document by the stack's
// gateway). Then the relink CLI's new commands against the same gateway.
func TestGeneratedClientDrivesARepairThroughTheGateway(t *testing.T) {
	s := newLinkStack(t, nil)
	ctx := context.Background()
	const conn = "conn_client"

	// The connection breaks with no webhook (the sandbox loses it), and the
	// backend starts the repair by hand, then finds it by connection.
	profile, reason, lose := "profile_client", "support ticket", true
	broken, err := s.api.SandboxBreakWithResponse(ctx, conn, nil, relinkapi.SandboxBreakRequest{ProfileId: &profile, LoseWebhook: &lose})
	require.NoError(t, err)
	require.NotNil(t, broken.JSON200, "%d %s", broken.StatusCode(), broken.Body)
	started, err := s.api.StartRepairWithResponse(ctx, nil, relinkapi.StartRepairRequest{
		Provider: sandbox.Name, ConnectionId: conn, ProfileId: &profile, Reason: &reason,
	})
	require.NoError(t, err)
	require.NotNil(t, started.JSON202, "%d %s", started.StatusCode(), started.Body)
	assert.Equal(t, relinkapi.Started, started.JSON202.Outcome)
	assert.Equal(t, "repair:sandbox:"+conn, started.JSON202.Repair.Id)
	s.waitForStatus(conn, workflows.StatusAwaitingUser)

	// The list reads visibility, which follows the repair's own state by
	// a moment.
	connID := conn
	var listed *relinkapi.ListRepairsResponse
	s.waitFor("the repair to be listed", func() bool {
		var err error
		listed, err = s.api.ListRepairsWithResponse(ctx, &relinkapi.ListRepairsParams{ConnectionId: &connID})
		require.NoError(t, err)
		require.NotNil(t, listed.JSON200, "%d %s", listed.StatusCode(), listed.Body)
		return len(listed.JSON200.Repairs) > 0
	})
	assert.Equal(t, sandbox.Name, listed.JSON200.Repairs[0].Provider)
	assert.Equal(t, conn, listed.JSON200.Repairs[0].ConnectionId)

	got, err := s.api.GetRepairWithResponse(ctx, sandbox.Name, conn, nil)
	require.NoError(t, err)
	require.NotNil(t, got.JSON200, "%d %s", got.StatusCode(), got.Body)
	assert.Equal(t, relinkapi.AWAITINGUSER, got.JSON200.Repair.Status)
	require.NotNil(t, got.JSON200.Repair.ProfileId)
	assert.Equal(t, profile, *got.JSON200.Repair.ProfileId)

	// The page, with a client token for this connection: reconnect,
	// the user signs in, complete.
	minted, err := s.api.MintClientTokenWithResponse(ctx, sandbox.Name, conn, nil)
	require.NoError(t, err)
	require.NotNil(t, minted.JSON201, "%d %s", minted.StatusCode(), minted.Body)
	page := newAPIClient(t, s.gateway.URL, minted.JSON201.Token)
	rec, err := page.ReconnectWithResponse(ctx, sandbox.Name, conn, nil, relinkapi.ReconnectRequest{})
	require.NoError(t, err)
	require.NotNil(t, rec.JSON200, "%d %s", rec.StatusCode(), rec.Body)
	assert.Equal(t, relinkapi.ACTIONREQUIRED, rec.JSON200.ConnectorStatus)
	require.NotNil(t, rec.JSON200.Session)
	require.NotNil(t, rec.JSON200.Session.ConnectorToken)
	login, err := s.api.SandboxLoginWithResponse(ctx, conn, nil)
	require.NoError(t, err)
	require.NotNil(t, login.JSON200, "%d %s", login.StatusCode(), login.Body)
	done, err := page.CompleteWithResponse(ctx, sandbox.Name, conn, nil, relinkapi.CompleteRequest{
		ConnectorToken: *rec.JSON200.Session.ConnectorToken, PublicToken: &login.JSON200.PublicToken, Metadata: login.JSON200.Metadata,
	})
	require.NoError(t, err)
	require.NotNil(t, done.JSON202, "%d %s", done.StatusCode(), done.Body)
	s.waitForStatus(conn, workflows.StatusRepaired)

	// The token opens nothing else: the gateway's 403 is the document's
	// Error, code and message.
	refused, err := page.ListRepairsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.NotNil(t, refused.JSON403, "%d %s", refused.StatusCode(), refused.Body)
	assert.Equal(t, relinkapi.ErrorCodeForbidden, refused.JSON403.Error.Code)
	assert.NotEmpty(t, refused.JSON403.Error.Message)

	missing, err := s.api.GetRepairWithResponse(ctx, sandbox.Name, "conn_never_broken", nil)
	require.NoError(t, err)
	require.NotNil(t, missing.JSON404, "%d %s", missing.StatusCode(), missing.Body)
	assert.Equal(t, relinkapi.ErrorCodeNotFound, missing.JSON404.Error.Code)

	// Stats count through visibility, which trails the repair a little.
	provider := sandbox.Name
	s.waitFor("stats to count the repair", func() bool {
		stats, err := s.api.GetStatsWithResponse(ctx, &relinkapi.GetStatsParams{Provider: &provider})
		require.NoError(t, err)
		require.NotNil(t, stats.JSON200, "%d %s", stats.StatusCode(), stats.Body)
		return stats.JSON200.ByStatus[string(workflows.StatusRepaired)] == 1
	})

	// The CLI, through the same client: state finds the provider itself,
	// client-token and reconnect-link print the one value.
	relink := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args[:1:1], append([]string{"-url", s.gateway.URL, "-api-key", apiKey}, args[1:]...)...)
		require.Zero(t, cli.Run(args, &out, &errOut), errOut.String())
		return out.String()
	}
	assert.Contains(t, relink("state", conn), `"status": "REPAIRED"`)
	token := strings.TrimSpace(relink("client-token", conn))
	read, err := newAPIClient(t, s.gateway.URL, token).GetRepairWithResponse(ctx, sandbox.Name, conn, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, read.StatusCode(), "the printed token is a client token for the connection")

	s.breakConnection("conn_client_link", "profile_client")
	s.waitForStatus("conn_client_link", workflows.StatusAwaitingUser)
	link := strings.TrimSpace(relink("reconnect-link", "conn_client_link"))
	assert.True(t, strings.HasPrefix(link, s.gateway.URL+"/r/"), link)
	pageRes, err := http.Get(link)
	require.NoError(t, err)
	pageRes.Body.Close()
	assert.Equal(t, http.StatusOK, pageRes.StatusCode, "the link opens the hosted page")

	var out, errOut bytes.Buffer
	assert.Equal(t, 1, cli.Run([]string{"state", "-url", s.gateway.URL, "-api-key", apiKey, "conn_unknown"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "no repair of connection conn_unknown with any provider")
}
