package oidctest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// discovery answers the provider's metadata (OpenID Connect Discovery 1.0).
func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	iss := p.Issuer()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"userinfo_endpoint":                     iss + "/userinfo",
		"jwks_uri":                              iss + "/jwks",
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce"},
	})
}

// jwks answers the provider's public key.
func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// pkceValue is the syntax of a code_verifier, and of an S256
// code_challenge (RFC 7636 section 4.1 and 4.2).
var pkceValue = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// authorize checks an authorization request and answers the sign-in page,
// or with AutoApprove the redirect with a code.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()

	// Without a known client and one of its redirect URIs there is nowhere
	// safe to send an error: answer it here (RFC 6749 section 4.1.2.1).
	if q.Get("client_id") != p.opts.ClientID {
		p.refuse("/authorize", "invalid_request", "unknown client_id "+quote(q.Get("client_id")))
		errorPage(w, "The application is not registered with this provider.")
		return
	}
	redirectURI := q.Get("redirect_uri")
	if reason := p.checkRedirectURI(redirectURI); reason != "" {
		p.refuse("/authorize", "invalid_request", reason)
		errorPage(w, "The application's redirect URI is not registered with this provider.")
		return
	}

	back := func(code, reason string) {
		p.refuse("/authorize", code, reason)
		redirect(w, r, redirectURI, url.Values{"error": {code}, "error_description": {reason}, "state": {q.Get("state")}})
	}
	switch {
	case q.Get("response_type") != "code":
		back("unsupported_response_type", "response_type must be code (the authorization code flow), not "+quote(q.Get("response_type")))
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		back("invalid_scope", "scope must include openid")
	case q.Get("state") == "":
		back("invalid_request", "state is required")
	case q.Get("nonce") == "":
		back("invalid_request", "nonce is required")
	case q.Get("code_challenge_method") == "plain":
		back("invalid_request", "PKCE with code_challenge_method=plain is refused: use S256")
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") == "":
		back("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
	case q.Get("code_challenge_method") != "S256":
		back("invalid_request", "code_challenge_method must be S256, not "+quote(q.Get("code_challenge_method")))
	case !pkceValue.MatchString(q.Get("code_challenge")):
		back("invalid_request", "code_challenge is not 43 to 128 characters of [A-Za-z0-9._~-]")
	case p.user == nil:
		back("access_denied", "no user to sign in (the test called no SetUser)")
	default:
		req := &authRequest{
			redirectURI: redirectURI,
			state:       q.Get("state"),
			nonce:       q.Get("nonce"),
			challenge:   q.Get("code_challenge"),
			user:        p.user,
		}
		if p.opts.AutoApprove {
			p.issueCode(w, r, req)
			return
		}
		id := randomString(16)
		p.pending[id] = req
		p.stats.SignInPages++
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = signInPage.Execute(w, map[string]string{"Request": id, "Sub": req.user.sub, "Client": p.opts.ClientID})
	}
}

// decide answers the sign-in page's form: sign in, or cancel.
func (p *Provider) decide(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := r.PostFormValue("request")
	req, ok := p.pending[id]
	if !ok {
		p.refuse("/authorize", "invalid_request", "the sign-in page was answered already, or never served")
		errorPage(w, "This sign-in page has expired. Go back to the application and sign in again.")
		return
	}
	delete(p.pending, id)
	if r.PostFormValue("decision") != "approve" {
		p.refuse("/authorize", "access_denied", "the user cancelled the sign-in")
		redirect(w, r, req.redirectURI, url.Values{"error": {"access_denied"}, "error_description": {"the user cancelled the sign-in"}, "state": {req.state}})
		return
	}
	p.issueCode(w, r, req)
}

// issueCode redirects back to the client with a new code for req. p.mu
// must be held.
func (p *Provider) issueCode(w http.ResponseWriter, r *http.Request, req *authRequest) {
	code := randomString(24)
	p.codes[code] = &grant{authRequest: *req, issued: p.opts.Now()}
	p.stats.CodesIssued++
	redirect(w, r, req.redirectURI, url.Values{"code": {code}, "state": {req.state}})
}

