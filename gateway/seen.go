package gateway

import (
	"container/list"
	"sync"
	"time"
)

// SeenEvents remembers webhook event ids for a while, so a provider's
// redelivery is acknowledged without touching Temporal again. It is a
// bounded, in-memory first line: the workflow itself also drops event ids
// it has applied, durably, so a restart loses nothing but this shortcut.
type SeenEvents struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List // of seenEntry, oldest first
	index map[string]*list.Element
}

type seenEntry struct {
	key string
	at  time.Time
}

// NewSeenEvents keeps up to max ids for ttl each.
func NewSeenEvents(ttl time.Duration, max int, now func() time.Time) *SeenEvents {
	return &SeenEvents{ttl: ttl, max: max, now: now, order: list.New(), index: map[string]*list.Element{}}
}

// Seen reports whether key was added within the TTL.
func (s *SeenEvents) Seen(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	_, ok := s.index[key]
	return ok
}

// Add records key.
func (s *SeenEvents) Add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[key]; ok {
		return
	}
	s.index[key] = s.order.PushBack(seenEntry{key: key, at: s.now()})
	for s.order.Len() > s.max {
		s.remove(s.order.Front())
	}
}

func (s *SeenEvents) expire() {
	cutoff := s.now().Add(-s.ttl)
	for e := s.order.Front(); e != nil && e.Value.(seenEntry).at.Before(cutoff); e = s.order.Front() {
		s.remove(e)
	}
}

func (s *SeenEvents) remove(e *list.Element) {
	delete(s.index, e.Value.(seenEntry).key)
	s.order.Remove(e)
}
