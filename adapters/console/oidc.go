package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

// OIDCConfig signs people in through the council's OpenID Connect
// provider: the authorization code flow with PKCE (S256), a state bound to
// the browser by a cookie, a nonce checked in the ID token.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer + "/.well-known/openid-configuration").
	Issuer string
	// ClientID and ClientSecret are the console's registration with the
	// provider (the secret may be empty for a public client).
	ClientID, ClientSecret string
	// RoleClaim names the ID token's claim that holds the person's role
	// (a string, or an array of strings of which the first allowed one is
	// taken); its value must be auditor, manager or dpo.
	RoleClaim string
	// ActorClaim names the claim whose value is the person's actor id in
	// the security log (default "sub"); it must be an actor id
	// (auth.CheckSubject).
	ActorClaim string
	// Scopes are asked besides "openid" (default "profile").
	Scopes []string
	// HTTPClient reaches the provider (default http.DefaultClient).
	HTTPClient *http.Client
}

// DefaultRoleClaim is the role claim unless configured.
const DefaultRoleClaim = "accessledger_role"

// loginCookie binds a sign-in's state to the browser that started it. It
// is SameSite=Lax: the provider's redirect back is a cross-site
// navigation, on which a Strict cookie is not sent.
const loginCookie = "accessledger_console_login"

// loginTTL is how long a started sign-in may take.
const loginTTL = 10 * time.Minute

// maxPending bounds the sign-ins sent to the provider and not yet back:
// anyone may start one, so their number must not grow without end.
const maxPending = 10_000

// discoveryBackoff is how long after a failed discovery the next sign-in
// fails at once, rather than waiting for the provider again.
const discoveryBackoff = 5 * time.Second

// errBusy: too many sign-ins are under way.
var errBusy = errors.New("oidc: too many sign-ins under way")

// pendingLogin is a sign-in sent to the provider.
type pendingLogin struct {
	verifier, nonce string
	next            string
	started         time.Time
}

// oidcLogin runs the code flow.
type oidcLogin struct {
	cfg   OIDCConfig
	clock func() time.Time

	mu      sync.Mutex
	pending map[string]pendingLogin

	// dmu serialises discovery, apart from mu: a provider that does not
	// answer holds up no sign-in's state.
	dmu      sync.Mutex
	provider *oidc.Provider // discovered on first use
	failedAt time.Time      // the last failed discovery
}

func newOIDCLogin(cfg OIDCConfig, clock func() time.Time) (*oidcLogin, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("oidc: Issuer and ClientID are required")
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = DefaultRoleClaim
	}
	if cfg.ActorClaim == "" {
		cfg.ActorClaim = "sub"
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"profile"}
	}
	if clock == nil {
		clock = time.Now
	}
	return &oidcLogin{cfg: cfg, clock: clock, pending: map[string]pendingLogin{}}, nil
}

func (o *oidcLogin) context(ctx context.Context) context.Context {
	if o.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, o.cfg.HTTPClient)
	}
	return ctx
}

// discover returns the provider, reading its discovery document once: the
// engine starts even while the provider is down.
func (o *oidcLogin) discover(ctx context.Context) (*oidc.Provider, error) {
	o.dmu.Lock()
	defer o.dmu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	if !o.failedAt.IsZero() && o.clock().Sub(o.failedAt) < discoveryBackoff {
		return nil, fmt.Errorf("oidc: discovery of %s failed moments ago", o.cfg.Issuer)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(o.context(ctx), o.cfg.Issuer)
	if err != nil {
		o.failedAt = o.clock()
		return nil, fmt.Errorf("oidc: discovery of %s: %w", o.cfg.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *oidcLogin) oauth2(p *oidc.Provider, redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: redirect, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}
}

// start begins a sign-in that ends at the console path next: it returns
// the provider's authorization URL and the state to bind to the browser.
// It fails with errBusy while maxPending sign-ins are under way.
func (o *oidcLogin) start(ctx context.Context, redirect, next string) (authURL, state string, err error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", "", err
	}
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	now := o.clock()
	o.mu.Lock()
	if len(o.pending) >= maxPending {
		for s, pl := range o.pending {
			if now.Sub(pl.started) > loginTTL {
				delete(o.pending, s)
			}
		}
	}
	if len(o.pending) >= maxPending {
		o.mu.Unlock()
		return "", "", errBusy
	}
	o.pending[state] = pendingLogin{verifier: verifier, nonce: nonce, next: next, started: now}
	o.mu.Unlock()
	return o.oauth2(p, redirect).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), state, nil
}

