package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"golang.org/x/sync/semaphore"

	"github.com/relink-dev/relink/activities/aggregator"
)

// POST /v1/connections/lookup answers an app about to create a connection
// (Plaid Link's "add bank"): does the user already have one at that
// institution, and should the app repair it rather than create another?
// (Plaid warns that a second Item at the same institution can invalidate
// the first at some banks.)
//
// Relink keeps no list of the app's connections and Temporal's
// visibility has no institution (and, for webhook-started repairs, often
// no profile), so the app sends its candidates, the user's connection
// ids at the provider, and the gateway asks the provider which
// institution each is at (aggregator.InstitutionReader), then reads the
// match's health and its repair. The gateway calls the provider itself,
// synchronously: it is built with every enabled provider's settings
// already (the webhook receivers need them), the answer is wanted while
// the user waits, and a lookup changes nothing, so there is nothing for
// a workflow to make durable. The calls are bounded: at most
// maxLookupConnections candidates, at most lookupCallsInFlight provider
// calls at once in this process, all within lookupBudget.

// InstitutionLookup is what the lookup needs of a provider: which
// institution a connection is at, and its status. The adapters that
// implement aggregator.InstitutionReader (Plaid, MX) are it.
type InstitutionLookup interface {
	aggregator.InstitutionReader
	ConnectionStatus(ctx context.Context, conn aggregator.ConnectionRef) (aggregator.ConnectionStatus, error)
}

const (
	// maxLookupConnections bounds the candidates of one lookup: a user's
	// connections at one provider, not the app's inventory.
	maxLookupConnections = 20
	// lookupBudget bounds a lookup's provider and Temporal calls.
	lookupBudget = 10 * time.Second
	// lookupCallsInFlight bounds the provider calls of all lookups under
	// way in this process, well inside providers' rate limits (Plaid's
	// /item/get: 5,000 a minute per client).
	lookupCallsInFlight = 16
	// lookupRetryAfter is the Retry-After of a lookup the provider did not
	// answer, when the provider did not say.
	lookupRetryAfter = 2 * time.Second
)

// What the app should do, in a lookup's answer.
const (
	// lookupRepair: the connection at that institution needs the user
	// (an open repair, or the provider says it is broken): send them to
	// reconnect it, not to create another. With no open repair, start one
	// (POST /v1/repairs) first.
	lookupRepair = "repair"
	// lookupHealthy: the connection works: nothing to create or repair.
	lookupHealthy = "healthy"
	// lookupNone: no usable connection at that institution (none, or one
	// the user revoked, which cannot be repaired): create one.
	lookupNone = "none"
)

type lookupRequest struct {
	Provider      string   `json:"provider"`
	InstitutionID string   `json:"institutionId"`
	ProfileID     string   `json:"profileId,omitempty"`
	ConnectionIDs []string `json:"connectionIds"`
}

type lookupAnswer struct {
	Action string       `json:"action"`
	Match  *lookupMatch `json:"match"`
	// UnknownConnectionIDs are candidates the provider does not know
	// (deleted, or no access token): none of them is a match.
	UnknownConnectionIDs []string `json:"unknownConnectionIds"`
}

type lookupMatch struct {
	ConnectionID   string            `json:"connectionId"`
	InstitutionID  string            `json:"institutionId"`
	Health         aggregator.Health `json:"health"`
	ProviderStatus string            `json:"providerStatus,omitempty"`
	// Repair is the connection's open repair; nil when none is open.
	Repair *repairView `json:"repair"`
}