// checkRedirectURI says what is wrong with uri as the client's redirect
// URI, or "". p.mu must be held.
func (p *Provider) checkRedirectURI(uri string) string {
	if uri == "" {
		return "redirect_uri is required"
	}
	if len(p.redirectURIs) > 0 {
		if !slices.Contains(p.redirectURIs, uri) {
			return "redirect_uri " + quote(uri) + " is not registered"
		}
		return ""
	}
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || strings.Contains(uri, "#") {
		return "redirect_uri " + quote(uri) + " is not an absolute http(s) URI without a fragment"
	}
	return ""
}

// token exchanges a code for tokens (RFC 6749 section 4.1.3, RFC 7636
// section 4.5).
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fail := func(status int, code, reason string) {
		p.refuse("/token", code, reason)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		}
		writeJSON(w, status, map[string]string{"error": code, "error_description": reason})
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request", "the body is not a form: "+err.Error())
		return
	}
	form := r.PostForm

	// Client authentication: exactly one method.
	id, secret, basic := r.BasicAuth()
	auth := "client_secret_basic"
	switch {
	case basic && form.Has("client_secret"):
		fail(http.StatusBadRequest, "invalid_request", "the client authenticated twice (client_secret_basic and client_secret_post)")
		return
	case basic:
		// The id and secret are form-encoded before Basic (RFC 6749 section 2.3.1).
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			fail(http.StatusUnauthorized, "invalid_client", "the Basic credentials are not form-encoded")
			return
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			fail(http.StatusBadRequest, "invalid_request", "client_id in the body is not the authenticated client")
			return
		}
	case form.Has("client_secret"):
		id, secret, auth = form.Get("client_id"), form.Get("client_secret"), "client_secret_post"
	default:
		fail(http.StatusUnauthorized, "invalid_client", "no client authentication (client_secret_basic or client_secret_post)")
		return
	}
	if id != p.opts.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.opts.ClientSecret)) != 1 {
		fail(http.StatusUnauthorized, "invalid_client", "wrong client_id or client_secret ("+auth+")")
		return
	}

	if gt := form.Get("grant_type"); gt != "authorization_code" {
		fail(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code, not "+quote(gt))
		return
	}
	g, ok := p.codes[form.Get("code")]
	switch {
	case form.Get("code") == "":
		fail(http.StatusBadRequest, "invalid_request", "code is required")
		return
	case !ok:
		fail(http.StatusBadRequest, "invalid_grant", "unknown code")
		return
	case g.used:
		fail(http.StatusBadRequest, "invalid_grant", "the code was used already")
		return
	}
	// The first request of the authenticated client uses the code up,
	// whether it succeeds or not.
	g.used = true
	now := p.opts.Now()
	verifier := form.Get("code_verifier")
	switch {
	case now.Sub(g.issued) > p.opts.CodeTTL:
		fail(http.StatusBadRequest, "invalid_grant", "the code expired")
	case form.Get("redirect_uri") != g.redirectURI:
		fail(http.StatusBadRequest, "invalid_grant", "redirect_uri "+quote(form.Get("redirect_uri"))+" is not the one of the authorization request")
	case verifier == "":
		fail(http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)")
	case !pkceValue.MatchString(verifier):
		fail(http.StatusBadRequest, "invalid_request", "code_verifier is not 43 to 128 characters of [A-Za-z0-9._~-]")
	case s256(verifier) != g.challenge:
		fail(http.StatusBadRequest, "invalid_grant", "code_verifier does not hash (S256) to the code_challenge")
	default:
		p.answerTokens(w, g, auth, now)
	}
}

