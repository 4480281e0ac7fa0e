package plaid

import (
	"errors"
	"net/url"
	"time"

	"github.com/relink-dev/relink/activities/aggregator"
)

// Settings are Plaid's settings; PLAID_CLIENT_ID and PLAID_SECRET enable
// it.
type Settings struct {
	ClientID       string   `env:"PLAID_CLIENT_ID"`
	Secret         string   `env:"PLAID_SECRET"`
	APIURL         string   `env:"PLAID_API_URL, default=https://production.plaid.com"`
	ClientName     string   `env:"PLAID_CLIENT_NAME"`
	Language       string   `env:"PLAID_LANGUAGE, default=en"`
	CountryCodes   []string `env:"PLAID_COUNTRY_CODES, default=US"`
	LinkWebhookURL string   `env:"PLAID_LINK_WEBHOOK_URL"`
	RedirectURI    string   `env:"PLAID_REDIRECT_URI"`
	// AccessTokens maps Item ids to access tokens ("item:token,…"), for
	// development; production asks the app at AccessTokenURL.
	AccessTokens      map[string]string `env:"PLAID_ACCESS_TOKENS"`
	AccessTokenURL    string            `env:"PLAID_ACCESS_TOKEN_URL"`
	AccessTokenSecret string            `env:"PLAID_ACCESS_TOKEN_SECRET"`
	ProactiveRepairs  bool              `env:"PLAID_PROACTIVE_REPAIRS, default=true"`
	// NewAccountsRepairs: NEW_ACCOUNTS_AVAILABLE starts a proactive repair,
	// and proactive sessions enable account selection.
	NewAccountsRepairs bool          `env:"PLAID_NEW_ACCOUNTS_REPAIRS, default=false"`
	DedupeWindow       time.Duration `env:"PLAID_WEBHOOK_DEDUPE_WINDOW, default=10m"`
}

// Enabled implements aggregator.Settings.
func (s *Settings) Enabled() bool { return s.ClientID != "" || s.Secret != "" }

// Validate implements aggregator.Settings.
func (s *Settings) Validate() error {
	if !s.Enabled() {
		return nil
	}
	var errs []error
	if s.ClientID == "" || s.Secret == "" {
		errs = append(errs, errors.New("PLAID_CLIENT_ID and PLAID_SECRET go together"))
	}
	if s.ClientName == "" {
		errs = append(errs, errors.New("PLAID_CLIENT_NAME is required with Plaid (Link shows it to the user)"))
	}
	if len(s.AccessTokens) == 0 && s.AccessTokenURL == "" {
		errs = append(errs, errors.New("Plaid needs PLAID_ACCESS_TOKEN_URL (or PLAID_ACCESS_TOKENS for development) to find Items' access tokens"))
	}
	if s.AccessTokenURL != "" && s.AccessTokenSecret == "" {
		errs = append(errs, errors.New("PLAID_ACCESS_TOKEN_URL needs PLAID_ACCESS_TOKEN_SECRET: access tokens are never asked for without authentication"))
	}
	if s.RedirectURI != "" {
		// Plaid appends ?oauth_state_id=… and matches the URI exactly
		// against those registered in its dashboard.
		if u, err := url.Parse(s.RedirectURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, errors.New("PLAID_REDIRECT_URI must be an absolute http(s) URL with no query or fragment"))
		}
	}
	if s.DedupeWindow < time.Second {
		errs = append(errs, errors.New("PLAID_WEBHOOK_DEDUPE_WINDOW must be at least 1s"))
	}
	return errors.Join(errs...)
}

