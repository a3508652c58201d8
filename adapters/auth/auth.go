// Package auth mints and verifies the bearer tokens of the HTTP API: JWTs
// signed with HS256 (HMAC-SHA256) under one shared secret, carrying the
// caller's id in "sub" and role in "role" (see /v1 conventions in the API
// design).
//
// Verification is strict: only HS256 is accepted (never "none", RS*, ES*,
// HS384 or HS512, whatever the header says), "exp" is required, and the
// role must be one a caller may hold (worker, manager, portals_team,
// auditor, service, dpo; never the engine's internal system role). The
// subject must be an actor id (domain.CheckActorID), the header and payload
// must not repeat a name, "exp", "iat" and "nbf" must be JSON numbers, and
// a token may not live longer than its role's MaxTTL. Every
// refusal wraps ErrUnauthenticated and says why in words that are safe to
// show the caller: they never echo the token, the secret or the claims'
// values.
//
// The secret is at least MinSecretBytes random bytes. LoadOrCreateSecret
// keeps it in the data directory of the embedded default (file
// SecretFileName, hex, mode 0600); LoadSecretFile reads an operator's file
// under the same checks.
package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/accessledger/accessledger/domain"
)

// ErrUnauthenticated is wrapped by every error of Verify. The HTTP layer
// answers it with 401 "unauthenticated"; the error's text is safe to send
// back.
var ErrUnauthenticated = errors.New("unauthenticated")

// Limits.
const (
	// MinSecretBytes is the shortest secret Mint, NewVerifier and the
	// secret loaders accept: the size of the HS256 hash.
	MinSecretBytes = 32
	// MaxSubjectBytes bounds the "sub" claim (the actor id). It is the bound
	// domain.Actor.Validate puts on actor ids, so every verified actor can
	// act.
	MaxSubjectBytes = domain.MaxActorIDBytes
	// MaxTokenBytes bounds the token Verify parses; longer strings are
	// refused before any decoding.
	MaxTokenBytes = 8 << 10
	// Leeway is the clock skew Verify tolerates on "exp" (and "nbf"): a
	// token is accepted until Leeway after it expired.
	Leeway = 30 * time.Second
)

// The longest lifetimes of a token (its "exp" minus its "iat", and its "exp"
// minus the time it is presented): the policy of MaxTTL.
const (
	// MaxHumanTTL is the longest a person's token lives (worker, manager,
	// portals_team, auditor, dpo): a day's work, with room for a shift
	// that crosses midnight. A person signs in again each day.
	MaxHumanTTL = 24 * time.Hour
	// MaxServiceTTL is the longest the portal backend's token lives (role
	// service, a machine credential kept in a secret store): 90 days, the
	// usual period of a credential's rotation.
	MaxServiceTTL = 90 * 24 * time.Hour
)

// MaxTTL is the longest lifetime of a token of role: MaxServiceTTL for the
// service, MaxHumanTTL for every other role. Mint refuses a longer TTL and
// Verify a token that lives longer, wherever it was minted.
func MaxTTL(role domain.Role) time.Duration {
	if role == domain.RoleService {
		return MaxServiceTTL
	}
	return MaxHumanTTL
}

// Algorithm is the only signing algorithm minted and accepted.
const Algorithm = "HS256"

// Claims describes a token to mint.
type Claims struct {
	// Subject is the caller's id ("sub"): an actor id (CheckSubject).
	Subject string
	// Role is the caller's role ("role"); domain.ParseRole must accept it.
	Role domain.Role
	// TTL is how long the token is valid from now ("exp" = iat + TTL); at
	// least one second (the claims have whole seconds), at most the role's
	// MaxTTL.
	TTL time.Duration
	// Issuer and Audience set "iss" and "aud" when not empty.
	Issuer, Audience string
	// ID sets "jti" when not empty: a token's unique id (the console's
	// one-time sign-in links carry one).
	ID string
}

// tokenClaims is the JSON payload.
type tokenClaims struct {
	Role string `json:"role,omitempty"`
	jwt.RegisteredClaims
}

