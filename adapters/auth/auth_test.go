package auth_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	other  = []byte("fedcba9876543210fedcba9876543210")
	t0     = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

func verifier(t *testing.T, issuer, audience string, now time.Time) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(secret, issuer, audience, clockAt(now))
	require.NoError(t, err)
	return v
}

// sign signs arbitrary claims with method and key, bypassing Mint's checks.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func claims(mods ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "w-1", "role": "worker", "iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()}
	for _, m := range mods {
		m(c)
	}
	return c
}

func set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func del(k string) func(jwt.MapClaims)        { return func(c jwt.MapClaims) { delete(c, k) } }

func b64(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// signRaw signs header and payload exactly as given (JSON text that
// encoding/json would never produce: repeated names, numbers in strings)
// with HS256 under key.
func signRaw(key []byte, header, payload string) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

// payload is the JSON text of claims with the members given, in order.
func payload(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

func num(name string, t time.Time) string { return fmt.Sprintf("%q:%d", name, t.Unix()) }

func mint(t *testing.T, c auth.Claims) string {
	t.Helper()
	s, err := auth.Mint(secret, c, t0)
	require.NoError(t, err)
	return s
}

func TestVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	good := mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour})
	parts := strings.Split(good, ".")
	require.Len(t, parts, 3)

	// tampered: the payload of another token with the signature of good.
	otherPayload := strings.Split(mint(t, auth.Claims{Subject: "m-1", Role: domain.RoleManager, TTL: time.Hour}), ".")[1]

	tests := []struct {
		name     string
		token    string
		issuer   string
		audience string
		now      time.Time
		want     domain.Actor
		reason   string // expected substring of the refusal; "" means accepted
	}{
		{name: "valid", token: good, want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "every caller role", token: mint(t, auth.Claims{Subject: "svc", Role: domain.RoleService, TTL: time.Hour}),
			want: domain.Actor{ID: "svc", Role: domain.RoleService}},
		{name: "portals team", token: mint(t, auth.Claims{Subject: "p", Role: domain.RolePortalsTeam, TTL: time.Hour}),
			want: domain.Actor{ID: "p", Role: domain.RolePortalsTeam}},
		{name: "unicode subject", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", "jö-ß"))),
			reason: "subject contains U+00F6"},
		{name: "subject at the bound", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", strings.Repeat("s", auth.MaxSubjectBytes)))),
			want: domain.Actor{ID: strings.Repeat("s", auth.MaxSubjectBytes), Role: domain.RoleWorker}},
		{name: "just before expiry", token: good, now: t0.Add(time.Hour - time.Second), want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "expired within leeway", token: good, now: t0.Add(time.Hour + auth.Leeway - time.Second),
			want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "expired", token: good, now: t0.Add(time.Hour + auth.Leeway), reason: "token expired"},
		{name: "long expired", token: good, now: t0.Add(48 * time.Hour), reason: "token expired"},
		{name: "issued in the future is fine", token: good, now: t0.Add(-10 * time.Minute),
			want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "not before in the future", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("nbf", t0.Add(time.Minute).Unix()))),
			reason: "not valid yet"},
		{name: "wrong key", token: sign(t, jwt.SigningMethodHS256, other, claims()), reason: "bad signature"},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()),
			reason: "signing algorithm none not allowed"},
		{name: "alg none with a signature", token: b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "." + parts[2],
			reason: "signing algorithm none not allowed"},
		{name: "alg None spelled otherwise", token: b64(map[string]string{"alg": "None"}) + "." + parts[1] + ".",
			reason: "unsupported signing algorithm"},
		{name: "no alg", token: b64(map[string]string{"typ": "JWT"}) + "." + parts[1] + "." + parts[2],
			reason: "unsupported signing algorithm"},
		{name: "HS384 with the right secret", token: sign(t, jwt.SigningMethodHS384, secret, claims()),
			reason: "signing algorithm HS384 not allowed"},
		{name: "HS512 with the right secret", token: sign(t, jwt.SigningMethodHS512, secret, claims()),
			reason: "signing algorithm HS512 not allowed"},
		{name: "RS256", token: sign(t, jwt.SigningMethodRS256, rsaKey, claims()), reason: "signing algorithm RS256 not allowed"},
		{name: "HS256 header on an HS384 signature", token: parts[0] + "." + parts[1] + "." +
			strings.Split(sign(t, jwt.SigningMethodHS384, secret, claims()), ".")[2], reason: "bad signature"},
		{name: "missing exp", token: sign(t, jwt.SigningMethodHS256, secret, claims(del("exp"))), reason: "missing exp claim"},
		{name: "exp of the wrong type", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("exp", "tomorrow"))),
			reason: "malformed token"},
		{name: "unknown role", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("role", "admin"))), reason: "unknown role"},
		{name: "role in another case", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("role", "Worker"))), reason: "unknown role"},
		{name: "system role", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("role", "system"))), reason: "unknown role"},
		{name: "missing role", token: sign(t, jwt.SigningMethodHS256, secret, claims(del("role"))), reason: "missing role claim"},
		{name: "role not a string", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("role", []string{"worker"}))),
			reason: "malformed token"},
		{name: "empty sub", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", ""))), reason: "subject missing"},
		{name: "missing sub", token: sign(t, jwt.SigningMethodHS256, secret, claims(del("sub"))), reason: "subject missing"},
		{name: "blank sub", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", "  "))), reason: "subject missing"},
		{name: "sub too long", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", strings.Repeat("s", auth.MaxSubjectBytes+1)))),
			reason: "subject longer than 200 bytes"},
		{name: "sub with a control character", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", "w-1\nrole=manager"))),
			reason: "subject contains a control character"},
		{name: "sub with NUL", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", "w\x00"))),
			reason: "subject contains a control character"},
		{name: "issuer required when configured", token: good, issuer: "accessledger", reason: "missing iss claim"},
		{name: "issuer must match", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Issuer: "evil"}),
			issuer: "accessledger", reason: "wrong issuer"},
		{name: "issuer matches", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Issuer: "accessledger"}),
			issuer: "accessledger", want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "issuer ignored when not configured", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Issuer: "anyone"}),
			want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "audience required when configured", token: good, audience: "api", reason: "missing aud claim"},
		{name: "audience must match", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Audience: "other"}),
			audience: "api", reason: "wrong audience"},
		{name: "audience matches", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Audience: "api"}),
			audience: "api", want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "audience as a plain string", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("aud", "api"))),
			audience: "api", want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "audience among several", token: sign(t, jwt.SigningMethodHS256, secret, claims(set("aud", []string{"x", "api"}))),
			audience: "api", want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "audience ignored when not configured", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Audience: "x"}),
			want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "both configured and present", token: mint(t, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour, Issuer: "i", Audience: "a"}),
			issuer: "i", audience: "a", want: domain.Actor{ID: "w-1", Role: domain.RoleWorker}},
		{name: "tampered payload", token: parts[0] + "." + otherPayload + "." + parts[2], reason: "bad signature"},
		{name: "payload edited to manager", token: parts[0] + "." + b64(claims(set("role", "manager"))) + "." + parts[2], reason: "bad signature"},
		{name: "signature removed", token: parts[0] + "." + parts[1] + ".", reason: "bad signature"},
		{name: "signature truncated", token: parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4], reason: "unauthenticated"},
		{name: "signature with padding", token: good + "=", reason: "malformed token"},
		{name: "empty", token: "", reason: "no token"},
		{name: "garbage", token: "not a token", reason: "malformed token"},
		{name: "two parts", token: parts[0] + "." + parts[1], reason: "malformed token"},
		{name: "four parts", token: good + ".x", reason: "malformed token"},
		{name: "dots only", token: "..", reason: "malformed token"},
		{name: "header not JSON", token: "bm90IGpzb24." + parts[1] + "." + parts[2], reason: "malformed token"},
		{name: "bearer prefix left in", token: "Bearer " + good, reason: "malformed token"},
		{name: "newline in the signature", token: parts[0] + "." + parts[1] + "." + parts[2][:4] + "\n" + parts[2][4:], reason: "malformed token"},
		{name: "space in the header", token: " " + good, reason: "malformed token"},
		{name: "too long", token: strings.Repeat("a", auth.MaxTokenBytes+1), reason: "token too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			v := verifier(t, tc.issuer, tc.audience, now)
			got, err := v.Verify(tc.token)
			if tc.reason == "" {
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
				require.NoError(t, got.Validate(), "a verified actor is a valid domain actor")
				return
			}
			require.ErrorIs(t, err, auth.ErrUnauthenticated)
			require.ErrorContains(t, err, tc.reason)
			require.Equal(t, domain.Actor{}, got)
			require.NotContains(t, err.Error(), string(secret))
		})
	}
}

