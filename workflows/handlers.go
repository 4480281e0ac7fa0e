package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Error types the updates return; the gateway maps them to HTTP. A
// validator's refusal writes nothing to history.
const (
	// ErrTypeRepairClosed: the repair has a terminal status (HTTP 409).
	ErrTypeRepairClosed = "RepairClosed"
	// ErrTypeProviderUnavailable: a new session could not be minted right
	// now; the repair keeps waiting and the frontend may retry (HTTP 503).
	ErrTypeProviderUnavailable = "ProviderUnavailable"
	// ErrTypeNotAwaitingUser: a completion while the repair is not waiting
	// for the user (HTTP 409).
	ErrTypeNotAwaitingUser = "NotAwaitingUser"
	// ErrTypeSessionUnknown: a completion for a connector token this repair
	// never issued (HTTP 422).
	ErrTypeSessionUnknown = "SessionUnknown"
	// ErrTypeAlreadyCompleted: the session was already reported completed;
	// close runs once per session (HTTP 202, nothing new recorded).
	ErrTypeAlreadyCompleted = "AlreadyCompleted"
	// ErrTypeInvalidMessage: a payload the repair cannot record: missing
	// or oversized fields (HTTP 400 or 413).
	ErrTypeInvalidMessage = "InvalidMessage"
	ErrTypeTooLarge       = "TooLarge"
	// ErrTypeTooManyRequests: the run has recorded as many of these as it
	// takes (HTTP 429).
	ErrTypeTooManyRequests = "TooManyRequests"
	// ErrTypeRepairMoving: the run is handing over to its continuation;
	// send again in a moment (the gateway does, within its time budget).
	ErrTypeRepairMoving = "RepairMoving"
)

func (r *repair) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryState, func() (RepairState, error) {
		return r.State, nil
	}, workflow.QueryHandlerOptions{Description: "The whole repair state"}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryReconnect, func(q ReconnectRequest) (ReconnectOffer, error) {
		return r.offer(ctx, q, later(q.At.Add(-r.clockSkew(q.Gateway)), workflow.Now(ctx))), nil
	}, workflow.QueryHandlerOptions{Description: "How to answer a reconnect without writing history"}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReconnect, r.onReconnect, workflow.UpdateHandlerOptions{
		Validator:   r.validateReconnect,
		Description: "Mint a new widget session when the current one cannot be used",
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateComplete, r.onComplete, workflow.UpdateHandlerOptions{
		Validator:   r.validateComplete,
		Description: "The user finished in the widget; close the session",
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateExit, r.onExit, workflow.UpdateHandlerOptions{
		Validator:   r.validateExit,
		Description: "The user left the widget without success",
	}); err != nil {
		return err
	}
	return nil
}

func repairError(typ, format string, args ...any) error {
	return temporal.NewApplicationError(fmt.Sprintf(format, args...), typ)
}

// admit is what every update validator checks first.
func (r *repair) admit() error {
	switch {
	case r.State.Status.Terminal():
		return repairError(ErrTypeRepairClosed, "the repair is %s", r.State.Status)
	case r.moving:
		return repairError(ErrTypeRepairMoving, "the repair is moving to a new run; send again")
	case r.updates >= maxUpdatesPerRun:
		return repairError(ErrTypeRepairMoving, "the run is full; send again")
	}
	return nil
}

// offer answers a reconnect from the state alone. The query returns it, so
// a frontend asking again and again writes no history; the update acts on
// the same answer.
func (r *repair) offer(ctx workflow.Context, req ReconnectRequest, now time.Time) ReconnectOffer {
	switch r.State.Status {
	case StatusPending:
		why := "checking with the provider; retry shortly"
		if r.State.LastError != "" {
			why += " (last error: " + r.State.LastError + ")"
		}
		return ReconnectOffer{Unavailable: why, RetryAfter: 2 * time.Second}
	case StatusCompleting, StatusVerifying:
		// The user already did their part: never send them back.
		return ReconnectOffer{Result: &ReconnectResult{Status: r.State.Status, ConnectorStatus: aggregator.ConnectorContinue}}
	case StatusAwaitingUser:
	default:
		return ReconnectOffer{Closed: r.State.Status}
	}
	fresh := now.Sub(r.SessionIssuedAt) < r.opts.MinRefreshInterval
	if r.sessionUsable(now) && (!req.ForceNewSession || fresh) {
		return ReconnectOffer{Result: &ReconnectResult{Status: r.State.Status, ConnectorStatus: aggregator.ConnectorActionRequired, Session: r.callerSession()}}
	}
	if !r.refreshing && r.RefreshErr != "" && now.Sub(r.RefreshFailedAt) < refreshRetryPause {
		return ReconnectOffer{Unavailable: r.RefreshErr, RetryAfter: refreshRetryPause - now.Sub(r.RefreshFailedAt)}
	}
	if r.moving {
		return ReconnectOffer{Unavailable: "the repair is moving to a new run; retry", RetryAfter: time.Second}
	}
	// Everyone who needs a new session in this state asks with the same
	// id, so the server runs one update for all of them. The id changes
	// with every refresh round and every status change, so an id the
	// server has answered is never handed out again.
	return ReconnectOffer{UpdateID: fmt.Sprintf("reconnect/%s/%d/%d",
		workflow.GetInfo(ctx).WorkflowExecution.RunID, len(r.State.Steps), r.RefreshRounds)}
}

