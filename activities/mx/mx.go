// Package mx is the MX Platform API adapter (MX directly, not through
// Quiltt): a member's connection_status, aggregation, Connect widget URLs
// that open the widget on the member, the members listing, and MX's
// webhooks, which MX authenticates with HTTP basic credentials rather than
// signing them. Wire formats and their sources: docs/providers/mx.md.
//
// A connection is a member: its connection id is the member's guid
// (MBR-…) and its profile id the guid of the user it belongs to (USR-…),
// as MX's webhooks name them; every member call needs both.
package mx

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Name is MX's provider name.
const Name = "mx"

// API hosts: production, and MX's integration environment.
const (
	DefaultAPIURL     = "https://api.mx.com"
	IntegrationAPIURL = "https://int-api.mx.com"
)

// Accept names the Platform API version Relink speaks (v20111101).
const Accept = "application/vnd.mx.api.v1+json"

// Connection statuses (connection_status), as MX names them.
const (
	StatusCreated      = "CREATED"
	StatusPrevented    = "PREVENTED"
	StatusDenied       = "DENIED"
	StatusChallenged   = "CHALLENGED"
	StatusRejected     = "REJECTED"
	StatusLocked       = "LOCKED"
	StatusConnected    = "CONNECTED"
	StatusImpeded      = "IMPEDED"
	StatusReconnected  = "RECONNECTED"
	StatusDegraded     = "DEGRADED"
	StatusDisconnected = "DISCONNECTED"
	StatusDiscontinued = "DISCONTINUED"
	StatusClosed       = "CLOSED"
	StatusDelayed      = "DELAYED"
	StatusFailed       = "FAILED"
	StatusUpdated      = "UPDATED"
	StatusDisabled     = "DISABLED"
	StatusImported     = "IMPORTED"
	StatusResumed      = "RESUMED"
	StatusExpired      = "EXPIRED"
	StatusImpaired     = "IMPAIRED"
	StatusPending      = "PENDING"
)

// noStatus is what Relink records for a member whose connection_status is
// null: one without credentials (a manual member), which never aggregates.
const noStatus = "NONE"

// What a status asks of Relink.
type action int

const (
	// askUser: only the end user can fix it, in the Connect widget.
	askUser action = iota
	// fine: connected; nothing to repair.
	fine
	// aggregate: MX is working on it or can retry it without the user:
	// aggregate again (unless an aggregation is running) and say CONTINUE.
	aggregate
	// wait: MX paused aggregation; nothing to do but let it resume.
	wait
	// needsBank: the institution or MX, not the user in the widget, must
	// act; Relink cannot repair it.
	needsBank
)

// statuses are the connection statuses Relink knows, what each asks for
// and how it reads (docs/providers/mx.md has the table and its sources).
var statuses = map[string]struct {
	act    action
	health aggregator.Health
	// why, for the statuses Relink cannot repair: what stands in the way
	// and what would clear it.
	why string
}{
	StatusPrevented:  {askUser, aggregator.HealthRepairable, ""},
	StatusDenied:     {askUser, aggregator.HealthRepairable, ""},
	StatusChallenged: {askUser, aggregator.HealthRepairable, ""},
	StatusRejected:   {askUser, aggregator.HealthRepairable, ""},
	StatusImpeded:    {askUser, aggregator.HealthRepairable, ""},
	StatusExpired:    {askUser, aggregator.HealthRepairable, ""},
	StatusImpaired:   {askUser, aggregator.HealthRepairable, ""},
	StatusImported:   {askUser, aggregator.HealthRepairable, ""},
	StatusPending:    {askUser, aggregator.HealthRepairable, ""},

	StatusConnected: {fine, aggregator.HealthHealthy, ""},

	StatusCreated:      {aggregate, aggregator.HealthSyncing, ""},
	StatusUpdated:      {aggregate, aggregator.HealthSyncing, ""},
	StatusResumed:      {aggregate, aggregator.HealthSyncing, ""},
	StatusReconnected:  {aggregate, aggregator.HealthSyncing, ""},
	StatusDelayed:      {aggregate, aggregator.HealthSyncing, ""},
	StatusFailed:       {aggregate, aggregator.HealthDegraded, ""},
	StatusDegraded:     {aggregate, aggregator.HealthDegraded, ""},
	StatusDisconnected: {aggregate, aggregator.HealthDegraded, ""},

	StatusDisabled: {wait, aggregator.HealthDegraded, ""},

	StatusLocked: {needsBank, aggregator.HealthDisconnected,
		"the institution is preventing authentication (LOCKED): the user must go to the institution's website or contact it, then reconnect"},
	StatusClosed: {needsBank, aggregator.HealthDisconnected,
		"the member was marked closed (CLOSED) by the user, MX, the client or a partner: start a new connection"},
	StatusDiscontinued: {needsBank, aggregator.HealthDisconnected,
		"MX no longer supports connections to this institution (DISCONTINUED)"},
	noStatus: {needsBank, aggregator.HealthDisconnected,
		"the member has no credentials and never aggregates (connection_status null: a manual member): there is nothing to reconnect"},
}

