package config

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/keyring"
	"go.temporal.io/sdk/client"

	"github.com/relink-dev/relink/activities/meld"
	"github.com/relink-dev/relink/activities/mx"
	"github.com/relink-dev/relink/activities/plaid"
	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/activities/quiltt"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/workflows"
)

func TestDefaults(t *testing.T) {
	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(nil))
	require.NoError(t, err)
	assert.Equal(t, "localhost:7233", c.Temporal.Address)
	assert.Equal(t, "default", c.Temporal.Namespace)
	assert.Equal(t, "relink-repairs", c.Temporal.TaskQueue)
	assert.Equal(t, 7*24*time.Hour, c.Repair.Window)
	assert.Equal(t, []time.Duration{48 * time.Hour, 120 * time.Hour}, c.Repair.ReminderOffsets)
	// One default for each setting, whether a repair's options come from
	// the environment or are left zero.
	assert.Equal(t, workflows.DefaultReminderOffsets, c.Repair.ReminderOffsets)
	assert.Equal(t, workflows.DefaultRepairWindow, c.Repair.Window)
	assert.Equal(t, workflows.DefaultVerifyQuietPeriod, c.Repair.VerifyQuietPeriod)
	assert.Equal(t, workflows.DefaultVerifyPollInterval, c.Repair.VerifyPollInterval)
	assert.Equal(t, workflows.DefaultVerifyPollMaxInterval, c.Repair.VerifyPollMaxInterval)
	assert.Equal(t, workflows.DefaultMaxAttempts, c.Repair.MaxAttempts)
	assert.Equal(t, workflows.DefaultNotifyTimeout, c.Repair.NotifyTimeout)
	assert.Equal(t, 72*time.Hour, c.Repair.NotifyTimeout, "an app down for a weekend misses nothing")
	assert.Equal(t, 10*time.Minute, c.Repair.VerifyQuietPeriod)
	assert.Equal(t, 5, c.Repair.MaxAttempts)
	assert.Equal(t, 300*time.Second, c.Webhooks.Tolerance)
	assert.False(t, usesTLS(t, c.Temporal))
	assert.Error(t, c.RequireAPIKey())
	opts, err := c.Temporal.ClientOptions()
	require.NoError(t, err)
	assert.IsType(t, &client.GrpcCompressionGzip{}, opts.ConnectionOptions.GrpcCompression, "the SDK's default")
}

// `relink dev` waits seconds where production waits minutes for a
// provider to confirm, unless the environment says otherwise; everything
// else, and production, keeps its defaults.
func TestDevDefaultsMakeVerificationQuickUnlessSet(t *testing.T) {
	ctx := context.Background()
	dev, err := LoadDevFrom(ctx, envconfig.MapLookuper(nil))
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, dev.Repair.VerifyQuietPeriod)
	assert.Equal(t, time.Second, dev.Repair.VerifyPollInterval)
	assert.Equal(t, 10*time.Second, dev.Repair.VerifyPollMaxInterval)
	assert.Greater(t, dev.Repair.VerifyQuietPeriod, SettingsOf[*sandbox.Settings](dev).SyncDelay,
		"the sandbox's confirming webhook comes within the quiet period")

	prod, err := LoadFrom(ctx, envconfig.MapLookuper(nil))
	require.NoError(t, err)
	assert.Equal(t, workflows.DefaultVerifyQuietPeriod, prod.Repair.VerifyQuietPeriod, "production unchanged")
	rest := dev
	rest.Repair.VerifyQuietPeriod, rest.Repair.VerifyPollInterval, rest.Repair.VerifyPollMaxInterval =
		prod.Repair.VerifyQuietPeriod, prod.Repair.VerifyPollInterval, prod.Repair.VerifyPollMaxInterval
	assert.Equal(t, prod.Repair, rest.Repair, "only the verification waits differ")

	set, err := LoadDevFrom(ctx, envconfig.MapLookuper(map[string]string{
		"RELINK_VERIFY_QUIET_PERIOD": "2m", "RELINK_VERIFY_POLL_INTERVAL": "", "RELINK_VERIFY_POLL_MAX_INTERVAL": "1h"}))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, set.Repair.VerifyQuietPeriod, "the user's setting wins")
	assert.Equal(t, time.Second, set.Repair.VerifyPollInterval, "an empty variable is unset")
	assert.Equal(t, time.Hour, set.Repair.VerifyPollMaxInterval, "the user's setting wins")

	read := configEnv()
	for name := range DevDefaults {
		assert.Contains(t, read, name, "a dev default for a variable Relink reads")
	}
}

