package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/workflows"
)

// reconnect answers with the widget session. It asks the workflow first
// (a query writes no history), and only when a new session is needed sends
// the reconnect update, with the id the workflow chose so that concurrent
// callers on any gateway share one update.
func (g *Gateway) reconnect(w http.ResponseWriter, r *http.Request) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	if !g.validConnection(w, provider, conn) {
		return
	}
	var body struct {
		ForceNewSession bool `json:"forceNewSession,omitempty"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	req := workflows.ReconnectRequest{ForceNewSession: body.ForceNewSession, Gateway: g.instanceID()}
	ctx, cancel := context.WithTimeout(r.Context(), interactiveBudget)
	defer cancel()
	id := workflows.WorkflowID(provider, conn)
	for {
		offer, err := g.reconnectOffer(ctx, id, req)
		if err != nil {
			g.temporalError(w, r, err, provider, conn)
			return
		}
		switch {
		case offer.Result != nil:
			writeJSON(w, http.StatusOK, g.reconnectAnswer(provider, conn, *offer.Result))
			return
		case offer.Closed != "":
			writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("the repair is %s", offer.Closed))
			return
		case offer.Unavailable != "":
			msg := pageUnavailable
			if principalOf(r).app {
				msg = offer.Unavailable
				if failure := g.pendingFailureOf(ctx, id); failure != "" {
					msg += "; provider: " + failure
				}
			}
			writeRetry(w, http.StatusServiceUnavailable, codeUnavailable, msg, offer.RetryAfter)
			return
		}
		var res workflows.ReconnectResult
		req.At = g.now().UTC()
		err = g.update(ctx, id, workflows.UpdateReconnect, offer.UpdateID, req, &res)
		if isMoving(err) {
			continue
		}
		if err != nil {
			g.temporalError(w, r, err, provider, conn)
			return
		}
		writeJSON(w, http.StatusOK, g.reconnectAnswer(provider, conn, res))
		return
	}
}

// reconnectAnswer is reconnect's 200: the repair's answer and, with a
// session, the provider's widget record, which says how a browser opens
// that session (the hosted page's script and the embeddable button read
// it, and so may an app's own frontend).
type reconnectAnswer struct {
	workflows.ReconnectResult
	Widget *widgetRecord `json:"widget,omitempty"`
}

// widgetRecord is a provider's Browser record as a browser reads it: the
// widget kinds its sessions open, a framed widget's message rules, and
// where Plaid Link loads from for a provider whose sessions open it.
type widgetRecord struct {
	aggregator.Browser
	PlaidLinkScript string `json:"plaidLinkScript,omitempty"`
	// RedirectURL, for a redirect session, is the gateway's GET /r/go path
	// that sends the browser to the provider (redirect.go).
	RedirectURL string `json:"redirectUrl,omitempty"`
	// AllowedFrames, for a provider whose sessions open a framed widget,
	// are the origins the engine frames a session's widgetUrl from (the
	// gateway's own besides): the hosted page's frame-src, for an app's
	// page that may set none.
	AllowedFrames []string `json:"frameOrigins,omitempty"`
}

func (g *Gateway) reconnectAnswer(provider, conn string, res workflows.ReconnectResult) reconnectAnswer {
	answer := reconnectAnswer{ReconnectResult: res}
	if b, ok := g.Browsers[provider]; ok && res.Session != nil {
		answer.Widget = &widgetRecord{Browser: b}
		if b.Has(aggregator.WidgetPlaidLink) {
			answer.Widget.PlaidLinkScript = g.PlaidLinkScriptURL
		}
		answer.Widget.RedirectURL = g.redirectPath(provider, conn, b, res.Session)
		if b.Has(aggregator.WidgetFrame) {
			answer.Widget.AllowedFrames = dedupe(slices.Concat(b.FrameOrigins, g.ReconnectFrameOrigins))
		}
	}
	return answer
}

// reconnectOffer asks the repair what a reconnect call gets. Identical
// calls for one connection that arrive while this replica's query for
// them is under way (a page open in several tabs, a frontend in a loop)
// share that query: every answer still comes from the workflow, no older
// than the query, and a looping caller costs the worker one query at a
// time rather than one per call. The query outlives a caller that gives
// up, for the others waiting on it.
func (g *Gateway) reconnectOffer(ctx context.Context, id string, req workflows.ReconnectRequest) (workflows.ReconnectOffer, error) {
	key := fmt.Sprintf("%s\x00%t", id, req.ForceNewSession)
	answer := g.reconnectQueries.DoChan(key, func() (_ any, err error) {
		// The query runs outside the request's goroutine, where net/http's
		// recovery can't reach: a panic becomes this call's error.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("reconnect query: %v", p)
			}
		}()
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
		defer cancel()
		var offer workflows.ReconnectOffer
		req.At = g.now().UTC()
		v, err := g.Temporal.QueryWorkflow(qctx, id, "", workflows.QueryReconnect, req)
		if err == nil {
			err = v.Get(&offer)
		}
		return offer, err
	})
	g.reconnectWaiting.Add(1) // (DoChan has joined this caller to the query)
	defer g.reconnectWaiting.Add(-1)
	select {
	case r := <-answer:
		offer, _ := r.Val.(workflows.ReconnectOffer)
		return offer, r.Err
	case <-ctx.Done():
		return workflows.ReconnectOffer{}, ctx.Err()
	}
}

func (g *Gateway) pendingFailureOf(ctx context.Context, id string) string {
	desc, err := g.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return ""
	}
	return g.pendingFailure(desc)
}

// update sends a workflow update with a caller-chosen id (so retries and
// concurrent callers are one update to the server) and waits for its
// result. A run handing over to its continuation is retried after a pause.
func (g *Gateway) update(ctx context.Context, id, name, updateID string, arg, result any) error {
	if name != workflows.UpdateExit {
		// A user acts: from now on the repair's work (the update's own
		// task first) goes ahead of the repairs nobody is looking at. (A
		// user leaving the widget is not waiting for anything.)
		g.intake().SetPriority(ctx, id, workflows.PriorityUser)
	}
	h, err := g.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateID:     updateID,
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, result)
	}
	if isMoving(err) {
		select {
		case <-time.After(movingRetryPause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func isMoving(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeRepairMoving
}

// updateID derives an update id from what identifies the message, so the
// server records a repeated message once.
func updateID(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + "/" + hex.EncodeToString(h.Sum(nil)[:16])
}

// complete records the widget's success; the workflow's validator decides
// whether the repair can use it, and only then does the answer say 202.
func (g *Gateway) complete(w http.ResponseWriter, r *http.Request) {
	var req workflows.ReconnectCompleted
	if !g.decodeMessage(w, r, &req) {
		return
	}
	switch {
	case req.ConnectorToken == "":
		writeError(w, http.StatusBadRequest, codeBadRequest, "connectorToken is required: the session the widget completed")
		return
	case len(req.Metadata) > workflows.MaxCompletionMetadataBytes:
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("metadata over %d KiB", workflows.MaxCompletionMetadataBytes>>10))
		return
	case len(req.ConnectorToken) > workflows.MaxTokenBytes || len(req.PublicToken) > workflows.MaxTokenBytes:
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("tokens over %d bytes", workflows.MaxTokenBytes))
		return
	}
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	g.sendMessage(w, r, workflows.UpdateComplete, updateID("complete", provider, conn, req.ConnectorToken), req)
}

// exit records the user leaving the widget.
func (g *Gateway) exit(w http.ResponseWriter, r *http.Request) {
	var req workflows.ReconnectExited
	if !g.decodeMessage(w, r, &req) {
		return
	}
	if len(req.Reason) > workflows.MaxExitFieldBytes || len(req.ErrorCode) > workflows.MaxExitFieldBytes ||
		len(req.ProviderRequestID) > workflows.MaxExitFieldBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("exit fields over %d bytes", workflows.MaxExitFieldBytes))
		return
	}
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	// The same exit sent again is one update (its time is only part of it
	// when the frontend gave one).
	id := updateID("exit", provider, conn, req.Reason, req.ErrorCode, req.ProviderRequestID, req.At.Format(time.RFC3339Nano))
	if req.At.IsZero() {
		req.At = time.Now().UTC()
	}
	g.sendMessage(w, r, workflows.UpdateExit, id, req)
}

// decodeMessage checks the path and decodes a non-empty JSON body.
func (g *Gateway) decodeMessage(w http.ResponseWriter, r *http.Request, payload any) bool {
	if !g.validConnection(w, r.PathValue("provider"), r.PathValue("connectionId")) || !decodeBody(w, r, payload) {
		return false
	}
	return true
}

// sendMessage sends a complete or exit update and answers 202 once the
// workflow has accepted it.
func (g *Gateway) sendMessage(w http.ResponseWriter, r *http.Request, name, updateID string, payload any) {
	provider, conn := r.PathValue("provider"), r.PathValue("connectionId")
	ctx, cancel := context.WithTimeout(r.Context(), interactiveBudget)
	defer cancel()
	id := workflows.WorkflowID(provider, conn)
	var err error
	for {
		if err = g.update(ctx, id, name, updateID, payload, nil); !isMoving(err) {
			break
		}
	}
	var appErr *temporal.ApplicationError
	duplicate := errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeAlreadyCompleted
	if err != nil && !duplicate {
		g.temporalError(w, r, err, provider, conn)
		return
	}
	g.logger(r.Context()).Info("repair message accepted", "message", name, "provider", provider, "connectionId", conn, "duplicate", duplicate)
	writeJSON(w, http.StatusAccepted, map[string]any{"repair": map[string]string{"id": id}, "accepted": name, "duplicate": duplicate})
}
