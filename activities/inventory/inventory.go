// Package inventory reads the app's inventory of connections
// (RELINK_INVENTORY_URL): the candidates of a reconciliation sweep of a
// provider that cannot list its connections (Plaid: "We do not provide a
// way to list all items"), or whose listing the operator chose not to
// use. The contract is in the README (The inventory contract) and in
// gateway/openapi.json (the inventoryPage webhook, InventoryPage).
package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// MaxLimit bounds a page's size; the app may answer fewer.
const MaxLimit = 1000

// Entry is one connection of the app's inventory.
type Entry struct {
	ConnectionID     string    `json:"connectionId"`
	ProfileID        string    `json:"profileId,omitempty"`
	Institution      string    `json:"institution,omitempty"`
	ConsentExpiresAt time.Time `json:"consentExpiresAt,omitzero"`
}

// Page is the inventory's answer: NextCursor is "" (or absent) after the
// last page.
type Page struct {
	Connections []Entry `json:"connections"`
	NextCursor  string  `json:"nextCursor,omitempty"`
}

// Client reads the inventory with its bearer token.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
}

// Page reads provider's page at cursor. A token the app refuses (401,
// 403) and an answer that breaks the contract are InvalidInput: the sweep
// stops and says why. 429 is RateLimited; 5xx and network errors are
// retryable.
func (c *Client) Page(ctx context.Context, provider, cursor string, limit int) (aggregator.CandidatePage, error) {
	if limit < 1 || limit > MaxLimit {
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("inventory page limit %d is not between 1 and %d", limit, MaxLimit))
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return aggregator.CandidatePage{}, aggregator.InvalidInput("RELINK_INVENTORY_URL is not a URL")
	}
	q := u.Query()
	q.Set("provider", provider)
	q.Set("cursor", cursor)
	q.Set("limit", strconv.Itoa(limit))
	u.RawQuery = q.Encode()
	status, raw, err := aggregator.DoJSON(ctx, c.HTTP, aggregator.JSONRequest{
		Method: http.MethodGet, URL: u.String(),
		Header: http.Header{"Authorization": {"Bearer " + c.Token}},
	}, nil)
	switch {
	case err != nil:
		return aggregator.CandidatePage{}, fmt.Errorf("inventory: %w", err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("inventory refused RELINK_INVENTORY_TOKEN (%d)", status))
	case status == http.StatusTooManyRequests:
		return aggregator.CandidatePage{}, &aggregator.RateLimited{Message: "inventory answered 429"}
	case status/100 == 4:
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("inventory answered %d %s to ?provider=%s", status, http.StatusText(status), provider))
	case status/100 != 2:
		return aggregator.CandidatePage{}, fmt.Errorf("inventory answered %d %s", status, http.StatusText(status))
	}
	var page Page
	if err := json.Unmarshal(raw, &page); err != nil {
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("inventory answer is not an InventoryPage: %v", err))
	}
	if len(page.Connections) > limit {
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("inventory answered %d connections for limit %d", len(page.Connections), limit))
	}
	if page.NextCursor != "" && page.NextCursor == cursor {
		// A cursor that does not move would sweep the same page forever.
		return aggregator.CandidatePage{}, aggregator.InvalidInput("inventory answered the cursor it was asked for as nextCursor")
	}
	out := aggregator.CandidatePage{Next: page.NextCursor, Candidates: make([]aggregator.Candidate, 0, len(page.Connections))}
	for i, e := range page.Connections {
		if e.ConnectionID == "" || len(e.ConnectionID) > 256 || len(e.ProfileID) > 256 || len(e.Institution) > 256 {
			return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("inventory connection %d: connectionId is required; ids and institution at most 256 characters", i))
		}
		out.Candidates = append(out.Candidates, aggregator.Candidate{
			ConnectionRef:    aggregator.ConnectionRef{Provider: provider, ConnectionID: e.ConnectionID, ProfileID: e.ProfileID},
			Institution:      e.Institution,
			ConsentExpiresAt: e.ConsentExpiresAt,
		})
	}
	return out, nil
}
