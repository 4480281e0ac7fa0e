package app

import (
	"context"
	"net/http"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/aggregator"
	"github.com/relink-dev/relink/activities/providers"
	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/config"
)

// A fifth provider, as its own folder would define it: settings, an
// adapter, a webhook receiver and a registration record.
type mybankSettings struct {
	APIKey string `env:"MYBANK_API_KEY"`
	APIURL string `env:"MYBANK_API_URL, default=https://api.mybank.example"`
}

func (s *mybankSettings) Enabled() bool   { return s.APIKey != "" }
func (s *mybankSettings) Validate() error { return nil }
func (s *mybankSettings) Describe() map[string]string {
	return map[string]string{"MYBANK_API_KEY": "enables MyBank", "MYBANK_API_URL": "MyBank's host"}
}

type mybank struct{ url string }

func (m *mybank) Name() string { return "mybank" }
func (m *mybank) Initialize(context.Context, aggregator.ConnectionRef) (aggregator.Session, error) {
	return aggregator.Session{}, aggregator.NotFound("no")
}
func (m *mybank) Close(context.Context, aggregator.CloseRequest) error { return nil }
func (m *mybank) ConnectionStatus(context.Context, aggregator.ConnectionRef) (aggregator.ConnectionStatus, error) {
	return aggregator.ConnectionStatus{}, nil
}

type mybankReceiver struct{}

func (mybankReceiver) Receive(*http.Request, []byte) ([]aggregator.WebhookEvent, error) {
	return nil, nil
}

var mybankRegistration = aggregator.Registration{
	Name:        "mybank",
	NewSettings: func() aggregator.Settings { return &mybankSettings{} },
	NewProvider: func(s aggregator.Settings, _ aggregator.Env) (aggregator.Provider, error) {
		return &mybank{url: s.(*mybankSettings).APIURL}, nil
	},
	NewReceiver: func(aggregator.Settings, aggregator.Env) (aggregator.WebhookReceiver, error) {
		return mybankReceiver{}, nil
	},
	Browser: aggregator.Browser{Widgets: []string{aggregator.WidgetFrame}, FrameOrigins: []string{"https://connect.mybank.example"},
		Messages: []aggregator.MessageRule{{Match: map[string]any{"event": "done"}, Complete: &aggregator.CompleteMapping{Metadata: []string{"."}}}}},
}

// One more line in the list is all a provider needs: its settings are
// read, it is built when they enable it, its webhooks are received and the
// hosted page gets its widget record, and nothing else changed.
func TestAFifthProviderIsOneRegistration(t *testing.T) {
	list := append(append([]aggregator.Registration{}, providers.All...), mybankRegistration)
	require.NoError(t, providers.Check(list))
	ctx := context.Background()

	c, err := config.LoadProviders(ctx, envconfig.MapLookuper(nil), list)
	require.NoError(t, err)
	p, err := BuildProviders(c, list)
	require.NoError(t, err)
	assert.Nil(t, p.API("mybank"), "not enabled without its settings")

	c, err = config.LoadProviders(ctx, envconfig.MapLookuper(map[string]string{"MYBANK_API_KEY": "k"}), list)
	require.NoError(t, err)
	assert.Equal(t, "https://api.mybank.example", config.SettingsOf[*mybankSettings](c).APIURL, "its default")
	p, err = BuildProviders(c, list, &sandbox.Provider{})
	require.NoError(t, err)
	require.NotNil(t, p.API("mybank"))
	assert.Equal(t, "https://api.mybank.example", p.API("mybank").(*mybank).url)
	assert.Contains(t, p.Webhooks, "mybank")
	assert.Equal(t, []string{"https://connect.mybank.example"}, p.Browsers["mybank"].FrameOrigins)
	assert.NotNil(t, p.API(sandbox.Name), "a supplied provider is enabled")
	assert.Nil(t, p.API("quiltt"), "the others, still by their settings")
}

// The registered providers, from the process's settings.
func TestNewProvidersBuildsWhatTheSettingsEnable(t *testing.T) {
	c, err := config.LoadFrom(context.Background(), envconfig.MapLookuper(map[string]string{
		"QUILTT_API_SECRET": "q", "QUILTT_WEBHOOK_SECRET": "w", "MELD_API_KEY": "m", "MELD_WEBHOOK_SECRET": "w",
	}))
	require.NoError(t, err)
	p := NewProviders(c, nil)
	assert.ElementsMatch(t, []string{"quiltt", "meld"}, names(p.APIs))
	assert.Len(t, p.Webhooks, 2)
	p = NewProviders(c, &sandbox.Provider{})
	assert.ElementsMatch(t, []string{"sandbox", "quiltt", "meld"}, names(p.APIs))
	assert.Contains(t, p.Browsers[sandbox.Name].Widgets, aggregator.WidgetFrame)
}

func names(apis []aggregator.Provider) []string {
	var out []string
	for _, a := range apis {
		out = append(out, a.Name())
	}
	return out
}
