package oidctest_test

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/accessledger/accessledger/internal/browsertest"
	"github.com/accessledger/accessledger/internal/oidctest"
)

// webApp is a relying party with pages, as the console will be: /login
// sends the browser to the provider, /callback finishes the sign-in and
// says who signed in, or why not.
func webApp(t *testing.T, p *oidctest.Provider) *httptest.Server {
	var (
		mu     sync.Mutex
		logins = map[string]string{} // state → PKCE verifier
		rp     *relyingParty
	)
	page := func(w http.ResponseWriter, status int, text string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>Console</title></head><body><main><h1>Console</h1><p id="status">%s</p></main></body></html>`,
			html.EscapeString(text))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		state, verifier := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
		mu.Lock()
		logins[state] = verifier
		mu.Unlock()
		http.Redirect(w, r, rp.conf.AuthCodeURL(state, oidc.Nonce("nonce-"+state[:8]), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
	})
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		verifier, ok := logins[q.Get("state")]
		delete(logins, q.Get("state"))
		mu.Unlock()
		switch {
		case !ok:
			page(w, http.StatusBadRequest, "Unknown sign-in.")
			return
		case q.Get("error") != "":
			page(w, http.StatusForbidden, "Not signed in: "+q.Get("error"))
			return
		}
		tok, err := rp.conf.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			page(w, http.StatusBadGateway, "Sign-in failed: "+err.Error())
			return
		}
		idt, err := rp.verify(r.Context(), tok)
		if err != nil {
			page(w, http.StatusBadGateway, "Sign-in failed: "+err.Error())
			return
		}
		var claims struct {
			Role string `json:"accessledger_role"`
			Name string `json:"name"`
		}
		if err := idt.Claims(&claims); err != nil || idt.Nonce != "nonce-"+q.Get("state")[:8] {
			page(w, http.StatusBadGateway, "Sign-in failed: bad claims or nonce")
			return
		}
		page(w, http.StatusOK, fmt.Sprintf("Signed in as %s (%s)", claims.Name, claims.Role))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rp = newRelyingParty(t, p, oauth2.AuthStyleAutoDetect)
	rp.conf.RedirectURL = srv.URL + "/callback"
	p.AddRedirectURI(rp.conf.RedirectURL)
	return srv
}

func TestSignInThroughThePageInABrowser(t *testing.T) {
	ctx := browsertest.New(t)
	p := oidctest.New(t, oidctest.Options{ClientID: clientID, ClientSecret: clientSecret})
	p.SetUser("auditor-1", auditor)
	app := webApp(t, p)

	// The sign-in page, checked as every page a person sees.
	require.Equal(t, http.StatusOK, browsertest.Navigate(t, ctx, app.URL+"/login"))
	require.Equal(t, "Sign in", browsertest.Text(t, ctx, "h1"))
	require.Equal(t, "Sign in as auditor-1", browsertest.Text(t, ctx, oidctest.SignInButton))
	browsertest.RequireNoSeriousAxeViolations(t, ctx, "the provider's sign-in page")
	browsertest.Screenshot(t, ctx, "sign-in")

	require.Equal(t, http.StatusOK, browsertest.ClickNavigate(t, ctx, oidctest.SignInButton))
	browsertest.WaitText(t, ctx, "#status", "Signed in as A. Auditor (auditor)")
	require.Equal(t, oidctest.Stats{SignInPages: 1, CodesIssued: 1, CodesExchanged: 1}, p.Stats())

	// Cancel comes back as access_denied.
	browsertest.Navigate(t, ctx, app.URL+"/login")
	require.Equal(t, http.StatusForbidden, browsertest.ClickNavigate(t, ctx, oidctest.CancelButton))
	browsertest.WaitText(t, ctx, "#status", "Not signed in: access_denied")

	refusals := p.Refusals()
	require.Len(t, refusals, 1)
	require.Equal(t, oidctest.Refusal{Endpoint: "/authorize", Error: "access_denied", Reason: "the user cancelled the sign-in"}, refusals[0])
}
