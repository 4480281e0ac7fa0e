package quiltt_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/aggregator/conformance"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/quiltt/quilttfake"
)

func TestListNeedingUserGoesProfileByProfile(t *testing.T) {
	fake, p := setup(t) // p_1: conn_plaid and conn_mx repairable
	want := []string{"conn_plaid", "conn_mx"}
	for i := range 30 { // two pages of profiles
		profile := fmt.Sprintf("p_%02d", i+10)
		fake.PutProfile(profile)
		if i%4 == 0 {
			for j := range 3 {
				id := fmt.Sprintf("conn_%d_%d", i, j)
				fake.Put(quilttfake.Connection{ID: id, ProfileID: profile, Provider: "MX", Status: "ERROR_REPAIRABLE", Institution: "MX Bank"})
				want = append(want, id)
			}
		}
		fake.Put(quilttfake.Connection{ID: fmt.Sprintf("conn_%d_ok", i), ProfileID: profile, Provider: "PLAID", Status: "SYNCED"})
	}

	ids, pages := conformance.ListAll(t, p, 2)

	assert.ElementsMatch(t, want, ids, "every repairable connection, once")
	assert.Greater(t, pages, 10)

	page, err := p.ListNeedingUser(context.Background(), "", 50)
	require.NoError(t, err)
	assert.NotEmpty(t, page.Next, "a second page of profiles")
	var c aggregator.Candidate
	for _, cand := range page.Candidates {
		if cand.ConnectionID == "conn_0_1" {
			c = cand
		}
	}
	assert.Equal(t, aggregator.Candidate{
		ConnectionRef: aggregator.ConnectionRef{Provider: quiltt.Name, ConnectionID: "conn_0_1", ProfileID: "p_10", Connector: "MX"},
		Institution:   "MX Bank",
		Status:        &aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: "ERROR_REPAIRABLE"},
	}, c)
	for _, r := range fake.Requests() {
		assert.True(t, strings.HasPrefix(r.Authorization, "Bearer session_"), "connections read as the profile")
	}
}

func TestListNeedingUserRateLimited(t *testing.T) {
	fake, p := setup(t)
	fake.RateLimitNext(1, "9")

	_, err := p.ListNeedingUser(context.Background(), "", 10)

	rl, ok := aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, 9*time.Second, rl.RetryAfter)
	page, err := p.ListNeedingUser(context.Background(), "", 10)
	require.NoError(t, err, "the same cursor again, once the limit passed")
	assert.Len(t, page.Candidates, 2)

	// GraphQL's 429 too (the session is cached by now).
	fake.RateLimitNext(1, "Wed, 21 Oct 2099 07:28:00 GMT")
	_, err = p.ConnectionStatus(context.Background(), ref("conn_ok", ""))
	rl, ok = aggregator.IsRateLimited(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, time.Hour, rl.RetryAfter, "an HTTP date, capped")
}

func TestListNeedingUserRejectsForeignCursors(t *testing.T) {
	_, p := setup(t)
	for _, cursor := range []string{"x", "0:0:0", "1:0", "1:2:3:4", "1:-1:0", "01:0:0"} {
		_, err := p.ListNeedingUser(context.Background(), cursor, 10)
		assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err), cursor)
	}
	_, err := p.ListNeedingUser(context.Background(), "", 0)
	assert.Equal(t, aggregator.ErrTypeInvalidInput, aggregator.TypeOf(err))
	fake := quilttfake.New(secret)
	t.Cleanup(fake.Close)
	bad := &quiltt.Provider{APIURL: fake.URL, AuthURL: fake.URL, APISecret: "wrong", HTTP: fake.Client(), Now: time.Now}
	_, err = bad.ListNeedingUser(context.Background(), "", 10)
	require.Error(t, err)
	assert.Empty(t, aggregator.TypeOf(err), "a wrong secret is retried while an operator fixes it")
	assert.NotContains(t, err.Error(), "wrong")
}
