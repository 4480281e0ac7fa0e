// Package conformance is the provider conformance kit: tests every
// adapter runs against its local fake of the provider's API, checking
// the contract of package aggregator as the repair workflow relies on it.
// It is written from the contract; each adapter supplies small hooks (a
// Fixture) saying how to make its fake answer one way or another and how
// to sign a webhook.
//
// An adapter's test calls Run:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, mybank.Registration, func(t *testing.T) *conformance.Fixture { … })
//	}
//
// Like the adapters, it links no Temporal SDK.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Fixture is one adapter over a fresh fake, and the hooks the kit drives
// it with. Run builds a new one for each check, so checks share no state.
type Fixture struct {
	// Provider is the adapter, pointed at the fake.
	Provider aggregator.Provider
	// Receiver verifies the provider's webhooks, as the gateway would.
	Receiver aggregator.WebhookReceiver
	// Tolerance is how old a signed webhook Receiver accepts.
	Tolerance time.Duration

	// Broken returns a connection the user must repair: initialize
	// answers ACTION_REQUIRED with a session.
	Broken func(t *testing.T) aggregator.ConnectionRef
	// Healthy returns a connection that works: initialize answers
	// CONTINUE (nothing for the user to do).
	Healthy func(t *testing.T) aggregator.ConnectionRef
	// Missing returns a connection the provider does not know.
	Missing func(t *testing.T) aggregator.ConnectionRef

	// Succeed plays the user finishing the widget of session s on ref
	// and returns what the widget hands the page (the close request).
	Succeed func(t *testing.T, ref aggregator.ConnectionRef, s aggregator.Session) aggregator.CloseRequest

	// SetStatus puts ref into the provider's status providerStatus, and
	// Statuses are the statuses with the health each must read as. They
	// must cover HEALTHY and REPAIRABLE.
	SetStatus func(t *testing.T, ref aggregator.ConnectionRef, providerStatus string)
	Statuses  map[string]aggregator.Health

	// Errors make the adapter fail with each named error type it can
	// return (aggregator.ErrType…): each hook sets the fake up and makes
	// the call that fails, returning its error. ConnectionNotFound is
	// required.
	Errors map[string]func(t *testing.T) error
	// Outage sets the fake failing as an outage would (5xx, 429) and
	// makes a call, returning its error: it must be retryable.
	Outage func(t *testing.T) error

	// Webhook returns a delivery of one event of kind for ref, signed as
	// the provider signs at time at: its body and headers.
	Webhook func(t *testing.T, ref aggregator.ConnectionRef, kind aggregator.EventKind, at time.Time) ([]byte, http.Header)
	// WebhookKinds are the kinds the provider's webhooks report; they
	// must include repairable.
	WebhookKinds []aggregator.EventKind
	// Unsigned: the provider authenticates its webhook requests but
	// signs neither their bodies nor a time (MX sends the HTTP basic
	// credentials it was given). The kit then checks that a delivery
	// without credentials, and one with Forged's, is refused, in place of
	// the tampered-body and stale checks, which only a signature can pass.
	Unsigned bool
	// Forged, required with Unsigned, returns header with the provider's
	// credentials replaced by wrong ones.
	Forged func(t *testing.T, header http.Header) http.Header
	// NoWebhooks: the provider sends no webhooks (TrueLayer's Data API:
	// breaks are found by expiry-timed repairs, the app's inventory and
	// manual starts). Webhook and WebhookKinds are then unset, and the
	// kit checks that Receiver refuses any delivery with ErrNoWebhooks.
	NoWebhooks bool

	// NeedingUser is required when Provider is an aggregator.Lister: it
	// fills the fake with connections that need the user and connections
	// that do not, enough for several pages, and returns every one in the
	// fake that needs the user.
	NeedingUser func(t *testing.T) []aggregator.ConnectionRef
}

// listLimit is the page size the kit lists with: small, so a listing
// spans pages.
const listLimit = 2

