package app

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/relink-dev/relink/config"
)

// RELINK_WORKER_TASK_SLOTS bounds the worker's tasks of each kind, and its
// polls with them; unset, the SDK's defaults stand.
func TestWorkerTaskSlotsBoundWhatAWorkerRunsAtOnce(t *testing.T) {
	opts := WorkerOptions(config.Worker{CacheSize: 10, Pollers: 100, TaskSlots: 3})
	assert.Equal(t, 3, opts.MaxConcurrentWorkflowTaskExecutionSize)
	assert.Equal(t, 3, opts.MaxConcurrentActivityExecutionSize)
	assert.Equal(t, 3, opts.MaxConcurrentLocalActivityExecutionSize)
	opts = WorkerOptions(config.Worker{CacheSize: 10, Pollers: 100})
	assert.Zero(t, opts.MaxConcurrentWorkflowTaskExecutionSize, "the SDK's default")
}
