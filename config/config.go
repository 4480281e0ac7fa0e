// Package config is Relink's configuration, read from the environment with
// go-envconfig. The README's configuration table lists the same variables.
package config

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.temporal.io/sdk/client"
	tenvconfig "go.temporal.io/sdk/contrib/envconfig"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/keyring"
	"github.com/relink-dev/relink/version"

	"github.com/relink-dev/relink/workflows"
)

// Config is everything the worker, the gateway and the dev stack read.
type Config struct {
	Temporal Temporal
	Gateway  Gateway
	Repair   Repair
	Notify   Notify
	Webhooks Webhooks
	Dev      Dev
	Log      Log
	Metrics  Metrics
	Worker   Worker
	// Reconcile is the reconciliation sweeps and expiry-timed repairs.
	Reconcile Reconcile

	// publicURLSet: RELINK_PUBLIC_URL was given, not defaulted.
	publicURLSet bool
	// providers are each registered provider's settings, by name (each
	// adapter's own settings struct: activities/providers lists them).
	providers map[string]aggregator.Settings
}

// Provider returns the named provider's settings (nil for a provider
// that is not registered).
func (c Config) Provider(name string) aggregator.Settings { return c.providers[name] }

// SettingsOf returns the settings of type S (an adapter's *Settings):
// what the code that knows one adapter (its dev tooling, its tests) reads.
// It is the zero S when no registered provider has settings of that type.
func SettingsOf[S aggregator.Settings](c Config) S {
	for _, s := range c.providers {
		if v, ok := s.(S); ok {
			return v
		}
	}
	var zero S
	return zero
}

// Versioned reports whether the worker joins a Worker Deployment, and
// refuses a build id that cannot tell two builds apart.
func (w Worker) Versioned() (bool, error) {
	if w.DeploymentName == "" {
		return false, nil
	}
	if w.BuildID == "" || w.BuildID == version.Unstamped {
		return true, errors.New("RELINK_DEPLOYMENT_NAME needs a build id that names this build: set RELINK_BUILD_ID (this build has no version stamp; deploy/build-static.sh stamps one)")
	}
	return true, nil
}

// ProductionVersioning is Versioned for the production worker, which runs
// versioned unless the operator says otherwise: without
// RELINK_DEPLOYMENT_NAME it refuses to start unless RELINK_UNVERSIONED is
// true. The dev stack and the tests' workers do not call it.
func (w Worker) ProductionVersioning() (versioned bool, err error) {
	switch {
	case w.Unversioned && w.DeploymentName != "":
		return false, errors.New("RELINK_UNVERSIONED=true and RELINK_DEPLOYMENT_NAME are both set: unset RELINK_UNVERSIONED to run versioned, or RELINK_DEPLOYMENT_NAME to run unversioned")
	case w.Unversioned && w.BuildID != "":
		return false, errors.New("RELINK_UNVERSIONED=true and RELINK_BUILD_ID are both set: an unversioned worker has no build id; unset one")
	case w.Unversioned:
		return false, nil
	case w.DeploymentName == "" && w.BuildID != "":
		return false, errors.New("RELINK_BUILD_ID is set but RELINK_DEPLOYMENT_NAME is not: set RELINK_DEPLOYMENT_NAME (e.g. relink) to run versioned, or RELINK_UNVERSIONED=true to run unversioned")
	case w.DeploymentName == "":
		return false, ErrUnversionedWorker
	}
	return w.Versioned()
}

// ErrUnversionedWorker is the production worker's refusal to start without
// Worker Versioning.
var ErrUnversionedWorker = errors.New("the production worker runs pinned to its build (Worker Versioning): set RELINK_DEPLOYMENT_NAME (e.g. relink) and RELINK_BUILD_ID (or build with deploy/build-static.sh, whose version stamp is the default build id); or set RELINK_UNVERSIONED=true to run unversioned, where every change to the workflow code needs a drain (every open repair finished) before the new build is deployed (README: Production, rolling out a new build)")