// HealthOf maps a connection status onto Relink's health. A status MX
// adds later reads SYNCING: not yet confirmed either way.
func HealthOf(status string) aggregator.Health {
	if s, ok := statuses[cmp.Or(status, noStatus)]; ok {
		return s.health
	}
	return aggregator.HealthSyncing
}

// NeedsUser reports the statuses only the end user can clear, in the
// Connect widget.
func NeedsUser(status string) bool {
	s, ok := statuses[cmp.Or(status, noStatus)]
	return ok && s.act == askUser
}

// SessionHandout is how long after minting a widget URL Relink reports
// its session expiring. MX's URL works once, for ten minutes; Relink
// hands a session out again until shortly before it expires, so a
// session reported as expiring this soon is never handed out twice:
// each reconnect (a reload of the page, Try again) mints a new URL.
const SessionHandout = time.Minute

// Provider is the MX adapter.
type Provider struct {
	APIURL   string
	ClientID string
	APIKey   string
	HTTP     *http.Client
	Now      func() time.Time
}

// Name implements aggregator.Provider.
func (p *Provider) Name() string { return Name }

// Member is an MX member, as the Platform API answers it.
type Member struct {
	GUID              string  `json:"guid"`
	UserGUID          string  `json:"user_guid"`
	Name              string  `json:"name"`
	InstitutionCode   string  `json:"institution_code"`
	ConnectionStatus  *string `json:"connection_status"`
	IsBeingAggregated bool    `json:"is_being_aggregated"`
}

// Status is the member's connection status, "" when null.
func (m Member) Status() string {
	if m.ConnectionStatus == nil {
		return ""
	}
	return *m.ConnectionStatus
}

func (m Member) status() aggregator.ConnectionStatus {
	return statusOf(m.Status())
}

func statusOf(status string) aggregator.ConnectionStatus {
	return aggregator.ConnectionStatus{Health: HealthOf(status), ProviderStatus: cmp.Or(status, noStatus)}
}

// Initialize implements aggregator.Provider. The member's status decides:
// the user is needed (a widget URL on the member), it is connected
// (CONTINUE, healthy), MX can retry it (aggregate, CONTINUE), or only the
// institution or MX can clear it (ConnectionNotRepairable, with why).
func (p *Provider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	m, err := p.member(ctx, ref)
	if err != nil {
		return aggregator.Session{}, err
	}
	status := m.Status()
	s, known := statuses[cmp.Or(status, noStatus)]
	switch {
	case !known:
		// A status MX added since: the widget loads the view the member's
		// state needs, whatever it is.
	case s.act == fine && !ref.Proactive:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue, Healthy: true}, nil
	case s.act == aggregate:
		if !m.IsBeingAggregated {
			if err := p.aggregate(ctx, ref); err != nil {
				return aggregator.Session{}, err
			}
		}
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	case s.act == wait:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	case s.act == needsBank:
		return aggregator.Session{}, aggregator.NotRepairable(fmt.Sprintf("mx: member %s: %s", ref.ConnectionID, s.why))
	}
	return p.widget(ctx, ref)
}

