package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/accessledger/accessledger/domain"
)

// SessionCookie names the session's cookie.
const SessionCookie = "accessledger_console"

// session is one signed-in person.
type session struct {
	actor    domain.Actor
	csrf     string
	via      string // "oidc" or "link"
	created  time.Time
	lastSeen time.Time
}

// sessions keeps the live sessions by the SHA-256 of their id.
type sessions struct {
	clock func() time.Time
	mu    sync.Mutex
	byKey map[[32]byte]*session
}

func newSessions(clock func() time.Time) *sessions {
	if clock == nil {
		clock = time.Now
	}
	return &sessions{clock: clock, byKey: map[[32]byte]*session{}}
}

// randomToken returns 32 random bytes, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

func keyOf(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// start creates a session for actor and returns its id.
func (s *sessions) start(actor domain.Actor, via string) (string, *session) {
	id := randomToken()
	now := s.clock()
	ss := &session{actor: actor, csrf: randomToken(), via: via, created: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byKey[keyOf(id)] = ss
	return id, ss
}

// sessionPolicy is what the console applies to its sessions (R16).
type sessionPolicy struct {
	idle, warn time.Duration
}

// Why a session is not live.
const (
	endNone    = ""
	endIdle    = "idle"
	endMaxAge  = "max_age"
	endUnknown = "unknown"
)

// lookup returns the live session of id and, when touch, records the
// activity. A session idle for longer than p.idle or older than maxAge
// ends here; why says why none is returned.
func (s *sessions) lookup(id string, p sessionPolicy, maxAge time.Duration, touch bool) (ss *session, why string) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := keyOf(id)
	ss, ok := s.byKey[k]
	switch {
	case !ok:
		return nil, endUnknown
	case p.idle > 0 && now.Sub(ss.lastSeen) >= p.idle:
		delete(s.byKey, k)
		return nil, endIdle
	case now.Sub(ss.created) >= maxAge:
		delete(s.byKey, k)
		return nil, endMaxAge
	}
	if touch {
		ss.lastSeen = now
	}
	cp := *ss
	return &cp, endNone
}

// end removes the session of id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byKey, keyOf(id))
}

// sweep removes the sessions that can no longer be used.
func (s *sessions) sweep(p sessionPolicy, maxAge time.Duration) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ss := range s.byKey {
		if (p.idle > 0 && now.Sub(ss.lastSeen) >= p.idle) || now.Sub(ss.created) >= maxAge {
			delete(s.byKey, k)
		}
	}
}

// validCSRF compares a form's token with the session's in constant time.
func validCSRF(ss *session, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(ss.csrf), []byte(got)) == 1
}

// setSessionCookie sets the session cookie (HttpOnly, SameSite=Strict,
// Secure over TLS), or clears it when id is empty.
func (c *Console) setSessionCookie(w http.ResponseWriter, r *http.Request, id string) {
	ck := &http.Cookie{Name: SessionCookie, Value: id, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.secure(r)}
	if id == "" {
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

// policyTTL is how long the console keeps the session policy it read.
const policyTTL = 5 * time.Second

// sessionPolicy returns the policy in force (R16, R25), read at most every
// policyTTL; until it can be read, the defaults.
func (c *Console) sessionPolicy(r *http.Request) sessionPolicy {
	now := c.cfg.Clock()
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	if !c.policyAt.IsZero() && now.Sub(c.policyAt) < policyTTL && now.After(c.policyAt) {
		return c.policy
	}
	p, err := c.cfg.Queries.Policy(r.Context(), c.systemCaller(r), noWait, time.Time{})
	if err != nil {
		if c.policyAt.IsZero() {
			d := domain.DefaultPolicy
			return sessionPolicy{idle: d.SessionIdleTimeout, warn: d.SessionWarningAfter}
		}
		return c.policy
	}
	c.policy = sessionPolicy{idle: time.Duration(p.SessionIdleTimeout) * time.Second, warn: time.Duration(p.SessionWarningAfter) * time.Second}
	c.policyAt = now
	return c.policy
}
