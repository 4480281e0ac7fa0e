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

// save writes the state if Load named a file; p.mu is held. A failed save
// is logged: the sandbox keeps working in memory.
func (p *Provider) save() {
	if p.statePath == "" {
		return
	}
	st := persistedState{Seq: p.seq, Connections: map[string]persistedConnection{}}
	for id, c := range p.conns {
		pc := persistedConnection{Connection: c.snapshot(), SyncingPolls: c.syncingPolls}
		for _, s := range c.sessions {
			pc.Sessions = append(pc.Sessions, persistedSession{Token: s.token, PublicToken: s.publicToken, ExpiresAt: s.expiresAt, Closed: s.closed})
		}
		st.Connections[id] = pc
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		tmp := p.statePath + ".tmp"
		if err = os.MkdirAll(filepath.Dir(p.statePath), 0o700); err == nil {
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, p.statePath)
			}
		}
	}
	if err != nil {
		p.Logger.Warn("sandbox state not saved", "path", p.statePath, "error", err)
	}
}