// Compression can be turned off for a Temporal on the same host, and the
// dev stack's own server is never compressed for.
func TestTemporalCompression(t *testing.T) {
	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{"RELINK_TEMPORAL_COMPRESSION": "none"}))
	require.NoError(t, err)
	opts, err := c.Temporal.ClientOptions()
	require.NoError(t, err)
	assert.IsType(t, &client.GrpcCompressionNone{}, opts.ConnectionOptions.GrpcCompression)

	c, err = LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{"RELINK_TEMPORAL_COMPRESSION": "gzip"}))
	require.NoError(t, err)
	c.Temporal.UseLocalServer("127.0.0.1:7233")
	opts, err = c.Temporal.ClientOptions()
	require.NoError(t, err)
	assert.IsType(t, &client.GrpcCompressionNone{}, opts.ConnectionOptions.GrpcCompression)
}

func TestFromEnvironment(t *testing.T) {
	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"TEMPORAL_ADDRESS":        "ns.acct.tmprl.cloud:7233",
		"TEMPORAL_API_KEY":        "key",
		"RELINK_REMINDER_OFFSETS": "48h,96h,144h",
		"RELINK_REPAIR_WINDOW":    "72h",
		"RELINK_API_KEY":          strongKey,
	}))
	require.NoError(t, err)
	assert.True(t, usesTLS(t, c.Temporal))
	assert.Equal(t, []time.Duration{48 * time.Hour, 96 * time.Hour, 144 * time.Hour}, c.Repair.Options().ReminderOffsets)
	assert.Equal(t, 72*time.Hour, c.Repair.Options().RepairWindow)
	assert.NoError(t, c.RequireAPIKey())
}