// Run checks the adapter registered as reg against the contract, with a
// new fixture from newFixture for each check.
func Run(t *testing.T, reg aggregator.Registration, newFixture func(t *testing.T) *Fixture) {
	t.Helper()
	ctx := context.Background()
	fixture := func(t *testing.T) *Fixture {
		t.Helper()
		f := newFixture(t)
		if f == nil || f.Provider == nil || f.Receiver == nil || f.Broken == nil || f.Healthy == nil || f.Missing == nil ||
			f.Succeed == nil || f.SetStatus == nil || (f.Webhook == nil) != f.NoWebhooks || f.Outage == nil || f.Tolerance <= 0 {
			t.Fatal("conformance: the fixture needs Provider, Receiver, Tolerance, Broken, Healthy, Missing, Succeed, SetStatus, Outage and Webhook")
		}
		return f
	}

	t.Run("registration", func(t *testing.T) {
		f := fixture(t)
		if err := reg.Check(); err != nil {
			t.Fatal(err)
		}
		if f.Provider.Name() != reg.Name {
			t.Errorf("Provider.Name() = %q, registered as %q", f.Provider.Name(), reg.Name)
		}
		s := reg.NewSettings()
		if s.Enabled() && !reg.Supplied {
			t.Error("zero settings enable the provider: a deployment that never configured it would run it")
		}
		if err := s.Validate(); err != nil {
			t.Errorf("zero settings do not validate: %v", err)
		}
	})

	t.Run("initialize/action required", func(t *testing.T) {
		f := fixture(t)
		s, err := f.Provider.Initialize(ctx, f.Broken(t))
		if err != nil {
			t.Fatalf("initialize of a broken connection: %v", err)
		}
		checkSession(t, reg, s)
	})

	t.Run("initialize/continue", func(t *testing.T) {
		f := fixture(t)
		s, err := f.Provider.Initialize(ctx, f.Healthy(t))
		if err != nil {
			t.Fatalf("initialize of a healthy connection: %v", err)
		}
		if s.ConnectorStatus != aggregator.ConnectorContinue {
			t.Errorf("initialize of a healthy connection: %s, want CONTINUE", s.ConnectorStatus)
		}
		if s.ConnectorToken != "" || s.LinkToken != "" || s.WidgetURL != "" {
			t.Errorf("CONTINUE with a session to open: %+v", s)
		}
	})

	t.Run("close once", func(t *testing.T) {
		f := fixture(t)
		ref := f.Broken(t)
		s, err := f.Provider.Initialize(ctx, ref)
		if err != nil {
			t.Fatalf("initialize: %v", err)
		}
		req := f.Succeed(t, ref, s)
		if req.ConnectorToken != s.ConnectorToken {
			t.Errorf("the widget's success names session %q, initialize gave %q", req.ConnectorToken, s.ConnectorToken)
		}
		closeCtx := ctx
		if s.CloseInTask {
			// A session the workflow closes in its task must close with no
			// call at the provider: one that needs the network fails on a
			// canceled context.
			canceled, cancel := context.WithCancel(ctx)
			cancel()
			closeCtx = canceled
		}
		if err := f.Provider.Close(closeCtx, req); err != nil {
			t.Fatalf("close of the widget's success (closeInTask %t): %v", s.CloseInTask, err)
		}
		st, err := f.Provider.ConnectionStatus(ctx, ref)
		if err != nil {
			t.Fatalf("status after close: %v", err)
		}
		if st.Health != aggregator.HealthHealthy && st.Health != aggregator.HealthSyncing {
			t.Errorf("status after a successful reconnect: %s (%s), want HEALTHY or SYNCING", st.Health, st.ProviderStatus)
		}
		// The workflow closes a session at most once, but a close whose
		// answer was lost is sent again (FinishReconnect): a second close
		// either does nothing or is refused, never counted as anything
		// else. One closed in the workflow task is repeated unrecorded
		// (a worker dying in that task): it must do what the first did.
		if err := f.Provider.Close(closeCtx, req); s.CloseInTask && err != nil {
			t.Errorf("second close of a closeInTask session: %v, want nil (no call at the provider, safe to repeat)", err)
		} else if err != nil && aggregator.TypeOf(err) != aggregator.ErrTypeReconnectRejected {
			t.Errorf("second close of one session: %v (type %q), want nil or ReconnectRejected", err, aggregator.TypeOf(err))
		}
	})

	t.Run("status mapping", func(t *testing.T) {
		seen := map[aggregator.Health]bool{}
		for status, want := range f0(t, fixture).Statuses {
			f := fixture(t)
			ref := f.Broken(t)
			f.SetStatus(t, ref, status)
			st, err := f.Provider.ConnectionStatus(ctx, ref)
			if err != nil {
				t.Errorf("status %s: %v", status, err)
				continue
			}
			if st.Health != want {
				t.Errorf("status %s reads %s, want %s", status, st.Health, want)
			}
			if st.ProviderStatus == "" {
				t.Errorf("status %s: the provider's own word is kept for operators", status)
			}
			seen[want] = true
		}
		for _, h := range []aggregator.Health{aggregator.HealthHealthy, aggregator.HealthRepairable} {
			if !seen[h] {
				t.Errorf("Statuses: name a provider status that reads %s", h)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		f := fixture(t)
		if f.Errors[aggregator.ErrTypeConnectionNotFound] == nil {
			t.Error("Errors: ConnectionNotFound is required")
		}
		missing := f.Missing(t)
		if _, err := f.Provider.Initialize(ctx, missing); aggregator.TypeOf(err) != aggregator.ErrTypeConnectionNotFound {
			t.Errorf("initialize of an unknown connection: %v, want ConnectionNotFound", err)
		}
		for _, typ := range []string{aggregator.ErrTypeConnectionNotFound, aggregator.ErrTypeNotRepairable,
			aggregator.ErrTypeInvalidInput, aggregator.ErrTypeReconnectRejected} {
			hook := f.Errors[typ]
			if hook == nil {
				continue // the adapter never returns this type
			}
			t.Run(typ, func(t *testing.T) {
				err := fixture(t).Errors[typ](t)
				checkNamed(t, typ, err)
			})
		}
		t.Run("outage", func(t *testing.T) {
			err := fixture(t).Outage(t)
			if err == nil {
				t.Fatal("a call during an outage succeeded")
			}
			if typ := aggregator.TypeOf(err); typ != "" {
				t.Errorf("an outage is %s: it would end the repair instead of being retried (%v)", typ, err)
			}
			if pe := aggregator.Named(fmt.Errorf("initialize: %w", err)); pe != nil {
				t.Errorf("a wrapped outage leaves the activity non-retryable: %+v", pe)
			}
		})
	})

	t.Run("lister", func(t *testing.T) {
		f := fixture(t)
		l, ok := f.Provider.(aggregator.Lister)
		switch {
		case !ok && f.NeedingUser != nil:
			t.Fatal("NeedingUser is set, but the provider is no aggregator.Lister")
		case !ok:
			t.Skip("the provider does not list its connections")
		case f.NeedingUser == nil:
			t.Fatal("the provider is an aggregator.Lister: the fixture needs NeedingUser")
		}
		want := map[string]bool{}
		for _, ref := range f.NeedingUser(t) {
			want[ref.ConnectionID] = true
		}
		seen := map[string]bool{}
		cursor := ""
		for pages := 1; ; pages++ {
			if pages > 10*(len(want)+1) {
				t.Fatalf("the listing has not ended after %d pages", pages)
			}
			page, err := l.ListNeedingUser(ctx, cursor, listLimit)
			if err != nil {
				t.Fatalf("page %d (cursor %q): %v", pages, cursor, err)
			}
			if len(page.Candidates) > listLimit {
				t.Errorf("page %d has %d candidates, limit %d", pages, len(page.Candidates), listLimit)
			}
			for _, c := range page.Candidates {
				checkCandidate(t, f.Provider, reg, c)
				if seen[c.ConnectionID] {
					t.Errorf("connection %s listed twice", c.ConnectionID)
				}
				seen[c.ConnectionID] = true
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		for id := range want {
			if !seen[id] {
				t.Errorf("connection %s needs the user but was not listed", id)
			}
		}
		for id := range seen {
			if !want[id] {
				t.Errorf("connection %s was listed but does not need the user", id)
			}
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		if f := fixture(t); f.NoWebhooks {
			// Nothing may start a repair by posting to its webhook route,
			// and the refusal says why (the gateway answers 404).
			body := []byte(`{"type":"repairable","connectionId":"conn_1","eventId":"evt_1"}`)
			receive(t, f.Receiver, body, http.Header{"Content-Type": {"application/json"}}, aggregator.ErrNoWebhooks)
			return
		}
		kinds := f0(t, fixture).WebhookKinds
		if !contains(kinds, aggregator.EventKindRepairable) {
			t.Error("WebhookKinds: a provider's webhooks must report repairable connections")
		}
		for _, kind := range kinds {
			t.Run(string(kind), func(t *testing.T) {
				f := fixture(t)
				ref := f.Broken(t)
				body, header := f.Webhook(t, ref, kind, time.Now())
				events := receive(t, f.Receiver, body, header, nil)
				if len(events) != 1 {
					t.Fatalf("%d events, want 1", len(events))
				}
				ev := events[0]
				if ev.Kind != kind || ev.ConnectionID != ref.ConnectionID {
					t.Errorf("event %s for %s, want %s for %s", ev.Kind, ev.ConnectionID, kind, ref.ConnectionID)
				}
				if ev.EventID == "" {
					t.Error("no event id: the workflow dedupes redeliveries by it")
				}
				if ev.Type == "" {
					t.Error("no provider event type: reasons and logs name it")
				}
			})
		}
		t.Run("tampered", func(t *testing.T) {
			f := fixture(t)
			body, header := f.Webhook(t, f.Broken(t), aggregator.EventKindRepairable, time.Now())
			if f.Unsigned {
				if f.Forged == nil {
					t.Fatal("Unsigned: the fixture needs Forged")
				}
				receive(t, f.Receiver, body, f.Forged(t, header.Clone()), aggregator.ErrWebhookSignature)
				receive(t, f.Receiver, body, http.Header{"Content-Type": {"application/json"}}, aggregator.ErrWebhookSignature)
				return
			}
			tampered := append(bytes.Clone(body), ' ') // still JSON, no longer what was signed
			receive(t, f.Receiver, tampered, header, aggregator.ErrWebhookSignature)
			unsigned := http.Header{"Content-Type": {"application/json"}}
			receive(t, f.Receiver, body, unsigned, aggregator.ErrWebhookSignature)
		})
		t.Run("stale", func(t *testing.T) {
			f := fixture(t)
			if f.Unsigned {
				t.Skip("the provider signs no time: redeliveries are told apart by event id, and the status read decides")
			}
			body, header := f.Webhook(t, f.Broken(t), aggregator.EventKindRepairable, time.Now().Add(-2*f.Tolerance))
			receive(t, f.Receiver, body, header, aggregator.ErrWebhookSignature)
		})
		t.Run("replayed", func(t *testing.T) {
			// A delivery received twice (the provider's retry, or a
			// replay) carries the same event ids, so the workflow
			// applies it once.
			f := fixture(t)
			body, header := f.Webhook(t, f.Broken(t), aggregator.EventKindRepairable, time.Now())
			first := receive(t, f.Receiver, body, header, nil)
			again := receive(t, f.Receiver, body, header, nil)
			if len(first) != len(again) {
				t.Fatalf("a replay gave %d events, the delivery %d", len(again), len(first))
			}
			for i := range first {
				if first[i].EventID != again[i].EventID {
					t.Errorf("a replay has event id %q, the delivery %q: it would be applied twice", again[i].EventID, first[i].EventID)
				}
			}
		})
	})
}

// f0 is a fixture for reading its static fields.
func f0(t *testing.T, fixture func(*testing.T) *Fixture) *Fixture {
	t.Helper()
	return fixture(t)
}

// checkSession checks an ACTION_REQUIRED session: a token to close, and a
// widget the hosted page can open for this provider.
func checkSession(t *testing.T, reg aggregator.Registration, s aggregator.Session) {
	t.Helper()
	if s.ConnectorStatus != aggregator.ConnectorActionRequired {
		t.Fatalf("initialize of a broken connection: %s, want ACTION_REQUIRED", s.ConnectorStatus)
	}
	if s.ConnectorToken == "" {
		t.Error("ACTION_REQUIRED without a connector token: close needs it back")
	}
	switch {
	case s.LinkToken != "":
		if !reg.Browser.Has(aggregator.WidgetPlaidLink) {
			t.Errorf("a session with a link token, but Browser.Widgets has no %s", aggregator.WidgetPlaidLink)
		}
	case s.Widget != "":
		if !reg.Browser.Has(s.Widget) {
			t.Errorf("a session of widget %q, but Browser.Widgets has no %s", s.Widget, s.Widget)
		}
		if s.Widget == aggregator.WidgetRedirect && s.WidgetURL == "" {
			t.Error("a redirect session without the URL to go to")
		}
	case s.WidgetURL != "":
		if !reg.Browser.Has(aggregator.WidgetFrame) {
			t.Errorf("a session with a widget URL, but Browser.Widgets has no %s", aggregator.WidgetFrame)
		}
	default:
		t.Error("ACTION_REQUIRED with nothing to open: neither a link token nor a widget URL")
	}
	if !s.ExpiresAt.IsZero() && !s.ExpiresAt.After(time.Now()) {
		t.Errorf("a new session already expired at %s", s.ExpiresAt)
	}
}

// checkCandidate checks a listed candidate: of this provider, carrying a
// status that needs the user, and named so that the provider reads the
// same status for it (a sweep starts repairs with that ref).
func checkCandidate(t *testing.T, p aggregator.Provider, reg aggregator.Registration, c aggregator.Candidate) {
	t.Helper()
	if c.Provider != reg.Name || c.ConnectionID == "" {
		t.Errorf("candidate %+v: want provider %q and a connection id", c.ConnectionRef, reg.Name)
	}
	if c.Status == nil || c.Status.Health != aggregator.HealthRepairable || c.Status.ProviderStatus == "" {
		t.Errorf("candidate %s: status %+v, want REPAIRABLE with the provider's word", c.ConnectionID, c.Status)
		return
	}
	st, err := p.ConnectionStatus(context.Background(), c.ConnectionRef)
	if err != nil || st.Health != c.Status.Health {
		t.Errorf("candidate %s: the provider reads %s (%v) for its ref, the listing said %s", c.ConnectionID, st.Health, err, c.Status.Health)
	}
}

// checkNamed checks an error is of type typ, bare and wrapped.
func checkNamed(t *testing.T, typ string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("the call succeeded, want %s", typ)
	}
	if got := aggregator.TypeOf(err); got != typ {
		t.Errorf("error %v is of type %q, want %q", err, got, typ)
	}
	wrapped := fmt.Errorf("adapter context: %w", err)
	if got := aggregator.TypeOf(wrapped); got != typ {
		t.Errorf("wrapped with %%w, error %v is of type %q, want %q", wrapped, got, typ)
	}
	// What the activity sends through Temporal: non-retryable, of the
	// same type, bare or wrapped (aggregator.Named, which package
	// activities' applicationError uses).
	for _, e := range []error{err, wrapped, fmt.Errorf("again: %w", wrapped)} {
		if pe := aggregator.Named(e); pe == nil || pe.Type != typ || pe.Message == "" {
			t.Errorf("error %v leaves the activity as %+v, want a non-retryable %s", e, pe, typ)
		}
	}
}

// receive hands one delivery to the receiver as the gateway would, and
// checks it fails with want (nil: succeeds).
func receive(t *testing.T, rcv aggregator.WebhookReceiver, body []byte, header http.Header, want error) []aggregator.WebhookEvent {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/webhooks/provider", bytes.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	events, err := rcv.Receive(r, body)
	switch {
	case want == nil && err != nil:
		t.Fatalf("a good delivery was refused: %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("got %v (%d events), want %v", err, len(events), want)
	}
	return events
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// ListAll pages through a Lister's listing at limit a page and returns the
// ids it listed and the pages it took, failing t when a page breaks the
// contract (an error, more than limit, a cursor that does not move, no
// end).
func ListAll(t *testing.T, l aggregator.Lister, limit int) (ids []string, pages int) {
	t.Helper()
	cursor := ""
	for {
		page, err := l.ListNeedingUser(context.Background(), cursor, limit)
		if err != nil {
			t.Fatalf("page %d (cursor %q): %v", pages+1, cursor, err)
		}
		if len(page.Candidates) > limit {
			t.Fatalf("page %d has %d candidates, limit %d", pages+1, len(page.Candidates), limit)
		}
		for _, c := range page.Candidates {
			ids = append(ids, c.ConnectionID)
		}
		pages++
		switch {
		case page.Next == "":
			return ids, pages
		case page.Next == cursor:
			t.Fatalf("page %d: the cursor %q does not move on", pages, cursor)
		case pages >= 100:
			t.Fatal("the listing does not end")
		}
		cursor = page.Next
	}
}
