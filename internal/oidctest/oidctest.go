// Package oidctest is an OpenID Connect provider for tests, run in process
// on an httptest server: the identity provider a relying party (the
// auditor's console) signs its users in with, without any outside service.
//
// It implements the authorization code flow only, with the checks a strict
// production provider makes, so that a relying party that passes its tests
// against it does the flow right:
//
//   - /.well-known/openid-configuration: the discovery document.
//   - /jwks: the provider's public key (RSA 2048, RS256, made per provider).
//   - /authorize: response_type=code, a registered client_id and
//     redirect_uri, scope with openid, state, nonce, and PKCE with
//     code_challenge_method=S256 (plain or missing PKCE is refused). It
//     serves a small accessible sign-in page ("Sign in as <sub>", and
//     "Cancel"), or with Options.AutoApprove redirects straight back.
//   - /token: grant_type=authorization_code only; the client authenticates
//     with client_secret_basic or client_secret_post (not both); a code is
//     single-use, short-lived (Options.CodeTTL), bound to its client and
//     redirect_uri, and its code_verifier must hash (S256) to its challenge.
//     It answers access_token, token_type, expires_in and id_token (iss, sub,
//     aud = the client id, exp, iat, auth_time, nonce, and the user's claims).
//   - /userinfo: the user's claims for a valid access token (Bearer).
//
// Refusals follow RFC 6749: an unknown client_id or redirect_uri is
// answered with an error page (400) and no redirect; the other refusals of
// /authorize redirect back with error and error_description (and state);
// /token answers a JSON error. Every refusal is recorded (Refusals) and
// logged, with its reason.
//
// A Provider is safe for concurrent use.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Selectors of the sign-in page's buttons, for browser tests.
const (
	SignInButton = "#oidctest-sign-in" // "Sign in as <sub>"
	CancelButton = "#oidctest-cancel"  // "Cancel": redirects back with error=access_denied
)

// Options configure a Provider.
type Options struct {
	// ClientID and ClientSecret are the one client registered (required).
	ClientID, ClientSecret string
	// RedirectURIs are the client's registered redirect URIs, compared
	// exactly. Empty: any absolute http or https URI without a fragment
	// is accepted (the token request must still repeat it). See also
	// Provider.AddRedirectURI.
	RedirectURIs []string
	// AutoApprove makes /authorize redirect back with a code at once,
	// signing the current user in without the sign-in page: for tests
	// without a browser.
	AutoApprove bool
	// CodeTTL is how long after it is issued a code can be exchanged
	// (default one minute).
	CodeTTL time.Duration
	// TokenTTL is the lifetime of the ID and access tokens (default ten
	// minutes).
	TokenTTL time.Duration
	// Now is the provider's clock (default time.Now).
	Now func() time.Time
}

// Stats counts what the provider did.
type Stats struct {
	SignInPages    int // sign-in pages served
	CodesIssued    int // codes sent back to the client
	CodesExchanged int // codes exchanged for tokens
	UserInfo       int // userinfo answers
}

// A Refusal is a request the provider refused.
type Refusal struct {
	Endpoint string // "/authorize", "/token" or "/userinfo"
	Error    string // the OAuth error code: "invalid_request", "invalid_grant", "invalid_client", ...
	Reason   string // what was wrong, for a person
}

// String formats the refusal as "endpoint: error: reason".
func (r Refusal) String() string { return r.Endpoint + ": " + r.Error + ": " + r.Reason }

// An Exchange is a code exchanged for tokens.
type Exchange struct {
	Sub        string // the user signed in
	ClientAuth string // "client_secret_basic" or "client_secret_post"
	Nonce      string // the nonce put in the ID token
}

// Provider is a running OpenID Connect provider. It stops when the test
// that made it ends.
type Provider struct {
	t      testing.TB
	opts   Options
	srv    *httptest.Server
	kid    string
	key    *rsa.PrivateKey
	signer jose.Signer

	mu           sync.Mutex
	user         *user
	redirectURIs []string
	pending      map[string]*authRequest // sign-in pages served and not yet answered
	codes        map[string]*grant
	tokens       map[string]*accessToken
	stats        Stats
	refusals     []Refusal
	exchanges    []Exchange
}

// user is who the next sign-in signs in.
type user struct {
	sub    string
	claims map[string]any
}

// authRequest is a checked authorization request.
type authRequest struct {
	redirectURI, state, nonce, challenge string
	user                                 *user
}

// grant is an issued authorization code.
type grant struct {
	authRequest
	issued time.Time
	used   bool
}

// accessToken is an issued access token.
type accessToken struct {
	user    *user
	expires time.Time
}

// New starts a provider for the one client of opts, with no user: call
// SetUser before a sign-in (until then /authorize refuses with
// access_denied). It fails the test if opts lack the client.
func New(t testing.TB, opts Options) *Provider {
	t.Helper()
	if opts.ClientID == "" || opts.ClientSecret == "" {
		t.Fatalf("oidctest: Options need ClientID and ClientSecret")
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = time.Minute
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("oidctest: key: %v", err)
	}
	p := &Provider{
		t:            t,
		opts:         opts,
		kid:          randomString(8),
		key:          key,
		redirectURIs: slices.Clone(opts.RedirectURIs),
		pending:      map[string]*authRequest{},
		codes:        map[string]*grant{},
		tokens:       map[string]*accessToken{},
	}
	p.signer, err = jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("oidctest: signer: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /authorize", p.decide)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("POST /userinfo", p.userinfo)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// Issuer returns the provider's issuer URL (http://127.0.0.1:PORT, no
// trailing slash): the URL to discover it from and the iss of its tokens.
func (p *Provider) Issuer() string { return p.srv.URL }

// SetUser sets who the next sign-ins sign in: the subject and the claims
// their ID token and userinfo carry besides the registered ones (for
// example {"accessledger_role": "auditor", "name": "A. Auditor"}). A
// sign-in page shows, and signs in, the user set when it was served. An
// empty sub unsets the user: sign-ins are then refused (access_denied).
// Claims named like a claim the provider sets (iss, sub, aud, exp, iat,
// auth_time, nonce, azp, at_hash) are a programming error: SetUser panics.
func (p *Provider) SetUser(sub string, claims map[string]any) {
	for _, name := range reservedClaims {
		if _, ok := claims[name]; ok {
			panic(fmt.Sprintf("oidctest: SetUser: the claim %q is set by the provider", name))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sub == "" {
		p.user = nil
		return
	}
	p.user = &user{sub: sub, claims: maps.Clone(claims)}
}

// AddRedirectURI registers one more redirect URI of the client (for a
// relying party whose address is known only after the provider started).
// Once one is registered, by Options or here, only registered URIs are
// accepted.
func (p *Provider) AddRedirectURI(uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirectURIs = append(p.redirectURIs, uri)
}

// Stats returns what the provider did so far.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Refusals returns the requests refused so far, in order.
func (p *Provider) Refusals() []Refusal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.refusals)
}

// Exchanges returns the codes exchanged for tokens so far, in order.
func (p *Provider) Exchanges() []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.exchanges)
}

// reservedClaims are the claims of the ID token that the provider sets.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash"}

// refuse records and logs a refusal. p.mu must be held.
func (p *Provider) refuse(endpoint, code, reason string) {
	r := Refusal{Endpoint: endpoint, Error: code, Reason: reason}
	p.refusals = append(p.refusals, r)
	p.t.Logf("oidctest: refused %s", r)
}

// randomString returns n random bytes in hex.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
