package console_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/apitest"
	"github.com/accessledger/accessledger/internal/oidctest"
)

// clock is a settable time for the console's sessions.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// world is a child with a carer's placement that ended (a grace period), a
// network member's grant, a record view and a view without access.
type world struct {
	s                            *apitest.Server
	child                        uuid.UUID
	reference                    string
	carer, former, member, other uuid.UUID
	carerEmail                   string
	activated                    time.Time
}

func seed(t *testing.T, s *apitest.Server) world {
	t.Helper()
	ctx := context.Background()
	c := func(role domain.Role, sub string) *client.Client {
		cl, err := client.New(s.URL, s.Token(t, role, sub))
		require.NoError(t, err)
		return cl
	}
	worker, service := c(domain.RoleWorker, "worker-ann"), c(domain.RoleService, "portal")
	w := world{s: s, reference: "NCC-2021-00417", carerEmail: "carer.417@example.org"}
	child, err := worker.RegisterChild(ctx, w.reference)
	require.NoError(t, err)
	w.child = child.ChildID
	carer, err := worker.Invite(ctx, w.carerEmail, api.AccountKindFosterCarer)
	require.NoError(t, err)
	member, err := worker.Invite(ctx, "gran.417@example.org", api.AccountKindNetworkMember)
	require.NoError(t, err)
	other, err := worker.Invite(ctx, "other.417@example.org", api.AccountKindParent)
	require.NoError(t, err)
	former, err := worker.Invite(ctx, "former.417@example.org", api.AccountKindFosterCarer)
	require.NoError(t, err)
	w.carer, w.member, w.other, w.former = carer.AccountID, member.AccountID, other.AccountID, former.AccountID
	for _, a := range []struct {
		id    uuid.UUID
		email string
	}{{w.carer, w.carerEmail}, {w.member, "gran.417@example.org"}, {w.other, "other.417@example.org"}, {w.former, "former.417@example.org"}} {
		_, err = service.Activate(ctx, a.id, "idp|"+a.id.String(), a.email)
		require.NoError(t, err)
	}
	w.activated = time.Now().UTC()
	// The former carer's placement ended: a grace period; the carer's is open.
	pl, err := worker.StartPlacement(ctx, w.child, w.former, time.Now().Add(-90*24*time.Hour))
	require.NoError(t, err)
	_, err = worker.EndPlacement(ctx, w.child, pl.PlacementID, time.Now(), "moved to a new carer")
	require.NoError(t, err)
	_, err = worker.StartPlacement(ctx, w.child, w.carer, time.Now())
	require.NoError(t, err)
	_, err = worker.Grant(ctx, w.child, w.member, api.GrantRequestRelationshipGuardian,
		[]api.GrantRequestPermissions{api.GrantRequestPermissionsView}, "contact agreed at the review")
	require.NoError(t, err)
	s.CaughtUp(t)
	now := time.Now().UTC()
	_, err = service.RecordViews(ctx, []api.RecordView{
		{AccountID: w.member.String(), ChildID: w.child.String(), Permission: "view", ViewedAt: now.Format(time.RFC3339Nano)},
		{AccountID: w.other.String(), ChildID: w.child.String(), Permission: "view", ViewedAt: now.Format(time.RFC3339Nano)},
	})
	require.NoError(t, err)
	s.CaughtUp(t)
	return w
}

// agent is a browser without a script: a cookie jar, redirects not
// followed.
type agent struct {
	t    *testing.T
	base string
	hc   *http.Client
	now  func() time.Time // the console's clock, for its links
}

