// Package truelayer is the TrueLayer Data API (v1) adapter: it extends a
// connection (POST /connections/extend with the connection's refresh
// token), sends the user to TrueLayer's sign-in when the bank needs them
// (a redirect, back to the gateway's return route), exchanges the returned
// code at the auth server's /connect/token, and reads a connection's
// health from GET /data/v1/me. Wire formats and their sources:
// docs/providers/truelayer.md.
//
// The connection's tokens are the app's: the adapter asks the app for them
// on every call (Tokens) and hands the new ones straight back to the app
// (Tokens.Store), so no token is returned from an activity or logged.
// TrueLayer retires the refresh token it replaces, so new tokens the app
// has not taken yet are saved first in the activity's checkpoint
// (aggregator.Checkpoint: Temporal's heartbeat details, encrypted with
// RELINK_PAYLOAD_KEYS), and every later attempt, on any worker, delivers
// them before it calls TrueLayer. Nothing is kept in a worker's memory.
package truelayer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Name is TrueLayer's provider name.
const Name = "truelayer"

// Defaults: TrueLayer's live hosts (the sandbox's are
// auth.truelayer-sandbox.com and api.truelayer-sandbox.com).
const (
	DefaultAuthURL = "https://auth.truelayer.com"
	DefaultAPIURL  = "https://api.truelayer.com"
)

// The extend answer's action_needed values.
const (
	ActionNone           = "no_action_needed"
	ActionAuthentication = "authentication_needed"
	ActionReconfirmation = "reconfirmation_of_consent_needed"
)

// Data API error codes Relink tells apart (the "error" field of an error
// answer). Each is also the error.<code> mock user of TrueLayer's mock
// bank, whose every Data API call fails with it.
const (
	ErrWrongCredentials         = "wrong_credentials"
	ErrUserInputRequired        = "user_input_required"
	ErrAccountTemporarilyLocked = "account_temporarily_locked"
	ErrAccountPermanentlyLocked = "account_permanently_locked"
	ErrAccessDenied             = "access_denied"
	ErrInvalidGrant             = "invalid_grant"
	ErrProviderError            = "provider_error"
	ErrInternalError            = "internal_error"
)

// reconfirmPrefix starts the connector token of a reconfirmation session:
// its close extends with user_has_reconfirmed_consent: true.
const reconfirmPrefix = "reconfirm_"

// ReconfirmValidity is how long a reconfirmation the user gave on
// Relink's page (kept with the app's connection, consent_reconfirmed_at)
// is sent with the next extends, when the bank also asked them to sign in.
const ReconfirmValidity = 24 * time.Hour

// Credentials are what the app holds for one connection and Relink needs:
// the refresh token (extend), the access token (the health read) and the
// user extend asks about.
type Credentials struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	User         *User  `json:"user,omitempty"`
	// ConsentReconfirmedAt is when the user last reconfirmed consent on
	// Relink's page (Tokens.Reconfirmed): extends within
	// ReconfirmValidity of it say user_has_reconfirmed_consent: true.
	ConsentReconfirmedAt time.Time `json:"consent_reconfirmed_at,omitzero"`
}

// User is the end user as /connections/extend wants them: the id TrueLayer
// gave them, their full name and an email or phone number.
type User struct {
	ID    string `json:"id,omitempty"`
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
}

// NewTokens are tokens TrueLayer issued for a connection (extend's
// no_action_needed, or the code exchange), delivered to the app.
type NewTokens struct {
	ConnectionID string    `json:"connection_id"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresIn    int       `json:"expires_in,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	IssuedAt     time.Time `json:"issued_at"`
}

// Tokens is the app's store of its TrueLayer tokens, which Relink never
// keeps.
type Tokens interface {
	// Credentials returns the connection's current tokens; an unknown
	// connection is aggregator.NotFound.
	Credentials(ctx context.Context, connectionID string) (Credentials, error)
	// Store hands the connection's new tokens to the app.
	Store(ctx context.Context, t NewTokens) error
	// Reconfirmed tells the app that the user reconfirmed consent at at,
	// to keep with the connection and answer in Credentials.
	Reconfirmed(ctx context.Context, connectionID string, at time.Time) error
}

// Provider is the TrueLayer adapter.
type Provider struct {
	AuthURL      string
	APIURL       string
	ClientID     string
	ClientSecret string
	// RedirectURI is the gateway's return route as registered in
	// TrueLayer's console (RELINK_PUBLIC_URL + /r/return/truelayer).
	RedirectURI string
	Tokens      Tokens
	HTTP        *http.Client
	Now         func() time.Time
}

