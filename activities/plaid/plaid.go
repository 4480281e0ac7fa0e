// Package plaid is the Plaid adapter: update-mode Link tokens, Item status,
// and Plaid's JWT-verified webhooks. Wire formats: docs/providers/plaid.md.
//
// Access tokens never enter workflow history: the repair carries the Item
// id, and the adapter resolves its access token when it calls Plaid.
package plaid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Name is Plaid's provider name.
const Name = "plaid"

// DefaultAPIURL is Plaid's production host.
const DefaultAPIURL = "https://production.plaid.com"

// Error codes Relink acts on.
const (
	CodeItemLoginRequired  = "ITEM_LOGIN_REQUIRED"
	codeItemNotFound       = "ITEM_NOT_FOUND"
	codeInvalidAccessToken = "INVALID_ACCESS_TOKEN"
	codeInvalidLinkToken   = "INVALID_LINK_TOKEN"
	codePermissionRevoked  = "USER_PERMISSION_REVOKED"
	// errorTypeRateLimit is the error_type of Plaid's rate limits (HTTP
	// 429); the error_code names the limit (ITEM_GET_LIMIT, …).
	errorTypeRateLimit = "RATE_LIMIT_EXCEEDED"
)

// AccessTokens resolves an Item's access token, which Relink never stores.
type AccessTokens interface {
	AccessToken(ctx context.Context, itemID string) (string, error)
}

// StaticAccessTokens is a fixed map from Item id to access token, for
// development (PLAID_ACCESS_TOKENS).
type StaticAccessTokens map[string]string

// AccessToken implements AccessTokens.
func (s StaticAccessTokens) AccessToken(_ context.Context, itemID string) (string, error) {
	if t, ok := s[itemID]; ok {
		return t, nil
	}
	return "", aggregator.NotFound("plaid: no access token for item " + itemID + " in PLAID_ACCESS_TOKENS")
}

// HTTPAccessTokens asks the app: GET <URL>?item_id=<id> with
// "Authorization: Bearer <Secret>", answered with {"access_token": "…"};
// 404 means the app does not know the Item.
type HTTPAccessTokens struct {
	URL    string
	Secret string
	HTTP   *http.Client
}

// AccessToken implements AccessTokens.
func (h *HTTPAccessTokens) AccessToken(ctx context.Context, itemID string) (string, error) {
	u, err := url.Parse(h.URL)
	if err != nil {
		return "", aggregator.InvalidInput("plaid: PLAID_ACCESS_TOKEN_URL: " + err.Error())
	}
	q := u.Query()
	q.Set("item_id", itemID)
	u.RawQuery = q.Encode()
	var res struct {
		AccessToken string `json:"access_token"`
	}
	status, _, err := aggregator.DoJSON(ctx, h.HTTP, aggregator.JSONRequest{
		Method: http.MethodGet,
		URL:    u.String(),
		Header: http.Header{"Authorization": {"Bearer " + h.Secret}},
	}, &res)
	switch {
	case err != nil:
		return "", err
	case status == http.StatusNotFound:
		return "", aggregator.NotFound("plaid: the app knows no access token for item " + itemID)
	case status/100 != 2:
		return "", fmt.Errorf("plaid: access token lookup for item %s answered %d", itemID, status)
	case res.AccessToken == "":
		return "", fmt.Errorf("plaid: access token lookup for item %s answered no access_token", itemID)
	}
	return res.AccessToken, nil
}

// Provider is the Plaid adapter. Connections are Items: the connection id
// is the item_id.
type Provider struct {
	APIURL       string
	ClientID     string
	Secret       string
	ClientName   string
	Language     string
	CountryCodes []string
	// LinkWebhookURL, if set, is passed to /link/token/create as webhook.
	LinkWebhookURL string
	// RedirectURI, if set, is passed for OAuth institutions: where the
	// bank sends the user back to Link (the hosted page's
	// RELINK_PUBLIC_URL/r/oauth, or the app's page with the button).
	RedirectURI string
	// AccountSelection: proactive sessions open Link with account
	// selection (update.account_selection_enabled), so the user can share
	// accounts Plaid found since (NEW_ACCOUNTS_AVAILABLE). Initialize is
	// not told what started a repair, so every proactive session has it.
	AccountSelection bool
	Tokens           AccessTokens
	HTTP             *http.Client
}

var _ aggregator.InstitutionReader = (*Provider)(nil)

// Name implements aggregator.Provider.
func (p *Provider) Name() string { return Name }

// Initialize implements aggregator.Provider: /link/token/create in update
// mode (the Item's access token, no products). The user is always needed.
//
// Update mode always needs the user, so for a repair that did not start
// proactively it first reads the Item: one with no error has nothing to
// repair (a redelivered ITEM_LOGIN_REQUIRED, or one the user already
// fixed), and the user is not asked.
func (p *Provider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	if !ref.Proactive {
		st, err := p.ConnectionStatus(ctx, ref)
		if err != nil {
			return aggregator.Session{}, err
		}
		switch st.Health {
		case aggregator.HealthHealthy:
			return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue, Healthy: true}, nil
		case aggregator.HealthDisconnected:
			// The user revoked the Item's consent: not a break to nag
			// them about (as the USER_PERMISSION_REVOKED webhook).
			return aggregator.Session{}, aggregator.NotRepairable("plaid: item " + ref.ConnectionID + ": " + st.ProviderStatus + ": the user revoked access")
		}
	}
	token, err := p.Tokens.AccessToken(ctx, ref.ConnectionID)
	if err != nil {
		return aggregator.Session{}, err
	}
	user := ref.ProfileID
	if user == "" {
		user = ref.ConnectionID
	}
	body := map[string]any{
		"client_id":     p.ClientID,
		"secret":        p.Secret,
		"client_name":   p.ClientName,
		"language":      p.Language,
		"country_codes": p.CountryCodes,
		"user":          map[string]string{"client_user_id": user},
		"access_token":  token,
	}
	if p.LinkWebhookURL != "" {
		body["webhook"] = p.LinkWebhookURL
	}
	if p.RedirectURI != "" {
		body["redirect_uri"] = p.RedirectURI
	}
	if ref.Proactive && p.AccountSelection {
		body["update"] = map[string]any{"account_selection_enabled": true}
	}
	var res struct {
		LinkToken  string    `json:"link_token"`
		Expiration time.Time `json:"expiration"`
	}
	if err := p.call(ctx, "/link/token/create", body, &res); err != nil {
		return aggregator.Session{}, err
	}
	return aggregator.Session{
		ConnectorStatus: aggregator.ConnectorActionRequired,
		ConnectorToken:  res.LinkToken,
		LinkToken:       res.LinkToken,
		ExpiresAt:       res.Expiration,
		CloseInTask:     true, // Close exchanges nothing
	}, nil
}