func newAgent(t *testing.T, base string) *agent {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &agent{t: t, base: base, now: time.Now, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (a *agent) do(req *http.Request) (int, http.Header, string) {
	a.t.Helper()
	res, err := a.hc.Do(req)
	require.NoError(a.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(a.t, err)
	return res.StatusCode, res.Header, string(b)
}

func (a *agent) get(path string) (int, http.Header, string) {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.base+path, nil)
	require.NoError(a.t, err)
	return a.do(req)
}

func (a *agent) post(path string, form url.Values, header ...string) (int, http.Header, string) {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.base+path, strings.NewReader(form.Encode()))
	require.NoError(a.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return a.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	require.NotNil(t, m, "the page has a form with a CSRF token")
	return m[1]
}

// signIn redeems a fresh link for sub in role and returns the start page.
func (a *agent) signIn(s *apitest.Server, role domain.Role, sub string) string {
	a.t.Helper()
	link, err := console.MintLink(s.Secret, a.base, role, sub, time.Minute, a.now())
	require.NoError(a.t, err)
	u, err := url.Parse(link.URL)
	require.NoError(a.t, err)
	status, _, page := a.get(u.RequestURI())
	require.Equal(a.t, http.StatusOK, status, page)
	require.Contains(a.t, page, sub)
	status, _, page = a.post(console.Prefix+"/link", url.Values{"token": {u.Query().Get("token")}})
	require.Equal(a.t, http.StatusOK, status, page)
	require.Contains(a.t, page, `http-equiv="refresh" content="0;url=/console"`)
	status, _, page = a.get(console.Prefix)
	require.Equal(a.t, http.StatusOK, status, page)
	return page
}

func startConsole(t *testing.T, clk *clock) (*apitest.Server, *agent) {
	cfg := &console.Config{}
	if clk != nil {
		cfg.Clock = clk.Now
	}
	s := apitest.StartWith(t, apitest.Options{Console: cfg})
	a := newAgent(t, s.URL)
	if clk != nil {
		a.now = clk.Now
	}
	return s, a
}

func TestConsole_WithoutASessionNoPageShowsData(t *testing.T) {
	s, a := startConsole(t, nil)
	w := seed(t, s)
	for _, p := range []string{"/console", "/console/children/" + w.child.String(), "/console/accounts/" + w.carer.String(),
		"/console/children/" + w.child.String() + "/export?format=json", "/console/reviews", "/console/alerts",
		"/console/security-log", "/console/ledger", "/console/ledger/public-key"} {
		status, h, body := a.get(p)
		require.Equal(t, http.StatusSeeOther, status, p)
		require.True(t, strings.HasPrefix(h.Get("Location"), "/console/sign-in?"), p)
		require.NotContains(t, body, w.reference, p)
	}
	for _, p := range []string{"/console/search", "/console/ledger/verify", "/console/sign-out"} {
		status, _, body := a.post(p, url.Values{"kind": {"reference"}, "q": {w.reference}})
		require.Equal(t, http.StatusUnauthorized, status, p)
		require.NotContains(t, body, w.child.String(), p)
	}
	status, h, _ := a.get("/console/sign-in")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	require.Equal(t, "no-store", h.Get("Cache-Control"))
}

func TestConsole_ALinkSignsInOnceAndIsNoAPIToken(t *testing.T) {
	s, a := startConsole(t, nil)
	link, err := console.MintLink(s.Secret, s.URL, domain.RoleAuditor, "auditor-amy", time.Minute, time.Now())
	require.NoError(t, err)
	u, err := url.Parse(link.URL)
	require.NoError(t, err)
	tok := u.Query().Get("token")

	// The link is not a bearer token of the API, and an API token is not a link.
	v, err := auth.NewVerifier(s.Secret, "", "", nil)
	require.NoError(t, err)
	_, err = v.Verify(tok)
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
	status, _, _ := a.get("/console/link?token=" + url.QueryEscape(s.Token(t, domain.RoleAuditor, "auditor-amy")))
	require.Equal(t, http.StatusUnauthorized, status)

	// Opening the link uses nothing up; the button does, once.
	for range 2 {
		status, _, page := a.get(u.RequestURI())
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, page, "auditor-amy")
	}
	status, h, _ := a.post("/console/link", url.Values{"token": {tok}})
	require.Equal(t, http.StatusOK, status)
	ck := h.Get("Set-Cookie")
	require.Contains(t, ck, console.SessionCookie+"=")
	require.Contains(t, ck, "HttpOnly")
	require.Contains(t, ck, "SameSite=Strict")
	require.Contains(t, ck, "Path=/console")
	b := newAgent(t, s.URL)
	status, _, _ = b.post("/console/link", url.Values{"token": {tok}})
	require.Equal(t, http.StatusUnauthorized, status, "a link works once")

	// Roles that may not use the console get no link.
	for _, r := range []domain.Role{domain.RoleWorker, domain.RoleService, domain.RolePortalsTeam, domain.RoleSystem} {
		_, err := console.MintLink(s.Secret, s.URL, r, "x", time.Minute, time.Now())
		require.Error(t, err, r)
	}
	// An expired link is refused.
	old, err := console.MintLink(s.Secret, s.URL, domain.RoleAuditor, "auditor-amy", time.Minute, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	ou, err := url.Parse(old.URL)
	require.NoError(t, err)
	status, _, _ = a.get(ou.RequestURI())
	require.Equal(t, http.StatusUnauthorized, status)
}

func TestConsole_AnAuditorFindsAChildAndSeesWhoCouldSeeItAndWhy(t *testing.T) {
	s, a := startConsole(t, nil)
	w := seed(t, s)
	home := a.signIn(s, domain.RoleAuditor, "auditor-amy")
	csrf := csrfOf(t, home)

	// A search is a POST: the reference is in no URL.
	status, h, _ := a.post("/console/search", url.Values{"csrf": {csrf}, "kind": {"reference"}, "q": {w.reference}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/children/"+w.child.String(), h.Get("Location"))
	status, _, page := a.post("/console/search", url.Values{"csrf": {csrf}, "kind": {"reference"}, "q": {"NCC-NOPE"}})
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, "No child has that reference.")
	status, h, _ = a.post("/console/search", url.Values{"csrf": {csrf}, "kind": {"email"}, "q": {w.carerEmail}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/accounts/"+w.carer.String(), h.Get("Location"))

	status, _, page = a.get("/console/children/" + w.child.String())
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, w.reference)
	require.Contains(t, page, "<svg")
	require.Contains(t, page, `class="bar bar-placement"`)
	require.Contains(t, page, `class="bar bar-grace_period"`)
	require.Contains(t, page, `class="bar bar-grant"`)
	require.Contains(t, page, `class="mark view-allowed"`)
	require.Contains(t, page, `class="mark view-refused"`)
	require.Contains(t, page, `class="mark alert"`)
	require.Contains(t, page, "contact agreed at the review", "a bar names the reason behind it")
	require.Contains(t, page, "moved to a new carer")
	require.Contains(t, page, "worker-ann (worker)")
	require.Contains(t, page, "Access intervals of the child", "the table beside the timeline")

	// As at a time before the accounts were active: no one; in a week's
	// time: the carer by placement and the member by grant, and no longer
	// the former carer, whose grace period is over by then.
	status, _, page = a.get("/console/children/" + w.child.String() + "?at=" + w.activated.Add(-time.Hour).Format("2006-01-02T15:04"))
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "No one could see the record then.")
	status, _, page = a.get("/console/children/" + w.child.String() + "?at=" + w.activated.Add(8*24*time.Hour).Format("2006-01-02T15:04"))
	require.Equal(t, http.StatusOK, status, page)
	atList := between(page, `id="at-heading"`, "</ul>")
	require.Contains(t, atList, w.carer.String())
	require.Contains(t, atList, "Placement")
	require.Contains(t, atList, w.member.String())
	require.NotContains(t, atList, w.former.String())

	// As known before anything was recorded: nothing.
	status, _, page = a.get("/console/children/" + w.child.String() + "?known_at=2001-01-01T00:00")
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "No one has been able to see this record, as known then.")

	status, _, page = a.get("/console/children/" + w.child.String() + "?at=yesterday")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, page, "is not a date and time")
	status, _, _ = a.get("/console/children/" + uuid.NewString())
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = a.get("/console/children/not-an-id")
	require.Equal(t, http.StatusNotFound, status)

	// Every page view is in the security log, by id, never by search term.
	entries, _, err := securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Actor: "auditor-amy", Limit: 1000})
	require.NoError(t, err)
	var targets []string
	for _, e := range entries {
		require.Equal(t, console.SecurityCommand, e.Command)
		require.NotContains(t, e.Target+e.Detail, w.reference)
		require.NotContains(t, e.Target+e.Detail, w.carerEmail)
		targets = append(targets, e.Code+" "+e.Target)
	}
	require.Contains(t, targets, console.PageView+" child/"+w.child.String())
	require.Contains(t, targets, console.PageView+" console/search")
	require.Contains(t, targets, console.SignedIn+" console/link")
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

