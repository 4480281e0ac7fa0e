// Package aggregator is the contract every aggregator adapter (sandbox,
// Quiltt, Meld, Plaid) implements: the Provider and WebhookReceiver
// interfaces, the types they speak, and the errors that tell "try again"
// from "this connection cannot be repaired".
//
// It knows nothing of Temporal, so the adapters (and their tests) do not
// link the SDK. Package activities calls providers through a Registry and
// turns their errors into Temporal application errors (activities.go).
package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// ConnectorStatus is the provider's answer to initialize: whether the end user
// has to act in the provider's widget.
type ConnectorStatus string

const (
	// ConnectorContinue means the provider repaired the connection without
	// the user (Quiltt's CONTINUE): nothing to show, wait for the sync.
	ConnectorContinue ConnectorStatus = "CONTINUE"
	// ConnectorActionRequired means the user must open the widget in update
	// mode with the returned session.
	ConnectorActionRequired ConnectorStatus = "ACTION_REQUIRED"
)

// ConnectionRef names one connection at one provider.
type ConnectionRef struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connectionId"`
	ProfileID    string `json:"profileId,omitempty"`
	// Connector is the aggregator behind the provider where there is one
	// (Quiltt fronts PLAID and MX). Empty when unknown; adapters that need it
	// look it up.
	Connector string `json:"connector,omitempty"`
	// Proactive: the repair started before anything broke, so a healthy
	// connection still needs the user (consent expiring). Otherwise an
	// adapter whose initialize always asks for the user (Plaid) first
	// checks that the connection is really broken.
	Proactive bool `json:"proactive,omitempty"`
}

// Session is what the frontend needs to open the provider's widget in update
// mode. It is short-lived: ExpiresAt tells the workflow when to mint another.
type Session struct {
	ConnectorStatus ConnectorStatus `json:"connectorStatus"`
	// ConnectorToken identifies the session to the provider and is what
	// close needs back (Quiltt connectorToken, Meld connectToken, Plaid
	// link_token). The workflow closes each token at most once.
	ConnectorToken string `json:"connectorToken,omitempty"`
	// LinkToken is the Plaid Link token, where the widget is Plaid Link.
	LinkToken string `json:"linkToken,omitempty"`
	// WidgetURL is the hosted widget to open, where the widget is a URL
	// (MX, Meld, the sandbox).
	WidgetURL string `json:"widgetUrl,omitempty"`
	// Widget is the widget kind the session opens where its other fields
	// do not tell (WidgetRedirect for a WidgetURL the browser goes to
	// rather than frames, WidgetReconfirm); empty otherwise.
	Widget string `json:"widget,omitempty"`
	// ExpiresAt is when the provider stops accepting this session. Zero
	// means the provider gave no expiry.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Healthy, with CONTINUE: the provider reports the connection working
	// right now, so there was nothing to repair (a redelivered break, or
	// one the user already fixed).
	Healthy bool `json:"healthy,omitempty"`
	// CloseInTask: this session's Close makes no call at the provider (it
	// only checks what the widget returned, as Plaid's, Meld's and MX's
	// do), so a second Close of it, unrecorded, does what the first did
	// (nil) and costs no round trip. The workflow then tries the close,
	// with the status read after it, inside the workflow task that takes
	// the user's completion (a local activity): one persisted step from
	// the user's "done" to the answer instead of three. Never set it for
	// a close that is a call at the provider (a single-use exchange, as
	// Quiltt's and TrueLayer's): a local attempt that timed out or whose
	// worker died would repeat that call with nothing to tell it the first
	// went through, where the retried activity keeps that record. The
	// conformance kit closes such a session twice on a canceled context.
	CloseInTask bool `json:"closeInTask,omitempty"`
}

