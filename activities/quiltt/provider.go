package quiltt

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Name is Quiltt's provider name.
const Name = "quiltt"

// Default endpoints.
const (
	DefaultAPIURL  = "https://api.quiltt.io"
	DefaultAuthURL = "https://auth.quiltt.io"
)

// Connectors Quiltt fronts, as its Connection.provider names them.
const (
	ConnectorPlaid = "PLAID"
	ConnectorMX    = "MX"
)

// sessionLifetime is how long a session token is reused when Quiltt's
// answer gives no expiry.
const sessionLifetime = 10 * time.Minute

// Provider is the Quiltt adapter: its GraphQL API, reached with a
// profile-scoped session token minted with the API secret.
type Provider struct {
	APIURL    string
	AuthURL   string
	APISecret string
	HTTP      *http.Client
	Now       func() time.Time

	mu       sync.Mutex
	minting  sync.Mutex
	sessions map[string]sessionToken // by profile id
	// legacy is set once Quiltt's schema turned out to name the session's
	// fields status/token rather than connectorStatus/connectorToken.
	legacy atomic.Bool
}

type sessionToken struct {
	token     string
	expiresAt time.Time
}

// Name implements aggregator.Provider.
func (p *Provider) Name() string { return Name }

// Initialize implements aggregator.Provider: connectorPlaidInitialize or
// connectorMxInitialize in update mode, picked by the connection's
// connector.
func (p *Provider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	connector, err := p.connector(ctx, ref)
	if err != nil {
		return aggregator.Session{}, err
	}
	var out aggregator.Session
	err = p.withSchema(func(s schema) error {
		var res struct {
			Success bool            `json:"success"`
			Errors  []mutationError `json:"errors"`
			Record  *sessionRecord  `json:"record"`
		}
		field, query := s.initialize(connector)
		input := map[string]any{"connectionId": ref.ConnectionID, "featuresRequired": []string{}}
		if err := p.mutate(ctx, ref.ProfileID, field, query, input, &res); err != nil {
			return err
		}
		if !res.Success || res.Record == nil {
			return mutationFailed("initialize", res.Errors, aggregator.NotFound, aggregator.NotRepairable)
		}
		out, err = res.Record.session()
		return err
	})
	return out, err
}

// Close implements aggregator.Provider: connectorPlaidClose with the public
// token and metadata Plaid Link returned, or connectorMxClose with the MX
// widget's metadata.
func (p *Provider) Close(ctx context.Context, req aggregator.CloseRequest) error {
	connector, err := p.connector(ctx, req.ConnectionRef)
	if err != nil {
		return err
	}
	metadata := req.Metadata
	if len(metadata) == 0 {
		metadata = json.RawMessage(`{}`)
	}
	return p.withSchema(func(s schema) error {
		var res struct {
			Success bool            `json:"success"`
			Errors  []mutationError `json:"errors"`
		}
		field, query := s.close(connector)
		input := map[string]any{s.token: req.ConnectorToken, "metadata": metadata}
		if connector == ConnectorPlaid {
			input["publicToken"] = req.PublicToken
		}
		if err := p.mutate(ctx, req.ProfileID, field, query, input, &res); err != nil {
			return err
		}
		if !res.Success {
			// What close cannot find is the user's session, not the
			// connection: the user may try again.
			return mutationFailed("close", res.Errors, aggregator.ReconnectRejected, aggregator.ReconnectRejected)
		}
		return nil
	})
}

// ConnectionStatus implements aggregator.Provider: the connection's status.
func (p *Provider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	c, err := p.connection(ctx, ref)
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	return aggregator.ConnectionStatus{Health: HealthOf(c.Status), ProviderStatus: c.Status}, nil
}

// SimulateError puts a sandbox connection into ERROR_REPAIRABLE, with
// Quiltt's connectionSimulateError (not available in production).
func (p *Provider) SimulateError(ctx context.Context, profileID, connectionID string) error {
	var res struct {
		Success bool            `json:"success"`
		Errors  []mutationError `json:"errors"`
	}
	const query = `mutation RelinkSimulateError($input: ConnectionSimulateErrorInput!) {
  connectionSimulateError(input: $input) { success errors { message } record { id status } }
}`
	if err := p.mutate(ctx, profileID, "connectionSimulateError", query, map[string]any{"id": connectionID}, &res); err != nil {
		return err
	}
	if !res.Success {
		return mutationFailed("simulate error", res.Errors, aggregator.NotFound, aggregator.InvalidInput)
	}
	return nil
}

