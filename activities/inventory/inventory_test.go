package inventory_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/inventory"
	"github.com/relink-dev/relink/activities/inventory/inventoryfake"
)

func TestPagesThroughTheInventory(t *testing.T) {
	fake := &inventoryfake.Inventory{Token: strings.Repeat("t", 32)}
	fake.Set("plaid", inventory.Entry{ConnectionID: "a", ProfileID: "u1"}, inventory.Entry{ConnectionID: "b"}, inventory.Entry{ConnectionID: "c"})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := &inventory.Client{URL: srv.URL, Token: fake.Token, HTTP: srv.Client()}

	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		page, err := c.Page(context.Background(), "plaid", cursor, 2)
		require.NoError(t, err)
		for _, cand := range page.Candidates {
			assert.Equal(t, "plaid", cand.Provider)
			ids = append(ids, cand.ConnectionID)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	assert.Equal(t, []string{"a", "b", "c"}, ids)
}

// What breaks the contract stops the sweep with a named, non-retryable
// error; what may pass (429, 5xx) is retryable.
func TestInventoryAnswersThatBreakTheContract(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		body   string
		want   string // the error type; "" for a retryable error
		limit  bool   // a RateLimited
	}{
		"token refused":        {http.StatusUnauthorized, `{}`, aggregator.ErrTypeInvalidInput, false},
		"not JSON":             {http.StatusOK, `<html>`, aggregator.ErrTypeInvalidInput, false},
		"more than the limit":  {http.StatusOK, `{"connections":[{"connectionId":"a"},{"connectionId":"b"},{"connectionId":"c"}]}`, aggregator.ErrTypeInvalidInput, false},
		"a cursor that stalls": {http.StatusOK, `{"connections":[],"nextCursor":"here"}`, aggregator.ErrTypeInvalidInput, false},
		"no connection id":     {http.StatusOK, `{"connections":[{"profileId":"u"}]}`, aggregator.ErrTypeInvalidInput, false},
		"rate limited":         {http.StatusTooManyRequests, `{}`, "", true},
		"down":                 {http.StatusBadGateway, `{}`, "", false},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				assert.Equal(t, "Bearer secret", r.Header.Get("Authorization"))
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := &inventory.Client{URL: srv.URL, Token: "secret", HTTP: srv.Client()}
			_, err := c.Page(context.Background(), "plaid", "here", 2)
			require.Error(t, err)
			assert.Equal(t, tc.want, aggregator.TypeOf(err), err.Error())
			_, limited := aggregator.IsRateLimited(err)
			assert.Equal(t, tc.limit, limited)
			assert.NotContains(t, err.Error(), "secret", "the token never appears in an error")
		})
	}
}