func TestCritHeaderIsRefused(t *testing.T) {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims())
	tok.Header["crit"] = []string{"exp"}
	s, err := tok.SignedString(secret)
	require.NoError(t, err)
	_, err = verifier(t, "", "", t0).Verify(s)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
	require.ErrorContains(t, err, "critical header")
}

func TestMint(t *testing.T) {
	tok := mint(t, auth.Claims{Subject: "m-7", Role: domain.RoleManager, TTL: 90 * time.Minute, Issuer: "i", Audience: "a"})
	var got map[string]any
	_, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	require.NoError(t, err)
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(payload, &got))
	require.Equal(t, map[string]any{
		"sub": "m-7", "role": "manager", "iss": "i", "aud": []any{"a"},
		"iat": float64(t0.Unix()), "exp": float64(t0.Add(90 * time.Minute).Unix()),
	}, got)
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"alg":"HS256","typ":"JWT"}`, string(header))

	// Without issuer and audience, the claims are absent.
	tok = mint(t, auth.Claims{Subject: "a", Role: domain.RoleAuditor, TTL: time.Hour})
	payload, err = base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	require.NoError(t, err)
	got = nil
	require.NoError(t, json.Unmarshal(payload, &got))
	require.NotContains(t, got, "iss")
	require.NotContains(t, got, "aud")
}

func TestMintRefuses(t *testing.T) {
	ok := auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour}
	tests := []struct {
		name   string
		secret []byte
		mod    func(*auth.Claims)
		want   string
	}{
		{"short secret", secret[:31], func(*auth.Claims) {}, "need at least 32"},
		{"no secret", nil, func(*auth.Claims) {}, "need at least 32"},
		{"unknown role", secret, func(c *auth.Claims) { c.Role = "admin" }, "unknown role"},
		{"system role", secret, func(c *auth.Claims) { c.Role = domain.RoleSystem }, "unknown role"},
		{"no role", secret, func(c *auth.Claims) { c.Role = "" }, "unknown role"},
		{"empty subject", secret, func(c *auth.Claims) { c.Subject = "" }, "subject missing"},
		{"subject too long", secret, func(c *auth.Claims) { c.Subject = strings.Repeat("x", auth.MaxSubjectBytes+1) }, "longer than 200"},
		{"subject with control", secret, func(c *auth.Claims) { c.Subject = "a\tb" }, "control character"},
		{"subject not UTF-8", secret, func(c *auth.Claims) { c.Subject = "a\xffb" }, "UTF-8"},
		{"zero ttl", secret, func(c *auth.Claims) { c.TTL = 0 }, "ttl"},
		{"negative ttl", secret, func(c *auth.Claims) { c.TTL = -time.Hour }, "ttl"},
		{"sub-second ttl", secret, func(c *auth.Claims) { c.TTL = 500 * time.Millisecond }, "ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			tok, err := auth.Mint(tc.secret, c, t0)
			require.ErrorContains(t, err, tc.want)
			require.Empty(t, tok)
		})
	}
}

func TestNewVerifierRefusesShortSecret(t *testing.T) {
	_, err := auth.NewVerifier(secret[:31], "", "", nil)
	require.ErrorContains(t, err, "need at least 32")
	_, err = auth.NewVerifier(nil, "", "", nil)
	require.Error(t, err)
}

func TestVerifierCopiesSecretAndDefaultsClock(t *testing.T) {
	key := append([]byte(nil), secret...)
	v, err := auth.NewVerifier(key, "", "", nil)
	require.NoError(t, err)
	key[0] ^= 0xff // the caller reusing its buffer must not change the verifier
	tok, err := auth.Mint(secret, auth.Claims{Subject: "w", Role: domain.RoleWorker, TTL: time.Minute}, time.Now())
	require.NoError(t, err)
	actor, err := v.Verify(tok)
	require.NoError(t, err)
	require.Equal(t, domain.Actor{ID: "w", Role: domain.RoleWorker}, actor)

	// The real clock: a token minted long ago has expired.
	old, err := auth.Mint(secret, auth.Claims{Subject: "w", Role: domain.RoleWorker, TTL: time.Minute}, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	_, err = v.Verify(old)
	require.ErrorContains(t, err, "token expired")
}

func TestVerifyRefusalsAreDistinctFromOtherErrors(t *testing.T) {
	_, err := verifier(t, "", "", t0).Verify("x.y.z")
	require.True(t, errors.Is(err, auth.ErrUnauthenticated))
	require.False(t, errors.Is(err, jwt.ErrTokenMalformed), "library errors are not leaked through the chain")
}

func FuzzVerify(f *testing.F) {
	good, err := auth.Mint(secret, auth.Claims{Subject: "w-1", Role: domain.RoleWorker, TTL: time.Hour}, t0)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add("")
	f.Add("..")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(b64(map[string]string{"alg": "none"}) + "." + parts[1] + ".")
	f.Add(parts[0] + "." + b64(map[string]any{"sub": "x", "role": "system", "exp": 1e300}) + "." + parts[2])
	f.Add(parts[0] + "." + b64(map[string]any{"exp": -1e300, "nbf": "x", "aud": 5}) + "." + parts[2])
	// Correctly signed, and still refused: a repeated claim, a number in a
	// string, a subject that is not an actor id, a lifetime over the cap.
	sub, role, iat, exp := `"sub":"w-1"`, `"role":"worker"`, num("iat", t0), num("exp", t0.Add(time.Hour))
	f.Add(signRaw(secret, hs256, payload(sub, role, iat, exp, `"role":"manager"`)))
	f.Add(signRaw(secret, hs256, payload(sub, role, `"ROLE":"manager"`, iat, exp)))
	f.Add(signRaw(secret, hs256, payload(sub, `"Role":"manager"`, iat, exp)))
	f.Add(signRaw(secret, hs256, payload(sub, role, iat, fmt.Sprintf(`"exp":"%d"`, t0.Add(time.Hour).Unix()))))
	f.Add(signRaw(secret, `{"alg":"none","alg":"HS256"}`, payload(sub, role, iat, exp)))
	f.Add(signRaw(secret, hs256, payload(`"sub":"w-1\u202e"`, role, iat, exp)))
	f.Add(signRaw(secret, hs256, payload(`"sub":"w\u200b-1"`, role, iat, exp)))
	f.Add(signRaw(secret, hs256, payload(sub, role, iat, num("exp", t0.Add(876000*time.Hour)))))
	f.Add(signRaw(secret, hs256, payload(sub, role, num("exp", t0.Add(25*time.Hour)))))
	f.Add(signRaw(secret, hs256, payload(sub, role, iat, exp, `"x":{"a":[{"b":1,"b":2}]}`)))
	v, err := auth.NewVerifier(secret, "", "", clockAt(t0))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		actor, err := v.Verify(token)
		if token == good {
			if err != nil {
				t.Fatalf("the minted token was refused: %v", err)
			}
			return
		}
		// Anything else is a forgery: the fuzzer cannot produce an HMAC
		// under the secret except by replaying good's signature on good's
		// exact header and payload, which is good itself (base64 aliases
		// are refused by strict decoding).
		if err == nil {
			t.Fatalf("accepted %q as %+v", token, actor)
		}
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("refusal does not wrap ErrUnauthenticated: %v", err)
		}
		if actor != (domain.Actor{}) {
			t.Fatalf("refusal returned an actor %+v", actor)
		}
	})
}

// TestVerifyRemembersOnlyWhileValid: a token verified once is answered
// from memory, but only inside its validity window; a refused token is
// never remembered.
func TestVerifyRemembersOnlyWhileValid(t *testing.T) {
	now := t0
	v, err := auth.NewVerifier(secret, "", "", func() time.Time { return now })
	require.NoError(t, err)
	tok, err := auth.Mint(secret, auth.Claims{Subject: "svc", Role: domain.RoleService, TTL: time.Minute}, t0)
	require.NoError(t, err)
	future := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "w", "role": "worker",
		"nbf": t0.Add(time.Hour).Unix(), "exp": t0.Add(2 * time.Hour).Unix()})

	tests := []struct {
		name  string
		at    time.Time
		token string
		ok    bool
		why   string
	}{
		{"first use", t0, tok, true, ""},
		{"again, from memory", t0.Add(30 * time.Second), tok, true, ""},
		{"within the leeway after exp", t0.Add(time.Minute + auth.Leeway - time.Second), tok, true, ""},
		{"after exp and leeway", t0.Add(time.Minute + auth.Leeway + time.Second), tok, false, "expired"},
		{"not yet valid", t0, future, false, "not valid yet"},
		{"valid now", t0.Add(time.Hour), future, true, ""},
		{"remembered, but the clock went back before nbf", t0, future, false, "not valid yet"},
		{"a tampered copy of a remembered token", t0, tok[:len(tok)-2] + "AA", false, "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = tt.at
			a, err := v.Verify(tt.token)
			if tt.ok {
				require.NoError(t, err)
				require.NotEmpty(t, a.ID)
				return
			}
			require.ErrorIs(t, err, auth.ErrUnauthenticated)
			require.Contains(t, err.Error(), tt.why)
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	v, err := auth.NewVerifier(secret, "", "", nil)
	require.NoError(b, err)
	tok, err := auth.Mint(secret, auth.Claims{Subject: "svc", Role: domain.RoleService, TTL: time.Hour}, time.Now())
	require.NoError(b, err)
	b.Run("cache=warm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cache=cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cold, _ := auth.NewVerifier(secret, "", "", nil)
			if _, err := cold.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestVerifyRefusesAmbiguousClaims: the JWT library decodes the payload
// with encoding/json, which keeps the last of two members with one name
// (matched without regard to case) and reads a string holding a number as
// a number. Such tokens are refused, even correctly signed.
func TestVerifyRefusesAmbiguousClaims(t *testing.T) {
	sub, role, iat, exp := `"sub":"w-1"`, `"role":"worker"`, num("iat", t0), num("exp", t0.Add(time.Hour))
	tests := []struct {
		name    string
		header  string
		payload string
		reason  string // "" means accepted
	}{
		{"plain", hs256, payload(sub, role, iat, exp), ""},
		{"a float exp", hs256, payload(sub, role, iat, fmt.Sprintf(`"exp":%d.5`, t0.Add(time.Hour).Unix())), ""},
		{"role twice, the last one wins in encoding/json", hs256, payload(sub, role, iat, exp, `"role":"manager"`), `duplicate claim "role"`},
		{"role twice, the same value", hs256, payload(sub, role, role, iat, exp), `duplicate claim "role"`},
		{"role and ROLE", hs256, payload(sub, role, `"ROLE":"manager"`, iat, exp), `duplicate claim "role"`},
		{"Role alone", hs256, payload(sub, `"Role":"manager"`, iat, exp), `claim "role" spelled in another case`},
		{"role spelled with an escape", hs256, payload(sub, role, `"ro\u006ce":"manager"`, iat, exp), `duplicate claim "role"`},
		{"sub twice", hs256, payload(sub, role, iat, exp, `"sub":"m-1"`), `duplicate claim "sub"`},
		{"exp twice", hs256, payload(sub, role, iat, num("exp", t0.Add(-time.Hour)), exp), `duplicate claim "exp"`},
		{"a private claim twice", hs256, payload(sub, role, iat, exp, `"x-team":"a"`, `"x-team":"b"`), "duplicate claim (a name)"},
		{"a name twice in a nested object", hs256, payload(sub, role, iat, exp, `"ctx":{"a":1,"a":2}`), "duplicate name"},
		{"alg twice in the header", `{"alg":"none","alg":"HS256"}`, payload(sub, role, iat, exp), `header: duplicate name "alg"`},
		{"exp as a string", hs256, payload(sub, role, iat, fmt.Sprintf(`"exp":"%d"`, t0.Add(time.Hour).Unix())), `claim "exp" is not a JSON number`},
		{"iat as a string", hs256, payload(sub, role, fmt.Sprintf(`"iat":"%d"`, t0.Unix()), exp), `claim "iat" is not a JSON number`},
		{"nbf as a string", hs256, payload(sub, role, iat, exp, fmt.Sprintf(`"nbf":"%d"`, t0.Unix())), `claim "nbf" is not a JSON number`},
		{"iat null", hs256, payload(sub, role, `"iat":null`, exp), `claim "iat" is not a JSON number`},
		{"iat as a boolean", hs256, payload(sub, role, `"iat":true`, exp), "malformed token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := verifier(t, "", "", t0).Verify(signRaw(secret, tc.header, tc.payload))
			if tc.reason == "" {
				require.NoError(t, err)
				require.Equal(t, domain.Actor{ID: "w-1", Role: domain.RoleWorker}, got)
				return
			}
			require.ErrorIs(t, err, auth.ErrUnauthenticated)
			require.ErrorContains(t, err, tc.reason)
			require.NotContains(t, err.Error(), "manager", "a refusal never quotes a claim's value")
			require.Equal(t, domain.Actor{}, got)
		})
	}
}

// TestSubjectIsAnActorID: "sub" is checked against the one actor-id
// format of domain.CheckActorID, on mint and on verify: what identity
// providers put there passes; spaces, control, invisible and
// bidirectional formatting characters and anything beyond ASCII do not
// (they would reach the audit trail verbatim).
func TestSubjectIsAnActorID(t *testing.T) {
	tests := []struct {
		name, sub, reason string
	}{
		{"Auth0", "auth0|5f7c8ec7c33c6c004bbafe82", ""},
		{"a UUID (Azure AD object id)", "3f2504e0-4f89-41d3-9a0c-0305e82c3301", ""},
		{"an Azure AD pairwise subject", "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", ""},
		{"an email", "ann.smith+portal@norfolk.gov.uk", ""},
		{"an email with an apostrophe", "o'brien@example.org", ""},
		{"a URI", "https://idp.example.org/users/42", ""},
		{"right-to-left override", "w-1\u202e", "bidirectional formatting character (U+202E)"},
		{"first strong isolate", "\u2068w-1", "U+2068"},
		{"zero-width space", "w\u200b-1", "U+200B"},
		{"byte order mark", "\ufeffw-1", "U+FEFF"},
		{"a space", "worker ann", "subject contains a space"},
		{"no-break space", "worker\u00a0ann", "U+00A0"},
		{"non-ASCII letter", "jö-ß", "U+00F6"},
		{"Cyrillic look-alike", "w\u0430rker", "U+0430"},
		{"an emoji", "w-1\U0001F600", "U+1F600"},
		{"a double quote", `w"1`, "U+0022"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verified, verr := verifier(t, "", "", t0).Verify(sign(t, jwt.SigningMethodHS256, secret, claims(set("sub", tc.sub))))
			minted, merr := auth.Mint(secret, auth.Claims{Subject: tc.sub, Role: domain.RoleWorker, TTL: time.Hour}, t0)
			cerr := auth.CheckSubject(tc.sub)
			if tc.reason == "" {
				require.NoError(t, verr)
				require.Equal(t, tc.sub, verified.ID)
				require.NoError(t, merr)
				require.NotEmpty(t, minted)
				require.NoError(t, cerr)
				return
			}
			require.ErrorIs(t, verr, auth.ErrUnauthenticated)
			require.ErrorContains(t, verr, tc.reason)
			require.NotContains(t, verr.Error(), tc.sub, "a refusal never quotes the subject")
			require.ErrorContains(t, merr, tc.reason)
			require.Empty(t, minted)
			require.ErrorContains(t, cerr, tc.reason)
		})
	}
}

