// Package sandbox is an in-process aggregator for development and tests,
// like a provider's sandbox environment. Connections break on demand (as
// Quiltt's connectionSimulateError), a simulated user login stands in for
// the widget, and each connection can be scripted to answer CONTINUE or
// ACTION_REQUIRED, fail after close, be unknown, conflict, be slow or flaky.
// It reports changes with signed Quiltt-format webhooks, as a real provider
// would, to the gateway's /webhooks/sandbox.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/quiltt"
)

// Name is the sandbox's provider name.
const Name = "sandbox"

// DefaultSessionTTL matches Plaid's update-mode link tokens.
const DefaultSessionTTL = 30 * time.Minute

// InitializeBehavior scripts the answer to initialize.
type InitializeBehavior string

const (
	// InitializeAuto (default): ACTION_REQUIRED while broken, CONTINUE once
	// healthy.
	InitializeAuto InitializeBehavior = ""
	// InitializeContinue: the provider repairs the connection by itself.
	InitializeContinue InitializeBehavior = "continue"
	// InitializeNotFound: the provider does not know the connection.
	InitializeNotFound InitializeBehavior = "not_found"
	// InitializeConflict: the connection cannot be repaired in update mode.
	InitializeConflict InitializeBehavior = "conflict"
)

// CloseBehavior scripts what happens after the user's reconnect.
type CloseBehavior string

const (
	// CloseRepairs (default): close succeeds and the connection syncs.
	CloseRepairs CloseBehavior = ""
	// CloseFailsAfter: close succeeds, then the sync fails and the
	// connection is ERROR_REPAIRABLE again (the repair fails at the
	// provider after the user did everything right).
	CloseFailsAfter CloseBehavior = "fail_after_close"
	// CloseRejects: close itself is refused.
	CloseRejects CloseBehavior = "reject"
)

// Script is a connection's scripted behaviour.
type Script struct {
	Initialize InitializeBehavior `json:"initialize,omitempty"`
	Close      CloseBehavior      `json:"close,omitempty"`
	// FailCalls makes the next N API calls fail with a retryable 503.
	FailCalls int `json:"failCalls,omitempty"`
	// RateLimitCalls makes the next N API calls answer 429 with a
	// Retry-After of one second, as a provider whose budget is spent.
	RateLimitCalls int `json:"rateLimitCalls,omitempty"`
	// LatencyMillis delays every API call.
	LatencyMillis int `json:"latencyMillis,omitempty"`
	// SyncingPolls: after a reconnect the connection reports SYNCING to this
	// many status reads before it reports the outcome.
	SyncingPolls int `json:"syncingPolls,omitempty"`
	// SuppressWebhooks loses the webhooks that follow a reconnect (the
	// break itself is still reported), so status polling must confirm.
	SuppressWebhooks bool `json:"suppressWebhooks,omitempty"`
	// CloseInTask makes the connection's new sessions close as Plaid's,
	// Meld's and MX's do (Session.CloseInTask): a second close of one
	// does what the first did, and the workflow tries the close in the
	// task that takes the completion. (The other scripted behaviours
	// still apply to it: a test can make it fail or slow.) Without it,
	// close stands for a single-use call at the provider, as Quiltt's.
	CloseInTask bool `json:"closeInTask,omitempty"`
}

// Validate rejects unknown behaviours.
func (s Script) Validate() error {
	switch s.Initialize {
	case InitializeAuto, InitializeContinue, InitializeNotFound, InitializeConflict:
	default:
		return fmt.Errorf("unknown initialize behavior %q", s.Initialize)
	}
	switch s.Close {
	case CloseRepairs, CloseFailsAfter, CloseRejects:
	default:
		return fmt.Errorf("unknown close behavior %q", s.Close)
	}
	if s.FailCalls < 0 || s.RateLimitCalls < 0 || s.LatencyMillis < 0 || s.SyncingPolls < 0 {
		return errors.New("failCalls, rateLimitCalls, latencyMillis and syncingPolls must not be negative")
	}
	return nil
}

