package console_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/browsertest"
	"github.com/accessledger/accessledger/internal/oidctest"
)

// checkPage runs axe-core on the page (no serious or critical violation)
// and takes its screenshot.
func checkPage(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	browsertest.RequireNoSeriousAxeViolations(t, ctx, name)
	browsertest.Screenshot(t, ctx, name)
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	return run(t, ctx, chromedp.Location())
}

// waitLocation waits until the tab's address contains want: across the
// navigation a page's script starts.
func waitLocation(t *testing.T, ctx context.Context, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		u, err := chromedp.Run(actx, chromedp.Location())
		cancel()
		if err == nil {
			if last = u; strings.Contains(u, want) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the address did not come to contain %q within %s; it is %q", want, within, last)
}

// run runs one chromedp action that answers a value, within a minute.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	require.NoError(t, err)
	return v
}

// TestConsole_InABrowser drives headless Chromium through the console as
// an auditor does: sign-in at the council's provider, search, the child's
// timeline at two "as at" times, an export download, the other pages,
// sign-out, the countdown and the idle timeout. Every page passes axe-core
// with no serious or critical violation, and is photographed.
func TestConsole_InABrowser(t *testing.T) {
	s, p := oidcConsole(t, false)
	w := seed(t, s)
	p.SetUser("auditor-amy", map[string]any{"accessledger_role": "auditor", "name": "Amy Auditor"})
	ctx := browsertest.New(t)

	// Without a session: the sign-in page, never data.
	browsertest.Navigate(t, ctx, s.URL+"/console/children/"+w.child.String())
	require.Contains(t, location(t, ctx), "/console/sign-in?")
	browsertest.WaitText(t, ctx, "h1", "Sign in to the auditor’s console")
	checkPage(t, ctx, "01-sign-in")

	// Sign in at the provider (its own page), back to the console.
	browsertest.ClickNavigate(t, ctx, `a[href^="/console/sign-in/oidc"]`)
	browsertest.WaitVisible(t, ctx, oidctest.SignInButton)
	browsertest.ClickNavigate(t, ctx, oidctest.SignInButton)
	// Back where the person was going.
	browsertest.WaitVisible(t, ctx, "figure.timeline svg")
	require.True(t, strings.HasSuffix(location(t, ctx), "/console/children/"+w.child.String()), location(t, ctx))
	browsertest.Navigate(t, ctx, s.URL+"/console")
	browsertest.WaitVisible(t, ctx, "#q")
	require.Contains(t, browsertest.Text(t, ctx, ".who"), "auditor-amy")
	checkPage(t, ctx, "02-search")

	// Search by reference: the child's page.
	browsertest.Type(t, ctx, "#q", w.reference)
	browsertest.ClickNavigate(t, ctx, ".search button[type=submit]")
	browsertest.WaitVisible(t, ctx, "figure.timeline svg")
	require.Contains(t, location(t, ctx), "/console/children/"+w.child.String())
	require.NotContains(t, location(t, ctx), w.reference, "the reference is in no URL")
	require.Contains(t, browsertest.Text(t, ctx, "h1"), w.reference)
	bars := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg rect.bar").length`))
	require.Equal(t, 4, bars, "the former carer's placement and grace period, the carer's placement, the grant")
	checkPage(t, ctx, "03-child")

	// Two "as at" times redraw it.
	before := w.activated.Add(-time.Hour).Format("2006-01-02T15:04")
	browsertest.Do(t, ctx, chromedp.SetValue(chromedp.CSS("#at"), before))
	browsertest.ClickNavigate(t, ctx, "#redraw")
	browsertest.WaitText(t, ctx, "#at-heading", "Who could see the record at")
	require.Contains(t, browsertest.Text(t, ctx, "main"), "No one could see the record then.")
	checkPage(t, ctx, "04-child-as-at-before")
	later := w.activated.Add(8 * 24 * time.Hour).Format("2006-01-02T15:04")
	browsertest.Do(t, ctx, chromedp.SetValue(chromedp.CSS("#at"), later))
	browsertest.ClickNavigate(t, ctx, "#redraw")
	browsertest.WaitText(t, ctx, "#at-heading", "Who could see the record at")
	atList := run(t, ctx, chromedp.Evaluate[string](`document.querySelector("#at-heading").nextElementSibling.innerText`))
	require.Contains(t, atList, w.carer.String()[:8])
	require.Contains(t, atList, w.member.String()[:8])
	require.NotContains(t, atList, w.former.String()[:8], "the former carer's grace period is over by then")
	marker := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg .at-marker line").length`))
	require.Equal(t, 1, marker)
	checkPage(t, ctx, "05-child-as-at-later")

	// The subject access export, as JSON and as CSV files.
	dl := browsertest.Download(t, ctx, chromedp.Click(chromedp.CSS(`a[href$="/export?format=json"]`)))
	var x api.ChildExport
	require.NoError(t, json.Unmarshal(dl.Data, &x))
	require.Equal(t, w.child, x.Child.ChildID)
	require.NotEmpty(t, x.Intervals)
	require.Equal(t, "child-"+w.child.String()+".json", dl.Name)
	dl = browsertest.Download(t, ctx, chromedp.Click(chromedp.CSS(`a[href$="/export?format=csv"]`)))
	zr, err := zip.NewReader(bytes.NewReader(dl.Data), int64(len(dl.Data)))
	require.NoError(t, err)
	require.Equal(t, "child.csv", zr.File[0].Name)

	// The carer's account.
	browsertest.ClickNavigate(t, ctx, `table a[href="/console/accounts/`+w.carer.String()+`"]`)
	browsertest.WaitText(t, ctx, "h1", "Account "+w.carer.String()[:8])
	require.Contains(t, browsertest.Text(t, ctx, "main"), "account.activated.v1")
	checkPage(t, ctx, "06-account")

	// The listings and the ledger.
	for _, pg := range []struct{ path, h1, shot string }{
		{"/console/reviews", "Grants due for review", "07-reviews"},
		{"/console/alerts", "Alerts", "08-alerts"},
		{"/console/security-log", "Security log", "09-security-log"},
		{"/console/ledger", "The ledger", "10-ledger"},
	} {
		browsertest.Navigate(t, ctx, s.URL+pg.path)
		browsertest.WaitText(t, ctx, "h1", pg.h1)
		checkPage(t, ctx, pg.shot)
	}
	browsertest.ClickNavigate(t, ctx, "#verify-now")
	browsertest.WaitText(t, ctx, ".result h3", "Verified: the log is intact")
	checkPage(t, ctx, "11-ledger-verified")
	browsertest.Navigate(t, ctx, s.URL+"/console/security-log?command=console&code=page_view")
	require.Contains(t, browsertest.Text(t, ctx, "main"), "child/"+w.child.String())

	// Sign out: the session is gone.
	browsertest.ClickNavigate(t, ctx, ".sign-out button")
	browsertest.WaitText(t, ctx, "h1", "Sign in to the auditor’s console")
	browsertest.Navigate(t, ctx, s.URL+"/console/ledger")
	require.Contains(t, location(t, ctx), "/console/sign-in?")

	// The idle timeout: a manager shortens the session policy (R16, R25);
	// the countdown shows, "Stay signed in" extends, then idleness ends it.
	manager, err := client.New(s.URL, s.Token(t, domain.RoleManager, "manager-bo"))
	require.NoError(t, err)
	idle, warn := api.PolicySeconds(8), api.PolicySeconds(4)
	_, err = manager.SetPolicy(context.Background(), api.SetPolicyRequest{SessionIdleTimeout: &idle, SessionWarningAfter: &warn,
		Reason: api.FreeText("a short session for the browser test")})
	require.NoError(t, err)
	time.Sleep(6 * time.Second) // the console reads the policy at most every 5 s
	browsertest.Navigate(t, ctx, s.URL+"/console")
	browsertest.ClickNavigate(t, ctx, `a[href^="/console/sign-in/oidc"]`)
	browsertest.ClickNavigate(t, ctx, oidctest.SignInButton)
	browsertest.WaitVisible(t, ctx, "#q")
	idleAttr := run(t, ctx, chromedp.Evaluate[string](`document.body.dataset.idle`))
	require.Equal(t, "8", idleAttr)
	browsertest.WaitVisible(t, ctx, "#session-warning")
	require.Contains(t, browsertest.Text(t, ctx, "#session-warning"), "You will be signed out in")
	checkPage(t, ctx, "12-countdown")
	browsertest.Click(t, ctx, "#stay-signed-in")
	browsertest.Do(t, ctx, chromedp.WaitNotVisible(chromedp.CSS("#session-warning")))
	// Idle from here: the script sends the browser to the sign-in page,
	// and the server has ended the session.
	waitLocation(t, ctx, "ended=idle", 30*time.Second)
	// Polled in the page (WaitText), not read through the DOM's node ids:
	// right after the script's navigation, chromedp's node of main may be
	// the old page's (a failure in CI: "No node with given id found").
	browsertest.WaitText(t, ctx, "h1", "Sign in to the auditor’s console")
	browsertest.WaitText(t, ctx, "main", "idle for too long")
	checkPage(t, ctx, "13-signed-out-idle")
	// The browser's idle clock started at the click on "Stay signed in",
	// the server's when that request arrived: under the race detector on
	// a loaded machine the two can be over a second apart (a failure in
	// CI: the page still signed in, its session ending 1–2 s later). Wait
	// out that latency, not the session: a page view would extend it.
	time.Sleep(3 * time.Second)
	browsertest.Navigate(t, ctx, s.URL+"/console")
	require.Contains(t, location(t, ctx), "/console/sign-in?")
}
