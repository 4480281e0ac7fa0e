package quiltt

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/relink-dev/relink/activities/aggregator"
)

var _ aggregator.Lister = (*Provider)(nil)

// profilePageSize is how many profiles one page of Quiltt's profile
// listing holds (its default). A cursor names a page by number, so it
// must not change between the calls of one sweep.
const profilePageSize = 25

// ListNeedingUser implements aggregator.Lister profile by profile: Quiltt
// lists its profiles (GET /v1/profiles, with the API secret, paged by
// page number) but a profile's connections only to that profile's
// session, so each profile costs a GraphQL query for its ERROR_REPAIRABLE
// connections, and a session token when none is cached (Quiltt limits
// those per profile: sweep no more often than that allows).
//
// The cursor is "page:profile:connection": the profile page, the profile
// on it and the connection of that profile to go on from. One call reads
// at most one page of profiles, so a page of candidates may hold fewer
// than limit, even none, and still have a next one. Profiles or
// connections that come or go during a sweep can shift what a position
// holds; the next sweep finds what this one missed.
func (p *Provider) ListNeedingUser(ctx context.Context, cursor string, limit int) (aggregator.CandidatePage, error) {
	if limit <= 0 {
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("quiltt: list limit %d: want a positive number", limit))
	}
	page, profile, conn, err := parseCursor(cursor)
	if err != nil {
		return aggregator.CandidatePage{}, err
	}
	profiles, more, err := p.profiles(ctx, page)
	if err != nil {
		return aggregator.CandidatePage{}, err
	}
	var out aggregator.CandidatePage
	for ; profile < len(profiles); profile, conn = profile+1, 0 {
		id := profiles[profile]
		conns, err := p.repairable(ctx, id)
		if aggregator.TypeOf(err) == aggregator.ErrTypeConnectionNotFound {
			continue // the profile went away since the listing
		}
		if err != nil {
			return aggregator.CandidatePage{}, err
		}
		for ; conn < len(conns); conn++ {
			if len(out.Candidates) == limit {
				out.Next = formatCursor(page, profile, conn)
				return out, nil
			}
			c := conns[conn]
			st := aggregator.ConnectionStatus{Health: HealthOf(c.Status), ProviderStatus: c.Status}
			out.Candidates = append(out.Candidates, aggregator.Candidate{
				ConnectionRef: aggregator.ConnectionRef{Provider: Name, ConnectionID: c.ID, ProfileID: id, Connector: c.Provider},
				Institution:   c.Institution.Name,
				Status:        &st,
			})
		}
	}
	if more {
		out.Next = formatCursor(page+1, 0, 0)
	}
	return out, nil
}

func formatCursor(page, profile, conn int) string {
	return fmt.Sprintf("%d:%d:%d", page, profile, conn)
}

func parseCursor(cursor string) (page, profile, conn int, err error) {
	if cursor == "" {
		return 1, 0, 0, nil
	}
	_, err = fmt.Sscanf(cursor, "%d:%d:%d", &page, &profile, &conn)
	if err != nil || page < 1 || profile < 0 || conn < 0 || formatCursor(page, profile, conn) != cursor {
		return 0, 0, 0, aggregator.InvalidInput(fmt.Sprintf("quiltt: list cursor %q is not one ListNeedingUser returned", cursor))
	}
	return page, profile, conn, nil
}

// profiles returns the ids on one page of Quiltt's profile listing, and
// whether a page follows: by its Total-Pages header, else by a full page.
func (p *Provider) profiles(ctx context.Context, page int) (ids []string, more bool, err error) {
	q := url.Values{"page": {strconv.Itoa(page)}, "limit": {strconv.Itoa(profilePageSize)}}
	var res []struct {
		ID string `json:"id"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodGet,
		URL:            strings.TrimRight(p.APIURL, "/") + "/v1/profiles?" + q.Encode(),
		Header:         http.Header{"Authorization": {"Bearer " + p.APISecret}},
		ResponseHeader: &hdr,
	}, &res)
	switch {
	case err != nil:
		return nil, false, err
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Retried: an operator can fix QUILTT_API_SECRET meanwhile.
		return nil, false, fmt.Errorf("quiltt: profile listing refused (%d); check QUILTT_API_SECRET", status)
	case status/100 != 2:
		return nil, false, aggregator.WithRetryAfter(aggregator.HTTPStatusError("quiltt profiles", status, errorText(raw)), hdr)
	}
	for _, pr := range res {
		ids = append(ids, pr.ID)
	}
	if total, err := strconv.Atoi(hdr.Get("Total-Pages")); err == nil {
		return ids, page < total, nil
	}
	return ids, len(res) >= profilePageSize, nil
}

type listedConnection struct {
	connection
	Institution struct {
		Name string `json:"name"`
	} `json:"institution"`
}

// repairable lists the profile's ERROR_REPAIRABLE connections, in
// Quiltt's order.
func (p *Provider) repairable(ctx context.Context, profileID string) ([]listedConnection, error) {
	var data struct {
		Connections []listedConnection `json:"connections"`
	}
	const query = `query RelinkRepairable {
  connections(filter: {status: [ERROR_REPAIRABLE]}) { id status provider institution { name } }
}`
	if err := p.graphql(ctx, profileID, query, map[string]any{}, &data); err != nil {
		return nil, err
	}
	out := data.Connections[:0]
	for _, c := range data.Connections {
		if HealthOf(c.Status) == aggregator.HealthRepairable {
			out = append(out, c)
		}
	}
	return out, nil
}