// Close implements aggregator.Provider. Update mode exchanges nothing: the
// access token stays the same, and /item/get or LOGIN_REPAIRED confirms.
func (p *Provider) Close(context.Context, aggregator.CloseRequest) error { return nil }

// ConnectionStatus implements aggregator.Provider with /item/get: an Item
// with no error is healthy. Its consent_expiration_time (set for some
// OAuth institutions) is when the consent runs out.
func (p *Provider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	token, err := p.Tokens.AccessToken(ctx, ref.ConnectionID)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	var res struct {
		Item struct {
			Error                 *plaidError `json:"error"`
			ConsentExpirationTime *time.Time  `json:"consent_expiration_time"`
		} `json:"item"`
	}
	if err := p.call(ctx, "/item/get", map[string]any{"client_id": p.ClientID, "secret": p.Secret, "access_token": token}, &res); err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	var st aggregator.ConnectionStatus
	switch e := res.Item.Error; {
	case e == nil:
		st = aggregator.ConnectionStatus{Health: aggregator.HealthHealthy, ProviderStatus: "HEALTHY"}
	case e.ErrorCode == CodeItemLoginRequired:
		st = aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: e.ErrorCode}
	case e.ErrorCode == codePermissionRevoked:
		st = aggregator.ConnectionStatus{Health: aggregator.HealthDisconnected, ProviderStatus: e.ErrorCode}
	default:
		st = aggregator.ConnectionStatus{Health: aggregator.HealthDegraded, ProviderStatus: e.ErrorCode}
	}
	if t := res.Item.ConsentExpirationTime; t != nil {
		st.ConsentExpiresAt = t.UTC()
	}
	return st, nil
}

// Institution implements aggregator.InstitutionReader with /item/get's
// item.institution_id ("ins_109508"): the id Link's onSuccess metadata
// and the institution search name the bank by. An Item Plaid no longer
// has (or whose access token the app does not know) is NotFound.
func (p *Provider) Institution(ctx context.Context, ref aggregator.ConnectionRef) (string, error) {
	token, err := p.Tokens.AccessToken(ctx, ref.ConnectionID)
	if err != nil {
		return "", err
	}
	var res struct {
		Item struct {
			InstitutionID *string `json:"institution_id"`
		} `json:"item"`
	}
	if err := p.call(ctx, "/item/get", map[string]any{"client_id": p.ClientID, "secret": p.Secret, "access_token": token}, &res); err != nil {
		return "", err
	}
	if res.Item.InstitutionID == nil {
		// Plaid documents institution_id as nullable (Items created
		// before it existed): no institution is none to match.
		return "", nil
	}
	return *res.Item.InstitutionID, nil
}

type plaidError struct {
	ErrorType    string `json:"error_type"`
	ErrorCode    string `json:"error_code"`
	ErrorMessage string `json:"error_message"`
	RequestID    string `json:"request_id"`
}

// call POSTs to a Plaid endpoint and classifies Plaid's error answers.
func (p *Provider) call(ctx context.Context, path string, body, out any) error {
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodPost,
		URL:            strings.TrimRight(p.APIURL, "/") + path,
		Body:           body,
		ResponseHeader: &hdr,
	}, out)
	if err != nil {
		return err
	}
	if status/100 == 2 {
		return nil
	}
	var e plaidError
	_ = json.Unmarshal(raw, &e)
	msg := fmt.Sprintf("plaid %s: %d %s: %s (request %s)", path, status, e.ErrorCode, e.ErrorMessage, e.RequestID)
	switch {
	case e.ErrorCode == codeItemNotFound || e.ErrorCode == codeInvalidAccessToken:
		return aggregator.NotFound(msg)
	case e.ErrorCode == codePermissionRevoked:
		return aggregator.NotRepairable(msg)
	case e.ErrorCode == codeInvalidLinkToken:
		return aggregator.ReconnectRejected(msg)
	case e.ErrorType == errorTypeRateLimit || status == http.StatusTooManyRequests:
		// Plaid documents no Retry-After; honoured if it sends one.
		return aggregator.WithRetryAfter(&aggregator.RateLimited{Message: msg}, hdr)
	case status == http.StatusBadRequest && e.ErrorType == "INVALID_INPUT" && e.ErrorCode != "INVALID_API_KEYS":
		return aggregator.InvalidInput(msg)
	default:
		// Transient (429, 5xx, API and institution errors), or settings an
		// operator can fix (credentials, redirect URI) while we retry.
		return errors.New(msg)
	}
}
