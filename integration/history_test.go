package integration

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// recordHistoriesEnv, when set to 1, makes the integration tests write the
// histories of the main paths to workflows/testdata/histories, where the
// replay tests check every later workflow change against them:
//
//	RELINK_RECORD_HISTORIES=1 go test ./integration/
const recordHistoriesEnv = "RELINK_RECORD_HISTORIES"

// recordHistory saves the latest run of workflowID as name.json.
func (s *stack) recordHistory(workflowID, name string) {
	s.t.Helper()
	if os.Getenv(recordHistoriesEnv) != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := s.temporal.GetWorkflowHistory(ctx, workflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h history.History
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(s.t, err)
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&h)
	require.NoError(s.t, err)
	dir := filepath.Join("..", "workflows", "testdata", "histories")
	require.NoError(s.t, os.MkdirAll(dir, 0o755))
	require.NoError(s.t, os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644))
}
