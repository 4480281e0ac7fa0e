// Package metrics is one process's Prometheus metrics: the Temporal SDK's
// own (workflow task latency, schedule-to-start, sticky cache, activity
// failures), bridged through OpenTelemetry (go.temporal.io/sdk/contrib/
// opentelemetry), and Relink's (repairs, user actions, webhooks,
// notifications, HTTP), all served at /metrics.
//
// Everything records through the SDK's client.MetricsHandler interface:
// the workflow through workflow.GetMetricsHandler (which records nothing
// while replaying, so a metric counts once however often history
// replays), activities through activity.GetMetricsHandler, the gateway
// directly. Names are the constants below; histograms are in seconds.
package metrics

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/opentelemetry"
)

// Relink's metrics. Counters gain a _total suffix in Prometheus, timers
// (histograms in seconds) a _seconds one.
const (
	// RepairsStarted counts new repairs (provider, trigger: webhook,
	// manual, proactive); a run continuing as new is not a new repair.
	RepairsStarted = "relink_repairs_started"
	// RepairsClosed counts repairs reaching an outcome (provider, outcome:
	// REPAIRED, EXPIRED, UNREPAIRABLE, CANCELED).
	RepairsClosed = "relink_repairs_closed"
	// TimeToRepair is from the provider's detection of the break to
	// REPAIRED (provider).
	TimeToRepair = "relink_time_to_repair"
	// UserWait is how long a repair waited for its user, per wait (provider).
	UserWait = "relink_user_wait"
	// FailedAttempts counts reconnects that failed at the provider (provider).
	FailedAttempts = "relink_failed_attempts"
	// UserActions counts the frontend's calls (provider, action: reconnect,
	// complete, exit; result: the HTTP status class).
	UserActions = "relink_user_actions"
	// Webhooks counts webhook events and rejected requests (provider,
	// result: applied, duplicate, ignored, rejected; reason for rejections).
	Webhooks = "relink_webhooks"
	// Notifications counts deliveries to the app (type, result: delivered,
	// failed).
	Notifications = "relink_notifications"
	// HTTPRequests and HTTPLatency are the gateway's requests (route,
	// method, status).
	HTTPRequests = "relink_http_requests"
	HTTPLatency  = "relink_http_request_duration"
	// ReconcileChecked counts connections a reconciliation sweep checked
	// (provider, result: healthy, needs_user, degraded, disconnected,
	// not_found, error).
	ReconcileChecked = "relink_reconcile_checked"
	// ReconcileFound counts breaks a sweep found with no repair, and
	// started one for: each a webhook that never came (provider).
	ReconcileFound = "relink_reconcile_found"
	// SweepDuration is how long a sweep took, start to last page
	// (provider).
	SweepDuration = "relink_reconcile_sweep_duration"
)

// latencyBuckets fit both an HTTP call (milliseconds) and a repair (days).
var latencyBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
	3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400,
}

// Registry holds the process's metrics.
type Registry struct {
	prom     *prometheus.Registry
	provider *sdkmetric.MeterProvider
	// Handler records metrics; pass it to the Temporal client
	// (client.Options.MetricsHandler) and to the gateway.
	Handler client.MetricsHandler
}

// New builds a registry with the Go runtime and process collectors.
func New() (*Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exporter),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: latencyBuckets}},
		)),
	)
	return &Registry{
		prom:     reg,
		provider: provider,
		Handler: opentelemetry.NewMetricsHandler(opentelemetry.MetricsHandlerOptions{
			Meter: provider.Meter("relink"),
			// Prometheus counters (_total), which rate() expects.
			UseMonotonicCounters: true,
		}),
	}, nil
}

// HTTPHandler serves the metrics in Prometheus's text format.
func (r *Registry) HTTPHandler() http.Handler {
	return promhttp.HandlerFor(r.prom, promhttp.HandlerOpts{Registry: r.prom})
}

// Register adds a collector of the process's own (the gateway's count of
// open repairs, say).
func (r *Registry) Register(c prometheus.Collector) error { return r.prom.Register(c) }
