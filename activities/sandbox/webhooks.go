package sandbox

import (
	"context"
	"net/http"
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
	return quiltt.PostWebhook(ctx, w.Client, w.URL, w.Secret, w.Now(), events...)
}