// widget mints a Connect widget URL that opens on the member: MX loads
// the view its state needs (credentials, MFA, OAuth), without the
// institution search.
func (p *Provider) widget(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	var res struct {
		WidgetURL struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"widget_url"`
	}
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method: http.MethodPost,
		URL:    p.url("/users/" + url.PathEscape(ref.ProfileID) + "/widget_urls"),
		Header: p.headers(),
		Body: map[string]any{"widget_url": map[string]any{
			"widget_type":                "connect_widget",
			"mode":                       "aggregation",
			"current_member_guid":        ref.ConnectionID,
			"disable_institution_search": true,
			"ui_message_version":         4,
		}},
		ResponseHeader: &hdr,
	}, &res)
	if err != nil {
		return aggregator.Session{}, err
	}
	if status/100 != 2 {
		return aggregator.Session{}, aggregator.WithRetryAfter(aggregator.HTTPStatusError("mx widget url for member "+ref.ConnectionID, status, errorText(raw)), hdr)
	}
	if res.WidgetURL.URL == "" {
		return aggregator.Session{}, fmt.Errorf("mx widget url: answer without a url")
	}
	return aggregator.Session{
		ConnectorStatus: aggregator.ConnectorActionRequired,
		ConnectorToken:  sessionToken(res.WidgetURL.URL),
		WidgetURL:       res.WidgetURL.URL,
		ExpiresAt:       p.now().Add(SessionHandout),
		CloseInTask:     true, // Close only checks the widget's metadata
	}, nil
}

// sessionToken names a widget session to the workflow (which closes each
// at most once) without repeating the URL: a digest of it.
func sessionToken(widgetURL string) string {
	sum := sha256.Sum256([]byte(widgetURL))
	return "mxw_" + hex.EncodeToString(sum[:12])
}

// Close implements aggregator.Provider. MX has no close step: the widget's
// mx/connect/memberConnected means MX connected the member, and the status
// read that follows confirms it. A success for another member (or user)
// than the repair's is refused.
func (p *Provider) Close(_ context.Context, req aggregator.CloseRequest) error {
	if len(req.Metadata) == 0 {
		return nil
	}
	var meta struct {
		MemberGUID string `json:"member_guid"`
		UserGUID   string `json:"user_guid"`
	}
	if err := json.Unmarshal(req.Metadata, &meta); err != nil {
		return aggregator.ReconnectRejected(fmt.Sprintf("mx: the widget's memberConnected metadata is not an object: %v", err))
	}
	switch {
	case meta.MemberGUID != "" && meta.MemberGUID != req.ConnectionID:
		return aggregator.ReconnectRejected(fmt.Sprintf("mx: the widget connected member %s, not %s", meta.MemberGUID, req.ConnectionID))
	case meta.UserGUID != "" && req.ProfileID != "" && meta.UserGUID != req.ProfileID:
		return aggregator.ReconnectRejected(fmt.Sprintf("mx: the widget connected a member of user %s, not of %s", meta.UserGUID, req.ProfileID))
	}
	return nil
}

// ConnectionStatus implements aggregator.Provider: the member's status
// (GET …/status, MX's read for polling an aggregation).
func (p *Provider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	if err := checkRef(ref); err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	var res struct {
		Member struct {
			ConnectionStatus *string `json:"connection_status"`
		} `json:"member"`
	}
	if err := p.get(ctx, "mx member "+ref.ConnectionID+" status", p.memberPath(ref)+"/status", &res); err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	status := ""
	if res.Member.ConnectionStatus != nil {
		status = *res.Member.ConnectionStatus
	}
	return statusOf(status), nil
}

var _ aggregator.InstitutionReader = (*Provider)(nil)

// Institution implements aggregator.InstitutionReader: the member's
// institution_code (GET /users/{user}/members/{member}), which needs the
// user guid as ProfileID.
func (p *Provider) Institution(ctx context.Context, ref aggregator.ConnectionRef) (string, error) {
	m, err := p.member(ctx, ref)
	if err != nil {
		return "", err
	}
	return m.InstitutionCode, nil
}

// member reads the member (GET /users/{user}/members/{member}).
func (p *Provider) member(ctx context.Context, ref aggregator.ConnectionRef) (Member, error) {
	if err := checkRef(ref); err != nil {
		return Member{}, err
	}
	var res struct {
		Member Member `json:"member"`
	}
	if err := p.get(ctx, "mx member "+ref.ConnectionID, p.memberPath(ref), &res); err != nil {
		return Member{}, err
	}
	return res.Member, nil
}

// aggregate asks MX to aggregate the member again. MX answers 202 also
// when an aggregation of the kind is running or ran a moment ago, and 409
// when one of another kind (a verification, say) is running: that one
// will end in a status too.
func (p *Provider) aggregate(ctx context.Context, ref aggregator.ConnectionRef) error {
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodPost,
		URL:            p.url(p.memberPath(ref) + "/aggregate"),
		Header:         p.headers(),
		ResponseHeader: &hdr,
	}, nil)
	switch {
	case err != nil:
		return err
	case status/100 == 2, status == http.StatusConflict:
		return nil
	}
	return aggregator.WithRetryAfter(aggregator.HTTPStatusError("mx aggregate member "+ref.ConnectionID, status, errorText(raw)), hdr)
}

// checkRef refuses a connection that does not name its user: MX reaches a
// member only through it.
func checkRef(ref aggregator.ConnectionRef) error {
	if ref.ProfileID == "" {
		return aggregator.InvalidInput(fmt.Sprintf("mx: member %s: the repair needs the member's user guid (USR-…) as its profileId", ref.ConnectionID))
	}
	return nil
}

func (p *Provider) memberPath(ref aggregator.ConnectionRef) string {
	return "/users/" + url.PathEscape(ref.ProfileID) + "/members/" + url.PathEscape(ref.ConnectionID)
}

// get reads path into out; what names the call in errors.
func (p *Provider) get(ctx context.Context, what, path string, out any) error {
	var hdr http.Header
	status, raw, err := aggregator.DoJSON(ctx, p.HTTP, aggregator.JSONRequest{
		Method:         http.MethodGet,
		URL:            p.url(path),
		Header:         p.headers(),
		ResponseHeader: &hdr,
	}, out)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return aggregator.WithRetryAfter(aggregator.HTTPStatusError(what, status, errorText(raw)), hdr)
	}
	return nil
}

func (p *Provider) url(path string) string { return strings.TrimRight(p.APIURL, "/") + path }

func (p *Provider) headers() http.Header {
	return http.Header{
		// RFC 7617 basic: client id and API key.
		"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(p.ClientID+":"+p.APIKey))},
		"Accept":        {Accept},
	}
}

func (p *Provider) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// errorText is the message of MX's error object ({"error":{"message"}},
// or {"error":"…"}).
func errorText(raw []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || len(e.Error) == 0 {
		return ""
	}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Error, &obj) == nil {
		return obj.Message
	}
	var s string
	_ = json.Unmarshal(e.Error, &s)
	return s
}