func TestConsole_EachRoleSeesWhatItsRoleMayAsk(t *testing.T) {
	s, _ := startConsole(t, nil)
	w := seed(t, s)
	tests := []struct {
		role            domain.Role
		history, export bool
		securityLog     bool
	}{
		{domain.RoleAuditor, true, true, true},
		{domain.RoleManager, false, false, false},
		{domain.RoleDPO, false, true, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			a := newAgent(t, s.URL)
			a.signIn(s, tt.role, "person-"+string(tt.role))
			status, _, page := a.get("/console/children/" + w.child.String())
			require.Equal(t, http.StatusOK, status, page)
			require.Contains(t, page, w.reference)
			require.Equal(t, tt.history, strings.Contains(page, "<svg"), "timeline")
			require.Equal(t, !tt.history, strings.Contains(page, "Your role may not see the access history."))
			require.Equal(t, tt.export, strings.Contains(page, "/export?format=json"))
			status, _, _ = a.get("/console/children/" + w.child.String() + "/export?format=csv")
			require.Equal(t, map[bool]int{true: http.StatusOK, false: http.StatusForbidden}[tt.export], status)
			status, _, _ = a.get("/console/security-log")
			require.Equal(t, map[bool]int{true: http.StatusOK, false: http.StatusForbidden}[tt.securityLog], status)
		})
	}
	// A section a role may not see is never asked for: no refusal of the
	// history for the manager, only the one page it opened and was refused.
	entries, _, err := securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Actor: "person-manager", Limit: 1000})
	require.NoError(t, err)
	for _, e := range entries {
		require.NotEqual(t, "query_child_history", e.Command)
	}
}