// CloseRequest carries what the widget handed the frontend on success.
type CloseRequest struct {
	ConnectionRef
	ConnectorToken string          `json:"connectorToken"`
	PublicToken    string          `json:"publicToken,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	// Resumed: an earlier close of this session may have reached the
	// provider (its activity timed out or its worker died).
	Resumed bool `json:"resumed,omitempty"`
}

// Health is a provider's connection status, normalised.
type Health string

const (
	// HealthHealthy: synced, data flowing. Confirms a repair.
	HealthHealthy Health = "HEALTHY"
	// HealthSyncing: the provider is syncing; not yet confirmed either way.
	HealthSyncing Health = "SYNCING"
	// HealthRepairable: still broken in a way only the user can fix.
	HealthRepairable Health = "REPAIRABLE"
	// HealthDegraded: an error on the provider's or institution's side that
	// the user cannot fix; the repair keeps waiting for it to clear.
	HealthDegraded Health = "DEGRADED"
	// HealthDisconnected: the connection is gone; it cannot be repaired.
	HealthDisconnected Health = "DISCONNECTED"
)

// ConnectionStatus is a connection's status as the provider reports it.
type ConnectionStatus struct {
	Health Health `json:"health"`
	// ProviderStatus is the provider's own word (Quiltt ERROR_REPAIRABLE,
	// Meld RECONNECT_REQUIRED, …) kept for operators.
	ProviderStatus string `json:"providerStatus,omitempty"`
	// ConsentExpiresAt, when the provider says it (Plaid's
	// consent_expiration_time), is when the connection's consent runs out.
	ConsentExpiresAt time.Time `json:"consentExpiresAt,omitzero"`
}

// Provider is one aggregator's API as the repair workflow needs it. Every
// adapter implements it; activities call nothing else.
//
// Errors: return errors made with NotFound, NotRepairable, InvalidInput or
// ReconnectRejected when retrying cannot help; any other error is retried
// with backoff (network failures, timeouts, 5xx, 429).
type Provider interface {
	// Name is the provider's path segment and search attribute value,
	// e.g. "sandbox", "quiltt".
	Name() string
	// Initialize starts or resumes a repair in update mode.
	Initialize(ctx context.Context, conn ConnectionRef) (Session, error)
	// Close reports the widget's success to the provider. Providers with no
	// close step return nil.
	Close(ctx context.Context, req CloseRequest) error
	// ConnectionStatus reads the connection's status, for when webhooks are
	// late or lost.
	ConnectionStatus(ctx context.Context, conn ConnectionRef) (ConnectionStatus, error)
}

// Registry maps provider names to their adapters.
type Registry struct {
	providers map[string]Provider
}

// NewRegistry returns a registry of the given adapters.
func NewRegistry(providers ...Provider) *Registry {
	r := &Registry{providers: map[string]Provider{}}
	for _, p := range providers {
		r.providers[p.Name()] = p
	}
	return r
}

// Lookup returns the named provider, or an InvalidInput error naming the
// providers this worker knows.
func (r *Registry) Lookup(name string) (Provider, error) {
	if p, ok := r.providers[name]; ok {
		return p, nil
	}
	return nil, InvalidInput(fmt.Sprintf("unknown provider %q (enabled: %v)", name, r.Names()))
}

// Names lists the enabled providers in a stable order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.providers))
	for n := range r.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Candidate is one connection a reconciliation sweep checks: from the
// provider's own listing (a Lister) or from the app's inventory.
type Candidate struct {
	ConnectionRef
	Institution string `json:"institution,omitempty"`
	// ConsentExpiresAt, when known, is when the connection's consent runs
	// out: Relink arranges a proactive repair before it.
	ConsentExpiresAt time.Time `json:"consentExpiresAt,omitzero"`
	// Status is the connection's status when the listing already says it
	// (Meld, Quiltt); nil means the sweep reads it (ConnectionStatus).
	Status *ConnectionStatus `json:"status,omitempty"`
}

// CandidatePage is one page of candidates; Next is the cursor of the next
// page, "" after the last.
type CandidatePage struct {
	Candidates []Candidate `json:"candidates"`
	Next       string      `json:"next,omitempty"`
}

// Lister is implemented by a provider that can list its connections that
// need the end user (Meld by status, Quiltt profile by profile), so a
// reconciliation sweep pages through those alone rather than the app's
// whole inventory. Each candidate it returns carries its Status.
type Lister interface {
	// ListNeedingUser returns the page at cursor ("" for the first) of at
	// most limit connections whose status needs the user.
	ListNeedingUser(ctx context.Context, cursor string, limit int) (CandidatePage, error)
}

// InstitutionReader is implemented by a provider that can say which
// institution a connection is at, in the provider's own institution ids
// (Plaid's institution_id "ins_109508", MX's institution_code): the ids
// its widget hands the app when the user picks a bank. The gateway's
// connection lookup (POST /v1/connections/lookup) reads it, so an app
// about to create a connection learns that the user already has one at
// that institution.
type InstitutionReader interface {
	// Institution returns the institution conn is at. A connection the
	// provider does not know is a NotFound error; a ref the provider
	// cannot read without more (MX's user guid as ProfileID) an
	// InvalidInput one.
	Institution(ctx context.Context, conn ConnectionRef) (string, error)
}
