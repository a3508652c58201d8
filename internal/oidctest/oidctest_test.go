package oidctest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/accessledger/accessledger/internal/oidctest"
)

const (
	clientID     = "accessledger-console"
	clientSecret = "s3cret/with+form&chars" // Basic needs it form-encoded
	// redirectURL is never called: the tests read the redirect.
	redirectURL = "http://127.0.0.1:9/console/callback"
)

// relyingParty is a client of the provider built from the real OpenID
// Connect and OAuth 2.0 libraries.
type relyingParty struct {
	conf     oauth2.Config
	provider *oidc.Provider
}

func newRelyingParty(t *testing.T, p *oidctest.Provider, style oauth2.AuthStyle) *relyingParty {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer())
	require.NoError(t, err)
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = style
	return &relyingParty{
		provider: provider,
		conf: oauth2.Config{
			ClientID:     clientID,
			ClientSecret: clientSecret,
			Endpoint:     endpoint,
			RedirectURL:  redirectURL,
			Scopes:       []string{oidc.ScopeOpenID, "profile"},
		},
	}
}

// verify checks an ID token as a relying party must.
func (rp *relyingParty) verify(ctx context.Context, tok *oauth2.Token) (*oidc.IDToken, error) {
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return nil, errors.New("no id_token in the token answer")
	}
	return rp.provider.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, raw)
}

// follow requests an authorization URL and returns the answer without
// following the redirect.
func follow(t *testing.T, authURL string) *http.Response {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authURL)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// signIn goes through /authorize (AutoApprove) and returns the redirect
// back's query: code and state, or error.
func signIn(t *testing.T, authURL string) url.Values {
	t.Helper()
	resp := follow(t, authURL)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, redirectURL, (&url.URL{Scheme: loc.Scheme, Host: loc.Host, Path: loc.Path}).String(), "redirected to the client")
	return loc.Query()
}

var auditor = map[string]any{"accessledger_role": "auditor", "name": "A. Auditor"}

func TestTheCodeFlowWithTheRealClient(t *testing.T) {
	for _, tt := range []struct {
		style oauth2.AuthStyle
		auth  string
	}{
		{oauth2.AuthStyleInHeader, "client_secret_basic"},
		{oauth2.AuthStyleInParams, "client_secret_post"},
	} {
		t.Run(tt.auth, func(t *testing.T) {
			p := oidctest.New(t, oidctest.Options{ClientID: clientID, ClientSecret: clientSecret, AutoApprove: true})
			p.SetUser("auditor-1", auditor)
			rp := newRelyingParty(t, p, tt.style)
			ctx := t.Context()

			verifier := oauth2.GenerateVerifier()
			q := signIn(t, rp.conf.AuthCodeURL("state-1", oidc.Nonce("nonce-1"), oauth2.S256ChallengeOption(verifier)))
			require.Equal(t, "state-1", q.Get("state"))
			require.NotEmpty(t, q.Get("code"))

			tok, err := rp.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			require.NoError(t, err)
			require.Equal(t, "Bearer", tok.TokenType)
			idt, err := rp.verify(ctx, tok)
			require.NoError(t, err)
			require.Equal(t, p.Issuer(), idt.Issuer)
			require.Equal(t, []string{clientID}, idt.Audience)
			require.Equal(t, "auditor-1", idt.Subject)
			require.Equal(t, "nonce-1", idt.Nonce)
			require.WithinDuration(t, time.Now().Add(10*time.Minute), idt.Expiry, time.Minute)
			var claims struct {
				Role string `json:"accessledger_role"`
				Name string `json:"name"`
			}
			require.NoError(t, idt.Claims(&claims))
			require.Equal(t, "auditor", claims.Role)
			require.Equal(t, "A. Auditor", claims.Name)

			info, err := rp.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			require.NoError(t, err)
			require.Equal(t, "auditor-1", info.Subject)
			require.NoError(t, info.Claims(&claims))
			require.Equal(t, "auditor", claims.Role)

			require.Equal(t, oidctest.Stats{CodesIssued: 1, CodesExchanged: 1, UserInfo: 1}, p.Stats())
			require.Equal(t, []oidctest.Exchange{{Sub: "auditor-1", ClientAuth: tt.auth, Nonce: "nonce-1"}}, p.Exchanges())
			require.Empty(t, p.Refusals())
		})
	}
}