func TestConsole_FormsNeedTheSessionsTokenAndOrigin(t *testing.T) {
	s, a := startConsole(t, nil)
	w := seed(t, s)
	home := a.signIn(s, domain.RoleAuditor, "auditor-amy")
	csrf := csrfOf(t, home)
	form := url.Values{"kind": {"reference"}, "q": {w.reference}}
	status, _, _ := a.post("/console/search", form)
	require.Equal(t, http.StatusForbidden, status, "no token")
	form.Set("csrf", "x"+csrf[1:])
	status, _, _ = a.post("/console/search", form)
	require.Equal(t, http.StatusForbidden, status, "a wrong token")
	form.Set("csrf", csrf)
	status, _, _ = a.post("/console/search", form, "Origin", "https://elsewhere.example")
	require.Equal(t, http.StatusForbidden, status, "another origin")
	status, _, _ = a.post("/console/search", form, "Origin", s.URL)
	require.Equal(t, http.StatusSeeOther, status)

	// Sign out ends the session at once.
	status, h, _ := a.post("/console/sign-out", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/console/signed-out", h.Get("Location"))
	status, _, _ = a.get("/console")
	require.Equal(t, http.StatusSeeOther, status)
}

func TestConsole_AnIdleSessionEndsAtThePolicysTimeout(t *testing.T) {
	clk := &clock{now: time.Now()}
	s, a := startConsole(t, clk)
	home := a.signIn(s, domain.RoleAuditor, "auditor-amy")
	// The policy is published on the page: 15 minutes idle, countdown after 10 (R16).
	require.Contains(t, home, `data-idle="900" data-warn="600"`)

	clk.Add(14 * time.Minute)
	status, _, _ := a.get("/console")
	require.Equal(t, http.StatusOK, status, "activity keeps the session")
	clk.Add(14 * time.Minute)
	status, _, _ = a.get("/console/alerts")
	require.Equal(t, http.StatusOK, status)
	clk.Add(15 * time.Minute)
	status, h, _ := a.get("/console/alerts")
	require.Equal(t, http.StatusSeeOther, status)
	require.Contains(t, h.Get("Location"), "ended=idle")
	status, _, _ = a.get("/console")
	require.Equal(t, http.StatusSeeOther, status, "the session is gone")

	// However active, a session ends after MaxSessionAge.
	a.signIn(s, domain.RoleAuditor, "auditor-amy")
	for elapsed := time.Duration(0); elapsed < console.DefaultMaxSessionAge; elapsed += 10 * time.Minute {
		clk.Add(10 * time.Minute)
		status, h, _ = a.get("/console")
		if status != http.StatusOK {
			break
		}
	}
	require.Equal(t, http.StatusSeeOther, status)
	require.Contains(t, h.Get("Location"), "ended=max_age")
}

func TestConsole_TheLedgerPageVerifiesNow(t *testing.T) {
	s, a := startConsole(t, nil)
	seed(t, s)
	_, _, err := s.Ledger.Publish(context.Background())
	require.NoError(t, err)
	a.signIn(s, domain.RoleAuditor, "auditor-amy")
	status, _, page := a.get("/console/ledger")
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "Root hash")
	status, _, page = a.post("/console/ledger/verify", url.Values{"csrf": {csrfOf(t, page)}})
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "Verified: the log is intact")
	status, h, key := a.get("/console/ledger/public-key")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, h.Get("Content-Disposition"), "attachment")
	require.Equal(t, s.Key.VerifierKey+"\n", key)
}