// lookupConnections answers POST /v1/connections/lookup.
func (g *Gateway) lookupConnections(w http.ResponseWriter, r *http.Request) {
	var req lookupRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !providerPattern.MatchString(req.Provider) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "provider must be a provider name such as plaid")
		return
	}
	if _, ok := g.Receivers[req.Provider]; !ok {
		writeError(w, http.StatusBadRequest, codeUnknownProvider, "provider "+req.Provider+" is not enabled")
		return
	}
	reader := g.Institutions[req.Provider]
	if reader == nil {
		writeError(w, http.StatusBadRequest, codeNotSupported, "provider "+req.Provider+" cannot say which institution a connection is at")
		return
	}
	if !validID(req.InstitutionID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "institutionId is required: the provider's institution id (Plaid's institution_id), 1 to 256 printable ASCII characters, no spaces or quotes")
		return
	}
	if req.ProfileID != "" && !validID(req.ProfileID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "profileId has characters that are not allowed")
		return
	}
	if req.ConnectionIDs == nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectionIds is required: the user's connection ids at the provider ([] for none)")
		return
	}
	if len(req.ConnectionIDs) > maxLookupConnections {
		writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("connectionIds: at most %d (one user's connections at the provider)", maxLookupConnections))
		return
	}
	var ids []string
	seen := map[string]bool{}
	for i, id := range req.ConnectionIDs {
		if !validID(id) {
			writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("connectionIds[%d] has characters that are not allowed", i))
			return
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), g.lookupBudgetOrDefault())
	defer cancel()
	ref := func(id string) aggregator.ConnectionRef {
		return aggregator.ConnectionRef{Provider: req.Provider, ConnectionID: id, ProfileID: req.ProfileID}
	}
	answer := lookupAnswer{Action: lookupNone, UnknownConnectionIDs: []string{}}

	// Which institution is each at?
	institutions := make([]string, len(ids))
	errs := g.eachConcurrently(ctx, len(ids), func(ctx context.Context, i int) (err error) {
		institutions[i], err = reader.Institution(ctx, ref(ids[i]))
		return err
	})
	var atInstitution []string
	for i, id := range ids {
		switch {
		case aggregator.TypeOf(errs[i]) == aggregator.ErrTypeConnectionNotFound:
			answer.UnknownConnectionIDs = append(answer.UnknownConnectionIDs, id)
		case errs[i] != nil:
			g.lookupFailed(w, r, req.Provider, id, errs)
			return
		case institutions[i] == req.InstitutionID:
			atInstitution = append(atInstitution, id)
		}
	}

	// Those at the institution: their health and open repair.
	matches := make([]lookupMatch, len(atInstitution))
	statusErrs := g.eachConcurrently(ctx, len(atInstitution), func(ctx context.Context, i int) error {
		st, err := reader.ConnectionStatus(ctx, ref(atInstitution[i]))
		matches[i].Health, matches[i].ProviderStatus = st.Health, st.ProviderStatus
		return err
	})
	repairErrs := make([]error, len(atInstitution))
	for i, id := range atInstitution {
		matches[i].ConnectionID, matches[i].InstitutionID = id, req.InstitutionID
		// Temporal, not the provider: no provider slot taken.
		view, err := g.readRepair(ctx, req.Provider, id)
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
		case err != nil:
			repairErrs[i] = err
		case view.Status != "" && !view.Status.Terminal():
			matches[i].Repair = &view
		}
	}
	var best *lookupMatch
	for i := range matches {
		switch {
		case aggregator.TypeOf(statusErrs[i]) == aggregator.ErrTypeConnectionNotFound:
			// Gone between the two reads.
			answer.UnknownConnectionIDs = append(answer.UnknownConnectionIDs, matches[i].ConnectionID)
			continue
		case statusErrs[i] != nil:
			g.lookupFailed(w, r, req.Provider, matches[i].ConnectionID, statusErrs)
			return
		case repairErrs[i] != nil:
			g.temporalError(w, r, repairErrs[i], "", "")
			return
		}
		if best == nil || lookupRank(matches[i]) < lookupRank(*best) {
			best = &matches[i]
		}
	}
	if best != nil {
		answer.Match = best
		answer.Action = lookupAction(*best)
	}
	g.logger(r.Context()).Info("connection lookup", "provider", req.Provider, "institutionId", req.InstitutionID,
		"candidates", len(ids), "atInstitution", len(atInstitution), "action", answer.Action)
	writeJSON(w, http.StatusOK, answer)
}

// lookupAction is what the app should do about the connection m.
func lookupAction(m lookupMatch) string {
	switch {
	case m.Health == aggregator.HealthDisconnected:
		// Revoked: no repair can bring it back; a new connection can.
		return lookupNone
	case m.Repair != nil, m.Health == aggregator.HealthRepairable, m.Health == aggregator.HealthDegraded:
		return lookupRepair
	default:
		return lookupHealthy
	}
}

// lookupRank orders the connections at the institution, lowest first:
// one that needs the user (the likeliest reason to press "add bank"),
// then one that works, then one revoked. Ties go to the first sent.
func lookupRank(m lookupMatch) int {
	switch lookupAction(m) {
	case lookupRepair:
		return 0
	case lookupHealthy:
		return 1
	default:
		return 2
	}
}

// eachConcurrently runs call(ctx, i) for i in [0, n), each in one of
// this process's provider call slots, and returns their errors; a call
// that gets no slot within ctx is not made, and ctx's error is its.
func (g *Gateway) eachConcurrently(ctx context.Context, n int, call func(ctx context.Context, i int) error) []error {
	g.lookupOnce.Do(func() { g.lookupSlots = semaphore.NewWeighted(lookupCallsInFlight) })
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.lookupSlots.Acquire(ctx, 1); err != nil {
				errs[i] = err
				return
			}
			defer g.lookupSlots.Release(1)
			errs[i] = call(ctx, i)
		}()
	}
	wg.Wait()
	return errs
}

// lookupFailed answers a lookup one of whose provider calls failed:
// 400 for a request the provider cannot read (MX without the user's
// guid), otherwise 503 with the provider's Retry-After, if it said one.
func (g *Gateway) lookupFailed(w http.ResponseWriter, r *http.Request, provider, id string, errs []error) {
	after := time.Duration(0)
	var failed error
	for _, err := range errs {
		if err == nil || aggregator.TypeOf(err) == aggregator.ErrTypeConnectionNotFound {
			continue
		}
		if aggregator.TypeOf(err) == aggregator.ErrTypeInvalidInput {
			writeError(w, http.StatusBadRequest, codeBadRequest, "the provider cannot read the connection: "+aggregator.Named(err).Message)
			return
		}
		if rl, ok := aggregator.IsRateLimited(err); ok {
			after = max(after, rl.RetryAfter)
		}
		if failed == nil {
			failed = err
		}
	}
	if after == 0 {
		after = lookupRetryAfter
	}
	g.logger(r.Context()).Warn("connection lookup: the provider did not answer", "provider", provider, "connectionId", id, "error", failed)
	msg := "the provider did not answer; retry"
	if errors.Is(failed, context.DeadlineExceeded) {
		msg = fmt.Sprintf("the provider did not answer within %s; retry", g.lookupBudgetOrDefault())
	} else if failed != nil {
		msg += ": " + failed.Error()
	}
	writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, msg, after)
}

func (g *Gateway) lookupBudgetOrDefault() time.Duration {
	if g.lookupBudget > 0 {
		return g.lookupBudget
	}
	return lookupBudget
}