type connection struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Provider string `json:"provider"`
}

// connection reads a connection; Quiltt answers null for one it does not
// know.
func (p *Provider) connection(ctx context.Context, ref aggregator.ConnectionRef) (connection, error) {
	var data struct {
		Connection *connection `json:"connection"`
	}
	const query = `query RelinkConnection($id: ID!) { connection(id: $id) { id status provider } }`
	if err := p.graphql(ctx, ref.ProfileID, query, map[string]any{"id": ref.ConnectionID}, &data); err != nil {
		return connection{}, err
	}
	if data.Connection == nil {
		return connection{}, aggregator.NotFound("quiltt: connection " + ref.ConnectionID + " not found for profile " + ref.ProfileID)
	}
	return *data.Connection, nil
}

// connector is PLAID or MX: from the webhook's record, else from Quiltt.
func (p *Provider) connector(ctx context.Context, ref aggregator.ConnectionRef) (string, error) {
	connector := strings.ToUpper(ref.Connector)
	if connector != ConnectorPlaid && connector != ConnectorMX {
		c, err := p.connection(ctx, ref)
		if err != nil {
			return "", err
		}
		connector = c.Provider
	}
	if connector != ConnectorPlaid && connector != ConnectorMX {
		return "", aggregator.NotRepairable(fmt.Sprintf("quiltt: connection %s is on %q; Relink repairs PLAID and MX connections", ref.ConnectionID, connector))
	}
	return connector, nil
}

// schema names the session fields: Quiltt's current schema says
// connectorStatus/connectorToken, older ones status/token.
type schema struct {
	status, token string
}

var (
	currentSchema = schema{status: "connectorStatus", token: "connectorToken"}
	legacySchema  = schema{status: "status", token: "token"}
)

func (s schema) initialize(connector string) (field, query string) {
	if connector == ConnectorMX {
		return "connectorMxInitialize", fmt.Sprintf(`mutation RelinkMxInitialize($input: ConnectorMxInitializeInput!) {
  connectorMxInitialize(input: $input) { success errors { message type } record { %s %s url } }
}`, s.status, s.token)
	}
	return "connectorPlaidInitialize", fmt.Sprintf(`mutation RelinkPlaidInitialize($input: ConnectorPlaidInitializeInput!) {
  connectorPlaidInitialize(input: $input) { success errors { message code type } record { %s %s linkToken expiration } }
}`, s.status, s.token)
}

func (s schema) close(connector string) (field, query string) {
	if connector == ConnectorMX {
		return "connectorMxClose", `mutation RelinkMxClose($input: ConnectorMxCloseInput!) {
  connectorMxClose(input: $input) { success errors { message type } record { id status } }
}`
	}
	return "connectorPlaidClose", `mutation RelinkPlaidClose($input: ConnectorPlaidCloseInput!) {
  connectorPlaidClose(input: $input) { success errors { message code type } record { id status } }
}`
}

// errSchemaMismatch: Quiltt rejected a field name of the schema in use.
var errSchemaMismatch = errors.New("quiltt: schema field names differ")

// withSchema runs fn with the schema variant that worked last, and once
// with the other if Quiltt rejects the field names.
func (p *Provider) withSchema(fn func(schema) error) error {
	schemaOf := func(legacy bool) schema {
		if legacy {
			return legacySchema
		}
		return currentSchema
	}
	tried := p.legacy.Load()
	err := fn(schemaOf(tried))
	if !errors.Is(err, errSchemaMismatch) {
		return err
	}
	// Concurrent calls may all find out at once: switch only from what
	// this call tried, and retry with the other names explicitly.
	p.legacy.CompareAndSwap(tried, !tried)
	if err := fn(schemaOf(!tried)); !errors.Is(err, errSchemaMismatch) {
		return err
	}
	return aggregator.InvalidInput("quiltt: neither connectorStatus/connectorToken nor status/token is in Quiltt's schema")
}

// sessionRecord is a connector session, in either schema.
type sessionRecord struct {
	ConnectorStatus string     `json:"connectorStatus"`
	Status          string     `json:"status"`
	ConnectorToken  string     `json:"connectorToken"`
	Token           string     `json:"token"`
	LinkToken       string     `json:"linkToken"`
	URL             string     `json:"url"`
	Expiration      *time.Time `json:"expiration"`
}