// oidcConsole starts the API with the console signing in through an
// in-process OpenID Connect provider.
func oidcConsole(t *testing.T, auto bool) (*apitest.Server, *oidctest.Provider) {
	p := oidctest.New(t, oidctest.Options{ClientID: "accessledger-console", ClientSecret: "s3cret-of-the-console", AutoApprove: auto})
	s := apitest.StartWith(t, apitest.Options{Console: &console.Config{OIDC: &console.OIDCConfig{
		Issuer: p.Issuer(), ClientID: "accessledger-console", ClientSecret: "s3cret-of-the-console"}}})
	p.AddRedirectURI(s.URL + "/console/oidc/callback")
	return s, p
}

// follow follows redirects from path (across hosts) and returns the last
// answer.
func (a *agent) follow(path string) (int, http.Header, string, string) {
	a.t.Helper()
	u := a.base + path
	for range 10 {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(a.t, err)
		status, h, body := a.do(req)
		if status != http.StatusSeeOther && status != http.StatusFound {
			return status, h, body, u
		}
		next, err := url.Parse(h.Get("Location"))
		require.NoError(a.t, err)
		base, err := url.Parse(u)
		require.NoError(a.t, err)
		u = base.ResolveReference(next).String()
	}
	a.t.Fatal("too many redirects")
	return 0, nil, "", ""
}

func TestConsole_SignInThroughTheCouncilsProvider(t *testing.T) {
	s, p := oidcConsole(t, true)
	tests := []struct {
		name   string
		sub    string
		claims map[string]any
		status int
		want   string
	}{
		{"an auditor", "auditor-amy", map[string]any{"accessledger_role": "auditor"}, http.StatusOK, "You are signed in"},
		{"a dpo among other roles", "dpo-dan", map[string]any{"accessledger_role": []any{"staff", "dpo"}}, http.StatusOK, "You are signed in"},
		{"a worker", "worker-ann", map[string]any{"accessledger_role": "worker"}, http.StatusForbidden, "names no role that may use the console"},
		{"no role", "someone", map[string]any{}, http.StatusForbidden, "names no role"},
		{"an actor id that is not one", "has space", map[string]any{"accessledger_role": "auditor"}, http.StatusForbidden, "not a usable actor id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.SetUser(tt.sub, tt.claims)
			a := newAgent(t, s.URL)
			status, _, body, _ := a.follow("/console/sign-in/oidc")
			require.Equal(t, tt.status, status, body)
			require.Contains(t, body, tt.want)
			status, _, _ = a.get("/console")
			require.Equal(t, map[bool]int{true: http.StatusOK, false: http.StatusSeeOther}[tt.status == http.StatusOK], status)
		})
	}
	// The provider saw PKCE and client authentication on every exchange.
	require.Empty(t, p.Refusals())
	require.Equal(t, len(tests), p.Stats().CodesExchanged)

	// A callback in a browser that did not start the sign-in is refused,
	// and so is a replayed one.
	p.SetUser("auditor-amy", map[string]any{"accessledger_role": "auditor"})
	a := newAgent(t, s.URL)
	status, h, _ := a.get("/console/sign-in/oidc")
	require.Equal(t, http.StatusSeeOther, status)
	status, h, _ = a.do(mustGet(t, h.Get("Location")))
	require.Equal(t, http.StatusFound, status, "the provider sends the browser back")
	callback, err := url.Parse(h.Get("Location"))
	require.NoError(t, err)
	other := newAgent(t, s.URL)
	status, _, body := other.get(callback.RequestURI())
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, body, "not started in this browser")
	status, _, _ = a.get(callback.RequestURI())
	require.Equal(t, http.StatusOK, status)
	status, _, _ = a.get(callback.RequestURI())
	require.Equal(t, http.StatusForbidden, status, "a state is used once")

	entries, _, err := securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Code: console.SignInRefused, Limit: 100})
	require.NoError(t, err)
	var who []string
	for _, e := range entries {
		who = append(who, e.ActorID)
	}
	require.Contains(t, who, "worker-ann", "a refused sign-in names who tried")
}