// Connection is a sandbox connection as the control API shows it.
type Connection struct {
	ID          string `json:"id"`
	ProfileID   string `json:"profileId,omitempty"`
	Institution string `json:"institution,omitempty"`
	Status      string `json:"status"`
	Script      Script `json:"script"`
	// Calls counts the API calls by name, for tests.
	Calls map[string]int `json:"calls"`
}

// Login is what the simulated widget hands the frontend on success: the
// body of the gateway's complete call.
type Login struct {
	ConnectorToken string          `json:"connectorToken"`
	PublicToken    string          `json:"publicToken"`
	Metadata       json.RawMessage `json:"metadata"`
}

// Errors of the control API.
var (
	ErrUnknownConnection = errors.New("unknown sandbox connection")
	ErrNoOpenSession     = errors.New("no open widget session: call reconnect first")
)

type session struct {
	token       string
	publicToken string
	expiresAt   time.Time
	closed      bool
	// closeInTask: closed as Plaid's, Meld's and MX's sessions are, so
	// a second close of it does what the first did (Session.CloseInTask).
	closeInTask bool
}

type connection struct {
	Connection
	sessions []*session
	// syncingPolls left before status reads show the outcome.
	syncingPolls int
}

// Provider is the sandbox aggregator. It implements aggregator.Provider.
type Provider struct {
	// WidgetURL is the base of the simulated widget's URL.
	WidgetURL  string
	SessionTTL time.Duration
	// SyncDelay is how long after close the sync finishes and its webhook
	// goes out.
	SyncDelay time.Duration
	Webhooks  *WebhookSender
	Now       func() time.Time
	Logger    *slog.Logger
	// Adopt, if set, decides whether a call naming a connection the
	// sandbox never saw finds it, with which status and script. `relink
	// bench` runs its worker's sandbox this way: the bench reports the
	// breaks by webhook itself, from another process. A healthy adopted
	// connection is not kept: the bench's sweep reads 100,000 of them.
	Adopt func(id string) (script Script, status string, ok bool)

	mu    sync.Mutex
	conns map[string]*connection
	seq   int
	// sends tracks webhooks still to go out, so Wait can drain them.
	sends sync.WaitGroup
	// statePath is where Load read the state from and save writes it.
	statePath     string
	saveScheduled bool
	writeMu       sync.Mutex // one Flush at a time
}

// BenchContinuePrefix marks the bench's connections whose initialize
// answers CONTINUE.
const BenchContinuePrefix = "bench-continue-"

// BenchCloseInTaskPrefix marks the bench's broken connections whose
// sessions close as Plaid's, Meld's and MX's (Script.CloseInTask).
const BenchCloseInTaskPrefix = "bench-task-"

// BenchHealthyPrefix and BenchLostPrefix mark the connections of the
// bench's sweep: healthy ones, and breaks whose webhook was lost.
const (
	BenchHealthyPrefix = "bench-healthy-"
	BenchLostPrefix    = "bench-lost-"
)

// BenchScript is Adopt for `relink bench`: a connection named bench-… is
// broken (but bench-healthy-…; bench-task-… closes in the workflow
// task), and after a reconnect reports SYNCING
// until the bench's own synced webhook confirms it (the sandbox sends no
// webhooks of its own); bench-lost-… is broken and says so when read.
func BenchScript(id string) (Script, string, bool) {
	switch {
	case strings.HasPrefix(id, BenchHealthyPrefix):
		return Script{}, quiltt.StatusSynced, true
	case strings.HasPrefix(id, BenchLostPrefix):
		return Script{SuppressWebhooks: true}, quiltt.StatusErrorRepairable, true
	case strings.HasPrefix(id, BenchContinuePrefix):
		return Script{Initialize: InitializeContinue, SuppressWebhooks: true}, quiltt.StatusErrorRepairable, true
	case strings.HasPrefix(id, BenchCloseInTaskPrefix):
		return Script{SyncingPolls: 1 << 30, SuppressWebhooks: true, CloseInTask: true}, quiltt.StatusErrorRepairable, true
	case strings.HasPrefix(id, "bench-"):
		return Script{SyncingPolls: 1 << 30, SuppressWebhooks: true}, quiltt.StatusErrorRepairable, true
	}
	return Script{}, "", false
}

// Name implements aggregator.Provider.
func (p *Provider) Name() string { return Name }