// TestTokenLifetimeIsCapped: a person's token lives at most
// auth.MaxHumanTTL (24h), the service's at most auth.MaxServiceTTL (90
// days), whoever minted it: exp - iat, and exp - now when iat is missing
// or set late.
func TestTokenLifetimeIsCapped(t *testing.T) {
	require.Equal(t, 24*time.Hour, auth.MaxTTL(domain.RoleWorker))
	require.Equal(t, 90*24*time.Hour, auth.MaxTTL(domain.RoleService))
	for _, r := range []domain.Role{domain.RoleManager, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleDPO} {
		require.Equal(t, auth.MaxHumanTTL, auth.MaxTTL(r), r)
	}
	century := 876000 * time.Hour
	tests := []struct {
		name   string
		role   string
		claims jwt.MapClaims
		reason string // "" means accepted
	}{
		{"a worker for 24h", "worker", claims(set("exp", t0.Add(24*time.Hour).Unix())), ""},
		{"a worker for 24h and 1s", "worker", claims(set("exp", t0.Add(24*time.Hour+time.Second).Unix())), "lifetime (exp - iat) longer than 24h0m0s"},
		{"a worker for a century", "worker", claims(set("exp", t0.Add(century).Unix())), "lifetime"},
		{"a dpo for 25h", "dpo", claims(set("exp", t0.Add(25*time.Hour).Unix())), "longer than 24h0m0s, the most a dpo token may live"},
		{"the service for 90 days", "service", claims(set("exp", t0.Add(90*24*time.Hour).Unix())), ""},
		{"the service for 91 days", "service", claims(set("exp", t0.Add(91*24*time.Hour).Unix())), "longer than 2160h0m0s"},
		{"a worker without iat, expiring in 25h", "worker", claims(del("iat"), set("exp", t0.Add(25*time.Hour).Unix())), "expires more than 24h0m0s from now"},
		{"a worker without iat, expiring in 1h", "worker", claims(del("iat")), ""},
		{"a worker with iat set late", "worker",
			claims(set("iat", t0.Add(29*time.Hour).Unix()), set("exp", t0.Add(30*time.Hour).Unix())), "expires more than 24h0m0s from now"},
		{"a worker issued 23h ago, expiring in 1h", "worker",
			claims(set("iat", t0.Add(-23*time.Hour).Unix()), set("exp", t0.Add(time.Hour).Unix())), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.claims
			c["role"] = tc.role
			got, err := verifier(t, "", "", t0).Verify(sign(t, jwt.SigningMethodHS256, secret, c))
			if tc.reason == "" {
				require.NoError(t, err)
				require.Equal(t, domain.Role(tc.role), got.Role)
				return
			}
			require.ErrorIs(t, err, auth.ErrUnauthenticated)
			require.ErrorContains(t, err, tc.reason)
		})
	}

	mintTests := []struct {
		name string
		role domain.Role
		ttl  time.Duration
		ok   bool
	}{
		{"a worker for 24h", domain.RoleWorker, 24 * time.Hour, true},
		{"a worker for 24h and 1s", domain.RoleWorker, 24*time.Hour + time.Second, false},
		{"an auditor for a century", domain.RoleAuditor, century, false},
		{"the service for 90 days", domain.RoleService, 90 * 24 * time.Hour, true},
		{"the service for a century", domain.RoleService, century, false},
	}
	for _, tc := range mintTests {
		t.Run("mint "+tc.name, func(t *testing.T) {
			tok, err := auth.Mint(secret, auth.Claims{Subject: "s-1", Role: tc.role, TTL: tc.ttl}, t0)
			if !tc.ok {
				require.ErrorContains(t, err, "lives at most")
				require.Empty(t, tok)
				return
			}
			require.NoError(t, err)
			_, err = verifier(t, "", "", t0).Verify(tok)
			require.NoError(t, err, "what Mint makes, Verify accepts")
		})
	}
}