// Worker tunes the repair worker (see the README's Performance section).
type Worker struct {
	// CacheSize is how many repairs a worker keeps in memory between
	// tasks (the SDK's sticky cache, process-wide). A repair out of the
	// cache replays its short history when it next has work; a repair in
	// it costs tens of kilobytes, and a worker may hold thousands waiting.
	CacheSize int `env:"RELINK_WORKER_CACHE_SIZE, default=500"`
	// Pollers caps each of the worker's groups of polls (the SDK keeps
	// one for its sticky workflow tasks, one for the task queue's, one
	// for activity tasks); within each, from 2 up to it, the number
	// follows the server's backlog hints (8 where a server sends none).
	// The default is the SDK's; it was tuned on the dev stack only.
	Pollers int `env:"RELINK_WORKER_POLLERS, default=100"`
	// StopTimeout is how long a stopping worker (SIGTERM) lets running
	// activities (a provider call, an event to the app) finish before
	// cancelling them; a cancelled one is retried, on another worker.
	StopTimeout time.Duration `env:"RELINK_WORKER_STOP_TIMEOUT, default=20s"`
	// TaskSlots, when set, bounds what the worker runs at once: that many
	// workflow tasks, activities and local activities each (and as many
	// polls at most). 0 keeps the SDK's defaults. A small worker on a
	// loaded server is how a backlog forms (the bench's -backlog).
	TaskSlots int `env:"RELINK_WORKER_TASK_SLOTS, default=0"`
	// DeploymentName turns on Worker Versioning: the worker joins this
	// Temporal Worker Deployment as build BuildID, and each repair is
	// pinned to the build that started it (see the README's rollout).
	DeploymentName string `env:"RELINK_DEPLOYMENT_NAME"`
	// BuildID is this build within the deployment; empty: the build's
	// version stamp (`relink version`).
	BuildID string `env:"RELINK_BUILD_ID"`
	// Unversioned lets the production worker run without Worker
	// Versioning (it refuses to start without RELINK_DEPLOYMENT_NAME
	// otherwise): every repair then replays on whichever build picks it
	// up, so a workflow change needs a drain before it is deployed.
	Unversioned bool `env:"RELINK_UNVERSIONED, default=false"`
}

// Metrics is where a process serves /metrics for Prometheus.
type Metrics struct {
	// Addr is a listen address ("127.0.0.1:9090", ":9090") serving
	// /metrics without authentication; empty serves none (the gateway
	// also serves /metrics on its own port, behind the API key).
	Addr string `env:"RELINK_METRICS_ADDR"`
}

// Temporal is the cluster connection. Where the cluster is and how to
// reach it is read exactly as the Temporal CLI and SDKs read it
// (go.temporal.io/sdk/contrib/envconfig): the TEMPORAL_* variables,
// TEMPORAL_PROFILE and the TOML config file (TEMPORAL_CONFIG_FILE, else
// the user's temporalio/temporal.toml). Relink's own settings stay here.
type Temporal struct {
	// Address and Namespace are the profile's, or localhost:7233 and
	// "default" when it names none.
	Address   string
	Namespace string
	// profile is the loaded client profile: TLS, API key, gRPC metadata,
	// authority (unexported, so go-envconfig leaves it alone).
	profile   tenvconfig.ClientConfigProfile
	TaskQueue string `env:"RELINK_TASK_QUEUE, default=relink-repairs"`
	// PayloadKeys encrypt every payload written to Temporal ("keyId:base64
	// 32-byte AES key,…"; the first encrypts, all decrypt). Empty: clear.
	PayloadKeys string `env:"RELINK_PAYLOAD_KEYS"`
	// Compression of the requests to Temporal: "gzip" (the SDK's default:
	// less traffic to a cluster across a network, or Temporal Cloud) or
	// "none" (less CPU on both sides: a server on the same host, where
	// compressing each request and answer buys nothing).
	Compression string `env:"RELINK_TEMPORAL_COMPRESSION, default=gzip"`
}