func TestInvalidValuesAreRejected(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"bad duration":                      {"RELINK_REPAIR_WINDOW": "a week"},
		"unknown compression":               {"RELINK_TEMPORAL_COMPRESSION": "zstd"},
		"zero attempts":                     {"RELINK_MAX_ATTEMPTS": "0"},
		"negative offset":                   {"RELINK_REMINDER_OFFSETS": "-1h"},
		"reminder a day after the ask":      {"RELINK_REMINDER_OFFSETS": "24h,96h"},
		"reminders a day apart":             {"RELINK_REMINDER_OFFSETS": "48h,72h"},
		"link longer than 21 days":          {"RELINK_RECONNECT_LINK_TTL": "504h1s"},
		"return URL not http":               {"RELINK_RECONNECT_RETURN_URL": "javascript:alert(1)"},
		"no reminder offsets":               {"RELINK_REMINDER_OFFSETS": ""},
		"frame origin adding a directive":   {"RELINK_RECONNECT_FRAME_ORIGINS": "https://a.example; script-src *"},
		"frame origin not https":            {"RELINK_RECONNECT_FRAME_ORIGINS": "http://widgets.example"},
		"plaid script not https":            {"RELINK_PLAID_LINK_SCRIPT_URL": "http://cdn.example/link.js"},
		"cert without key":                  {"TEMPORAL_TLS_CLIENT_CERT_PATH": "/c.pem"},
		"unknown profile":                   {"TEMPORAL_PROFILE": "nope", "TEMPORAL_CONFIG_FILE": "/nonexistent.toml"},
		"quiltt api without webhook secret": {"QUILTT_API_SECRET": "s"},
		"meld webhook without api key":      {"MELD_WEBHOOK_SECRET": "s"},
		"plaid without client name":         {"PLAID_CLIENT_ID": "c", "PLAID_SECRET": "s", "PLAID_ACCESS_TOKENS": "i:t"},
		"plaid without access tokens":       {"PLAID_CLIENT_ID": "c", "PLAID_SECRET": "s", "PLAID_CLIENT_NAME": "Acme"},
		"plaid id without secret":           {"PLAID_CLIENT_ID": "c", "PLAID_CLIENT_NAME": "Acme", "PLAID_ACCESS_TOKENS": "i:t"},
		"plaid token URL without secret":    {"PLAID_CLIENT_ID": "c", "PLAID_SECRET": "s", "PLAID_CLIENT_NAME": "Acme", "PLAID_ACCESS_TOKEN_URL": "https://app/tokens"},
		"plaid dedupe window too short":     {"PLAID_CLIENT_ID": "c", "PLAID_SECRET": "s", "PLAID_CLIENT_NAME": "Acme", "PLAID_ACCESS_TOKENS": "i:t", "PLAID_WEBHOOK_DEDUPE_WINDOW": "500ms"},
		"mx without webhook credentials":    {"MX_CLIENT_ID": "c", "MX_API_KEY": "k"},
		"mx key without client id":          {"MX_API_KEY": "k", "MX_WEBHOOK_USERNAME": "u", "MX_WEBHOOK_PASSWORD": "0123456789abcdef"},
		"mx short webhook password":         {"MX_CLIENT_ID": "c", "MX_API_KEY": "k", "MX_WEBHOOK_USERNAME": "u", "MX_WEBHOOK_PASSWORD": "short"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFrom(context.Background(), envconfig.MapLookuper(env))
			assert.Error(t, err)
		})
	}
}

func TestProvidersAreEnabledByTheirSettings(t *testing.T) {
	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(nil))
	require.NoError(t, err)
	for _, reg := range providers.All {
		assert.False(t, c.Provider(reg.Name).Enabled(), reg.Name)
	}

	c, err = LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"QUILTT_API_SECRET": "q", "QUILTT_WEBHOOK_SECRET": "w",
		"MELD_API_KEY": "m", "MELD_WEBHOOK_SECRET": "w",
		"PLAID_CLIENT_ID": "c", "PLAID_SECRET": "s", "PLAID_CLIENT_NAME": "Acme",
		"PLAID_ACCESS_TOKENS": "item_1:access-1,item_2:access-2", "PLAID_COUNTRY_CODES": "US,CA",
		"MX_CLIENT_ID": "c", "MX_API_KEY": "k", "MX_WEBHOOK_USERNAME": "u", "MX_WEBHOOK_PASSWORD": "0123456789abcdef",
	}))
	require.NoError(t, err)
	assert.True(t, c.Provider(quiltt.Name).Enabled() && c.Provider(meld.Name).Enabled() && c.Provider(plaid.Name).Enabled())
	assert.True(t, c.Provider(mx.Name).Enabled())
	assert.Equal(t, "https://api.mx.com", SettingsOf[*mx.Settings](c).APIURL)
	assert.Equal(t, 10*time.Minute, SettingsOf[*mx.Settings](c).DedupeWindow)
	assert.False(t, c.Provider(sandbox.Name).Enabled(), "the dev stack supplies the sandbox; settings never enable it")
	pl, m := SettingsOf[*plaid.Settings](c), SettingsOf[*meld.Settings](c)
	assert.Same(t, c.Provider(plaid.Name), pl)
	assert.Equal(t, map[string]string{"item_1": "access-1", "item_2": "access-2"}, pl.AccessTokens)
	assert.Equal(t, []string{"US", "CA"}, pl.CountryCodes)
	assert.Equal(t, "2025-03-04", m.Version)
	assert.True(t, pl.ProactiveRepairs)
	assert.False(t, m.ProactiveRepairs)
	assert.Equal(t, "sandbox-webhook-secret", SettingsOf[*sandbox.Settings](c).WebhookSecret)
}