// Mint returns a signed HS256 token for c, issued at now: claims sub, role,
// iat, exp and, when set, iss, aud and jti. It refuses a secret shorter than
// MinSecretBytes, a role domain.ParseRole does not know (including the
// system role), a subject CheckSubject refuses and a TTL under one second
// or over the role's MaxTTL.
func Mint(secret []byte, c Claims, now time.Time) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("auth: mint: secret is %d bytes, need at least %d", len(secret), MinSecretBytes)
	}
	if _, err := domain.ParseRole(string(c.Role)); err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	if err := CheckSubject(c.Subject); err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	if c.TTL < time.Second {
		return "", fmt.Errorf("auth: mint: ttl %s: must be at least 1s", c.TTL)
	}
	if max := MaxTTL(c.Role); c.TTL > max {
		return "", fmt.Errorf("auth: mint: ttl %s: a %s token lives at most %s", c.TTL, c.Role, max)
	}
	if now.IsZero() {
		return "", errors.New("auth: mint: no issue time")
	}
	tc := tokenClaims{
		Role: string(c.Role),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Subject,
			ID:        c.ID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(c.TTL)),
		},
	}
	if c.Audience != "" {
		tc.Audience = jwt.ClaimStrings{c.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return s, nil
}

// Verifier checks bearer tokens. It is safe for concurrent use.
//
// A portal backend sends the same token with many requests, so the
// Verifier remembers tokens it has verified (at most cacheEntries), with
// their validity window: a remembered token is answered without decoding
// and HMAC again, and only while "exp" (and "nbf") still hold. Only tokens
// that passed every check are remembered.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
	clock  func() time.Time

	mu    sync.RWMutex
	cache map[string]verified
}

// verified is a remembered token: its actor and validity window (leeway
// included).
type verified struct {
	actor     domain.Actor
	notBefore time.Time // zero: none
	expires   time.Time
}

// cacheEntries bounds the remembered tokens; when full, the cache starts
// afresh (tokens are short-lived, so old entries are mostly expired).
const cacheEntries = 10_000

// NewVerifier returns a Verifier of tokens signed with secret (at least
// MinSecretBytes; it is copied). When issuer is not empty, tokens must
// carry exactly that "iss"; when audience is not empty, their "aud" must
// include it; when empty, the claim is not checked. clock gives the time
// "exp" is checked against (nil: time.Now).
func NewVerifier(secret []byte, issuer, audience string, clock func() time.Time) (*Verifier, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("auth: verifier: secret is %d bytes, need at least %d", len(secret), MinSecretBytes)
	}
	if clock == nil {
		clock = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{Algorithm}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(clock),
		jwt.WithStrictDecoding(),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	return &Verifier{secret: append([]byte(nil), secret...), parser: jwt.NewParser(opts...), clock: clock,
		cache: map[string]verified{}}, nil
}

// Verify checks token (without the "Bearer " prefix) and returns the actor
// it names. It accepts only a token that
//
//   - is at most MaxTokenBytes of compact JWS: only base64url characters
//     and dots (so no two spellings of one token both pass: base64
//     decoders skip line breaks), with header alg HS256 and no "crit"
//     header,
//   - carries a valid HS256 signature under the Verifier's secret,
//   - has a header and a payload that are JSON objects without a repeated
//     name (encoding/json would keep the last of two "role"s),
//   - has "exp", not more than Leeway in the past (and, if it has "nbf",
//     one not more than Leeway in the future); "exp", "iat" and "nbf" are
//     JSON numbers, not strings that hold one,
//   - lives at most its role's MaxTTL: "exp" minus "iat" (when it has
//     "iat"), and "exp" minus now (less Leeway),
//   - has the configured "iss" and "aud", if any,
//   - has a "role" a caller may hold: worker, manager, portals_team,
//     auditor, service or dpo (not system),
//   - has a "sub" that is an actor id (CheckSubject).
//
// Every refusal wraps ErrUnauthenticated, with a short reason such as
// "token expired" or "bad signature".
func (v *Verifier) Verify(token string) (domain.Actor, error) {
	if token == "" {
		return domain.Actor{}, refuse("no token")
	}
	if len(token) > MaxTokenBytes {
		return domain.Actor{}, refuse("token too long")
	}
	if !compactJWS(token) {
		return domain.Actor{}, refuse("malformed token")
	}
	if a, ok := v.remembered(token); ok {
		return a, nil
	}
	var tc tokenClaims
	t, err := v.parser.ParseWithClaims(token, &tc, v.key)
	if err != nil {
		return domain.Actor{}, refuse(reason(t, err))
	}
	if _, ok := t.Header["crit"]; ok {
		return domain.Actor{}, refuse("unsupported critical header")
	}
	if err := checkRawJSON(token); err != nil {
		return domain.Actor{}, refuse(err.Error())
	}
	role, err := domain.ParseRole(tc.Role)
	if err != nil {
		if tc.Role == "" {
			return domain.Actor{}, refuse("missing role claim")
		}
		return domain.Actor{}, refuse("unknown role")
	}
	if err := CheckSubject(tc.Subject); err != nil {
		return domain.Actor{}, refuse(err.Error())
	}
	if err := v.checkLifetime(role, tc.RegisteredClaims); err != nil {
		return domain.Actor{}, refuse(err.Error())
	}
	actor := domain.Actor{ID: tc.Subject, Role: role}
	v.remember(token, actor, tc.RegisteredClaims)
	return actor, nil
}