func TestTheTokenEndpointRefuses(t *testing.T) {
	other := oauth2.GenerateVerifier()
	for _, tt := range []struct {
		name string
		// exchange exchanges the code issued for verifier, as the case says.
		exchange   func(t *testing.T, rp *relyingParty, clock *atomic.Int64, code, verifier string) error
		wantError  string
		wantReason string
	}{
		{
			name: "a wrong verifier",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, code, _ string) error {
				_, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(other))
				return err
			},
			wantError: "invalid_grant", wantReason: "code_verifier does not hash (S256) to the code_challenge",
		},
		{
			name: "no verifier",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, code, _ string) error {
				_, err := rp.conf.Exchange(t.Context(), code)
				return err
			},
			wantError: "invalid_request", wantReason: "code_verifier is required",
		},
		{
			name: "a reused code",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, code, verifier string) error {
				_, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
				require.NoError(t, err)
				_, err = rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
				return err
			},
			wantError: "invalid_grant", wantReason: "the code was used already",
		},
		{
			name: "a code used up by a failed attempt",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, code, verifier string) error {
				_, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(other))
				require.Error(t, err)
				_, err = rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
				return err
			},
			wantError: "invalid_grant", wantReason: "the code was used already",
		},
		{
			name: "a wrong redirect_uri",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, code, verifier string) error {
				conf := rp.conf
				conf.RedirectURL = "http://127.0.0.1:9/elsewhere"
				_, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
				return err
			},
			wantError: "invalid_grant", wantReason: `redirect_uri "http://127.0.0.1:9/elsewhere" is not the one of the authorization request`,
		},
		{
			name: "a wrong client secret",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, code, verifier string) error {
				conf := rp.conf
				conf.ClientSecret = "guess"
				_, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
				return err
			},
			wantError: "invalid_client", wantReason: "wrong client_id or client_secret (client_secret_basic)",
		},
		{
			name: "an expired code",
			exchange: func(t *testing.T, rp *relyingParty, clock *atomic.Int64, code, verifier string) error {
				clock.Add(int64(61 * time.Second))
				_, err := rp.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
				return err
			},
			wantError: "invalid_grant", wantReason: "the code expired",
		},
		{
			name: "an unknown code",
			exchange: func(t *testing.T, rp *relyingParty, _ *atomic.Int64, _, verifier string) error {
				_, err := rp.conf.Exchange(t.Context(), "not-a-code", oauth2.VerifierOption(verifier))
				return err
			},
			wantError: "invalid_grant", wantReason: "unknown code",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var clock atomic.Int64 // an offset from the real time
			p := oidctest.New(t, oidctest.Options{
				ClientID: clientID, ClientSecret: clientSecret, AutoApprove: true,
				Now: func() time.Time { return time.Now().Add(time.Duration(clock.Load())) },
			})
			p.SetUser("auditor-1", auditor)
			rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
			verifier := oauth2.GenerateVerifier()
			q := signIn(t, rp.conf.AuthCodeURL("state", oidc.Nonce("nonce"), oauth2.S256ChallengeOption(verifier)))
			require.NotEmpty(t, q.Get("code"))

			err := tt.exchange(t, rp, &clock, q.Get("code"), verifier)
			var re *oauth2.RetrieveError
			require.ErrorAs(t, err, &re)
			require.Equal(t, tt.wantError, re.ErrorCode)
			require.Contains(t, re.ErrorDescription, tt.wantReason)

			refusals := p.Refusals()
			require.NotEmpty(t, refusals)
			require.Equal(t, oidctest.Refusal{Endpoint: "/token", Error: tt.wantError, Reason: re.ErrorDescription}, refusals[len(refusals)-1])
		})
	}
}

func TestTheClientAuthenticatesOnce(t *testing.T) {
	p := oidctest.New(t, oidctest.Options{ClientID: clientID, ClientSecret: clientSecret})
	for _, tt := range []struct {
		name       string
		basic      bool
		form       url.Values
		wantStatus int
		wantReason string
	}{
		{"twice", true, url.Values{"client_secret": {clientSecret}}, http.StatusBadRequest, "authenticated twice"},
		{"never", false, url.Values{"client_id": {clientID}}, http.StatusUnauthorized, "no client authentication"},
		{"another grant type", true, url.Values{"grant_type": {"client_credentials"}}, http.StatusBadRequest, "grant_type must be authorization_code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+"/token", strings.NewReader(tt.form.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.basic {
				req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, tt.wantStatus, resp.StatusCode)
			refusals := p.Refusals()
			require.Contains(t, refusals[len(refusals)-1].Reason, tt.wantReason)
		})
	}
}