// strongKey is an API key a production gateway accepts (with a digit
// added): 43 characters of base64url, as `relink keygen -kind api-key`.
const strongKey = "Qx7vN2pL9sKd4WmZ8aTf3HbY6cRj1UeG5oIyXn0wEq"

// A production gateway refuses API keys anyone could guess, naming the
// key by position only; a production worker or gateway refuses payload and
// client-token keys published in this repository.
func TestProductionRefusesWeakAndPublishedKeys(t *testing.T) {
	load := func(env map[string]string) Config {
		c, err := LoadFrom(context.Background(), envconfig.MapLookuper(env))
		require.NoError(t, err)
		return c
	}
	hex := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, ok := range []string{strongKey, hex} {
		assert.NoError(t, load(map[string]string{"RELINK_API_KEY": ok}).RequireAPIKey(), ok)
	}
	for name, key := range map[string]string{
		"the published dev key":     DevAPIKey,
		"one byte":                  "Z",
		"31 bytes":                  strongKey[:31],
		"a pattern":                 strings.Repeat("ab12", 10),
		"the example's placeholder": "replace-with-relink-keygen-kind-api-key",
	} {
		err := load(map[string]string{"RELINK_API_KEYS": strongKey + "," + key}).RequireAPIKey()
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), "API key 2", name)
			assert.NotContains(t, err.Error(), key, name)
		}
	}

	// A key that is a pattern: refused to encrypt or to sign or verify
	// tokens; kept to decrypt, behind a good one.
	weak := "k0:" + base64.StdEncoding.EncodeToString([]byte("passwordpasswordpasswordpassword"))
	good, err := keyring.Generate("k1")
	require.NoError(t, err)
	for env, refused := range map[[2]string]bool{
		{"RELINK_PAYLOAD_KEYS", weak}:                            true,
		{"RELINK_PAYLOAD_KEYS", good.Format() + "," + weak}:      false,
		{"RELINK_CLIENT_TOKEN_KEYS", good.Format() + "," + weak}: true,
	} {
		_, err := LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{env[0]: env[1]}))
		if refused {
			assert.ErrorContains(t, err, "not random", env[0])
		} else {
			assert.NoError(t, err, env[0])
		}
	}

	published, err := os.ReadFile("../workflows/testdata/payload-test-key")
	require.NoError(t, err)
	fresh, err := keyring.Generate("k1")
	require.NoError(t, err)
	for _, setting := range []string{"RELINK_PAYLOAD_KEYS", "RELINK_CLIENT_TOKEN_KEYS"} {
		c := load(map[string]string{setting: fresh.Format() + "," + strings.TrimSpace(string(published))})
		err := c.RequireProductionKeys()
		if assert.Error(t, err, setting) {
			assert.Contains(t, err.Error(), setting+": key 2 is published")
		}
		assert.NoError(t, load(map[string]string{setting: fresh.Format()}).RequireProductionKeys(), setting)
	}
}

