package aggregator

import (
	"context"
	"errors"
	"sync"
)

// Checkpoint is what one activity's attempt leaves for its next attempt,
// which may run on another worker: the activities layer keeps it in
// Temporal (the activity's heartbeat details, which go through Relink's
// payload codec: encrypted with RELINK_PAYLOAD_KEYS). An adapter keeps
// there what must not be lost when an attempt fails after the provider
// acted, such as rotated tokens the app has not taken yet.
//
// Adapters find it with CheckpointFrom; there is none where nothing
// durable backs it (a local activity's attempt, a plain call).
type Checkpoint interface {
	// Load returns what the latest attempt saved; nil if none did.
	Load() []byte
	// Save replaces what the next attempt will Load. An error means it
	// may not have reached the store.
	Save(data []byte) error
}

type checkpointKey struct{}

// WithCheckpoint returns ctx carrying cp, for the adapter the context is
// handed to.
func WithCheckpoint(ctx context.Context, cp Checkpoint) context.Context {
	return context.WithValue(ctx, checkpointKey{}, cp)
}

// CheckpointFrom returns the context's checkpoint, or nil.
func CheckpointFrom(ctx context.Context) Checkpoint {
	cp, _ := ctx.Value(checkpointKey{}).(Checkpoint)
	return cp
}

// ErrCheckpointNeeded is the retryable error of an adapter that will not
// take a step without a checkpoint (its result could not be kept if the
// attempt failed after it): the local first attempt of an activity, whose
// fallback is the regular activity, which has one. Activities do not
// count it as the provider's failure.
var ErrCheckpointNeeded = errors.New("this step needs a durable checkpoint: left to the retried activity")

// MemoryCheckpoint is a Checkpoint in memory, for tests: share one
// between two providers to stand for two workers' attempts.
type MemoryCheckpoint struct {
	mu   sync.Mutex
	data []byte
	// Saves counts the Save calls.
	Saves int
}

// Load implements Checkpoint.
func (m *MemoryCheckpoint) Load() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...)
}

// Save implements Checkpoint.
func (m *MemoryCheckpoint) Save(data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte(nil), data...)
	m.Saves++
	return nil
}
