// Package inventoryfake is an app's inventory endpoint for tests and the
// bench, speaking the contract package inventory reads; it doubles as the
// README's example of the handler an app writes.
package inventoryfake

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/relink-dev/relink/activities/inventory"
)

// Inventory is an app's connections per provider, served over HTTP with a
// bearer token.
type Inventory struct {
	Token string

	mu      sync.Mutex
	entries map[string][]inventory.Entry
	failAt  map[string]int
	cursors []string
}

// Set replaces provider's connections.
func (f *Inventory) Set(provider string, entries ...inventory.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entries == nil {
		f.entries = map[string][]inventory.Entry{}
	}
	f.entries[provider] = entries
}

// FailAt makes the next n requests for the page at cursor answer 503, as
// an app mid-deploy.
func (f *Inventory) FailAt(cursor string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAt == nil {
		f.failAt = map[string]int{}
	}
	f.failAt[cursor] = n
}

// Cursors are the cursors of the pages asked for, in order, failed
// requests included.
func (f *Inventory) Cursors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cursors)
}

// ServeHTTP answers GET ?provider=&cursor=&limit=. The cursor is the
// offset of the next entry; an app would use its own (a keyset on its
// connections table), opaque to Relink.
func (f *Inventory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	f.cursors = append(f.cursors, q.Get("cursor"))
	if r.Header.Get("Authorization") != "Bearer "+f.Token {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if f.failAt[q.Get("cursor")] > 0 {
		f.failAt[q.Get("cursor")]--
		http.Error(w, `{"error":"deploying"}`, http.StatusServiceUnavailable)
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	from := 0
	if c := q.Get("cursor"); c != "" {
		from, _ = strconv.Atoi(c)
	}
	all := f.entries[q.Get("provider")]
	if err != nil || limit < 1 || from < 0 || from > len(all) {
		http.Error(w, `{"error":"bad limit or cursor"}`, http.StatusBadRequest)
		return
	}
	to := min(from+limit, len(all))
	page := inventory.Page{Connections: all[from:to]}
	if to < len(all) {
		page.NextCursor = strconv.Itoa(to)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}
