package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/relink-dev/relink/activities/quiltt"
)

// WebhookSender posts signed Quiltt-format webhooks, as Quiltt would.
type WebhookSender struct {
	URL    string
	Secret string
	Client *http.Client
	Now    func() time.Time
}

// send posts events in one envelope; a nil sender sends nothing.
func (w *WebhookSender) send(ctx context.Context, events ...quiltt.Event) error {
	if w == nil || w.URL == "" {
		return nil
	}
	env := quiltt.Envelope{Environment: json.RawMessage(`{"id":"sandbox"}`)}
	for _, ev := range events {
		env.Events = append(env.Events, ev)
		env.EventTypes = append(env.EventTypes, ev.Type)
	}
	body, err := json.Marshal(env)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(w.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(quiltt.HeaderTimestamp, ts)
	req.Header.Set(quiltt.HeaderSignature, quiltt.Sign(w.Secret, ts, body))
	resp, err := w.Client.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sandbox webhook: gateway answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
