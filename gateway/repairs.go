package gateway

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/relink-dev/relink/intake"
	"github.com/relink-dev/relink/workflows"
)

var providerPattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// validID accepts a provider's connection or profile id: 1 to 256
// printable ASCII characters without spaces, quotes or backslashes (ids
// end up in workflow ids and visibility queries), and not a path that
// would not be clean in a URL (".", "..", a "." or ".." segment, "//"):
// the routes of a repair name it in their path, and unclean paths are
// 404. Every provider Relink speaks to uses such ids; anything else gets
// 400 rather than a failure deeper in.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 256 || strings.Contains(id, "//") {
		return false
	}
	for _, segment := range strings.Split(id, "/") {
		if segment == "." || segment == ".." {
			return false
		}
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '\'' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

type startRequest struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connectionId"`
	ProfileID    string `json:"profileId,omitempty"`
	Institution  string `json:"institution,omitempty"`
	Connector    string `json:"connector,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// RepairWindow overrides RELINK_REPAIR_WINDOW, as a Go duration ("72h").
	RepairWindow string `json:"repairWindow,omitempty"`
	MaxAttempts  int    `json:"maxAttempts,omitempty"`
}

type repairRef struct {
	ID    string `json:"id"`
	RunID string `json:"runId"`
}

// Bounds of a manual start's options.
const (
	maxManualRepairWindow = 90 * 24 * time.Hour
	maxManualAttempts     = 20
)

// What a manual start did: started a repair, joined the open one
// (nothing recorded), or queued the break for the next run of a repair
// that has ended and is still closing.
const (
	startOutcomeStarted = "started"
	startOutcomeJoined  = "joined"
	startOutcomeQueued  = "queued"
)

// startAnswer is POST /v1/repairs' 202. Options are those the repair
// started with; a join or a queued break applies none.
type startAnswer struct {
	Repair  repairRef       `json:"repair"`
	Outcome string          `json:"outcome"`
	Options *appliedOptions `json:"options,omitempty"`
}

type appliedOptions struct {
	RepairWindow string `json:"repairWindow"`
	MaxAttempts  int    `json:"maxAttempts"`
}

// startRepair starts a repair by hand (or joins the open one).
func (g *Gateway) startRepair(w http.ResponseWriter, r *http.Request) {
	var req startRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !g.validConnection(w, req.Provider, req.ConnectionID) {
		return
	}
	if req.ProfileID != "" && !validID(req.ProfileID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "profileId has characters that are not allowed")
		return
	}
	if len(req.Reason) > workflows.MaxExitFieldBytes || len(req.Institution) > workflows.MaxExitFieldBytes ||
		len(req.Connector) > workflows.MaxExitFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("reason, institution and connector are at most %d bytes", workflows.MaxExitFieldBytes))
		return
	}
	opts := g.Defaults
	if req.RepairWindow != "" {
		d, err := time.ParseDuration(req.RepairWindow)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, codeBadRequest, "repairWindow must be a positive duration such as 72h")
			return
		}
		if d > maxManualRepairWindow {
			writeError(w, http.StatusBadRequest, codeBadRequest, "repairWindow must be at most 2160h (90 days)")
			return
		}
		opts.RepairWindow = d
	}
	if req.MaxAttempts < 0 {
		writeError(w, http.StatusBadRequest, codeBadRequest, "maxAttempts must not be negative")
		return
	}
	if req.MaxAttempts > maxManualAttempts {
		writeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("maxAttempts must be at most %d", maxManualAttempts))
		return
	}
	if req.MaxAttempts > 0 {
		opts.MaxAttempts = req.MaxAttempts
	}
	reason := "manual"
	if req.Reason != "" {
		reason = "manual: " + req.Reason
	}
	in := workflows.RepairInput{
		Provider:      req.Provider,
		ConnectionID:  req.ConnectionID,
		ProfileID:     req.ProfileID,
		Institution:   req.Institution,
		Connector:     req.Connector,
		TriggerReason: reason,
		Options:       opts,
	}
	// A running repair is joined (nothing recorded); one that has ended but
	// is still delivering its last events starts the next run when it
	// closes; with none open a new one starts. A manual start is never lost.
	outcome, runID, err := g.intake().Deliver(g.withStartDeadline(r.Context()), intake.Delivery{
		ID:    workflows.WorkflowID(req.Provider, req.ConnectionID),
		Msg:   workflows.Message{RepairRequest: &workflows.RepairRequest{Reason: reason, At: time.Now().UTC(), Options: &opts}},
		Start: &in,
	})
	if err != nil {
		g.temporalError(w, r, err, req.Provider, req.ConnectionID)
		return
	}
	answer := startAnswer{Repair: repairRef{ID: workflows.WorkflowID(req.Provider, req.ConnectionID), RunID: runID}}
	switch {
	case outcome == intake.Started, outcome == intake.Queued:
		// Started, or queued for the next run of a repair that has ended
		// and is still closing, which starts with these options.
		answer.Outcome = startOutcomeStarted
		if outcome == intake.Queued {
			answer.Outcome = startOutcomeQueued
		}
		applied := opts
		if applied.RepairWindow <= 0 {
			applied.RepairWindow = workflows.DefaultRepairWindow
		}
		if applied.MaxAttempts <= 0 {
			applied.MaxAttempts = workflows.DefaultMaxAttempts
		}
		answer.Options = &appliedOptions{RepairWindow: applied.RepairWindow.String(), MaxAttempts: applied.MaxAttempts}
	case outcome == intake.Joined:
		answer.Outcome = startOutcomeJoined
		if req.RepairWindow != "" || req.MaxAttempts != 0 {
			// Nothing was recorded: the open repair keeps its own options
			// rather than silently dropping the ones asked for.
			g.logger(r.Context()).Info("manual start with options refused: a repair is open",
				"provider", req.Provider, "connectionId", req.ConnectionID, "runId", runID)
			writeError(w, http.StatusConflict, codeConflict,
				"a repair is already open for this connection (run "+runID+"); its repairWindow and maxAttempts cannot be changed: start without them to join it, or cancel it first")
			return
		}
	default:
		g.logger(r.Context()).Error("manual start: unexpected delivery outcome", "outcome", string(outcome),
			"provider", req.Provider, "connectionId", req.ConnectionID, "runId", runID)
		writeError(w, http.StatusInternalServerError, codeInternal, "unexpected outcome of the start")
		return
	}
	g.logger(r.Context()).Info("repair started by API: "+answer.Outcome, "provider", req.Provider, "connectionId", req.ConnectionID, "runId", runID)
	writeJSON(w, http.StatusAccepted, answer)
}

// validConnection checks a provider and connection id, writing the error.
func (g *Gateway) validConnection(w http.ResponseWriter, provider, connectionID string) bool {
	if !providerPattern.MatchString(provider) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "provider must be a provider name such as sandbox or quiltt")
		return false
	}
	if _, ok := g.Receivers[provider]; !ok {
		writeError(w, http.StatusBadRequest, codeUnknownProvider, "provider "+provider+" is not enabled")
		return false
	}
	if !validID(connectionID) {
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectionId is required: 1 to 256 printable ASCII characters, no spaces or quotes")
		return false
	}
	return true
}

// cancel ends an open repair (an operator's call).
func (g *Gateway) cancel(w http.ResponseWriter, r *http.Request) {
	var req workflows.CancelRequest
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.decodeMessage(w, r, &req) {
		return
	}
	if len(req.Reason) > workflows.MaxExitFieldBytes || len(req.RequestedBy) > workflows.MaxExitFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("cancel fields over %d bytes", workflows.MaxExitFieldBytes))
		return
	}
	id := workflows.WorkflowID(provider, conn)
	outcome, _, err := g.intake().Deliver(r.Context(), intake.Delivery{ID: id, Msg: workflows.Message{Cancel: &req}})
	if err != nil {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	if outcome != intake.Applied {
		info, err := g.describe(r.Context(), id)
		if err != nil {
			g.temporalError(w, r, err, provider, conn)
			return
		}
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", info.Status))
		return
	}
	g.logger(r.Context()).Info("repair cancel sent", "provider", provider, "connectionId", conn)
	writeJSON(w, http.StatusAccepted, map[string]any{"repair": map[string]string{"id": id}, "accepted": "cancel"})
}