// Name implements aggregator.Provider.
func (p *Provider) Name() string { return Name }

// Initialize implements aggregator.Provider. A repair that is not
// proactive first reads the connection's health (a manual start after the
// app's Data API call failed): nothing to do if it works, unrepairable if
// the account is permanently locked, retried while it is temporarily
// locked; a read that says nothing of the connection (the app's access
// token expired: 401) goes on to extend, whose answer is authoritative.
// Then it extends the connection: no_action_needed (new tokens,
// delivered to the app) is CONTINUE; authentication_needed is a redirect
// to its user_input_link; reconfirmation_of_consent_needed is a click on
// Relink's page.
//
// Extend may rotate the tokens, which must then survive a failed
// delivery: without a checkpoint in ctx (a local activity's attempt) it
// is not called, and Initialize fails with aggregator.ErrCheckpointNeeded
// (retryable) for the activity, which has one.
func (p *Provider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	// An earlier attempt extended (no_action_needed) and the app had not
	// taken the tokens: once it has, that was this initialize's answer.
	switch settled, err := p.settle(ctx, ref.ConnectionID); {
	case err != nil:
		return aggregator.Session{}, err
	case settled:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	}
	if !ref.Proactive {
		st, err := p.ConnectionStatus(ctx, ref)
		switch {
		case errors.Is(err, errHealthUnknown):
			st = aggregator.ConnectionStatus{Health: aggregator.HealthRepairable}
		case err != nil:
			return aggregator.Session{}, err
		}
		switch st.Health {
		case aggregator.HealthHealthy:
			return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue, Healthy: true}, nil
		case aggregator.HealthDisconnected:
			return aggregator.Session{}, aggregator.NotRepairable(fmt.Sprintf("truelayer: connection %s: %s: the user must connect anew", ref.ConnectionID, st.ProviderStatus))
		case aggregator.HealthDegraded:
			// Retried with backoff: the user cannot fix it now.
			return aggregator.Session{}, fmt.Errorf("truelayer: connection %s: %s: waiting for the bank to unlock it", ref.ConnectionID, st.ProviderStatus)
		}
	}
	if aggregator.CheckpointFrom(ctx) == nil {
		return aggregator.Session{}, fmt.Errorf("truelayer: connection %s: extend may rotate the tokens: %w", ref.ConnectionID, aggregator.ErrCheckpointNeeded)
	}
	res, err := p.extend(ctx, ref.ConnectionID, false)
	if err != nil {
		return aggregator.Session{}, err
	}
	nonce, err := nonce()
	if err != nil {
		return aggregator.Session{}, err
	}
	switch res.ActionNeeded {
	case ActionNone:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	case ActionAuthentication:
		if res.UserInputLink == "" {
			return aggregator.Session{}, errors.New("truelayer extend: authentication_needed without a user_input_link")
		}
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorActionRequired, ConnectorToken: nonce,
			WidgetURL: res.UserInputLink, Widget: aggregator.WidgetRedirect}, nil
	case ActionReconfirmation:
		// TrueLayer's auth dialog does not collect a reconfirmation: the
		// app (here, Relink's page) does, and extends again.
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorActionRequired, ConnectorToken: reconfirmPrefix + nonce,
			Widget: aggregator.WidgetReconfirm}, nil
	}
	return aggregator.Session{}, fmt.Errorf("truelayer extend: unknown action_needed %q", res.ActionNeeded)
}