// remembered returns the actor of a token verified before, if it is still
// within its validity window.
func (v *Verifier) remembered(token string) (domain.Actor, bool) {
	v.mu.RLock()
	e, ok := v.cache[token]
	v.mu.RUnlock()
	if !ok {
		return domain.Actor{}, false
	}
	now := v.clock()
	if !now.Before(e.expires) || (!e.notBefore.IsZero() && now.Before(e.notBefore)) {
		return domain.Actor{}, false // the parser decides, and says why
	}
	return e.actor, true
}

// remember keeps a verified token with its validity window.
func (v *Verifier) remember(token string, actor domain.Actor, rc jwt.RegisteredClaims) {
	if rc.ExpiresAt == nil {
		return // the parser requires exp; never remember a token without one
	}
	e := verified{actor: actor, expires: rc.ExpiresAt.Add(Leeway)}
	if rc.NotBefore != nil {
		e.notBefore = rc.NotBefore.Add(-Leeway)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= cacheEntries {
		clear(v.cache)
	}
	v.cache[token] = e
}

// key gives the parser the secret, for HS256 only (the parser has already
// refused other algorithms; this is the second lock).
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, errors.New("signing algorithm not allowed")
	}
	return v.secret, nil
}

// compactJWS reports whether s holds only the characters of a compact JWS:
// the base64url alphabet and dots.
func compactJWS(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func refuse(reason string) error { return fmt.Errorf("%w: %s", ErrUnauthenticated, reason) }

// reason turns a parser error into a short, safe explanation. The checks run
// in order of what the caller should fix first.
func reason(t *jwt.Token, err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case t != nil && t.Method == nil:
		return "unsupported signing algorithm (want HS256)"
	case t != nil && t.Method.Alg() != Algorithm:
		return "signing algorithm " + safeAlg(t.Method.Alg()) + " not allowed (want HS256)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The required claims: exp always, iss and aud when configured.
		msg := err.Error()
		for _, c := range []string{"exp", "iss", "aud"} {
			if strings.Contains(msg, c+" claim is required") {
				return "missing " + c + " claim"
			}
		}
		return "missing required claim"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	}
	return "invalid token"
}

// safeAlg names a registered algorithm (a library constant, never caller
// text beyond the registry's names).
func safeAlg(alg string) string {
	switch alg {
	case "none", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
		"ES256", "ES384", "ES512", "EdDSA":
		return alg
	}
	return "(other)"
}

// CheckSubject reports whether s is a subject Mint and Verify accept: an
// actor id (domain.CheckActorID: 1 to MaxSubjectBytes bytes of ASCII
// letters, digits and . _ - @ | : + / = '), so that every verified caller
// can act and no audit line shows an id that reads otherwise than it is.
// The error says why, without quoting s.
func CheckSubject(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("subject missing or blank")
	case len(s) > MaxSubjectBytes:
		return fmt.Errorf("subject longer than %d bytes", MaxSubjectBytes)
	}
	if err := domain.CheckActorID(s); err != nil {
		var fe *domain.FieldError
		if errors.As(err, &fe) {
			return errors.New("subject " + fe.Problem)
		}
		return errors.New("subject is not an actor id")
	}
	return nil
}

