package truelayer

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// ReturnPath is the gateway's return route for TrueLayer's sign-in, under
// RELINK_PUBLIC_URL: the redirect_uri to register in TrueLayer's console.
const ReturnPath = "/r/return/" + Name

// Settings are TrueLayer's settings; TRUELAYER_CLIENT_ID and
// TRUELAYER_CLIENT_SECRET enable it.
type Settings struct {
	ClientID     string `env:"TRUELAYER_CLIENT_ID"`
	ClientSecret string `env:"TRUELAYER_CLIENT_SECRET"`
	AuthURL      string `env:"TRUELAYER_AUTH_URL, default=https://auth.truelayer.com"`
	APIURL       string `env:"TRUELAYER_API_URL, default=https://api.truelayer.com"`
	// RedirectURI: empty means RELINK_PUBLIC_URL + /r/return/truelayer.
	RedirectURI string `env:"TRUELAYER_REDIRECT_URI"`
	TokenURL    string `env:"TRUELAYER_TOKEN_URL"`
	TokenSecret string `env:"TRUELAYER_TOKEN_SECRET"`
}

// Enabled implements aggregator.Settings.
func (s *Settings) Enabled() bool { return s.ClientID != "" }

// SecretsInTemporal implements aggregator.SecretsInTemporal.
func (s *Settings) SecretsInTemporal() string {
	return "tokens not yet delivered to the app are kept in the activity's heartbeat details"
}

// Validate implements aggregator.Settings.
func (s *Settings) Validate() error {
	var errs []error
	if (s.ClientID == "") != (s.ClientSecret == "") {
		errs = append(errs, errors.New("TRUELAYER_CLIENT_ID and TRUELAYER_CLIENT_SECRET go together"))
	}
	if s.ClientID != "" && (s.TokenURL == "" || s.TokenSecret == "") {
		errs = append(errs, errors.New("TrueLayer needs TRUELAYER_TOKEN_URL and TRUELAYER_TOKEN_SECRET: the app's endpoint for the connections' tokens"))
	}
	if s.TokenURL != "" {
		u, err := url.Parse(s.TokenURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			errs = append(errs, errors.New("TRUELAYER_TOKEN_URL: want an absolute https URL"))
		case u.Scheme == "http" && !loopback(u.Hostname()):
			// The connections' tokens and the bearer secret cross it.
			errs = append(errs, fmt.Errorf("TRUELAYER_TOKEN_URL: %s is plain http: the connections' tokens and TRUELAYER_TOKEN_SECRET would cross the network in clear; use https (http only for a loopback host: 127.0.0.1, ::1, localhost)", u.Redacted()))
		}
	}
	return errors.Join(errs...)
}

// loopback: host is this machine (127.0.0.0/8, ::1, localhost).
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Describe implements aggregator.Settings.
func (s *Settings) Describe() map[string]string {
	return map[string]string{
		"TRUELAYER_CLIENT_ID":     "TrueLayer client id; with `TRUELAYER_CLIENT_SECRET`, enables TrueLayer (Data API v1)",
		"TRUELAYER_CLIENT_SECRET": "TrueLayer client secret",
		"TRUELAYER_AUTH_URL":      "TrueLayer auth server, for `/connect/token` (`https://auth.truelayer-sandbox.com` for the sandbox)",
		"TRUELAYER_API_URL":       "TrueLayer API host, for `/connections/extend` and `/data/v1/me` (`https://api.truelayer-sandbox.com` for the sandbox)",
		"TRUELAYER_REDIRECT_URI":  "the redirect URI registered in TrueLayer's console (default `RELINK_PUBLIC_URL` + `/r/return/truelayer`)",
		"TRUELAYER_TOKEN_URL":     "your app's endpoint for its TrueLayer tokens, https (http only on a loopback host): `GET ?connection_id=` answers them, `POST` takes new ones and reconfirmations (see TrueLayer below)",
		"TRUELAYER_TOKEN_SECRET":  "the bearer secret Relink sends to `TRUELAYER_TOKEN_URL`",
	}
}

// Registration is TrueLayer's entry in the provider list
// (activities/providers).
var Registration = aggregator.Registration{
	Name: Name,
	// Each read is a /me call against the app's own TrueLayer rate limit:
	// 5 a second leaves the app room.
	ReconcileRate: 5,
	NewSettings:   func() aggregator.Settings { return &Settings{} },
	NewProvider: func(s aggregator.Settings, env aggregator.Env) (aggregator.Provider, error) {
		t := s.(*Settings)
		now := env.Now
		if now == nil {
			now = time.Now
		}
		return &Provider{AuthURL: t.AuthURL, APIURL: t.APIURL, ClientID: t.ClientID, ClientSecret: t.ClientSecret,
			RedirectURI: RedirectURI(t, env.PublicURL), HTTP: env.HTTP, Now: now,
			Tokens: &HTTPTokens{URL: t.TokenURL, Secret: t.TokenSecret, HTTP: env.HTTP}}, nil
	},
	NewReceiver: func(aggregator.Settings, aggregator.Env) (aggregator.WebhookReceiver, error) {
		return WebhookReceiver{}, nil
	},
	Browser: Browser,
}

// RedirectURI is the redirect_uri Relink gives TrueLayer.
func RedirectURI(s *Settings, publicURL string) string {
	if s.RedirectURI != "" {
		return s.RedirectURI
	}
	return strings.TrimRight(publicURL, "/") + ReturnPath
}

// Browser: TrueLayer's sign-in is a redirect to the extend answer's
// user_input_link (TrueLayer's auth dialog, live and sandbox), back to the
// gateway's return route; the UK reconfirmation is a click on Relink's
// page.
var Browser = aggregator.Browser{
	Widgets:         []string{aggregator.WidgetRedirect, aggregator.WidgetReconfirm},
	RedirectOrigins: []string{"https://auth.truelayer.com", "https://auth.truelayer-sandbox.com"},
}