func TestSecuritySettings(t *testing.T) {
	load := func(env map[string]string) (Config, error) {
		return LoadFrom(context.Background(), envconfig.MapLookuper(env))
	}
	c, err := load(map[string]string{"RELINK_API_KEYS": strongKey + "1, " + strongKey + "2"})
	require.NoError(t, err)
	assert.NoError(t, c.RequireAPIKey(), "RELINK_API_KEYS alone is enough")
	c, err = load(map[string]string{"RELINK_API_KEY": "old-key", "RELINK_API_KEYS": "new-key"})
	require.NoError(t, err)
	assert.Equal(t, []string{"old-key", "new-key"}, c.Gateway.AllAPIKeys())
	assert.Equal(t, 30*time.Minute, c.Gateway.ClientTokenTTL)

	_, err = load(map[string]string{"RELINK_CODEC_JWKS_URL": "http://127.0.0.1:9000/jwks",
		"RELINK_CODEC_JWT_ISSUER": "i", "RELINK_CODEC_JWT_AUDIENCE": "a"})
	assert.NoError(t, err, "http to this machine is allowed")

	c, err = load(map[string]string{
		"RELINK_NOTIFY_URL":    "https://app.example.com/relink",
		"RELINK_NOTIFY_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
	})
	require.NoError(t, err)
	assert.Len(t, c.Notify.Secrets(), 2)

	for name, env := range map[string]map[string]string{
		"notify URL without a secret":  {"RELINK_NOTIFY_URL": "https://app.example.com/relink"},
		"secret not whsec_":            {"RELINK_NOTIFY_SECRET": "plain-secret"},
		"whsec_ secret too short":      {"RELINK_NOTIFY_SECRET": "whsec_c2hvcnQ="},
		"payload key not 32 bytes":     {"RELINK_PAYLOAD_KEYS": "k1:c2hvcnQ="},
		"poll interval over its cap":   {"RELINK_VERIFY_POLL_INTERVAL": "2h"},
		"no poll interval":             {"RELINK_VERIFY_POLL_INTERVAL": "0s"},
		"no quiet period":              {"RELINK_VERIFY_QUIET_PERIOD": "0s"},
		"token key without an id":      {"RELINK_CLIENT_TOKEN_KEYS": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="},
		"client token TTL of a week":   {"RELINK_CLIENT_TOKEN_TTL": "168h"},
		"wildcard CORS origin":         {"RELINK_CORS_ORIGINS": "*"},
		"CORS origin with a path":      {"RELINK_CORS_ORIGINS": "https://app.example.com/page"},
		"zero browser rate":            {"RELINK_BROWSER_RATE_LIMIT": "0"},
		"no repair starts in flight":   {"RELINK_GATEWAY_STARTS_IN_FLIGHT": "0"},
		"one task slot":                {"RELINK_WORKER_TASK_SLOTS": "1"},
		"no wait for a start slot":     {"RELINK_GATEWAY_START_WAIT": "0s"},
		"JWKS over http to a host":     {"RELINK_CODEC_JWKS_URL": "http://localhost.attacker.example/jwks", "RELINK_CODEC_JWT_ISSUER": "i", "RELINK_CODEC_JWT_AUDIENCE": "a"},
		"JWKS without an audience":     {"RELINK_CODEC_JWKS_URL": "https://idp.example.com/jwks", "RELINK_CODEC_JWT_ISSUER": "i"},
		"JWKS URL that does not parse": {"RELINK_CODEC_JWKS_URL": "https://[::1", "RELINK_CODEC_JWT_ISSUER": "i", "RELINK_CODEC_JWT_AUDIENCE": "a"},
	} {
		_, err := load(env)
		assert.Error(t, err, name)
	}
}

// The Temporal connection is read as the Temporal CLI reads it: a profile
// of the TOML config file, with TEMPORAL_* variables on top.
func TestTemporalProfileAsTheCLIReadsIt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "temporal.toml")
	require.NoError(t, os.WriteFile(file, []byte(`
[profile.prod]
address = "prod.acct.tmprl.cloud:7233"
namespace = "prod.acct"
api_key = "from-file"
[profile.prod.grpc_meta]
x-tenant = "a"
`), 0o600))
	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"TEMPORAL_CONFIG_FILE": file,
		"TEMPORAL_PROFILE":     "prod",
		"TEMPORAL_NAMESPACE":   "override.acct",
	}))
	require.NoError(t, err)
	assert.Equal(t, "prod.acct.tmprl.cloud:7233", c.Temporal.Address)
	assert.Equal(t, "override.acct", c.Temporal.Namespace, "a variable wins over the file")
	assert.True(t, usesTLS(t, c.Temporal), "an API key implies TLS")
	opts, err := c.Temporal.ClientOptions()
	require.NoError(t, err)
	assert.Equal(t, "prod.acct.tmprl.cloud:7233", opts.HostPort)
	assert.Equal(t, "override.acct", opts.Namespace)
	assert.NotNil(t, opts.Credentials)
	assert.NotNil(t, opts.ConnectionOptions.TLS)
	headers, err := opts.HeadersProvider.GetHeaders(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"x-tenant": "a"}, headers)

	c.Temporal.UseLocalServer("127.0.0.1:7233")
	opts, err = c.Temporal.ClientOptions()
	require.NoError(t, err)
	assert.False(t, usesTLS(t, c.Temporal))
	assert.Nil(t, opts.Credentials, "the dev stack's own server gets no credentials")
	assert.Equal(t, "127.0.0.1:7233", opts.HostPort)

	c, err = LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"TEMPORAL_CONFIG_FILE": file, "TEMPORAL_PROFILE": "prod", "TEMPORAL_TLS": "false",
	}))
	require.NoError(t, err)
	assert.False(t, usesTLS(t, c.Temporal), "TEMPORAL_TLS=false turns TLS off, as in the CLI")
}