func TestTheAuthorizationEndpointRefuses(t *testing.T) {
	verifier := oauth2.GenerateVerifier()
	for _, tt := range []struct {
		name string
		// authURL makes the authorization URL from the client's config.
		authURL    func(conf oauth2.Config) string
		noUser     bool
		wantError  string // "" for the error page, with no redirect
		wantReason string
	}{
		{
			name:      "missing PKCE",
			authURL:   func(c oauth2.Config) string { return c.AuthCodeURL("state", oidc.Nonce("n")) },
			wantError: "invalid_request", wantReason: "PKCE is required",
		},
		{
			name: "plain PKCE",
			authURL: func(c oauth2.Config) string {
				return c.AuthCodeURL("state", oidc.Nonce("n"),
					oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain"))
			},
			wantError: "invalid_request", wantReason: "code_challenge_method=plain is refused",
		},
		{
			name: "a challenge with no method",
			authURL: func(c oauth2.Config) string {
				return c.AuthCodeURL("state", oidc.Nonce("n"), oauth2.SetAuthURLParam("code_challenge", oauth2.S256ChallengeFromVerifier(verifier)))
			},
			wantError: "invalid_request", wantReason: "PKCE is required",
		},
		{
			name: "no nonce",
			authURL: func(c oauth2.Config) string {
				return c.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier))
			},
			wantError: "invalid_request", wantReason: "nonce is required",
		},
		{
			name: "no state",
			authURL: func(c oauth2.Config) string {
				return c.AuthCodeURL("", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier))
			},
			wantError: "invalid_request", wantReason: "state is required",
		},
		{
			name: "the implicit flow",
			authURL: func(c oauth2.Config) string {
				return c.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("response_type", "id_token token"))
			},
			wantError: "unsupported_response_type", wantReason: "response_type must be code",
		},
		{
			name: "no openid scope",
			authURL: func(c oauth2.Config) string {
				c.Scopes = []string{"profile"}
				return c.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier))
			},
			wantError: "invalid_scope", wantReason: "scope must include openid",
		},
		{
			name: "no user",
			authURL: func(c oauth2.Config) string {
				return c.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier))
			},
			noUser:    true,
			wantError: "access_denied", wantReason: "no user to sign in",
		},
		{
			name: "an unknown client",
			authURL: func(c oauth2.Config) string {
				c.ClientID = "someone-else"
				return c.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier))
			},
			wantReason: `unknown client_id "someone-else"`,
		},
		{
			name: "an unregistered redirect_uri",
			authURL: func(c oauth2.Config) string {
				c.RedirectURL = "http://127.0.0.1:9/phishing"
				return c.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier))
			},
			wantReason: `redirect_uri "http://127.0.0.1:9/phishing" is not registered`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := oidctest.New(t, oidctest.Options{
				ClientID: clientID, ClientSecret: clientSecret, AutoApprove: true, RedirectURIs: []string{redirectURL},
			})
			if !tt.noUser {
				p.SetUser("auditor-1", auditor)
			}
			rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
			authURL := tt.authURL(rp.conf)

			if tt.wantError == "" {
				resp := follow(t, authURL)
				require.Equal(t, http.StatusBadRequest, resp.StatusCode, "an error page, not a redirect")
				require.Empty(t, resp.Header.Get("Location"))
			} else {
				q := signIn(t, authURL)
				require.Equal(t, tt.wantError, q.Get("error"))
				require.Contains(t, q.Get("error_description"), tt.wantReason)
				require.Empty(t, q.Get("code"))
				if tt.name != "no state" {
					require.Equal(t, "state", q.Get("state"), "the state comes back with the error")
				}
			}
			require.Zero(t, p.Stats().CodesIssued)
			refusals := p.Refusals()
			require.Len(t, refusals, 1)
			require.Equal(t, "/authorize", refusals[0].Endpoint)
			require.Contains(t, refusals[0].Reason, tt.wantReason)
		})
	}
}

func TestTheProviderSetsItsOwnClaims(t *testing.T) {
	p := oidctest.New(t, oidctest.Options{ClientID: clientID, ClientSecret: clientSecret})
	require.PanicsWithValue(t, `oidctest: SetUser: the claim "aud" is set by the provider`, func() {
		p.SetUser("auditor-1", map[string]any{"aud": "another-client"})
	})
}

func TestASignInPageIsAnsweredOnce(t *testing.T) {
	p := oidctest.New(t, oidctest.Options{ClientID: clientID, ClientSecret: clientSecret})
	p.SetUser("auditor-1", auditor)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)

	resp := follow(t, rp.conf.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), "Sign in as auditor-1")
	m := regexp.MustCompile(`name="request" value="([0-9a-f]+)"`).FindSubmatch(body)
	require.NotNil(t, m, "the page carries its request")
	require.Equal(t, 1, p.Stats().SignInPages)

	answer := func() *http.Response {
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.PostForm(p.Issuer()+"/authorize", url.Values{"request": {string(m[1])}, "decision": {"approve"}})
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	first := answer()
	require.Equal(t, http.StatusSeeOther, first.StatusCode)
	require.Contains(t, first.Header.Get("Location"), "code=")
	again := answer()
	require.Equal(t, http.StatusBadRequest, again.StatusCode)
	require.Equal(t, []oidctest.Refusal{{Endpoint: "/authorize", Error: "invalid_request", Reason: "the sign-in page was answered already, or never served"}}, p.Refusals())
	require.Equal(t, 1, p.Stats().CodesIssued)
}