// checkLifetime refuses a token that lives longer than its role's MaxTTL:
// from "iat" to "exp", and from now to "exp" (so that leaving "iat" out, or
// setting it late, gains nothing).
func (v *Verifier) checkLifetime(role domain.Role, rc jwt.RegisteredClaims) error {
	if rc.ExpiresAt == nil {
		return errors.New("missing exp claim")
	}
	max := MaxTTL(role)
	if rc.IssuedAt != nil && rc.ExpiresAt.Sub(rc.IssuedAt.Time) > max {
		return fmt.Errorf("token lifetime (exp - iat) longer than %s, the most a %s token may live", max, role)
	}
	if rc.ExpiresAt.Sub(v.clock()) > max+Leeway {
		return fmt.Errorf("token expires more than %s from now, the most a %s token may live", max, role)
	}
	return nil
}

// maxJSONDepth bounds the nesting checkRawJSON walks.
const maxJSONDepth = 16

// checkRawJSON checks the JSON of a token's header and payload as sent,
// which the JWT library decodes with encoding/json (that keeps the last of
// two members with one name, and reads a string holding a number as a
// number): each is one object, with no name repeated at any depth, and
// the payload's "exp", "iat" and "nbf", when present, are JSON numbers.
func checkRawJSON(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("malformed token")
	}
	for i, what := range []string{"header", "payload"} {
		raw, err := base64.RawURLEncoding.Strict().DecodeString(parts[i])
		if err != nil {
			return errors.New("malformed token")
		}
		if err := walkJSON(raw, i == 1); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// numericClaims must be JSON numbers (RFC 7519's NumericDate).
var numericClaims = map[string]bool{"exp": true, "iat": true, "nbf": true}

// knownNames are the names a refusal may quote (never a value, never a name
// the caller made up).
var knownNames = map[string]bool{"alg": true, "typ": true, "kid": true, "crit": true, "cty": true,
	"sub": true, "role": true, "exp": true, "iat": true, "nbf": true, "iss": true, "aud": true, "jti": true}

func nameOf(k string) string {
	if knownNames[k] {
		return fmt.Sprintf("%q", k)
	}
	return "(a name)"
}

func walkJSON(raw []byte, claims bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	if err := walkMembers(dec, claims, 1); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}

// walkMembers reads an object's members after its '{' through its '}';
// top is true for the members of a payload's top-level object (the
// claims).
func walkMembers(dec *json.Decoder, top bool, depth int) error {
	var seen []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("malformed JSON")
		}
		k, ok := tok.(string)
		if !ok {
			return errors.New("malformed JSON")
		}
		// encoding/json matches names to fields without regard to case
		// (Unicode folding: "ROLE" and "role" fill one field), so those
		// are the same name too.
		for _, s := range seen {
			if strings.EqualFold(s, k) {
				if top {
					return fmt.Errorf("duplicate claim %s", nameOf(strings.ToLower(k)))
				}
				return fmt.Errorf("duplicate name %s", nameOf(strings.ToLower(k)))
			}
		}
		seen = append(seen, k)
		if top {
			for known := range knownNames {
				if k != known && strings.EqualFold(k, known) {
					return fmt.Errorf("claim %q spelled in another case", known)
				}
			}
		}
		if top && numericClaims[k] {
			v, err := dec.Token()
			if err != nil {
				return errors.New("malformed JSON")
			}
			if _, ok := v.(json.Number); !ok {
				return fmt.Errorf("claim %q is not a JSON number", k)
			}
			continue
		}
		if err := walkValue(dec, depth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return errors.New("malformed JSON")
	}
	return nil
}

func walkValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return errors.New("malformed JSON")
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return errors.New("nested too deeply")
	}
	switch d {
	case '{':
		return walkMembers(dec, false, depth+1)
	case '[':
		for dec.More() {
			if err := walkValue(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errors.New("malformed JSON")
		}
		return nil
	}
	return errors.New("malformed JSON")
}