// Describe implements aggregator.Settings.
func (s *Settings) Describe() map[string]string {
	return map[string]string{
		"PLAID_CLIENT_ID":             "Plaid client id; with `PLAID_SECRET`, enables Plaid",
		"PLAID_SECRET":                "Plaid secret",
		"PLAID_API_URL":               "Plaid host (`https://sandbox.plaid.com` for the sandbox)",
		"PLAID_CLIENT_NAME":           "your app's name, shown in Link (required with Plaid)",
		"PLAID_LANGUAGE":              "Link language",
		"PLAID_COUNTRY_CODES":         "Link country codes, comma-separated",
		"PLAID_LINK_WEBHOOK_URL":      "passed to `/link/token/create` as `webhook`",
		"PLAID_REDIRECT_URI":          "passed to `/link/token/create` as `redirect_uri` for OAuth institutions: `RELINK_PUBLIC_URL` + `/r/oauth` for the hosted page, or your page with the button; register it in Plaid's dashboard",
		"PLAID_ACCESS_TOKEN_URL":      "your app's endpoint that returns an Item's access token (see Plaid below)",
		"PLAID_ACCESS_TOKEN_SECRET":   "bearer token Relink sends to `PLAID_ACCESS_TOKEN_URL`",
		"PLAID_ACCESS_TOKENS":         "for development instead: `item_id:access_token,…`",
		"PLAID_PROACTIVE_REPAIRS":     "start proactive repairs on `PENDING_EXPIRATION` and `PENDING_DISCONNECT`",
		"PLAID_NEW_ACCOUNTS_REPAIRS":  "start a proactive repair on `NEW_ACCOUNTS_AVAILABLE`; proactive Link sessions then enable account selection (`update.account_selection_enabled`)",
		"PLAID_WEBHOOK_DEDUPE_WINDOW": "Plaid sends no event id: the same Item and code within this window of the last delivery is a retry",
	}
}

// Registration is Plaid's entry in the provider list
// (activities/providers).
var Registration = aggregator.Registration{
	Name: Name,
	// Plaid's /item/get allows 5,000 a minute per client (15 per Item): 50 a second is 3,000 a minute.
	ReconcileRate: 50,
	NewSettings:   func() aggregator.Settings { return &Settings{} },
	NewProvider: func(s aggregator.Settings, env aggregator.Env) (aggregator.Provider, error) {
		pl := s.(*Settings)
		var tokens AccessTokens = StaticAccessTokens(pl.AccessTokens)
		if pl.AccessTokenURL != "" {
			tokens = &HTTPAccessTokens{URL: pl.AccessTokenURL, Secret: pl.AccessTokenSecret, HTTP: env.HTTP}
		}
		return &Provider{APIURL: pl.APIURL, ClientID: pl.ClientID, Secret: pl.Secret,
			ClientName: pl.ClientName, Language: pl.Language, CountryCodes: pl.CountryCodes,
			LinkWebhookURL: pl.LinkWebhookURL, RedirectURI: pl.RedirectURI, AccountSelection: pl.NewAccountsRepairs,
			Tokens: tokens, HTTP: env.HTTP}, nil
	},
	NewReceiver: func(s aggregator.Settings, env aggregator.Env) (aggregator.WebhookReceiver, error) {
		pl := s.(*Settings)
		now := env.Now
		if now == nil {
			now = time.Now
		}
		return &WebhookReceiver{
			Keys:   &VerificationKeys{APIURL: pl.APIURL, ClientID: pl.ClientID, Secret: pl.Secret, HTTP: env.HTTP, Now: now},
			MaxAge: env.WebhookTolerance, DedupeWindow: pl.DedupeWindow, Now: now, Proactive: pl.ProactiveRepairs,
			NewAccounts: pl.NewAccountsRepairs,
		}, nil
	},
	Browser: Browser,
}

// Browser is the hosted page's record of Plaid Link (plaid.com/docs/link/web,
// CSP: its script and frames from cdn.plaid.com, calls to the API hosts).
var Browser = aggregator.Browser{
	Widgets:        []string{aggregator.WidgetPlaidLink},
	FrameOrigins:   []string{"https://cdn.plaid.com"},
	ConnectOrigins: []string{"https://production.plaid.com", "https://sandbox.plaid.com"},
}