// Break breaks a connection (creating it if new), like Quiltt's
// connectionSimulateError, and sends the repairable webhook.
func (p *Provider) Break(ctx context.Context, id, profileID, institution string) (Connection, error) {
	snap, ev := p.breakConnection(id, profileID, institution)
	return snap, p.Webhooks.send(ctx, ev)
}

// BreakLosingWebhook breaks a connection as Break does, but its webhook is
// lost on the way: only a reconciliation sweep finds the break.
func (p *Provider) BreakLosingWebhook(id, profileID, institution string) Connection {
	snap, _ := p.breakConnection(id, profileID, institution)
	return snap
}

func (p *Provider) breakConnection(id, profileID, institution string) (Connection, quiltt.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn(id, true)
	if profileID != "" {
		c.ProfileID = profileID
	}
	if institution != "" {
		c.Institution = institution
	}
	c.Status = quiltt.StatusErrorRepairable
	ev := p.event(c, quiltt.EventRepairable)
	p.save()
	return c.snapshot(), ev
}

// ListNeedingUser implements aggregator.Lister: the broken connections in
// id order, the cursor the last id of the page before.
func (p *Provider) ListNeedingUser(_ context.Context, cursor string, limit int) (aggregator.CandidatePage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := slices.Sorted(maps.Keys(p.conns))
	var page aggregator.CandidatePage
	for _, id := range ids {
		c := p.conns[id]
		if id <= cursor || quiltt.HealthOf(c.Status) != aggregator.HealthRepairable {
			continue
		}
		if len(page.Candidates) == limit {
			page.Next = page.Candidates[limit-1].ConnectionID
			break
		}
		page.Candidates = append(page.Candidates, aggregator.Candidate{
			ConnectionRef: aggregator.ConnectionRef{Provider: Name, ConnectionID: id, ProfileID: c.ProfileID},
			Institution:   c.Institution,
			Status:        &aggregator.ConnectionStatus{Health: aggregator.HealthRepairable, ProviderStatus: c.Status},
		})
	}
	return page, nil
}

