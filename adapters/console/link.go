package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

// The one-time sign-in links of `accessd console-link`.
const (
	// DefaultLinkTTL is how long a sign-in link may be redeemed.
	DefaultLinkTTL = 15 * time.Minute
	// MaxLinkTTL is the longest a link may live.
	MaxLinkTTL = time.Hour
	// linkAudience is the "aud" of a link's token.
	linkAudience = "accessledger-console-link"
	// linkKeyLabel derives the links' key from the engine's secret.
	linkKeyLabel = "accessledger console sign-in link v1"
)

// ErrBadLink is wrapped by every refusal of a sign-in link.
var ErrBadLink = errors.New("console: the sign-in link is not valid")

// errLinkUsed: a valid link used again (redeem names its actor).
var errLinkUsed = fmt.Errorf("%w: it was used already", ErrBadLink)

// linkKey derives the links' signing key from the engine's secret, so that
// a link is never a bearer token of the API (which is signed with the
// secret itself) and an API token is never a link.
func linkKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(linkKeyLabel))
	return m.Sum(nil)
}

// Link is a minted sign-in link.
type Link struct {
	URL     string
	Expires time.Time
}

// MintLink returns a one-time sign-in link to the console at baseURL (an
// http(s) origin) for sub with role (one of AllowedRoles), valid for ttl
// (at most MaxLinkTTL) from now, signed with a key derived from secret
// (the engine's signing secret).
func MintLink(secret []byte, baseURL string, role domain.Role, sub string, ttl time.Duration, now time.Time) (Link, error) {
	if !Allowed(role) {
		return Link{}, fmt.Errorf("console: role %q may not sign in to the console (only auditor, manager, dpo)", role)
	}
	if ttl <= 0 || ttl > MaxLinkTTL {
		return Link{}, fmt.Errorf("console: link ttl %s: must be positive and at most %s", ttl, MaxLinkTTL)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Link{}, fmt.Errorf("console: base url %q is not an http(s) origin", baseURL)
	}
	if len(secret) < auth.MinSecretBytes {
		return Link{}, fmt.Errorf("console: secret is %d bytes, need at least %d", len(secret), auth.MinSecretBytes)
	}
	tok, err := auth.Mint(linkKey(secret), auth.Claims{Subject: sub, Role: role, TTL: ttl, Audience: linkAudience,
		ID: randomToken()}, now)
	if err != nil {
		return Link{}, fmt.Errorf("console: %w", err)
	}
	return Link{URL: strings.TrimSuffix(baseURL, "/") + Prefix + "/link?token=" + url.QueryEscape(tok),
		Expires: now.Add(ttl).UTC().Truncate(time.Second)}, nil
}

// linkVerifier checks links and remembers the ones used, until they
// expire.
type linkVerifier struct {
	v     *auth.Verifier
	clock func() time.Time
	mu    sync.Mutex
	used  map[[32]byte]time.Time
}

func newLinkVerifier(secret []byte, clock func() time.Time) (*linkVerifier, error) {
	if clock == nil {
		clock = time.Now
	}
	if len(secret) < auth.MinSecretBytes {
		return nil, fmt.Errorf("LinkSecret is %d bytes, need at least %d", len(secret), auth.MinSecretBytes)
	}
	v, err := auth.NewVerifier(linkKey(secret), "", linkAudience, clock)
	if err != nil {
		return nil, err
	}
	return &linkVerifier{v: v, clock: clock, used: map[[32]byte]time.Time{}}, nil
}

// check returns the actor a link's token names, without using it up.
func (l *linkVerifier) check(token string) (domain.Actor, error) {
	a, err := l.v.Verify(token)
	if err != nil {
		return domain.Actor{}, fmt.Errorf("%w: %w", ErrBadLink, err)
	}
	if !Allowed(a.Role) {
		return domain.Actor{}, fmt.Errorf("%w: role %s may not sign in", ErrBadLink, a.Role)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.used[sha256.Sum256([]byte(token))]; ok {
		return a, errLinkUsed
	}
	return a, nil
}

// redeem checks a link's token and uses it up: a second redeem fails
// with errLinkUsed, and the actor it names.
func (l *linkVerifier) redeem(token string) (domain.Actor, error) {
	a, err := l.check(token)
	if err != nil {
		return a, err
	}
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sha256.Sum256([]byte(token))
	if _, ok := l.used[k]; ok {
		return a, errLinkUsed
	}
	for h, until := range l.used {
		if now.After(until) {
			delete(l.used, h)
		}
	}
	// A link verifies until its exp plus the leeway; remember it as long.
	l.used[k] = now.Add(MaxLinkTTL + auth.Leeway)
	return a, nil
}