// Close implements aggregator.Provider: a reconfirmation extends with
// user_has_reconfirmed_consent: true; a return from TrueLayer's sign-in
// exchanges its code (PublicToken) at /connect/token. The new tokens go to
// the app (through the checkpoint, as Initialize's: without one in ctx,
// Close fails with aggregator.ErrCheckpointNeeded before calling
// TrueLayer).
//
// A reconfirmation after which the bank also needs a sign-in
// (authentication_needed) is told to the app (Tokens.Reconfirmed), which
// keeps it with the connection; the close is then rejected, and the next
// initialize, on any worker, extends with the reconfirmation and answers
// the sign-in's redirect.
func (p *Provider) Close(ctx context.Context, req aggregator.CloseRequest) error {
	if aggregator.CheckpointFrom(ctx) == nil {
		return fmt.Errorf("truelayer: connection %s: close may rotate the tokens: %w", req.ConnectionID, aggregator.ErrCheckpointNeeded)
	}
	if strings.HasPrefix(req.ConnectorToken, reconfirmPrefix) {
		res, err := p.extend(ctx, req.ConnectionID, true)
		if err != nil {
			return err
		}
		switch res.ActionNeeded {
		case ActionNone:
			return nil
		case ActionAuthentication:
			if err := p.Tokens.Reconfirmed(ctx, req.ConnectionID, p.now().UTC()); err != nil {
				// Retried: the next attempt extends (with the
				// reconfirmation) and tells the app again.
				return fmt.Errorf("truelayer: the reconfirmation for %s not kept by the app: %w", req.ConnectionID, err)
			}
			return aggregator.ReconnectRejected("truelayer: consent reconfirmed (kept with the app's connection), but the bank also needs the user to sign in: the next session is TrueLayer's sign-in")
		}
		return aggregator.ReconnectRejected(fmt.Sprintf("truelayer: extend after reconfirmation answered %q", res.ActionNeeded))
	}
	if req.PublicToken == "" {
		return aggregator.ReconnectRejected("truelayer: the return carried no code")
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"client_id":     {p.ClientID},
		"client_secret": {p.ClientSecret},
		"redirect_uri":  {p.RedirectURI},
		"code":          {req.PublicToken},
	}
	creds, err := p.credentials(ctx, req.ConnectionID)
	if err != nil {
		return err
	}
	var tok tokenAnswer
	status, raw, hdr, err := p.postForm(ctx, p.authURL("/connect/token"), form, &tok)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		code, detail := errorOf(raw)
		if code == ErrInvalidGrant {
			// Used, expired, or another client's: the user signs in again.
			return aggregator.ReconnectRejected("truelayer code exchange: " + detail)
		}
		return aggregator.WithRetryAfter(aggregator.HTTPStatusError("truelayer code exchange", status, detail), hdr)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		return errors.New("truelayer code exchange: answer without tokens")
	}
	return p.deliver(ctx, NewTokens{ConnectionID: req.ConnectionID, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken,
		ExpiresIn: tok.ExpiresIn, TokenType: tok.TokenType, IssuedAt: p.now().UTC()}, creds.RefreshToken)
}

// errHealthUnknown: /me answered, but not of the connection (the app's
// access token was refused, an error code Relink does not know): TrueLayer
// is up (aggregator.ErrAnswered).
var errHealthUnknown = fmt.Errorf("the answer says nothing of the connection: %w", aggregator.ErrAnswered)

