// Package meld is the Meld bank-linking adapter: its REST API (repair
// connect tokens, connection status) and its signed webhooks. Wire formats:
// docs/providers/meld.md.
package meld

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Name is Meld's provider name.
const Name = "meld"

// Defaults.
const (
	DefaultAPIURL = "https://api.meld.io"
	// DefaultVersion pins the API version (Meld-Version header): Meld
	// otherwise answers in the account's default version.
	DefaultVersion = "2025-03-04"
)

// Connection statuses and reasons Relink acts on.
const (
	StatusActive            = "ACTIVE"
	StatusPartiallyActive   = "PARTIALLY_ACTIVE"
	StatusReconnectRequired = "RECONNECT_REQUIRED"
	StatusDegraded          = "DEGRADED"
	StatusInProgress        = "IN_PROGRESS"
	StatusExpired           = "EXPIRED"
	StatusDeleted           = "DELETED"
	StatusUnrecoverable     = "UNRECOVERABLE"

	ReasonAccessExpiringSoon      = "ACCESS_EXPIRING_SOON"
	ReasonNewAccountsAvailable    = "NEW_ACCOUNTS_AVAILABLE"
	ReasonInstitutionActionNeeded = "INSTITUTION_ACTION_REQUIRED"
	ReasonInteractiveRefresh      = "INTERACTIVE_REFRESH"
)

// Provider is the Meld adapter.
type Provider struct {
	APIURL  string
	APIKey  string
	Version string
	HTTP    *http.Client
}

// Name implements aggregator.Provider.
func (p *Provider) Name() string { return Name }

// Connection is a Meld bank-linking connection.
type Connection struct {
	ID                 string `json:"id"`
	CustomerID         string `json:"customerId"`
	ExternalCustomerID string `json:"externalCustomerId"`
	InstitutionName    string `json:"institutionName"`
	Status             string `json:"status"`
	StatusReason       string `json:"statusReason"`
	// Key is the connection's position in a search's results, what the
	// next page starts after.
	Key string `json:"key"`
}

// Initialize implements aggregator.Provider. The user is always needed,
// unless the connection is already ACTIVE with nothing to fix (CONTINUE).
func (p *Provider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	c, err := p.connection(ctx, ref.ConnectionID)
	if err != nil {
		return aggregator.Session{}, err
	}
	switch c.Status {
	case StatusActive:
		if c.StatusReason == "" {
			return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue, Healthy: true}, nil
		}
	case StatusExpired, StatusDeleted:
		return aggregator.Session{}, aggregator.NotRepairable(fmt.Sprintf("meld: connection %s is %s: start a new connection", c.ID, c.Status))
	}
	// Anything else goes to Meld's repair call, which answers 409 for a
	// connection it will not repair (IN_PROGRESS, say).
	var res struct {
		ID           string `json:"id"`
		ConnectToken string `json:"connectToken"`
		WidgetURL    string `json:"widgetUrl"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodPost,
		URL:            p.url("/bank-linking/connect/repair"),
		Header:         p.headers(),
		Body:           map[string]string{"connectionId": ref.ConnectionID},
		ResponseHeader: &hdr,
	}, &res)
	if err != nil {
		return aggregator.Session{}, err
	}
	switch {
	case status == http.StatusConflict:
		return aggregator.Session{}, aggregator.NotRepairable(fmt.Sprintf("meld: connection %s cannot be repaired (%s): start a new connection", ref.ConnectionID, errorText(raw)))
	case status/100 != 2:
		return aggregator.Session{}, aggregator.WithRetryAfter(aggregator.HTTPStatusError("meld repair", status, errorText(raw)), hdr)
	case res.ConnectToken == "":
		return aggregator.Session{}, fmt.Errorf("meld repair: answer without a connectToken")
	}
	return aggregator.Session{
		ConnectorStatus: aggregator.ConnectorActionRequired,
		ConnectorToken:  res.ConnectToken,
		WidgetURL:       res.WidgetURL,
		ExpiresAt:       tokenExpiry(res.ConnectToken),
		CloseInTask:     true, // Meld has no close step
	}, nil
}

// Close implements aggregator.Provider. Meld has no close step: the widget
// finishing is all, and the status change confirms.
func (p *Provider) Close(context.Context, aggregator.CloseRequest) error { return nil }

// ConnectionStatus implements aggregator.Provider.
func (p *Provider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	c, err := p.connection(ctx, ref.ConnectionID)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	return c.status(), nil
}

func (c Connection) status() aggregator.ConnectionStatus {
	word := c.Status
	if c.StatusReason != "" {
		word += "/" + c.StatusReason
	}
	return aggregator.ConnectionStatus{Health: HealthOf(c.Status, c.StatusReason), ProviderStatus: word}
}

var _ aggregator.Lister = (*Provider)(nil)

// maxListLimit is the most connections one search asks for: Meld's
// search endpoints cap limit (financial accounts at 100).
const maxListLimit = 100

// ListNeedingUser implements aggregator.Lister with Meld's connection
// search, filtered to the statuses that can need the customer and paged
// by the connections' keys (after=). The statuses filter cannot name
// reasons, so a DEGRADED connection the customer cannot fix is dropped
// here: a page may hold fewer than limit candidates, even none, and still
// have a next one.
func (p *Provider) ListNeedingUser(ctx context.Context, cursor string, limit int) (aggregator.CandidatePage, error) {
	if limit <= 0 {
		return aggregator.CandidatePage{}, aggregator.InvalidInput(fmt.Sprintf("meld: list limit %d: want a positive number", limit))
	}
	q := url.Values{
		"statuses": {StatusReconnectRequired + "," + StatusDegraded},
		"limit":    {strconv.Itoa(min(limit, maxListLimit))},
	}
	if cursor != "" {
		q.Set("after", cursor)
	}
	var res struct {
		Connections []Connection `json:"connections"`
		Remaining   int          `json:"remaining"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodGet,
		URL:            p.url("/bank-linking/connections?" + q.Encode()),
		Header:         p.headers(),
		ResponseHeader: &hdr,
	}, &res)
	if err != nil {
		return aggregator.CandidatePage{}, err
	}
	if status/100 != 2 {
		return aggregator.CandidatePage{}, aggregator.WithRetryAfter(aggregator.HTTPStatusError("meld connection search", status, errorText(raw)), hdr)
	}
	var page aggregator.CandidatePage
	for _, c := range res.Connections {
		st := c.status()
		if st.Health != aggregator.HealthRepairable {
			continue
		}
		page.Candidates = append(page.Candidates, aggregator.Candidate{
			ConnectionRef: aggregator.ConnectionRef{Provider: Name, ConnectionID: c.ID,
				// As the webhooks name the customer (webhook.go).
				ProfileID: cmp.Or(c.ExternalCustomerID, c.CustomerID)},
			Institution: c.InstitutionName,
			Status:      &st,
		})
	}
	if n := len(res.Connections); res.Remaining > 0 && n > 0 {
		if page.Next = res.Connections[n-1].Key; page.Next == "" {
			return aggregator.CandidatePage{}, fmt.Errorf("meld connection search: connection %s without a key to page after", res.Connections[n-1].ID)
		}
	}
	return page, nil
}