// usesTLS is what the SDK will do with the connection's options.
func usesTLS(t *testing.T, c Temporal) bool {
	t.Helper()
	opts, err := c.ClientOptions()
	require.NoError(t, err)
	return opts.ConnectionOptions.TLS != nil && !opts.ConnectionOptions.TLSDisabled
}

func TestOldTLSNamesAreRefusedWithTheNewName(t *testing.T) {
	_, err := LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{"TEMPORAL_TLS_CERT": "/c.pem", "TEMPORAL_TLS_KEY": "/k.pem"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "TEMPORAL_TLS_CLIENT_CERT_PATH")
}

func TestWorkerVersioningNeedsABuildThatNamesItself(t *testing.T) {
	versioned, err := Worker{}.Versioned()
	assert.False(t, versioned)
	assert.NoError(t, err)
	_, err = Worker{DeploymentName: "relink", BuildID: "dev"}.Versioned()
	assert.Error(t, err, "an unstamped build")
	versioned, err = Worker{DeploymentName: "relink", BuildID: "v1.2.3"}.Versioned()
	assert.True(t, versioned)
	assert.NoError(t, err)

	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{"RELINK_DEPLOYMENT_NAME": "relink"}))
	require.NoError(t, err, "the gateway and the dev stack load it; only the worker refuses")
	assert.Equal(t, "dev", c.Worker.BuildID, "the version stamp is the default (tests are unstamped)")
	_, err = LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{"RELINK_DEPLOYMENT_NAME": "relink.prod"}))
	assert.Error(t, err)
}

// Reconnect links must point at the gateway: a production worker or
// gateway with links on refuses the localhost default and plain http.
func TestReconnectLinksNeedThePublicURL(t *testing.T) {
	load := func(env map[string]string) Config {
		c, err := LoadFrom(context.Background(), envconfig.MapLookuper(env))
		require.NoError(t, err)
		return c
	}
	generated, err := keyring.Generate("k1")
	require.NoError(t, err)
	key := generated.Format()
	assert.NoError(t, load(nil).RequireLinkURL(), "links off")
	assert.Error(t, load(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key}).RequireLinkURL(), "the localhost default")
	assert.Error(t, load(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key, "RELINK_PUBLIC_URL": "http://relink.example.com"}).RequireLinkURL())
	assert.NoError(t, load(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key, "RELINK_PUBLIC_URL": "https://relink.example.com"}).RequireLinkURL())
	assert.NoError(t, load(map[string]string{"RELINK_CLIENT_TOKEN_KEYS": key, "RELINK_PUBLIC_URL": "http://127.0.0.1:8080"}).RequireLinkURL(), "loopback, given explicitly")
	assert.Equal(t, []string{"https://widgets.example", "http://127.0.0.1:9000"},
		load(map[string]string{"RELINK_RECONNECT_FRAME_ORIGINS": "https://widgets.example,http://127.0.0.1:9000"}).Gateway.ReconnectFrameOrigins)
}