// callerSession is the current session as a frontend opens its widget
// with: without how the workflow closes it.
func (r *repair) callerSession() *aggregator.Session {
	s := r.Session
	s.CloseInTask = false
	return &s
}

func (r *repair) validateReconnect(ctx workflow.Context, _ ReconnectRequest) error {
	return r.admit()
}

// onReconnect answers with a session the user can use now: the current one
// while it is valid, else one the main path mints for it.
func (r *repair) onReconnect(ctx workflow.Context, req ReconnectRequest) (ReconnectResult, error) {
	r.updates++
	r.noteClockSkew(req, workflow.Now(ctx))
	o := r.offer(ctx, req, workflow.Now(ctx))
	switch {
	case o.Result != nil && r.State.Status != StatusAwaitingUser:
		return *o.Result, nil
	case o.Closed != "":
		return ReconnectResult{}, repairError(ErrTypeRepairClosed, "the repair is %s", o.Closed)
	case r.State.Status == StatusPending:
		return ReconnectResult{}, repairError(ErrTypeProviderUnavailable, "%s", o.Unavailable)
	}
	// The query saw that a new session is needed (by the caller's clock,
	// which may run ahead of this task's): mint one whatever this task
	// thinks, so the update id, spent now, is never answered from the
	// server's cache with a session it meant to replace.
	round := r.RefreshRounds
	if !r.refreshing {
		r.refreshRequested = true
	}
	if err := workflow.Await(ctx, func() bool {
		return r.RefreshRounds != round || r.State.Status != StatusAwaitingUser
	}); err != nil {
		return ReconnectResult{}, err
	}
	switch {
	case r.State.Status == StatusAwaitingUser && r.RefreshErr != "":
		return ReconnectResult{}, repairError(ErrTypeProviderUnavailable, "%s", r.RefreshErr)
	case r.State.Status == StatusAwaitingUser:
		return ReconnectResult{Status: r.State.Status, ConnectorStatus: aggregator.ConnectorActionRequired, Session: r.callerSession()}, nil
	case r.State.Status.Terminal():
		return ReconnectResult{}, repairError(ErrTypeRepairClosed, "the repair is %s", r.State.Status)
	}
	return ReconnectResult{Status: r.State.Status, ConnectorStatus: aggregator.ConnectorContinue}, nil
}

// sessionUsable: issued, not yet completed, and not about to expire.
func (r *repair) sessionUsable(now time.Time) bool {
	s := r.Session
	if s.ConnectorToken == "" && s.LinkToken == "" && s.WidgetURL == "" {
		return false
	}
	if slices.Contains(r.ClosedTokens, s.ConnectorToken) {
		return false
	}
	return s.ExpiresAt.IsZero() || now.Add(sessionRefreshMargin).Before(s.ExpiresAt)
}

// validateComplete refuses, without a trace in history, every completion
// the repair cannot use.
func (r *repair) validateComplete(ctx workflow.Context, c ReconnectCompleted) error {
	if err := r.admit(); err != nil {
		return err
	}
	return r.checkCompletion(c)
}