// Compression settings.
const (
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// Default address and namespace when the client profile names none (the
// SDK's and the CLI's defaults).
const (
	DefaultTemporalAddress   = "localhost:7233"
	DefaultTemporalNamespace = "default"
)

// UseLocalServer points the connection at a server of the process's own
// (the dev stack's): plain, no credentials and uncompressed, whatever the
// profile says.
func (t *Temporal) UseLocalServer(address string) {
	t.Address = address
	t.profile = tenvconfig.ClientConfigProfile{}
	t.Compression = CompressionNone
}

// ClientOptions are the SDK client options of the profile, addressed to
// Address and Namespace. A codec endpoint in the profile is not used:
// Relink encodes payloads itself (RELINK_PAYLOAD_KEYS), and the endpoint
// is for the CLI and the Web UI.
func (t Temporal) ClientOptions() (client.Options, error) {
	opts, err := t.profile.ToClientOptions(tenvconfig.ToClientOptionsRequest{})
	if err != nil {
		return opts, fmt.Errorf("temporal client profile: %w", err)
	}
	opts.HostPort, opts.Namespace = t.Address, t.Namespace
	switch t.Compression {
	case CompressionGzip, "":
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionGzip{}
	case CompressionNone:
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	default:
		return opts, fmt.Errorf("RELINK_TEMPORAL_COMPRESSION must be %s or %s, not %q", CompressionGzip, CompressionNone, t.Compression)
	}
	return opts, nil
}

// loadTemporalProfile reads the client profile as the Temporal CLI does.
func loadTemporalProfile(l envconfig.Lookuper) (tenvconfig.ClientConfigProfile, error) {
	prof, err := tenvconfig.LoadClientConfigProfile(tenvconfig.LoadClientConfigProfileOptions{EnvLookup: temporalEnv{l}})
	if err != nil {
		return prof, fmt.Errorf("config: Temporal client profile (TEMPORAL_* variables, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE): %w", err)
	}
	return prof, nil
}

// oldTLSNames are Relink's former TLS settings (the Temporal CLI still
// reads them, as deprecated aliases): set alone, they would leave the
// connection plain and fail far from the cause.
var oldTLSNames = [][2]string{
	{"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_CLIENT_CERT_PATH"},
	{"TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CLIENT_KEY_PATH"},
	{"TEMPORAL_TLS_CA", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"},
}

func refuseOldTLSNames(l envconfig.Lookuper) error {
	for _, name := range oldTLSNames {
		if v, ok := l.Lookup(name[0]); ok && v != "" {
			if _, set := l.Lookup(name[1]); !set {
				return fmt.Errorf("config: %s is no longer read: set %s (the Temporal CLI's name) instead", name[0], name[1])
			}
		}
	}
	return nil
}

// temporalEnv lets the Temporal loader read the same source as the rest
// of the configuration (the process environment, or a map in tests).
// TEMPORAL_GRPC_META_* needs the whole environment, which only the
// process's (or a lookuper that can list its variables) provides.
type temporalEnv struct{ l envconfig.Lookuper }

func (e temporalEnv) LookupEnv(key string) (string, bool) { return e.l.Lookup(key) }

// osEnv is the process environment, listable for TEMPORAL_GRPC_META_*.
type osEnv struct{ envconfig.Lookuper }

func (osEnv) Environ() []string { return os.Environ() }

func (e temporalEnv) Environ() []string {
	if lister, ok := e.l.(interface{ Environ() []string }); ok {
		return lister.Environ()
	}
	return nil
}

// Gateway is the HTTP server for webhooks and the app's API.
type Gateway struct {
	// ListenAddr empty means ":8080" for `relink gateway` and
	// "127.0.0.1:8080" for `relink dev`, whose API key is published.
	ListenAddr string `env:"RELINK_LISTEN_ADDR"`
	// APIKey and APIKeys are the app backend's bearer keys; every one of
	// them is accepted, so a key rotates by adding the new one, moving the
	// app over, then removing the old one.
	APIKey  string   `env:"RELINK_API_KEY"`
	APIKeys []string `env:"RELINK_API_KEYS"`
	// ClientTokenKeys sign browser tokens ("keyId:base64 32-byte Ed25519
	// seed,…"; the first signs, all verify). Empty: no client tokens.
	ClientTokenKeys string        `env:"RELINK_CLIENT_TOKEN_KEYS"`
	ClientTokenTTL  time.Duration `env:"RELINK_CLIENT_TOKEN_TTL, default=30m"`
	// CORSOrigins may call the browser routes from a page.
	CORSOrigins []string `env:"RELINK_CORS_ORIGINS"`
	// BrowserRate and BrowserBurst bound the requests a connection's client
	// tokens can make, per gateway process: a looping page gets 429.
	BrowserRate  float64 `env:"RELINK_BROWSER_RATE_LIMIT, default=2"`
	BrowserBurst int     `env:"RELINK_BROWSER_RATE_BURST, default=20"`
	// StartsInFlight bounds the repair starts (repairable webhooks,
	// manual starts) one gateway process has under way at Temporal; the
	// rest wait, up to StartWait per request, then get 503. The default
	// only guards against floods; lower favours the users repairing
	// during a burst of breaks over the burst (see the README's
	// Performance section).
	StartsInFlight int           `env:"RELINK_GATEWAY_STARTS_IN_FLIGHT, default=64"`
	StartWait      time.Duration `env:"RELINK_GATEWAY_START_WAIT, default=5s"`
	// CodecOrigins are the Temporal Web UI origins allowed to call /codec.
	CodecOrigins []string `env:"RELINK_CODEC_ORIGINS"`
	// CodecJWKSURL admits Web UI users' access tokens on /codec, verified
	// with their identity provider's keys (and issuer, audience if set).
	CodecJWKSURL     string `env:"RELINK_CODEC_JWKS_URL"`
	CodecJWTIssuer   string `env:"RELINK_CODEC_JWT_ISSUER"`
	CodecJWTAudience string `env:"RELINK_CODEC_JWT_AUDIENCE"`
	// PublicURL is where the gateway is reachable; the sandbox sends its
	// webhooks and points its widget there, and reconnect links start
	// with it.
	PublicURL string `env:"RELINK_PUBLIC_URL, default=http://localhost:8080"`
	// ReconnectLinkTTL is how long a reconnect link works (while its
	// repair is open); 0: the repair window. Links need ClientTokenKeys.
	ReconnectLinkTTL time.Duration `env:"RELINK_RECONNECT_LINK_TTL, default=0s"`
	// ReconnectReturnURL, if set, is where the hosted page's "Back to the
	// app" button goes, with ?status=…&provider=…&connectionId=….
	ReconnectReturnURL string `env:"RELINK_RECONNECT_RETURN_URL"`
	// ReconnectFrameOrigins are more origins the hosted page may frame,
	// beyond each provider's known widget hosts.
	ReconnectFrameOrigins []string `env:"RELINK_RECONNECT_FRAME_ORIGINS"`
	// PlaidLinkScriptURL is where the hosted page loads Plaid Link from.
	PlaidLinkScriptURL string `env:"RELINK_PLAID_LINK_SCRIPT_URL, default=https://cdn.plaid.com/link/v2/stable/link-initialize.js"`
}

// isOrigin: an https origin, or an http one on loopback (tests, dev),
// and nothing that could add to a Content-Security-Policy.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" || strings.ContainsAny(s, " ;,'\"*") {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && isLoopbackURL(s))
}

// isLoopbackURL: an http(s) URL on this machine.
func isLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || strings.ContainsAny(s, " ;,'\"") {
		return false
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// RequireLinkURL refuses reconnect links that would point nowhere useful:
// with links on (client-token keys set), a production worker or gateway
// needs RELINK_PUBLIC_URL set to an https URL (http only on loopback).
func (c Config) RequireLinkURL() error {
	if c.Gateway.ClientTokenKeys == "" {
		return nil
	}
	u, err := url.Parse(c.Gateway.PublicURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !isLoopbackURL(c.Gateway.PublicURL)) {
		return errors.New("RELINK_PUBLIC_URL must be the gateway's https URL: reconnect links (on with RELINK_CLIENT_TOKEN_KEYS) start with it")
	}
	if isLoopbackURL(c.Gateway.PublicURL) && !c.publicURLSet {
		return errors.New("set RELINK_PUBLIC_URL to the gateway's public https URL: reconnect links (on with RELINK_CLIENT_TOKEN_KEYS) start with it, and the default is localhost")
	}
	return nil
}

// MaxReconnectLinkTTL bounds a reconnect link's life (Plaid's hosted links
// live at most as long).
const MaxReconnectLinkTTL = 21 * 24 * time.Hour

// MinMessageSpacing is the least time between two messages to the user
// about one repair (the action_required event and the reminders).
const MinMessageSpacing = workflows.MinAskSpacing

// Repair holds the defaults for new repairs.
type Repair struct {
	Window                time.Duration   `env:"RELINK_REPAIR_WINDOW, default=168h"`
	ReminderOffsets       []time.Duration `env:"RELINK_REMINDER_OFFSETS, default=48h,120h"`
	VerifyQuietPeriod     time.Duration   `env:"RELINK_VERIFY_QUIET_PERIOD, default=10m"`
	VerifyPollInterval    time.Duration   `env:"RELINK_VERIFY_POLL_INTERVAL, default=1m"`
	VerifyPollMaxInterval time.Duration   `env:"RELINK_VERIFY_POLL_MAX_INTERVAL, default=1h"`
	MaxAttempts           int             `env:"RELINK_MAX_ATTEMPTS, default=5"`
	NotifyTimeout         time.Duration   `env:"RELINK_NOTIFY_TIMEOUT, default=72h"`
	VerifyGrace           time.Duration   `env:"RELINK_VERIFY_GRACE, default=24h"`
	ReportTransient       bool            `env:"RELINK_REPORT_TRANSIENT_STATUSES, default=false"`
}

// Options turns the defaults into workflow options.
func (r Repair) Options() workflows.RepairOptions {
	return workflows.RepairOptions{
		RepairWindow:            r.Window,
		ReminderOffsets:         r.ReminderOffsets,
		VerifyQuietPeriod:       r.VerifyQuietPeriod,
		VerifyPollInterval:      r.VerifyPollInterval,
		VerifyPollMaxInterval:   r.VerifyPollMaxInterval,
		MaxAttempts:             r.MaxAttempts,
		NotifyTimeout:           r.NotifyTimeout,
		VerifyGrace:             r.VerifyGrace,
		ReportTransientStatuses: r.ReportTransient,
	}
}

// Reconcile is how Relink finds the breaks no webhook announced: a sweep
// of each enabled provider every Interval, and proactive repairs timed
// ExpiryLead before a consent runs out.
type Reconcile struct {
	// Interval is the time between scheduled sweeps of each provider
	// (a Go duration), or "off".
	Interval string `env:"RELINK_RECONCILE_INTERVAL, default=6h"`
	// Rates are status reads per second per provider ("plaid:40,meld:5"),
	// shared by all workers; a provider not named keeps its registered
	// default, below its documented limit.
	Rates map[string]float64 `env:"RELINK_RECONCILE_RATE"`
	// Sources say where each provider's candidates come from
	// ("quiltt:inventory"): "provider" (its own listing, for a provider
	// that has one) or "inventory" (RELINK_INVENTORY_URL). Default: the
	// provider's listing where it has one, else the inventory when one is
	// configured, else the provider is not swept.
	Sources map[string]string `env:"RELINK_RECONCILE_SOURCE"`
	// PageSize is the candidates one page (one activity) checks.
	PageSize int `env:"RELINK_RECONCILE_PAGE_SIZE, default=500"`
	// InventoryURL answers GET ?provider=&cursor=&limit= with the app's
	// connections (README: The inventory contract).
	InventoryURL string `env:"RELINK_INVENTORY_URL"`
	// InventoryToken is the worker's alone (it calls the inventory): a
	// gateway, which needs the URL to know what is swept, does without.
	InventoryToken string `env:"RELINK_INVENTORY_TOKEN"`
	// ExpiryLead is how long before a consent runs out its proactive
	// repair starts.
	ExpiryLead time.Duration `env:"RELINK_EXPIRY_LEAD, default=336h"`
}

// SweepInterval is Interval parsed; ok is false when sweeps are off.
func (r Reconcile) SweepInterval() (d time.Duration, ok bool) {
	if r.Interval == "off" {
		return 0, false
	}
	d, err := time.ParseDuration(r.Interval)
	return d, err == nil && d > 0
}

// Source is where provider's candidates come from ("" when it is not
// swept); canList says whether the provider has a listing.
func (r Reconcile) Source(provider string, canList bool) string {
	if s, ok := r.Sources[provider]; ok {
		return s
	}
	switch {
	case canList:
		return workflows.SourceProvider
	case r.InventoryURL != "":
		return workflows.SourceInventory
	}
	return ""
}

func (r Reconcile) validate(providers map[string]aggregator.Settings) []error {
	var errs []error
	if _, ok := r.SweepInterval(); !ok && r.Interval != "off" {
		errs = append(errs, fmt.Errorf("RELINK_RECONCILE_INTERVAL: %q is neither a positive duration (6h) nor off", r.Interval))
	}
	if d, ok := r.SweepInterval(); ok && d < time.Minute {
		errs = append(errs, errors.New("RELINK_RECONCILE_INTERVAL must be at least 1m"))
	}
	for name, rate := range r.Rates {
		if _, known := providers[name]; !known || rate <= 0 {
			errs = append(errs, fmt.Errorf("RELINK_RECONCILE_RATE: %s:%v needs a registered provider and a positive rate", name, rate))
		}
	}
	for name, src := range r.Sources {
		if _, known := providers[name]; !known || (src != workflows.SourceProvider && src != workflows.SourceInventory) {
			errs = append(errs, fmt.Errorf("RELINK_RECONCILE_SOURCE: %s:%s needs a registered provider and provider or inventory", name, src))
		}
		if src == workflows.SourceInventory && r.InventoryURL == "" {
			errs = append(errs, fmt.Errorf("RELINK_RECONCILE_SOURCE: %s:inventory needs RELINK_INVENTORY_URL", name))
		}
	}
	if r.PageSize < 1 || r.PageSize > 1000 {
		errs = append(errs, errors.New("RELINK_RECONCILE_PAGE_SIZE must be between 1 and 1000"))
	}
	if r.InventoryURL != "" {
		if u, err := url.Parse(r.InventoryURL); err != nil || (u.Scheme != "https" && !isLoopbackURL(r.InventoryURL)) || u.Host == "" {
			errs = append(errs, errors.New("RELINK_INVENTORY_URL must be an https URL (http on loopback)"))
		}
	}
	if r.ExpiryLead < 0 {
		errs = append(errs, errors.New("RELINK_EXPIRY_LEAD must not be negative"))
	}
	return errs
}

// Notify is the app's endpoint for outbound events, signed as Standard
// Webhooks.
type Notify struct {
	URL string `env:"RELINK_NOTIFY_URL"`
	// Secret holds one or more space-separated "whsec_<base64>" secrets;
	// each signs every event, so the app can rotate without a gap.
	Secret string `env:"RELINK_NOTIFY_SECRET"`
}

// Secrets are the notify secrets, in order.
func (n Notify) Secrets() []string { return strings.Fields(n.Secret) }

// Webhooks are settings shared by the providers' inbound webhooks.
type Webhooks struct {
	// Tolerance is how old a signed timestamp (Quiltt, Meld) or a JWT's iat
	// (Plaid) may be.
	Tolerance time.Duration `env:"RELINK_WEBHOOK_TOLERANCE, default=300s"`
}

// Dev is the embedded dev stack.
type Dev struct {
	DataDir      string `env:"RELINK_DATA_DIR, default=.relink"`
	TemporalPort int    `env:"RELINK_DEV_TEMPORAL_PORT, default=7233"`
	UIPort       int    `env:"RELINK_DEV_UI_PORT, default=8233"`
}

// Log is the log output.
type Log struct {
	Level  string `env:"RELINK_LOG_LEVEL, default=info"`
	Format string `env:"RELINK_LOG_FORMAT, default=text"`
}

// Load reads the configuration from the environment.
func Load(ctx context.Context) (Config, error) {
	return LoadFrom(ctx, osEnv{envconfig.OsLookuper()})
}

// DevDefaults are the defaults of `relink dev` where they differ from
// production's: each walkthrough row finishes in seconds. Production waits
// 10 minutes for the confirming webhook before it polls, then 1, 2, 4 …
// minutes between polls, which is what a real provider's sync needs; the
// sandbox's sync takes RELINK_SANDBOX_SYNC_DELAY (2s), so a lost webhook
// would otherwise cost 13 minutes of staring at VERIFYING. The quiet
// period stays longer than that sync, so a webhook that does come still
// confirms first. A variable the environment sets wins.
var DevDefaults = map[string]string{
	"RELINK_VERIFY_QUIET_PERIOD":      "5s",
	"RELINK_VERIFY_POLL_INTERVAL":     "1s",
	"RELINK_VERIFY_POLL_MAX_INTERVAL": "10s",
}

// LoadDev reads the configuration of `relink dev` from the environment:
// Load with DevDefaults under it.
func LoadDev(ctx context.Context) (Config, error) {
	return LoadDevFrom(ctx, osEnv{envconfig.OsLookuper()})
}

// LoadDevFrom is LoadDev reading from l (tests pass a map).
func LoadDevFrom(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	return LoadFrom(ctx, withDefaults{l, DevDefaults})
}

// withDefaults looks a variable up in the environment l, and takes its
// value from defaults when l has none or an empty one (RELINK_X= in a
// shell reads as unset). It keeps l's Environ, which
// TEMPORAL_GRPC_META_* needs.
type withDefaults struct {
	envconfig.Lookuper
	defaults map[string]string
}

func (d withDefaults) Lookup(key string) (string, bool) {
	v, ok := d.Lookuper.Lookup(key)
	if def, has := d.defaults[key]; has && v == "" {
		return def, true
	}
	return v, ok
}

func (d withDefaults) Environ() []string {
	if lister, ok := d.Lookuper.(interface{ Environ() []string }); ok {
		return lister.Environ()
	}
	return nil
}

// LoadFrom reads the configuration from l (tests pass a map).
func LoadFrom(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	return LoadProviders(ctx, l, providers.All)
}

// LoadProviders reads the configuration from l, with the settings of the
// providers of list (providers.All but in tests).
func LoadProviders(ctx context.Context, l envconfig.Lookuper, list []aggregator.Registration) (Config, error) {
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: l}); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	c.providers = make(map[string]aggregator.Settings, len(list))
	for _, reg := range list {
		s := reg.NewSettings()
		if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: s, Lookuper: l}); err != nil {
			return c, fmt.Errorf("config: %s: %w", reg.Name, err)
		}
		c.providers[reg.Name] = s
	}
	if err := refuseOldTLSNames(l); err != nil {
		return c, err
	}
	prof, err := loadTemporalProfile(l)
	if err != nil {
		return c, err
	}
	c.Temporal.profile = prof
	_, c.publicURLSet = l.Lookup("RELINK_PUBLIC_URL")
	if c.Worker.DeploymentName != "" && c.Worker.BuildID == "" {
		c.Worker.BuildID = version.String()
	}
	c.Temporal.Address, c.Temporal.Namespace = prof.Address, prof.Namespace
	if c.Temporal.Address == "" {
		c.Temporal.Address = DefaultTemporalAddress
	}
	if c.Temporal.Namespace == "" {
		c.Temporal.Namespace = DefaultTemporalNamespace
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	if _, err := c.Temporal.ClientOptions(); err != nil {
		errs = append(errs, err)
	}
	if strings.Contains(c.Worker.DeploymentName, ".") {
		errs = append(errs, errors.New("RELINK_DEPLOYMENT_NAME may not contain a dot (Temporal refuses it)"))
	}
	if c.Repair.Window <= 0 {
		errs = append(errs, errors.New("RELINK_REPAIR_WINDOW must be positive"))
	}
	// The user hears of a repair at most once per MinMessageSpacing: the
	// action_required event, then each reminder, each one that far apart.
	// An empty list cannot reach a repair (its options would fall back to
	// the workflow's defaults): no reminders is an offset past the window.
	if len(c.Repair.ReminderOffsets) == 0 {
		errs = append(errs, errors.New("RELINK_REMINDER_OFFSETS needs at least one offset; for no reminders, give one past RELINK_REPAIR_WINDOW"))
	}
	last := time.Duration(0)
	for _, d := range c.Repair.ReminderOffsets {
		if d-last < MinMessageSpacing {
			errs = append(errs, fmt.Errorf("RELINK_REMINDER_OFFSETS must each come at least %v after the previous message (the first after the action_required event)", MinMessageSpacing))
			break
		}
		last = d
	}
	if c.Gateway.ReconnectLinkTTL < 0 || c.Gateway.ReconnectLinkTTL > MaxReconnectLinkTTL {
		errs = append(errs, fmt.Errorf("RELINK_RECONNECT_LINK_TTL must be between 0 (the repair window) and %v", MaxReconnectLinkTTL))
	}
	for _, o := range c.Gateway.ReconnectFrameOrigins {
		if !isOrigin(o) {
			errs = append(errs, fmt.Errorf("RELINK_RECONNECT_FRAME_ORIGINS: %q is not an https origin (https://host[:port])", o))
		}
	}
	if u, err := url.Parse(c.Gateway.PlaidLinkScriptURL); err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(c.Gateway.PlaidLinkScriptURL, " ;,'\"") {
		if !isLoopbackURL(c.Gateway.PlaidLinkScriptURL) {
			errs = append(errs, errors.New("RELINK_PLAID_LINK_SCRIPT_URL must be an https URL"))
		}
	}
	if u := c.Gateway.ReconnectReturnURL; u != "" {
		if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
			errs = append(errs, errors.New("RELINK_RECONNECT_RETURN_URL must be an http(s) URL"))
		}
	}
	if c.Repair.MaxAttempts <= 0 {
		errs = append(errs, errors.New("RELINK_MAX_ATTEMPTS must be positive"))
	}
	if c.Webhooks.Tolerance <= 0 {
		errs = append(errs, errors.New("RELINK_WEBHOOK_TOLERANCE must be positive"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.providers)) {
		if err := c.providers[name].Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.Reconcile.validate(c.providers)...)
	if c.Worker.CacheSize < 0 || c.Worker.Pollers < 2 {
		errs = append(errs, errors.New("RELINK_WORKER_CACHE_SIZE must be 0 or more and RELINK_WORKER_POLLERS at least 2"))
	}
	if c.Worker.TaskSlots != 0 && c.Worker.TaskSlots < 2 {
		errs = append(errs, errors.New("RELINK_WORKER_TASK_SLOTS must be 0 (the SDK's defaults) or at least 2"))
	}
	errs = append(errs, c.validateSecurity()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func (c Config) validateSecurity() []error {
	var errs []error
	if c.Notify.URL != "" && len(c.Notify.Secrets()) == 0 {
		errs = append(errs, errors.New("RELINK_NOTIFY_URL needs RELINK_NOTIFY_SECRET: events are never sent unsigned"))
	}
	for i, s := range c.Notify.Secrets() {
		b64, ok := strings.CutPrefix(s, "whsec_")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if !ok || err != nil || len(raw) < 24 {
			errs = append(errs, fmt.Errorf("RELINK_NOTIFY_SECRET: secret %d must be whsec_ followed by base64 of 24 to 64 random bytes", i+1))
		} else if len(raw) > 64 {
			errs = append(errs, fmt.Errorf("RELINK_NOTIFY_SECRET: secret %d is over 64 bytes", i+1))
		}
	}
	// A key that is a pattern is refused where it would protect anything
	// new: every client-token key (each one verifies, so a weak one lets
	// tokens be forged) and the payload key that encrypts (the first);
	// a weak older payload key still decrypts, so a deployment can rotate
	// away from it.
	if keys, err := keyring.Parse("RELINK_CLIENT_TOKEN_KEYS", c.Gateway.ClientTokenKeys); err != nil {
		errs = append(errs, err)
	} else {
		for i, k := range keys {
			if keyring.Weak(k.Secret) {
				errs = append(errs, fmt.Errorf("RELINK_CLIENT_TOKEN_KEYS: key %d is not random (a repeated pattern); make one with `relink keygen -kind client-token`", i+1))
			}
		}
	}
	if keys, err := keyring.Parse("RELINK_PAYLOAD_KEYS", c.Temporal.PayloadKeys); err != nil {
		errs = append(errs, err)
	} else if len(keys) > 0 && keyring.Weak(keys[0].Secret) {
		errs = append(errs, errors.New("RELINK_PAYLOAD_KEYS: key 1, which encrypts, is not random (a repeated pattern); make one with `relink keygen` and put it first"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.providers)) {
		s := c.providers[name]
		if keeps, ok := s.(aggregator.SecretsInTemporal); ok && s.Enabled() && strings.TrimSpace(c.Temporal.PayloadKeys) == "" {
			errs = append(errs, fmt.Errorf("%s needs RELINK_PAYLOAD_KEYS (`relink keygen`): %s, which must not be in Temporal in clear", name, keeps.SecretsInTemporal()))
		}
	}
	if r := c.Repair; r.VerifyQuietPeriod <= 0 || r.VerifyPollInterval <= 0 || r.VerifyPollInterval > r.VerifyPollMaxInterval {
		errs = append(errs, errors.New("RELINK_VERIFY_QUIET_PERIOD and RELINK_VERIFY_POLL_INTERVAL must be positive, and RELINK_VERIFY_POLL_INTERVAL at most RELINK_VERIFY_POLL_MAX_INTERVAL"))
	}
	if c.Gateway.ClientTokenTTL < time.Minute || c.Gateway.ClientTokenTTL > 24*time.Hour {
		errs = append(errs, errors.New("RELINK_CLIENT_TOKEN_TTL must be between 1m and 24h"))
	}
	if c.Gateway.StartsInFlight < 1 || c.Gateway.StartWait <= 0 {
		errs = append(errs, errors.New("RELINK_GATEWAY_STARTS_IN_FLIGHT must be at least 1 and RELINK_GATEWAY_START_WAIT positive"))
	}
	if c.Gateway.BrowserRate <= 0 || c.Gateway.BrowserBurst < 1 {
		errs = append(errs, errors.New("RELINK_BROWSER_RATE_LIMIT must be positive and RELINK_BROWSER_RATE_BURST at least 1"))
	}
	if raw := c.Gateway.CodecJWKSURL; raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			u = &url.URL{}
		}
		ip := net.ParseIP(u.Hostname())
		local := u.Scheme == "http" && (u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()))
		if err != nil || (u.Scheme != "https" && !local) || u.Host == "" {
			errs = append(errs, errors.New("RELINK_CODEC_JWKS_URL must be an https URL (http only to this machine)"))
		}
		// Without both, any token the identity provider signs, for any
		// application it serves, would read every payload.
		if c.Gateway.CodecJWTIssuer == "" || c.Gateway.CodecJWTAudience == "" {
			errs = append(errs, errors.New("RELINK_CODEC_JWKS_URL needs RELINK_CODEC_JWT_ISSUER and RELINK_CODEC_JWT_AUDIENCE"))
		}
	}
	for _, o := range append(append([]string{}, c.Gateway.CORSOrigins...), c.Gateway.CodecOrigins...) {
		if err := CheckOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// CheckOrigin fails unless o is one browser origin, scheme://host[:port]:
// CORS answers name the caller's origin exactly, never a wildcard.
func CheckOrigin(o string) error {
	if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || o == "*" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
		return fmt.Errorf("CORS origin %q must be scheme://host[:port], with no path and no wildcard", o)
	}
	return nil
}

// AllAPIKeys are every accepted API key (RELINK_API_KEY and RELINK_API_KEYS).
func (g Gateway) AllAPIKeys() []string {
	var keys []string
	for _, k := range append([]string{g.APIKey}, g.APIKeys...) {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// mustKeys parses a key setting that validate has already checked.
func mustKeys(name, list string) []keyring.Key {
	keys, err := keyring.Parse(name, list)
	if err != nil {
		panic(err)
	}
	return keys
}

// ClientKeys are the client-token signing keys.
func (g Gateway) ClientKeys() []keyring.Key {
	return mustKeys("RELINK_CLIENT_TOKEN_KEYS", g.ClientTokenKeys)
}

// PayloadKeyring are the payload encryption keys.
func (t Temporal) PayloadKeyring() []keyring.Key {
	return mustKeys("RELINK_PAYLOAD_KEYS", t.PayloadKeys)
}

// DevAPIKey is the API key of `relink dev` when RELINK_API_KEY is unset.
// It is published (in this README), so nothing but the dev stack on
// loopback accepts it.
const DevAPIKey = "dev-api-key"

// MinAPIKeyBytes is the shortest API key a production gateway accepts:
// 32 bytes, as long as `relink keygen -kind api-key` prints.
const MinAPIKeyBytes = 32

// RequireAPIKey fails when the production gateway would run without
// authentication, or with a key anyone could guess: the published dev key,
// a short key, or a key that is a pattern.
func (c Config) RequireAPIKey() error {
	keys := c.Gateway.AllAPIKeys()
	if len(keys) == 0 {
		return errors.New("config: RELINK_API_KEY (or RELINK_API_KEYS) must be set for the gateway")
	}
	for i, k := range keys {
		// Keys are named by position, never quoted: this error is logged.
		switch {
		case k == DevAPIKey:
			return fmt.Errorf("config: API key %d is the published dev key; make one with `relink keygen -kind api-key`", i+1)
		case strings.HasPrefix(k, "replace-with"):
			return fmt.Errorf("config: API key %d is the deploy example's placeholder; make one with `relink keygen -kind api-key`", i+1)
		case len(k) < MinAPIKeyBytes:
			return fmt.Errorf("config: API key %d is %d bytes; a production gateway needs at least %d (`relink keygen -kind api-key`)", i+1, len(k), MinAPIKeyBytes)
		case distinctBytes(k) < 8: // 64 hex digits have about 16
			return fmt.Errorf("config: API key %d is not random (a repeated pattern); make one with `relink keygen -kind api-key`", i+1)
		}
	}
	return c.requireUnpublishedKeys()
}

func distinctBytes(s string) int {
	seen := map[byte]bool{}
	for i := range len(s) {
		seen[s[i]] = true
	}
	return len(seen)
}

// publishedKeys are the SHA-256 digests of key secrets committed to this
// repository (the tests' payload key): anyone can read them, so no
// production process uses them.
var publishedKeys = map[[sha256.Size]byte]bool{
	sha256.Sum256(mustBase64("KpjI+vOmYaWw20s722VSFqIbAh2g1ZyPjOY73WwoPSY=")): true, // workflows/testdata/payload-test-key
}

func mustBase64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// requireUnpublishedKeys fails when a payload or client-token key is one
// published in this repository.
func (c Config) requireUnpublishedKeys() error {
	for name, list := range map[string]string{"RELINK_PAYLOAD_KEYS": c.Temporal.PayloadKeys, "RELINK_CLIENT_TOKEN_KEYS": c.Gateway.ClientTokenKeys} {
		for i, k := range mustKeys(name, list) {
			if publishedKeys[sha256.Sum256(k.Secret)] {
				return fmt.Errorf("config: %s: key %d is published in Relink's repository (a test key); make one with `relink keygen`", name, i+1)
			}
		}
	}
	return nil
}

// RequireProductionKeys fails when a production worker would encrypt
// with a published key (see RequireAPIKey for the gateway).
func (c Config) RequireProductionKeys() error { return c.requireUnpublishedKeys() }
