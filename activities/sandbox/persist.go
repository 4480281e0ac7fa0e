package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The dev stack keeps the sandbox's connections in a file next to
// Temporal's database, so open repairs find their connections again after
// a restart.

type persistedState struct {
	Seq         int                            `json:"seq"`
	Connections map[string]persistedConnection `json:"connections"`
}

type persistedConnection struct {
	Connection
	Sessions     []persistedSession `json:"sessions"`
	SyncingPolls int                `json:"syncingPolls"`
}

type persistedSession struct {
	Token       string    `json:"token"`
	PublicToken string    `json:"publicToken"`
	ExpiresAt   time.Time `json:"expiresAt"`
	Closed      bool      `json:"closed"`
}

// Load reads the state at path (if it exists) and saves every change there
// from now on.
func (p *Provider) Load(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.statePath = path
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox state: %w", err)
	}
	var st persistedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("sandbox state %s: %w", path, err)
	}
	p.seq = st.Seq
	p.conns = map[string]*connection{}
	for id, pc := range st.Connections {
		c := &connection{Connection: pc.Connection, syncingPolls: pc.SyncingPolls}
		if c.Calls == nil {
			c.Calls = map[string]int{}
		}
		for _, s := range pc.Sessions {
			c.sessions = append(c.sessions, &session{token: s.Token, publicToken: s.PublicToken, expiresAt: s.ExpiresAt, closed: s.Closed})
		}
		p.conns[id] = c
	}
	return nil
}

// saveDelay is how long changes gather before the state file is written:
// at 10,000 connections one write takes tens of milliseconds, so writing
// on every initialize and close (under the lock) would serialize the
// sandbox. The sandbox is the dev stack's; losing its last fraction of a
// second in a crash is acceptable, and Flush writes at once on shutdown.
const saveDelay = 200 * time.Millisecond

// save schedules a write of the state, if Load named a file; p.mu is held.
func (p *Provider) save() {
	if p.statePath == "" || p.saveScheduled {
		return
	}
	p.saveScheduled = true
	time.AfterFunc(saveDelay, p.Flush)
}

// Flush writes the state now. The snapshot is taken under p.mu, the
// encoding and the write happen outside it, one write at a time. A failed
// write is logged: the sandbox keeps working in memory.
func (p *Provider) Flush() {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	path := p.statePath
	if path == "" {
		p.mu.Unlock()
		return
	}
	p.saveScheduled = false
	st := persistedState{Seq: p.seq, Connections: make(map[string]persistedConnection, len(p.conns))}
	for id, c := range p.conns {
		pc := persistedConnection{Connection: c.snapshot(), SyncingPolls: c.syncingPolls}
		for _, s := range c.sessions {
			pc.Sessions = append(pc.Sessions, persistedSession{Token: s.token, PublicToken: s.publicToken, ExpiresAt: s.expiresAt, Closed: s.closed})
		}
		st.Connections[id] = pc
	}
	p.mu.Unlock()

	b, err := json.Marshal(st)
	if err == nil {
		tmp := path + ".tmp"
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, path)
			}
		}
	}
	if err != nil {
		p.Logger.Warn("sandbox state not saved", "path", path, "error", err)
	}
}
