package mx

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/relink-dev/relink/activities/aggregator"
)

var _ aggregator.Lister = (*Provider)(nil)

// Page sizes of MX's listings (records_per_page: 10 to 1000). A cursor
// names a page of users by number, so the users' page size must not
// change between the calls of one sweep.
const (
	usersPerPage   = 100
	membersPerPage = 1000
)

// ListNeedingUser implements aggregator.Lister user by user: MX lists a
// client's users (GET /users) and each user's members (GET
// /users/{user}/members), both paged by number, with no filter by status,
// so every member is read and those whose status needs the user are
// kept. Disabled users are skipped: MX does not aggregate their members.
//
// The cursor is "page:user:member": the page of users, the user on it and
// the member of that user's needing ones to go on from. One call reads at
// most one page of users, so a page of candidates may hold fewer than
// limit, even none, and still have a next one. Users or members that come
// or go during a sweep can shift what a position holds; the next sweep
// finds what this one missed.
func (p *Provider) ListNeedingUser(ctx context.Context, cursor string, limit int) (aggregator.CandidatePage, error) {
	if limit <= 0 {
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("mx: list limit %d: want a positive number", limit))
	}
	page, user, member, err := parseCursor(cursor)
	if err != nil {
		return aggregator.CandidatePage{}, err
	}
	users, more, err := p.users(ctx, page)
	if err != nil {
		return aggregator.CandidatePage{}, err
	}
	var out aggregator.CandidatePage
	for ; user < len(users); user, member = user+1, 0 {
		members, err := p.needingUser(ctx, users[user])
		if aggregator.TypeOf(err) == aggregator.ErrTypeConnectionNotFound {
			continue // the user went away since the listing
		}
		if err != nil {
			return aggregator.CandidatePage{}, err
		}
		for ; member < len(members); member++ {
			if len(out.Candidates) == limit {
				out.Next = formatCursor(page, user, member)
				return out, nil
			}
			m := members[member]
			st := m.status()
			out.Candidates = append(out.Candidates, aggregator.Candidate{
				ConnectionRef: aggregator.ConnectionRef{Provider: Name, ConnectionID: m.GUID, ProfileID: users[user]},
				Institution:   m.Name,
				Status:        &st,
			})
		}
	}
	if more {
		out.Next = formatCursor(page+1, 0, 0)
	}
	return out, nil
}

func formatCursor(page, user, member int) string {
	return fmt.Sprintf("%d:%d:%d", page, user, member)
}

func parseCursor(cursor string) (page, user, member int, err error) {
	if cursor == "" {
		return 1, 0, 0, nil
	}
	_, err = fmt.Sscanf(cursor, "%d:%d:%d", &page, &user, &member)
	if err != nil || page < 1 || user < 0 || member < 0 || formatCursor(page, user, member) != cursor {
		return 0, 0, 0, aggregator.InvalidInput(fmt.Sprintf("mx: list cursor %q is not one ListNeedingUser returned", cursor))
	}
	return page, user, member, nil
}

type pagination struct {
	CurrentPage int `json:"current_page"`
	TotalPages  int `json:"total_pages"`
}

// users returns the guids of the enabled users on one page of MX's user
// listing, and whether a page follows.
func (p *Provider) users(ctx context.Context, page int) (guids []string, more bool, err error) {
	var res struct {
		Users []struct {
			GUID       string `json:"guid"`
			IsDisabled bool   `json:"is_disabled"`
		} `json:"users"`
		Pagination pagination `json:"pagination"`
	}
	q := url.Values{"page": {strconv.Itoa(page)}, "records_per_page": {strconv.Itoa(usersPerPage)}}
	if err := p.get(ctx, "mx users", "/users?"+q.Encode(), &res); err != nil {
		return nil, false, err
	}
	for _, u := range res.Users {
		if !u.IsDisabled && u.GUID != "" {
			guids = append(guids, u.GUID)
		}
	}
	return guids, page < res.Pagination.TotalPages, nil
}

// needingUser lists the user's members whose status needs the user, in
// MX's order, reading every page of them.
func (p *Provider) needingUser(ctx context.Context, user string) ([]Member, error) {
	var out []Member
	for page := 1; ; page++ {
		var res struct {
			Members    []Member   `json:"members"`
			Pagination pagination `json:"pagination"`
		}
		q := url.Values{"page": {strconv.Itoa(page)}, "records_per_page": {strconv.Itoa(membersPerPage)}}
		if err := p.get(ctx, "mx members of user "+user, "/users/"+url.PathEscape(user)+"/members?"+q.Encode(), &res); err != nil {
			return nil, err
		}
		for _, m := range res.Members {
			if NeedsUser(m.Status()) && m.GUID != "" {
				out = append(out, m)
			}
		}
		if page >= res.Pagination.TotalPages || len(res.Members) == 0 {
			return out, nil
		}
	}
}