// SetScript scripts a connection's behaviour, creating it healthy if new.
func (p *Provider) SetScript(id string, s Script) (Connection, error) {
	if err := s.Validate(); err != nil {
		return Connection{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn(id, true)
	c.Script = s
	p.save()
	return c.snapshot(), nil
}

// Get returns a connection.
func (p *Provider) Get(id string) (Connection, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn(id, false)
	if c == nil {
		return Connection{}, ErrUnknownConnection
	}
	return c.snapshot(), nil
}

// Disconnect disconnects a connection and sends connection.disconnected.
func (p *Provider) Disconnect(ctx context.Context, id string) error {
	p.mu.Lock()
	c := p.conn(id, false)
	if c == nil {
		p.mu.Unlock()
		return ErrUnknownConnection
	}
	c.Status = quiltt.StatusDisconnected
	ev := p.event(c, quiltt.EventDisconnected)
	p.save()
	p.mu.Unlock()
	return p.Webhooks.send(ctx, ev)
}

// LoginUser plays the user logging in to the widget's latest open session
// and returns what the widget's success callback would.
func (p *Provider) LoginUser(id string) (Login, error) {
	return p.login(id, "")
}

// LoginInWidget is the user signing in inside the simulated widget, which
// knows its session (as a real widget knows its link token): only that
// session, open and unexpired, signs in.
func (p *Provider) LoginInWidget(id, sessionToken string) (Login, error) {
	if sessionToken == "" {
		return Login{}, ErrNoOpenSession
	}
	return p.login(id, sessionToken)
}

// login signs in to the newest open session, or to the one named.
func (p *Provider) login(id, sessionToken string) (Login, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conn(id, false)
	if c == nil {
		return Login{}, ErrUnknownConnection
	}
	var s *session
	for i := len(c.sessions) - 1; i >= 0 && s == nil; i-- {
		open := !c.sessions[i].closed && p.Now().Before(c.sessions[i].expiresAt)
		if open && (sessionToken == "" || c.sessions[i].token == sessionToken) {
			s = c.sessions[i]
		}
	}
	if s == nil {
		return Login{}, ErrNoOpenSession
	}
	p.seq++
	s.publicToken = fmt.Sprintf("public-sandbox-%d", p.seq)
	p.save()
	meta, _ := json.Marshal(map[string]any{
		"connectionId": c.ID,
		"profileId":    c.ProfileID,
		"institution":  map[string]string{"name": c.Institution},
	})
	return Login{ConnectorToken: s.token, PublicToken: s.publicToken, Metadata: meta}, nil
}

// Initialize implements aggregator.Provider.
func (p *Provider) Initialize(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.Session, error) {
	c, release, err := p.call(ctx, ref.ConnectionID, "initialize")
	if err != nil {
		return aggregator.Session{}, err
	}
	defer release()
	switch c.Script.Initialize {
	case InitializeNotFound:
		return aggregator.Session{}, aggregator.NotFound("sandbox: connection " + ref.ConnectionID + " not found")
	case InitializeConflict:
		return aggregator.Session{}, aggregator.NotRepairable("sandbox: connection " + ref.ConnectionID + " is in a conflicting state; start a new connection")
	case InitializeContinue:
		c.Status = quiltt.StatusSynced
		c.syncingPolls = c.Script.SyncingPolls
		p.sendLater(p.event(c, quiltt.EventSyncedSuccessful), c.Script.SuppressWebhooks)
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	}
	switch quiltt.HealthOf(c.Status) {
	case aggregator.HealthHealthy:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue, Healthy: !ref.Proactive}, nil
	case aggregator.HealthSyncing:
		return aggregator.Session{ConnectorStatus: aggregator.ConnectorContinue}, nil
	case aggregator.HealthDisconnected:
		return aggregator.Session{}, aggregator.NotRepairable("sandbox: connection " + ref.ConnectionID + " is disconnected")
	}
	p.seq++
	s := &session{token: fmt.Sprintf("sbx_ct_%d", p.seq), expiresAt: p.Now().Add(p.sessionTTL()), closeInTask: c.Script.CloseInTask}
	c.sessions = append(c.sessions, s)
	return aggregator.Session{
		ConnectorStatus: aggregator.ConnectorActionRequired,
		ConnectorToken:  s.token,
		WidgetURL:       p.WidgetURL + "?" + url.Values{"connectionId": {c.ID}, "session": {s.token}}.Encode(),
		ExpiresAt:       s.expiresAt,
		CloseInTask:     s.closeInTask,
	}, nil
}

// Close implements aggregator.Provider.
func (p *Provider) Close(ctx context.Context, req aggregator.CloseRequest) error {
	c, release, err := p.call(ctx, req.ConnectionID, "close")
	if err != nil {
		return err
	}
	defer release()
	var s *session
	for _, candidate := range c.sessions {
		if candidate.token == req.ConnectorToken {
			s = candidate
		}
	}
	switch {
	case s == nil:
		return aggregator.ReconnectRejected("sandbox: unknown connector token")
	case s.closed && s.closeInTask:
		return nil // a repeat, harmless as the contract wants
	case s.closed:
		return aggregator.ReconnectRejected("sandbox: session already closed")
	case !p.Now().Before(s.expiresAt):
		return aggregator.ReconnectRejected("sandbox: session expired")
	case s.publicToken == "" || req.PublicToken != s.publicToken:
		return aggregator.ReconnectRejected("sandbox: public token does not match the widget login")
	case c.Script.Close == CloseRejects:
		return aggregator.ReconnectRejected("sandbox: close rejected (scripted)")
	}
	s.closed = true
	c.syncingPolls = c.Script.SyncingPolls
	if c.Script.Close == CloseFailsAfter {
		c.Status = quiltt.StatusErrorRepairable
		p.sendLater(p.event(c, quiltt.EventRepairable), c.Script.SuppressWebhooks)
		return nil
	}
	c.Status = quiltt.StatusSynced
	p.sendLater(p.event(c, quiltt.EventSyncedSuccessful), c.Script.SuppressWebhooks)
	return nil
}

// ConnectionStatus implements aggregator.Provider.
func (p *Provider) ConnectionStatus(ctx context.Context, ref aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	c, release, err := p.call(ctx, ref.ConnectionID, "status")
	if err != nil {
		return aggregator.ConnectionStatus{}, err
	}
	defer release()
	status := c.Status
	if c.syncingPolls > 0 {
		c.syncingPolls--
		status = quiltt.StatusSyncing
	}
	return aggregator.ConnectionStatus{Health: quiltt.HealthOf(status), ProviderStatus: status}, nil
}

// Wait blocks until every webhook the sandbox scheduled has been sent.
func (p *Provider) Wait() { p.sends.Wait() }

// call applies the connection's latency and flakiness, then returns it
// locked; release unlocks it.
func (p *Provider) call(ctx context.Context, id, name string) (*connection, func(), error) {
	p.mu.Lock()
	c := p.conn(id, false)
	if c == nil && p.Adopt != nil {
		if script, status, ok := p.Adopt(id); ok {
			if quiltt.HealthOf(status) == aggregator.HealthHealthy {
				c = &connection{Connection: Connection{ID: id, Calls: map[string]int{}}} // not kept
			} else {
				c = p.conn(id, true)
			}
			c.Status, c.Script, c.syncingPolls = status, script, script.SyncingPolls
		}
	}
	if c == nil {
		p.mu.Unlock()
		return nil, nil, aggregator.NotFound("sandbox: connection " + id + " not found")
	}
	c.Calls[name]++
	latency := time.Duration(c.Script.LatencyMillis) * time.Millisecond
	flaky := c.Script.FailCalls > 0
	if flaky {
		c.Script.FailCalls--
	}
	limited := !flaky && c.Script.RateLimitCalls > 0
	if limited {
		c.Script.RateLimitCalls--
	}
	p.save()
	p.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	if flaky {
		return nil, nil, errors.New("sandbox: 503 Service Unavailable (scripted failure)")
	}
	if limited {
		return nil, nil, &aggregator.RateLimited{Message: "sandbox: 429 Too Many Requests (scripted)", RetryAfter: time.Second}
	}
	p.mu.Lock()
	return c, func() { p.save(); p.mu.Unlock() }, nil
}

// conn finds a connection; with create, a new one starts healthy.
func (p *Provider) conn(id string, create bool) *connection {
	if p.conns == nil {
		p.conns = map[string]*connection{}
	}
	c := p.conns[id]
	if c == nil && create {
		c = &connection{Connection: Connection{ID: id, Status: quiltt.StatusSynced, Calls: map[string]int{}}}
		p.conns[id] = c
	}
	return c
}

func (c *connection) snapshot() Connection {
	snap := c.Connection
	snap.Calls = make(map[string]int, len(c.Calls))
	for k, v := range c.Calls {
		snap.Calls[k] = v
	}
	return snap
}

func (p *Provider) sessionTTL() time.Duration {
	if p.SessionTTL > 0 {
		return p.SessionTTL
	}
	return DefaultSessionTTL
}

// event builds a webhook event about c; p.mu is held.
func (p *Provider) event(c *connection, eventType string) quiltt.Event {
	p.seq++
	ev := quiltt.Event{
		ID:     fmt.Sprintf("evt_sbx_%d_%d", p.Now().UnixNano(), p.seq),
		Type:   eventType,
		At:     p.Now().UTC(),
		Record: &quiltt.Record{ID: c.ID, Status: c.Status, Provider: "MOCK"},
	}
	if c.ProfileID != "" {
		ev.Profile = &quiltt.Profile{ID: c.ProfileID}
	}
	if c.Institution != "" {
		ev.Record.Institution = &quiltt.Institution{Name: c.Institution}
	}
	return ev
}

// sendLater sends ev after SyncDelay, as a provider's sync would finish.
func (p *Provider) sendLater(ev quiltt.Event, suppress bool) {
	if suppress || p.Webhooks == nil {
		return
	}
	p.sends.Add(1)
	go func() {
		defer p.sends.Done()
		time.Sleep(p.SyncDelay)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Webhooks.send(ctx, ev); err != nil {
			p.Logger.Warn("sandbox webhook not delivered", "connectionId", ev.Record.ID, "eventType", ev.Type, "error", err)
		}
	}()
}