func (r sessionRecord) session() (aggregator.Session, error) {
	status := cmp.Or(r.ConnectorStatus, r.Status)
	s := aggregator.Session{
		ConnectorStatus: aggregator.ConnectorStatus(status),
		ConnectorToken:  cmp.Or(r.ConnectorToken, r.Token),
		LinkToken:       r.LinkToken,
		WidgetURL:       r.URL,
	}
	if r.Expiration != nil {
		s.ExpiresAt = *r.Expiration
	}
	switch s.ConnectorStatus {
	case aggregator.ConnectorContinue:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	case aggregator.ConnectorActionRequired:
		if s.ConnectorToken == "" {
			return aggregator.Session{}, errors.New("quiltt: ACTION_REQUIRED without a connector token")
		}
		return s, nil
	case "ABORT":
		return aggregator.Session{}, aggregator.NotRepairable("quiltt: the institution does not support this repair (ABORT)")
	case "WAIT":
		// Quiltt is still working on the connection: ask again shortly.
		return aggregator.Session{}, errors.New("quiltt: connector status WAIT")
	}
	return aggregator.Session{}, fmt.Errorf("quiltt: unknown connector status %q", status)
}

type mutationError struct {
	Message string `json:"message"`
	Code    string `json:"code"`
	Type    string `json:"type"`
}

// mutationFailed classifies a mutation's success:false: notFound builds
// the error for a "not found", otherwise the one for what is neither that
// nor transient.
func mutationFailed(what string, errs []mutationError, notFound, otherwise func(string) error) error {
	var parts []string
	missing, transient := false, false
	for _, e := range errs {
		part := e.Message
		if e.Code != "" {
			part = e.Code + ": " + part
		}
		parts = append(parts, part)
		text := strings.ToUpper(e.Code + " " + e.Type + " " + e.Message)
		switch {
		case strings.Contains(text, "NOT_FOUND") || strings.Contains(text, "NOT FOUND") || strings.Contains(text, "INVALID_ACCESS_TOKEN"):
			missing = true
		case strings.Contains(text, "RATE_LIMIT") || strings.Contains(text, "INTERNAL") ||
			strings.Contains(text, "API_ERROR") || strings.Contains(text, "INSTITUTION_ERROR"):
			transient = true
		}
	}
	msg := fmt.Sprintf("quiltt: %s failed: %s", what, strings.Join(parts, "; "))
	if len(parts) == 0 {
		msg = fmt.Sprintf("quiltt: %s failed without errors", what)
	}
	switch {
	case transient:
		return errors.New(msg)
	case missing:
		return notFound(msg)
	}
	return otherwise(msg)
}

// mutate runs a mutation and decodes the payload of its field into out.
func (p *Provider) mutate(ctx context.Context, profileID, field, query string, input map[string]any, out any) error {
	var data map[string]json.RawMessage
	if err := p.graphql(ctx, profileID, query, map[string]any{"input": input}, &data); err != nil {
		return err
	}
	raw, ok := data[field]
	if !ok || string(raw) == "null" {
		return fmt.Errorf("quiltt: %s answered no payload", field)
	}
	return json.Unmarshal(raw, out)
}

type graphqlError struct {
	Message string `json:"message"`
}