// HealthOf maps a Meld status and reason onto Relink's health.
func HealthOf(status, reason string) aggregator.Health {
	switch status {
	case StatusActive:
		if reason == ReasonAccessExpiringSoon {
			return aggregator.HealthSyncing // not yet renewed: keep checking
		}
		return aggregator.HealthHealthy
	case StatusReconnectRequired:
		return aggregator.HealthRepairable
	case StatusDegraded:
		if needsCustomer(reason) {
			return aggregator.HealthRepairable
		}
		return aggregator.HealthDegraded
	case StatusPartiallyActive:
		return aggregator.HealthDegraded
	case StatusExpired, StatusDeleted, StatusUnrecoverable:
		return aggregator.HealthDisconnected
	}
	return aggregator.HealthSyncing
}

// needsCustomer reports DEGRADED reasons only the customer can clear.
func needsCustomer(reason string) bool {
	return reason == ReasonInstitutionActionNeeded || reason == ReasonInteractiveRefresh
}

func (p *Provider) connection(ctx context.Context, id string) (Connection, error) {
	var c Connection
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodGet,
		URL:            p.url("/bank-linking/connections/" + url.PathEscape(id)),
		Header:         p.headers(),
		ResponseHeader: &hdr,
	}, &c)
	if err != nil {
		return Connection{}, err
	}
	if status/100 != 2 {
		return Connection{}, aggregator.WithRetryAfter(aggregator.HTTPStatusError("meld connection "+id, status, errorText(raw)), hdr)
	}
	return c, nil
}

func (p *Provider) url(path string) string { return strings.TrimRight(p.APIURL, "/") + path }

func (p *Provider) headers() http.Header {
	return http.Header{
		// Meld's scheme: the word BASIC and the raw key (not RFC 7617).
		"Authorization": {"BASIC " + p.APIKey},
		"Meld-Version":  {p.Version},
	}
}

// errorText is "code: message" from Meld's error body.
func errorText(raw []byte) string {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &e)
	switch {
	case e.Code != "" && e.Message != "":
		return e.Code + ": " + e.Message
	case e.Message != "":
		return e.Message
	}
	return e.Code
}

// tokenExpiry reads the exp claim of Meld's connect token (a JWT) without
// verifying it: it only tells when to mint another. Zero if unreadable.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(claims.Exp, 0).UTC()
}