// The production worker runs pinned to its build: without a deployment
// name it refuses to start, naming the settings, unless the operator opts
// out with RELINK_UNVERSIONED=true. Contradictory settings are refused.
func TestProductionWorkerIsVersionedUnlessTheOperatorOptsOut(t *testing.T) {
	load := func(env map[string]string) Worker {
		t.Helper()
		c, err := LoadFrom(context.Background(), envconfig.MapLookuper(env))
		require.NoError(t, err, "loading succeeds: only the worker refuses")
		return c.Worker
	}
	w := load(nil)
	assert.False(t, w.Unversioned, "versioned is the default")
	_, err := w.ProductionVersioning()
	require.ErrorIs(t, err, ErrUnversionedWorker)
	for _, name := range []string{"RELINK_DEPLOYMENT_NAME", "RELINK_BUILD_ID", "RELINK_UNVERSIONED=true", "drain"} {
		assert.Contains(t, err.Error(), name)
	}

	versioned, err := load(map[string]string{"RELINK_UNVERSIONED": "true"}).ProductionVersioning()
	assert.NoError(t, err, "the operator's opt-out")
	assert.False(t, versioned)

	versioned, err = load(map[string]string{"RELINK_DEPLOYMENT_NAME": "relink", "RELINK_BUILD_ID": "v1.2.3"}).ProductionVersioning()
	assert.NoError(t, err)
	assert.True(t, versioned)
	_, err = load(map[string]string{"RELINK_DEPLOYMENT_NAME": "relink"}).ProductionVersioning()
	assert.Error(t, err, "an unstamped build still needs RELINK_BUILD_ID")

	for _, env := range []map[string]string{
		{"RELINK_UNVERSIONED": "true", "RELINK_DEPLOYMENT_NAME": "relink", "RELINK_BUILD_ID": "v1"},
		{"RELINK_UNVERSIONED": "true", "RELINK_BUILD_ID": "v1"},
		{"RELINK_BUILD_ID": "v1"},
	} {
		_, err := load(env).ProductionVersioning()
		assert.Error(t, err, "%v", env)
		assert.NotErrorIs(t, err, ErrUnversionedWorker, "%v: says what is contradictory", env)
	}
	_, err = LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{"RELINK_UNVERSIONED": "maybe"}))
	assert.Error(t, err, "not a boolean")

	// Worker.Versioned, which the dev stack's and the tests' workers use,
	// still runs them unversioned without a word.
	versioned, err = load(nil).Versioned()
	assert.NoError(t, err)
	assert.False(t, versioned)
}

// A provider that keeps the app's secrets in Temporal (TrueLayer: its
// tokens not yet delivered) is enabled only with payload keys.
func TestAProviderKeepingSecretsInTemporalNeedsPayloadKeys(t *testing.T) {
	trueLayer := map[string]string{"TRUELAYER_CLIENT_ID": "id", "TRUELAYER_CLIENT_SECRET": "secret",
		"TRUELAYER_TOKEN_URL": "https://app.example.com/truelayer-tokens", "TRUELAYER_TOKEN_SECRET": "s"}
	load := func(env map[string]string) error {
		_, err := LoadFrom(context.Background(), envconfig.MapLookuper(env))
		return err
	}
	err := load(trueLayer)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "truelayer needs RELINK_PAYLOAD_KEYS")
	key, err := keyring.Generate("k1")
	require.NoError(t, err)
	trueLayer["RELINK_PAYLOAD_KEYS"] = key.Format()
	assert.NoError(t, load(trueLayer))
}
