package cli

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/config"
)

// relink-worker without RELINK_DEPLOYMENT_NAME and RELINK_BUILD_ID refuses
// to start, before it dials Temporal, and says what to set.
func TestTheProductionWorkerRefusesToStartUnversioned(t *testing.T) {
	workerEnv(t, map[string]string{"QUILTT_API_SECRET": "s", "QUILTT_WEBHOOK_SECRET": "w"})
	var stderr bytes.Buffer
	require.Equal(t, 1, RunWorker(&stderr))
	for _, name := range []string{"RELINK_DEPLOYMENT_NAME", "RELINK_BUILD_ID", "RELINK_UNVERSIONED=true"} {
		assert.Contains(t, stderr.String(), name)
	}

	// With the operator's opt-out it gets past that check (to the next
	// one here: no provider is enabled).
	workerEnv(t, map[string]string{"RELINK_UNVERSIONED": "true"})
	stderr.Reset()
	require.Equal(t, 1, RunWorker(&stderr))
	assert.Contains(t, stderr.String(), app.ErrNoProvider.Error())
	assert.NotContains(t, stderr.String(), "RELINK_DEPLOYMENT_NAME")
}

// Unversioned by the operator's choice, the worker warns what it costs.
func TestAnUnversionedWorkerWarnsThatChangesNeedADrain(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	versioned, err := workerVersioning(config.Worker{Unversioned: true}, logger)
	require.NoError(t, err)
	assert.False(t, versioned)
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), "drain")

	logs.Reset()
	versioned, err = workerVersioning(config.Worker{DeploymentName: "relink", BuildID: "v1.2.3"}, logger)
	require.NoError(t, err)
	assert.True(t, versioned)
	assert.Empty(t, logs.String(), "nothing to warn about")

	_, err = workerVersioning(config.Worker{}, logger)
	assert.ErrorIs(t, err, config.ErrUnversionedWorker)
}

// workerEnv gives the worker only the settings in env (and no Temporal
// profile of the developer's): every Relink setting it reads is cleared.
func workerEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, name := range []string{"RELINK_DEPLOYMENT_NAME", "RELINK_BUILD_ID", "RELINK_UNVERSIONED",
		"QUILTT_API_SECRET", "QUILTT_WEBHOOK_SECRET", "MELD_API_KEY", "MELD_WEBHOOK_SECRET", "PLAID_CLIENT_ID", "PLAID_SECRET",
		"RELINK_RECONNECT_LINK_TTL", "RELINK_PUBLIC_URL", "RELINK_CLIENT_TOKEN_KEYS", "RELINK_METRICS_ADDR"} {
		t.Setenv(name, env[name])
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", "/dev/null")
	t.Setenv("RELINK_LOG_LEVEL", "error")
}
