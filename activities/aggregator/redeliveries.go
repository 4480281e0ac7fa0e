package aggregator

import (
	"fmt"
	"sync"
	"time"
)

// Redeliveries names the events of a provider whose webhooks carry no
// event id (Plaid, MX): a delivery with the same key (the connection and
// what happened to it) as one seen less than a window before is a retry of
// it, and gets its id and time, so a retry neither starts nor fails
// anything twice. The window slides with each delivery. It is kept in one
// gateway's memory: a retry that reaches another replica is a new event,
// which the provider's status read sorts out. The zero value is ready.
type Redeliveries struct {
	mu     sync.Mutex
	recent map[string]sighting
}

// sighting is the first delivery of an event and when it was last seen.
type sighting struct {
	id       string
	at       time.Time // the first delivery's time: the event's
	lastSeen time.Time
}

// Identify returns the id and time of the event key names, arriving now
// and dated at: "key:<at in unix ns>" and at for a first delivery, the
// first one's for a delivery within window of the key's last.
func (d *Redeliveries) Identify(key string, at, now time.Time, window time.Duration) (string, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.recent == nil {
		d.recent = map[string]sighting{}
	}
	for k, s := range d.recent {
		if now.Sub(s.lastSeen) > window {
			delete(d.recent, k)
		}
	}
	s, ok := d.recent[key]
	if !ok {
		s = sighting{id: fmt.Sprintf("%s:%d", key, at.UnixNano()), at: at}
	}
	s.lastSeen = now
	d.recent[key] = s
	return s.id, s.at
}