// answerTokens answers the tokens of an exchanged code. p.mu must be held.
func (p *Provider) answerTokens(w http.ResponseWriter, g *grant, auth string, now time.Time) {
	claims := maps.Clone(g.user.claims)
	if claims == nil {
		claims = map[string]any{}
	}
	maps.Copy(claims, map[string]any{
		"iss":       p.Issuer(),
		"sub":       g.user.sub,
		"aud":       p.opts.ClientID,
		"iat":       now.Unix(),
		"exp":       now.Add(p.opts.TokenTTL).Unix(),
		"auth_time": g.issued.Unix(),
		"nonce":     g.nonce,
	})
	payload, err := json.Marshal(claims)
	if err != nil {
		p.refuse("/token", "server_error", "the user's claims do not marshal: "+err.Error())
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	signed, err := p.signer.Sign(payload)
	if err == nil {
		var idToken string
		if idToken, err = signed.CompactSerialize(); err == nil {
			access := randomString(24)
			p.tokens[access] = &accessToken{user: g.user, expires: now.Add(p.opts.TokenTTL)}
			p.stats.CodesExchanged++
			p.exchanges = append(p.exchanges, Exchange{Sub: g.user.sub, ClientAuth: auth, Nonce: g.nonce})
			w.Header().Set("Pragma", "no-cache")
			writeJSON(w, http.StatusOK, map[string]any{
				"access_token": access,
				"token_type":   "Bearer",
				"expires_in":   int(p.opts.TokenTTL.Seconds()),
				"id_token":     idToken,
				"scope":        "openid",
			})
			return
		}
	}
	p.refuse("/token", "server_error", "sign the ID token: "+err.Error())
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
}

// userinfo answers the claims of the user an access token was issued to.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	at := p.tokens[token]
	if !ok || at == nil || !p.opts.Now().Before(at.expires) {
		p.refuse("/userinfo", "invalid_token", "no valid access token (Authorization: Bearer)")
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	claims := maps.Clone(at.user.claims)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["sub"] = at.user.sub
	p.stats.UserInfo++
	writeJSON(w, http.StatusOK, claims)
}

// s256 is the S256 code challenge of a verifier.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// redirect sends the browser to uri with params added to its query (empty
// values left out): 303 after a form, 302 otherwise.
func redirect(w http.ResponseWriter, r *http.Request, uri string, params url.Values) {
	u, err := url.Parse(uri)
	if err != nil { // checked by checkRedirectURI before
		errorPage(w, "The application's redirect URI is malformed.")
		return
	}
	q := u.Query()
	for k, vs := range params {
		if len(vs) > 0 && vs[0] != "" {
			q.Set(k, vs[0])
		}
	}
	u.RawQuery = q.Encode()
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), status)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errorPage(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = page.ExecuteTemplate(w, "error", message)
}

func quote(s string) string { return `"` + s + `"` }

// page holds the provider's two pages: the sign-in page and the error page.
// Both are plain, labelled and of ample contrast, so that the browser tests
// that pass through them can check every page they see with axe-core.
var page = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in – test identity provider</title>
<style>body { font: 16px/1.5 sans-serif; color: #1a1a1a; background: #fff; margin: 2rem; } button { font: inherit; padding: .4rem 1rem; margin-right: .5rem; }</style>
</head>
<body>
<main>
<h1>Sign in</h1>
<p>{{.Client}} asks who you are. This is the test identity provider of accessledger's tests.</p>
<form method="post" action="/authorize">
<input type="hidden" name="request" value="{{.Request}}">
<button type="submit" id="oidctest-sign-in" name="decision" value="approve">Sign in as {{.Sub}}</button>
<button type="submit" id="oidctest-cancel" name="decision" value="cancel">Cancel</button>
</form>
</main>
</body>
</html>
{{define "error"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in error – test identity provider</title>
</head>
<body>
<main>
<h1>Sign-in error</h1>
<p>{{.}}</p>
</main>
</body>
</html>
{{end}}`))

// signInPage is the sign-in page of page.
var signInPage = page.Lookup("signin")