func mustGet(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	return req
}

// TestConsole_OnlyWhatIsOursIsRecorded: answers anyone can send (a
// callback for no sign-in of this browser, a made-up link) write nothing
// to the security log; a link of ours used twice, a refused form and a
// provider's refusal do, without what the caller put in them.
func TestConsole_OnlyWhatIsOursIsRecorded(t *testing.T) {
	s, _ := oidcConsole(t, true)
	count := func() int {
		entries, _, err := securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Limit: 1000})
		require.NoError(t, err)
		return len(entries)
	}
	a := newAgent(t, s.URL)
	for range 5 {
		status, _, _ := a.get("/console/oidc/callback?error=carer%40example.org+asked+for+NCC-1&state=x")
		require.Equal(t, http.StatusForbidden, status)
		status, _, _ = a.post("/console/link", url.Values{"token": {"junk.junk.junk"}})
		require.Equal(t, http.StatusUnauthorized, status)
	}
	require.Zero(t, count())

	// The provider's error for a sign-in this browser started is recorded
	// by its OAuth code only.
	status, h, _ := a.get("/console/sign-in/oidc")
	require.Equal(t, http.StatusSeeOther, status)
	authURL, err := url.Parse(h.Get("Location"))
	require.NoError(t, err)
	state := authURL.Query().Get("state")
	status, _, _ = a.get("/console/oidc/callback?error=" + url.QueryEscape("carer@example.org NCC-1") + "&state=" + state)
	require.Equal(t, http.StatusUnauthorized, status)
	entries, _, err := securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Code: console.SignInRefused, Limit: 10})
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "the provider answered an error", entries[0].Detail)

	// A link used twice names who it was for.
	link, err := console.MintLink(s.Secret, s.URL, domain.RoleAuditor, "auditor-amy", time.Minute, time.Now())
	require.NoError(t, err)
	u, err := url.Parse(link.URL)
	require.NoError(t, err)
	for range 2 {
		a.post("/console/link", url.Values{"token": {u.Query().Get("token")}})
	}
	entries, _, err = securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Actor: "auditor-amy", Limit: 10})
	require.NoError(t, err)
	var codes []string
	for _, e := range entries {
		codes = append(codes, e.Code)
	}
	require.ElementsMatch(t, []string{console.SignedIn, console.SignInRefused}, codes)

	// A refused form is recorded as such, and is no activity.
	status, _, _ = a.post("/console/search", url.Values{"kind": {"reference"}, "q": {"NCC-1"}})
	require.Equal(t, http.StatusForbidden, status)
	entries, _, err = securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Code: console.FormRefused, Limit: 10})
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.NotContains(t, entries[0].Detail, "NCC-1")
}

func TestConsole_AProviderThatCannotBeReachedIsNoRefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	issuer := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	s := apitest.StartWith(t, apitest.Options{Console: &console.Config{OIDC: &console.OIDCConfig{
		Issuer: issuer, ClientID: "accessledger-console", ClientSecret: "x"}}})
	a := newAgent(t, s.URL)
	status, _, body := a.get("/console/sign-in/oidc")
	require.Equal(t, http.StatusBadGateway, status)
	require.NotContains(t, body, ln.Addr().String(), "no address of the network in the page")
	entries, _, err := securitylog.New(s.DB).List(context.Background(), securitylog.Filter{Limit: 10})
	require.NoError(t, err)
	require.Empty(t, entries)
}
