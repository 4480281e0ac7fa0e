package integration

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/relink-dev/relink/cost"
)

// recordHistoriesEnv, when set to 1, makes the integration tests write the
// histories of the main paths to the current corpus,
// workflows/testdata/histories/<the name in CURRENT>/<path>.json, where the
// replay tests check every later workflow change against them:
//
//	RELINK_RECORD_HISTORIES=1 go test ./integration/
//
// Files are never overwritten: a history already recorded stays as it is.
// A workflow change that alters recorded commands ships as a new build
// (Worker Versioning pins each repair to its build) with a new corpus: a
// new folder named in CURRENT.
const recordHistoriesEnv = "RELINK_RECORD_HISTORIES"

// history reads a run's events (the latest run if runID is empty).
func (s *stack) history(workflowID, runID string) []*history.HistoryEvent {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := s.temporal.GetWorkflowHistory(ctx, workflowID, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*history.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(s.t, err)
		events = append(events, ev)
	}
	return events
}

// recordHistory saves the latest run of workflowID as name.
func (s *stack) recordHistory(workflowID, name string) {
	s.t.Helper()
	s.recordRun(workflowID, "", name)
}

// recordRun saves one run of workflowID as name, unless a history of that
// name exists already.
func (s *stack) recordRun(workflowID, runID, name string) {
	s.t.Helper()
	if os.Getenv(recordHistoriesEnv) != "1" {
		return
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&history.History{Events: s.history(workflowID, runID)})
	require.NoError(s.t, err)
	histories := filepath.Join("..", "workflows", "testdata", "histories")
	current, err := os.ReadFile(filepath.Join(histories, "CURRENT"))
	require.NoError(s.t, err)
	dir := filepath.Join(histories, strings.TrimSpace(string(current)))
	require.NoError(s.t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name+".json")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		s.t.Logf("%s exists; recorded histories are never overwritten", path)
		return
	}
	require.NoError(s.t, err)
	_, err = f.Write(b)
	require.NoError(s.t, err)
	require.NoError(s.t, f.Close())
}

// billableActions is cost.Actions' total.
func billableActions(events []*history.HistoryEvent) int { return cost.Actions(events).Total() }

// countEvents counts a history's events of one type.
func countEvents(events []*history.HistoryEvent, typ enums.EventType) int {
	n := 0
	for _, ev := range events {
		if ev.GetEventType() == typ {
			n++
		}
	}
	return n
}