// checkCompletion is what makes a completion usable, whatever carried it.
func (r *repair) checkCompletion(c ReconnectCompleted) error {
	switch {
	case r.State.Status.Terminal():
		return repairError(ErrTypeRepairClosed, "the repair is %s", r.State.Status)
	case c.ConnectorToken == "":
		return repairError(ErrTypeInvalidMessage, "connectorToken is required: the session the widget completed")
	case len(c.ConnectorToken) > MaxTokenBytes || len(c.PublicToken) > MaxTokenBytes:
		return repairError(ErrTypeTooLarge, "tokens are at most %d bytes", MaxTokenBytes)
	case len(c.Metadata) > MaxCompletionMetadataBytes:
		return repairError(ErrTypeTooLarge, "metadata is at most %d bytes", MaxCompletionMetadataBytes)
	case slices.Contains(r.ClosedTokens, c.ConnectorToken) || r.pendingCompletion(c.ConnectorToken):
		return repairError(ErrTypeAlreadyCompleted, "this session was already reported completed")
	case r.State.Status != StatusAwaitingUser || r.pendingCompletion(""):
		return repairError(ErrTypeNotAwaitingUser, "the repair is %s, not waiting for the user", r.State.Status)
	case !slices.Contains(r.IssuedTokens, c.ConnectorToken):
		// Only this repair's sessions are closed, so a stray token cannot
		// cost the user an attempt.
		return repairError(ErrTypeSessionUnknown, "this repair did not issue that connector token")
	}
	return nil
}

// pendingCompletion reports a completion in the inbox not yet applied (for
// token, or any if token is empty).
func (r *repair) pendingCompletion(token string) bool {
	if r.completion != nil && (token == "" || r.completion.ConnectorToken == token) {
		return true
	}
	return slices.ContainsFunc(r.inbox, func(it inboxItem) bool {
		return it.completion != nil && (token == "" || it.completion.ConnectorToken == token)
	})
}

func (r *repair) onComplete(ctx workflow.Context, c ReconnectCompleted) (CompleteResult, error) {
	r.updates++
	r.inbox = append(r.inbox, inboxItem{completion: &c})
	return CompleteResult{Status: r.State.Status}, nil
}

func (r *repair) validateExit(ctx workflow.Context, e ReconnectExited) error {
	if err := r.admit(); err != nil {
		return err
	}
	return r.checkExit(e)
}

// checkExit is what makes an exit recordable, whatever carried it.
func (r *repair) checkExit(e ReconnectExited) error {
	if r.State.Status.Terminal() {
		return repairError(ErrTypeRepairClosed, "the repair is %s", r.State.Status)
	}
	if len(e.Reason) > MaxExitFieldBytes || len(e.ErrorCode) > MaxExitFieldBytes || len(e.ProviderRequestID) > MaxExitFieldBytes {
		return repairError(ErrTypeTooLarge, "exit fields are at most %d bytes each", MaxExitFieldBytes)
	}
	if r.exits >= maxExitsPerRun {
		return repairError(ErrTypeTooManyRequests, "this repair has recorded %d exits; no more are kept", r.exits)
	}
	return nil
}

func (r *repair) onExit(ctx workflow.Context, e ReconnectExited) error {
	r.updates++
	r.exits++
	r.inbox = append(r.inbox, inboxItem{exit: &e})
	return nil
}

// gatewayClock is how far one gateway's clock ran ahead of the workflow's
// when it last sent a reconnect update.
type gatewayClock struct {
	Gateway string        `json:"gateway"`
	Skew    time.Duration `json:"skew"`
}

// gatewayClocksKept bounds the gateways whose clocks a repair remembers.
const gatewayClocksKept = 8

// noteClockSkew learns how far the sending gateway's clock runs ahead: the
// update runs in a task that began after the gateway sent it, so the skew
// is measured at most a task's latency short. A gateway behind Temporal's
// clock needs no correction (the query already takes the later clock).
func (r *repair) noteClockSkew(req ReconnectRequest, now time.Time) {
	if req.Gateway == "" || req.At.IsZero() {
		return
	}
	r.GatewayClocks = slices.DeleteFunc(r.GatewayClocks, func(c gatewayClock) bool { return c.Gateway == req.Gateway })
	r.GatewayClocks = append(r.GatewayClocks, gatewayClock{Gateway: req.Gateway, Skew: max(req.At.Sub(now), 0)})
	if len(r.GatewayClocks) > gatewayClocksKept {
		r.GatewayClocks = slices.Clone(r.GatewayClocks[len(r.GatewayClocks)-gatewayClocksKept:])
	}
}

// clockSkew is how far gateway's clock was last seen ahead (0 if unknown).
func (r *repair) clockSkew(gateway string) time.Duration {
	for _, c := range r.GatewayClocks {
		if c.Gateway == gateway {
			return c.Skew
		}
	}
	return 0
}
