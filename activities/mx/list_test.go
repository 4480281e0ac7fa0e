package mx_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/mx/mxfake"
)

func TestListNeedingUserPagesThroughUsersAndMembers(t *testing.T) {
	fake, p := setup(t) // USR-1: MBR-broken needs the user
	want := []string{"MBR-broken"}
	// 250 users (three pages of them), every third with a member that
	// needs the user; the others' are fine or MX's to fix.
	for i := range 250 {
		u := fmt.Sprintf("USR-%03d", i)
		status := []string{mx.StatusDenied, mx.StatusConnected, mx.StatusDegraded}[i%3]
		fake.Put(mxfake.Member{GUID: "MBR-" + u, UserGUID: u, Name: "MX Bank", Status: status})
		if i%3 == 0 {
			want = append(want, "MBR-"+u)
		}
	}
	// One user with more members than one page of them holds.
	for i := range 1005 {
		status := mx.StatusConnected
		if i == 3 || i == 1002 {
			status = mx.StatusPrevented
		}
		fake.Put(mxfake.Member{GUID: fmt.Sprintf("MBR-big-%04d", i), UserGUID: "USR-big", Status: status})
	}
	want = append(want, "MBR-big-0003", "MBR-big-1002")
	// A disabled user's members are not MX's to aggregate, nor ours.
	fake.Put(mxfake.Member{GUID: "MBR-disabled", UserGUID: "USR-disabled", Status: mx.StatusDenied})
	fake.DisableUser("USR-disabled")

	ids, pages := conformance.ListAll(t, p, 50)
	assert.ElementsMatch(t, want, ids)
	assert.GreaterOrEqual(t, pages, 3, "three pages of users at least")

	var usersPages []string
	for _, r := range fake.Requests() {
		if r.Path == "/users" {
			usersPages = append(usersPages, r.Query)
		}
		if r.Path == "/users/USR-big/members" {
			assert.Contains(t, r.Query, "records_per_page=1000")
		}
	}
	assert.Contains(t, usersPages, "page=3&records_per_page=100")
	assert.GreaterOrEqual(t, fake.Count(http.MethodGet, "/users/USR-big/members"), 2, "both pages of the user's members")
}

func TestListedCandidatesNameTheirUser(t *testing.T) {
	_, p := setup(t)
	page, err := p.ListNeedingUser(context.Background(), "", 10)
	require.NoError(t, err)
	require.Len(t, page.Candidates, 1)
	c := page.Candidates[0]
	assert.Equal(t, aggregator.ConnectionRef{Provider: mx.Name, ConnectionID: "MBR-broken", ProfileID: user}, c.ConnectionRef)
	assert.Equal(t, "MX Bank", c.Institution)
	assert.Equal(t, &aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: mx.StatusChallenged}, c.Status)
	assert.Empty(t, page.Next)
}

func TestListNeedingUserRefusesBadInput(t *testing.T) {
	_, p := setup(t)
	for _, cursor := range []string{"x", "0:0:0", "1:-1:0", "01:0:0", "1:0"} {
		_, err := p.ListNeedingUser(context.Background(), cursor, 10)
		assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err), cursor)
	}
	_, err := p.ListNeedingUser(context.Background(), "", 0)
	assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err))
}

func TestListNeedingUserRateLimited(t *testing.T) {
	fake, p := setup(t)
	fake.RateLimitNext(1, "3")
	_, err := p.ListNeedingUser(context.Background(), "", 10)
	rl, ok := aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, "3s", rl.RetryAfter.String())
	assert.True(t, slices.ContainsFunc(fake.Requests(), func(r mxfake.Request) bool { return strings.HasPrefix(r.Path, "/users") }))
}