// ConnectionStatus implements aggregator.Provider: GET /data/v1/me with
// the app's access token (after delivering the checkpoint's tokens, if
// the app has not taken them). An answer that says nothing of the
// connection (401: the app's access token expired, as it does after an
// hour; an unknown 4xx code) is a retryable error wrapping
// errHealthUnknown.
func (p *Provider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	creds, err := p.credentials(ctx, ref.ConnectionID)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	var me struct {
		Results []struct {
			ConsentStatus    string    `json:"consent_status"`
			ConsentExpiresAt time.Time `json:"consent_expires_at"`
		} `json:"results"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method: http.MethodGet, URL: p.apiURL("/data/v1/me"),
		Header:         http.Header{"Authorization": {"Bearer " + creds.AccessToken}},
		ResponseHeader: &hdr,
	}, &me)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	if status/100 == 2 {
		st := aggregator.ConnectionStatus{Health: aggregator.HealthHealthy, ProviderStatus: "authorised"}
		if len(me.Results) > 0 {
			if me.Results[0].ConsentStatus != "" {
				st.ProviderStatus = strings.ToLower(me.Results[0].ConsentStatus)
			}
			st.ConsentExpiresAt = me.Results[0].ConsentExpiresAt
		}
		return st, nil
	}
	code, detail := errorOf(raw)
	if h, ok := HealthOf(code); ok {
		return aggregator.ConnectionStatus{Health: h, ProviderStatus: code}, nil
	}
	if status == http.StatusUnauthorized {
		return aggregator.ConnectionStatus{}, fmt.Errorf("truelayer /me: the app's access token for %s was refused (%s): %w", ref.ConnectionID, detail, errHealthUnknown)
	}
	if status/100 == 4 && status != http.StatusTooManyRequests {
		return aggregator.ConnectionStatus{}, fmt.Errorf("truelayer /me %s: %d %s: %w", ref.ConnectionID, status, detail, errHealthUnknown)
	}
	return aggregator.ConnectionStatus{}, aggregator.WithRetryAfter(aggregator.HTTPStatusError("truelayer /me", status, detail), hdr)
}

// HealthOf maps a Data API error code onto Relink's health; false for
// codes that say nothing of the connection (provider_error,
// internal_error, rate limits: retried).
func HealthOf(code string) (aggregator.Health, bool) {
	switch code {
	case ErrWrongCredentials, ErrUserInputRequired, ErrAccessDenied, ErrInvalidGrant:
		// The user signs in again (or reconfirms): a repair.
		return aggregator.HealthRepairable, true
	case ErrAccountTemporarilyLocked:
		// The bank locked the account for now: the user cannot fix it
		// through TrueLayer; the repair waits.
		return aggregator.HealthDegraded, true
	case ErrAccountPermanentlyLocked:
		return aggregator.HealthDisconnected, true
	}
	return "", false
}

// extendAnswer is /connections/extend's answer.
type extendAnswer struct {
	ActionNeeded  string `json:"action_needed"`
	UserInputLink string `json:"user_input_link"`
	tokenAnswer
}

type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	TokenType    string `json:"token_type"`
}

// extend calls POST /connections/extend with the connection's refresh
// token; new tokens in the answer go to the app before it returns. It
// says the user reconfirmed consent when reconfirmed (the user's click),
// or when the app holds a reconfirmation younger than ReconfirmValidity.
func (p *Provider) extend(ctx context.Context, connectionID string, reconfirmed bool) (extendAnswer, error) {
	creds, err := p.credentials(ctx, connectionID)
	if err != nil {
		return extendAnswer{}, err
	}
	if at := creds.ConsentReconfirmedAt; !at.IsZero() {
		age := p.now().Sub(at)
		reconfirmed = reconfirmed || (age < ReconfirmValidity && age > -5*time.Minute)
	}
	body := map[string]any{
		"client_id":                    p.ClientID,
		"client_secret":                p.ClientSecret,
		"refresh_token":                creds.RefreshToken,
		"redirect_uri":                 p.RedirectURI,
		"user_has_reconfirmed_consent": reconfirmed,
	}
	if creds.User != nil {
		body["user"] = creds.User
	}
	var res extendAnswer
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method: http.MethodPost, URL: p.apiURL("/connections/extend"), Body: body, ResponseHeader: &hdr,
	}, &res)
	if err != nil {
		return extendAnswer{}, err
	}
	if status/100 != 2 {
		code, detail := errorOf(raw)
		switch code {
		case ErrInvalidGrant:
			// credentials delivered any tokens the checkpoint held: the
			// app's refresh token is the newest Relink knows of.
			return extendAnswer{}, aggregator.NotRepairable(fmt.Sprintf("truelayer extend %s: the refresh token is no longer good (%s): the user must connect anew", connectionID, detail))
		case ErrAccountPermanentlyLocked:
			return extendAnswer{}, aggregator.NotRepairable(fmt.Sprintf("truelayer extend %s: %s", connectionID, detail))
		}
		return extendAnswer{}, aggregator.WithRetryAfter(aggregator.HTTPStatusError("truelayer extend", status, detail), hdr)
	}
	if res.ActionNeeded == ActionNone {
		if res.AccessToken == "" || res.RefreshToken == "" {
			return extendAnswer{}, errors.New("truelayer extend: no_action_needed without tokens")
		}
		err := p.deliver(ctx, NewTokens{ConnectionID: connectionID, AccessToken: res.AccessToken, RefreshToken: res.RefreshToken,
			ExpiresIn: res.ExpiresIn, TokenType: res.TokenType, IssuedAt: p.now().UTC()}, creds.RefreshToken)
		if err != nil {
			return extendAnswer{}, err
		}
	}
	return res, nil
}

// credentials are the app's tokens for the connection, once the tokens
// an earlier attempt left in the checkpoint are the app's.
func (p *Provider) credentials(ctx context.Context, connectionID string) (Credentials, error) {
	if _, err := p.settle(ctx, connectionID); err != nil {
		return Credentials{}, err
	}
	creds, err := p.Tokens.Credentials(ctx, connectionID)
	if err != nil {
		return Credentials{}, err
	}
	if creds.RefreshToken == "" {
		return Credentials{}, aggregator.NotFound(fmt.Sprintf("truelayer: the app holds no refresh token for %s", connectionID))
	}
	return creds, nil
}

// undelivered is the checkpoint: new tokens, and the digest of the
// refresh token they replace, by which a later attempt tells whether the
// app took them (it holds them), still needs them (it holds the one they
// replace) or has moved on (newer ones: the checkpoint is stale).
type undelivered struct {
	Tokens   NewTokens `json:"tokens"`
	Replaces string    `json:"replaces"`
}

// digest names a refresh token in the checkpoint without holding it.
func digest(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(sum[:])
}

// settle delivers the checkpoint's tokens if the app still holds the
// refresh token they replace; until it takes them, it fails (retryable),
// so nothing is called with a refresh token TrueLayer retired. settled:
// the checkpoint's tokens are the app's (delivered now, or taken before);
// false when there are none, or the app holds newer ones.
func (p *Provider) settle(ctx context.Context, connectionID string) (settled bool, err error) {
	cp := aggregator.CheckpointFrom(ctx)
	if cp == nil {
		return false, nil
	}
	data := cp.Load()
	if len(data) == 0 {
		return false, nil
	}
	var u undelivered
	if err := json.Unmarshal(data, &u); err != nil {
		return false, fmt.Errorf("truelayer: the checkpoint for %s is unreadable: %w", connectionID, err)
	}
	if u.Tokens.ConnectionID != connectionID {
		return false, nil
	}
	held, err := p.Tokens.Credentials(ctx, connectionID)
	if err != nil {
		return false, fmt.Errorf("truelayer: new tokens for %s wait for the app: %w", connectionID, err)
	}
	switch digest(held.RefreshToken) {
	case digest(u.Tokens.RefreshToken):
		return true, nil // taken
	case u.Replaces:
	default:
		return false, nil // newer ones since
	}
	if err := p.store(ctx, u.Tokens); err != nil {
		return false, fmt.Errorf("truelayer: new tokens for %s, kept from an earlier attempt, not delivered to the app yet (retried): %w", connectionID, err)
	}
	return true, nil
}

// deliver hands new tokens, which replace the refresh token replaced, to
// the app. TrueLayer has retired that one, so they are first saved in the
// checkpoint: if the app does not take them, the activity fails
// (retryable) and its next attempt, on any worker, delivers them before
// anything else (settle).
func (p *Provider) deliver(ctx context.Context, t NewTokens, replaced string) error {
	kept := false
	if cp := aggregator.CheckpointFrom(ctx); cp != nil {
		data, err := json.Marshal(undelivered{Tokens: t, Replaces: digest(replaced)})
		if err != nil {
			return err
		}
		kept = cp.Save(data) == nil
	}
	if err := p.store(ctx, t); err != nil {
		if !kept {
			return fmt.Errorf("truelayer: new tokens for %s not delivered to the app, and no checkpoint kept them: %w", t.ConnectionID, err)
		}
		return fmt.Errorf("truelayer: new tokens for %s not delivered to the app (kept in the activity's checkpoint; retried): %w", t.ConnectionID, err)
	}
	return nil
}

// store hands tokens to the app, three tries a second apart.
func (p *Provider) store(ctx context.Context, t NewTokens) error {
	err := p.Tokens.Store(ctx, t)
	for i := 1; i < 3 && err != nil && ctx.Err() == nil; i++ {
		select {
		case <-time.After(time.Second):
			err = p.Tokens.Store(ctx, t)
		case <-ctx.Done():
		}
	}
	return err
}

func (p *Provider) postForm(ctx context.Context, u string, form url.Values, out any) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, nil, aggregator.InvalidInput(fmt.Sprintf("build request: %v", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("POST %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, resp.Header, fmt.Errorf("POST %s: reading the answer: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, nil, resp.Header, fmt.Errorf("POST %s: unexpected answer: %w", req.URL.Redacted(), err)
		}
	}
	return resp.StatusCode, raw, resp.Header, nil
}

// errorOf reads TrueLayer's error answer, {"error", "error_description"}
// (auth server and Data API v1), as its code and a line for messages:
// never a token.
func errorOf(raw []byte) (code, detail string) {
	var e struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	_ = json.Unmarshal(raw, &e)
	detail = e.Error
	if e.ErrorDescription != "" {
		detail += ": " + e.ErrorDescription
	}
	return e.Error, detail
}

func (p *Provider) authURL(path string) string { return strings.TrimRight(p.AuthURL, "/") + path }
func (p *Provider) apiURL(path string) string  { return strings.TrimRight(p.APIURL, "/") + path }

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func nonce() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