// errSignIn is a refused sign-in; its text (why) is safe to show and to
// record; cause, if any, is for the engine's log only.
type errSignIn struct {
	why   string
	cause error
}

func (e *errSignIn) Error() string {
	if e.cause != nil {
		return e.why + ": " + e.cause.Error()
	}
	return e.why
}

// oauthCode is an OAuth error code a provider answered (RFC 6749, OpenID
// Connect), or "an error" for anything else: a provider's answer is
// recorded, and must not carry what a caller chose to put in it.
func oauthCode(code string) string {
	switch code {
	case "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type", "invalid_scope",
		"server_error", "temporarily_unavailable", "invalid_client", "invalid_grant", "unsupported_grant_type",
		"interaction_required", "login_required", "account_selection_required", "consent_required",
		"invalid_request_uri", "invalid_request_object", "request_not_supported", "request_uri_not_supported",
		"registration_not_supported":
		return code
	}
	return "an error"
}

// errNotThisBrowser: the provider's answer is for no sign-in this browser
// started (no state, another browser's, expired or used). Nothing is
// recorded for it: anyone can send one.
var errNotThisBrowser = errors.New("this sign-in was not started in this browser, or has expired or was used; start again")

// take returns and removes the pending sign-in of state, which must be the
// state bound to the browser (cookieState).
func (o *oidcLogin) take(state, cookieState string) (pendingLogin, error) {
	if state == "" || cookieState == "" || cookieState != state {
		return pendingLogin{}, errNotThisBrowser
	}
	o.mu.Lock()
	pl, ok := o.pending[state]
	delete(o.pending, state)
	o.mu.Unlock()
	if !ok || o.clock().Sub(pl.started) > loginTTL {
		return pendingLogin{}, errNotThisBrowser
	}
	return pl, nil
}

// finish completes the sign-in pl from the provider's code: the code is
// exchanged with the PKCE verifier, the ID token verified (issuer,
// audience, expiry, signature, nonce), and the actor read from its claims.
// A refusal is an *errSignIn; a provider that cannot be reached is another
// error (whose text is for the log only).
func (o *oidcLogin) finish(ctx context.Context, redirect string, pl pendingLogin, code string) (domain.Actor, error) {
	if code == "" {
		return domain.Actor{}, &errSignIn{why: "the provider's answer has no code"}
	}
	p, err := o.discover(ctx)
	if err != nil {
		return domain.Actor{}, err
	}
	ctx = o.context(ctx)
	tok, err := o.oauth2(p, redirect).Exchange(ctx, code, oauth2.VerifierOption(pl.verifier))
	var refused *oauth2.RetrieveError
	switch {
	case errors.As(err, &refused):
		return domain.Actor{}, &errSignIn{why: "the provider refused the code (" + oauthCode(refused.ErrorCode) + ")"}
	case err != nil:
		return domain.Actor{}, fmt.Errorf("oidc: code exchange: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return domain.Actor{}, &errSignIn{why: "the provider sent no ID token"}
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.clock}).Verify(ctx, raw)
	if err != nil {
		return domain.Actor{}, &errSignIn{why: "the ID token is not valid", cause: err}
	}
	if idt.Nonce != pl.nonce {
		return domain.Actor{}, &errSignIn{why: "the ID token's nonce does not match"}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return domain.Actor{}, &errSignIn{why: "the ID token's claims cannot be read"}
	}
	return o.actor(claims)
}

// actor reads the actor id and role from an ID token's claims.
func (o *oidcLogin) actor(claims map[string]any) (domain.Actor, error) {
	id, _ := claims[o.cfg.ActorClaim].(string)
	if err := auth.CheckSubject(id); err != nil {
		return domain.Actor{}, &errSignIn{why: fmt.Sprintf("the claim %q is not a usable actor id", o.cfg.ActorClaim)}
	}
	var values []string
	switch v := claims[o.cfg.RoleClaim].(type) {
	case string:
		values = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				values = append(values, s)
			}
		}
	}
	var claimed domain.Role
	for _, v := range values {
		r, err := domain.ParseRole(v)
		if err == nil && Allowed(r) {
			return domain.Actor{ID: id, Role: r}, nil
		}
		if err == nil && claimed == "" {
			claimed = r
		}
	}
	// Refused: the security log names who tried, with the role they hold.
	return domain.Actor{ID: id, Role: claimed}, &errSignIn{why: fmt.Sprintf("the claim %q names no role that may use the console (auditor, manager, dpo)", o.cfg.RoleClaim)}
}