// graphql runs one GraphQL operation as the profile.
func (p *Provider) graphql(ctx context.Context, profileID, query string, vars map[string]any, data any) error {
	token, err := p.sessionToken(ctx, profileID)
	if err != nil {
		return err
	}
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []graphqlError  `json:"errors"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodPost,
		URL:            strings.TrimRight(p.APIURL, "/") + "/v1/graphql",
		Header:         http.Header{"Authorization": {"Bearer " + token}},
		Body:           map[string]any{"query": query, "variables": vars},
		ResponseHeader: &hdr,
	}, &res)
	if err != nil {
		return err
	}
	if status == http.StatusUnauthorized {
		p.forgetSession(profileID) // expired or revoked: mint a new one on retry
	}
	if status/100 != 2 {
		return aggregator.WithRetryAfter(aggregator.HTTPStatusError("quiltt graphql", status, errorText(raw)), hdr)
	}
	if len(res.Errors) > 0 {
		msgs := make([]string, len(res.Errors))
		for i, e := range res.Errors {
			msgs[i] = e.Message
		}
		msg := strings.Join(msgs, "; ")
		switch {
		case unknownField(msg):
			return fmt.Errorf("%w: %s", errSchemaMismatch, msg)
		case strings.Contains(strings.ToLower(msg), "not found"):
			return aggregator.NotFound("quiltt graphql: " + msg)
		}
		// Anything else (an internal error, a rate limit, an expired
		// session) may pass: retried, never taken as a verdict, even when
		// the data came back partial.
		return errors.New("quiltt graphql: " + msg)
	}
	return json.Unmarshal(res.Data, data)
}

// unknownField recognises GraphQL's "no such field" validation errors about
// the session fields whose names differ between schema versions.
func unknownField(msg string) bool {
	if !strings.Contains(msg, "doesn't exist") && !strings.Contains(msg, "Cannot query field") &&
		!strings.Contains(msg, "is not defined") {
		return false
	}
	for _, f := range []string{"connectorStatus", "connectorToken", "'status'", "'token'", `"status"`, `"token"`} {
		if strings.Contains(msg, f) {
			return true
		}
	}
	return false
}

// sessionToken returns a session token for the profile, minting one with
// the API secret when there is none or it is about to expire. Quiltt's
// GraphQL API is scoped to a profile and limits new sessions per profile,
// so tokens are reused.
func (p *Provider) sessionToken(ctx context.Context, profileID string) (string, error) {
	if profileID == "" {
		return "", aggregator.InvalidInput("quiltt: the repair has no profile id; Quiltt's API is scoped to the profile")
	}
	if token, ok := p.cachedSession(profileID); ok {
		return token, nil
	}
	// Quiltt limits new sessions per profile: concurrent calls wait for
	// one mint rather than each minting their own.
	p.minting.Lock()
	defer p.minting.Unlock()
	if token, ok := p.cachedSession(profileID); ok {
		return token, nil
	}
	var res struct {
		Token      string     `json:"token"`
		Expiration int64      `json:"expiration"`
		ExpiresAt  *time.Time `json:"expiresAt"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodPost,
		URL:            strings.TrimRight(p.AuthURL, "/") + "/v1/users/sessions",
		Header:         http.Header{"Authorization": {"Bearer " + p.APISecret}},
		Body:           map[string]string{"userId": profileID},
		ResponseHeader: &hdr,
	}, &res)
	if err != nil {
		return "", err
	}
	switch {
	case status == http.StatusNotFound:
		return "", aggregator.NotFound("quiltt: profile " + profileID + " not found: " + errorText(raw))
	case status == http.StatusUnprocessableEntity:
		return "", aggregator.InvalidInput("quiltt: session for profile " + profileID + " refused: " + errorText(raw))
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Retried: an operator can fix QUILTT_API_SECRET meanwhile.
		return "", fmt.Errorf("quiltt: session for profile %s refused (%d); check QUILTT_API_SECRET", profileID, status)
	case status/100 != 2:
		return "", aggregator.WithRetryAfter(aggregator.HTTPStatusError("quiltt session", status, errorText(raw)), hdr)
	case res.Token == "":
		return "", errors.New("quiltt: session answer without a token")
	}
	expires := p.Now().Add(sessionLifetime)
	switch {
	case res.ExpiresAt != nil:
		expires = *res.ExpiresAt
	case res.Expiration > 0:
		expires = time.Unix(res.Expiration, 0)
	}
	p.mu.Lock()
	if p.sessions == nil {
		p.sessions = map[string]sessionToken{}
	}
	p.sessions[profileID] = sessionToken{token: res.Token, expiresAt: expires}
	p.mu.Unlock()
	return res.Token, nil
}

// cachedSession returns the profile's session token unless it is about to
// expire.
func (p *Provider) cachedSession(profileID string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cached, ok := p.sessions[profileID]
	if !ok || !p.Now().Add(time.Minute).Before(cached.expiresAt) {
		return "", false
	}
	return cached.token, true
}

func (p *Provider) forgetSession(profileID string) {
	p.mu.Lock()
	delete(p.sessions, profileID)
	p.mu.Unlock()
}

// errorText is the message of a Quiltt error answer, short and without
// echoing anything the request carried.
func errorText(raw []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   string `json:"error"`
		Errors  []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(raw, &e)
	switch {
	case e.Message != "":
		return e.Message
	case e.Error != "":
		return e.Error
	case len(e.Errors) > 0:
		return e.Errors[0].Message
	}
	return ""
}
