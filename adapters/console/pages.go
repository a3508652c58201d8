package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/exportcsv"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// noWait asks the read models for no consistency token.
var noWait = queries.Consistency{}

// pageSize is the number of rows of a listing page.
const pageSize = 50

// maxMarks bounds the record views and alerts drawn on a timeline (the
// newest).
const maxMarks = 1000

func (c *Console) routes() {
	m := c.mux
	m.Handle("GET "+Prefix+"/static/", c.static)
	m.HandleFunc("GET "+Prefix+"/sign-in", c.signInPage)
	m.HandleFunc("GET "+Prefix+"/sign-in/oidc", c.oidcStart)
	m.HandleFunc("GET "+Prefix+"/oidc/callback", c.oidcCallback)
	m.HandleFunc("GET "+Prefix+"/link", c.linkPage)
	m.HandleFunc("POST "+Prefix+"/link", c.linkRedeem)
	m.HandleFunc("GET "+Prefix+"/signed-out", c.signedOutPage)
	m.HandleFunc("POST "+Prefix+"/sign-out", c.form(c.signOut))
	m.HandleFunc("POST "+Prefix+"/session", c.form(c.keepAlive))
	m.HandleFunc("POST "+Prefix+"/search", c.form(c.search))
	m.HandleFunc("POST "+Prefix+"/ledger/verify", c.form(c.verifyNow))
	m.HandleFunc("GET "+Prefix, c.page(c.home))
	m.HandleFunc("GET "+Prefix+"/{$}", c.page(c.home))
	// Pages that show access: not from a log the ledger has not verified,
	// or found changed (the API's guard, R23).
	m.HandleFunc("GET "+Prefix+"/children/{child_id}", c.page(c.guarded(c.childPage)))
	m.HandleFunc("GET "+Prefix+"/children/{child_id}/export", c.page(c.guarded(c.childExport)))
	m.HandleFunc("GET "+Prefix+"/accounts/{account_id}", c.page(c.guarded(c.accountPage)))
	m.HandleFunc("GET "+Prefix+"/accounts/{account_id}/export", c.page(c.guarded(c.accountExport)))
	m.HandleFunc("GET "+Prefix+"/reviews", c.page(c.guarded(c.reviewsPage)))
	m.HandleFunc("GET "+Prefix+"/alerts", c.page(c.guarded(c.alertsPage)))
	m.HandleFunc("GET "+Prefix+"/security-log", c.page(c.securityPage))
	m.HandleFunc("GET "+Prefix+"/ledger", c.page(c.ledgerPage))
	m.HandleFunc("GET "+Prefix+"/ledger/public-key", c.page(c.publicKey))
	m.HandleFunc("GET "+Prefix+"/ledger/checkpoint", c.page(c.checkpoint))
	m.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "Page not found", "There is no such page in the console.")
	})
}

// handler is a page handler of a signed-in person: it writes the page and
// returns the target its view is logged under ("child/<id>", …).
type handler func(w http.ResponseWriter, r *http.Request, s *session) (target string, err error)

// session returns the request's live session, touching it when touch.
func (c *Console) session(r *http.Request, touch bool) (*session, string) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, endNone
	}
	p := c.sessionPolicy(r)
	return c.sessions.lookup(ck.Value, p, c.cfg.MaxSessionAge, touch)
}

// page wraps a GET handler: without a live session it redirects to the
// sign-in page (saying why the session ended); with one it serves the page
// and records the view in the security log.
func (c *Console) page(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, why := c.session(r, true)
		if s == nil {
			q := url.Values{"next": {r.URL.Path}}
			if why == endIdle || why == endMaxAge {
				q.Set("ended", why)
				c.setSessionCookie(w, r, "")
			}
			http.Redirect(w, r, Prefix+"/sign-in?"+q.Encode(), http.StatusSeeOther)
			return
		}
		target, err := h(w, r, s)
		if err != nil {
			c.fail(w, r, s, err)
		}
		if target != "" {
			c.record(r, s.actor, PageView, target, r.Method+" "+r.URL.Path)
		}
	}
}

// guarded refuses h's page while the ledger has not verified the log or
// found it changed: the API then answers no decision, nor does the console.
func (c *Console) guarded(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
		switch err := c.cfg.Queries.LedgerHealth(); {
		case errors.Is(err, queries.ErrLedgerMismatch):
			c.errorPage(w, r, s, http.StatusServiceUnavailable, "The event log does not match the ledger",
				err.Error()+". The console shows no access until this is resolved (docs/ledger.md); the ledger page and the security log remain.")
			return "console/ledger-mismatch", nil
		case err != nil:
			c.errorPage(w, r, s, http.StatusServiceUnavailable, "Not ready",
				"The engine is verifying the event log against the ledger's signed checkpoints. Try again in a moment.")
			return "", nil
		}
		return h(w, r, s)
	}
}

// FormRefused is the security log's code of a form refused for its CSRF
// token or origin.
const FormRefused = "form_refused"

// form wraps a POST handler: it needs a live session, the same origin and
// the session's CSRF token; only then does it count as activity.
func (c *Console) form(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		s, _ := c.session(r, false)
		if s == nil {
			c.errorPage(w, r, nil, http.StatusUnauthorized, "Signed out", "Your session has ended. Sign in again.")
			return
		}
		if !c.sameOrigin(r) || r.ParseForm() != nil || !validCSRF(s, r.PostForm.Get("csrf")) {
			c.record(r, s.actor, FormRefused, "console/form", "a form without the session's token or from another origin: "+r.URL.Path)
			c.errorPage(w, r, s, http.StatusForbidden, "Form refused",
				"The form was not sent from this console's page (its security token is missing or wrong). Go back, reload the page and try again.")
			return
		}
		if s, _ = c.session(r, true); s == nil {
			c.errorPage(w, r, nil, http.StatusUnauthorized, "Signed out", "Your session has ended. Sign in again.")
			return
		}
		target, err := h(w, r, s)
		if err != nil {
			c.fail(w, r, s, err)
		}
		if target != "" {
			c.record(r, s.actor, PageView, target, r.Method+" "+r.URL.Path)
		}
	}
}

// caller is the query service's caller for s.
func caller(r *http.Request, s *session) queries.Caller {
	return queries.Caller{Actor: s.actor, RequestID: r.Header.Get("X-Request-Id"), Target: r.URL.Path, Label: "console " + r.URL.Path}
}

// systemCaller asks what every caller may ask (the policy).
func (c *Console) systemCaller(r *http.Request) queries.Caller {
	return queries.Caller{Actor: domain.Actor{ID: "console", Role: domain.RoleAuditor}, Target: r.URL.Path}
}

// badRequest is an error whose text is shown as it is.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func invalid(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// fail turns an error into an error page: the one place that chooses a
// status for the console.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var br *badRequest
	switch {
	case errors.As(err, &br):
		c.errorPage(w, r, s, http.StatusBadRequest, "Check what you entered", br.msg)
	case errors.Is(err, queries.ErrForbidden), domain.KindOf(err) == domain.KindForbidden:
		c.errorPage(w, r, s, http.StatusForbidden, "Not for your role", "Your role may not see this.")
	case domain.KindOf(err) == domain.KindNotFound:
		c.errorPage(w, r, s, http.StatusNotFound, "Not found", "There is no such child or account.")
	case domain.KindOf(err) == domain.KindInvalid:
		c.errorPage(w, r, s, http.StatusBadRequest, "Check what you entered", err.Error())
	case errors.Is(err, queries.ErrStale), errors.Is(err, queries.ErrNotReady):
		c.errorPage(w, r, s, http.StatusServiceUnavailable, "Not ready", "The engine is catching up with the event log. Try again in a moment.")
	default:
		c.log.Error("console: page", "path", r.URL.Path, "err", err)
		c.errorPage(w, r, s, http.StatusInternalServerError, "Something went wrong", "The page could not be shown. It has been logged.")
	}
}

// view is what every page's layout reads.
type view struct {
	Title   string
	Nav     string
	Session *sessionView
	Data    any
	// Refresh, when set, moves the browser on to that console path at
	// once (a meta refresh, which needs no script).
	Refresh string
	// LedgerAlarm says that the ledger found the stored log changed
	// (R23): what the pages show may not be what was recorded.
	LedgerAlarm string
}

type sessionView struct {
	Actor       string
	Role        string
	CSRF        string
	IdleSeconds int
	WarnSeconds int
	EndsAt      string
	Can         map[string]bool
}

func (c *Console) sessionView(r *http.Request, s *session) *sessionView {
	if s == nil {
		return nil
	}
	p := c.sessionPolicy(r)
	can := map[string]bool{}
	for _, q := range []queries.Name{queries.QueryChildHistory, queries.QueryChildViewers, queries.QueryGetAccount,
		queries.QueryListAccounts, queries.QueryAuditList, queries.QuerySecurityLog, queries.QueryListReviews, queries.QueryAlerts,
		queries.QueryChildViews, queries.QueryAccountViews, queries.QueryAccountHistory, queries.QueryChildExport,
		queries.QueryAccountExport, queries.QueryLedgerCheckpoint, queries.QueryAuditVerify} {
		can[string(q)] = queries.Allows(q, s.actor.Role)
	}
	return &sessionView{Actor: s.actor.ID, Role: string(s.actor.Role), CSRF: s.csrf, IdleSeconds: int(p.idle / time.Second),
		WarnSeconds: int(p.warn / time.Second), EndsAt: fmtTime(s.lastSeen.Add(p.idle)), Can: can}
}

// render writes page with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, page string, v view) {
	t, ok := c.pages[page]
	if !ok {
		panic("console: no page " + page)
	}
	v.Session = c.sessionView(r, s)
	if s != nil {
		if err := c.cfg.Queries.LedgerHealth(); errors.Is(err, queries.ErrLedgerMismatch) {
			v.LedgerAlarm = err.Error()
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorData struct{ Heading, Text string }

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, heading, text string) {
	c.render(w, r, s, status, "error", view{Title: heading, Data: errorData{heading, text}})
}

// ---- signing in and out ----

type signInData struct {
	OIDC   bool
	Ended  string
	Next   string
	Failed string
}

// safeNext returns next when it is a console path, else the start page.
func safeNext(next string) string {
	if next == Prefix || (strings.HasPrefix(next, Prefix+"/") && !strings.HasPrefix(next, "//") &&
		!strings.ContainsAny(next, "\\?#") && !strings.Contains(next, "/..")) {
		return next
	}
	return Prefix
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	d := signInData{OIDC: c.oidc != nil, Ended: r.URL.Query().Get("ended"), Next: safeNext(r.URL.Query().Get("next"))}
	c.render(w, r, nil, http.StatusOK, "signin", view{Title: "Sign in", Data: d})
}

func (c *Console) signedOutPage(w http.ResponseWriter, r *http.Request) {
	d := signInData{OIDC: c.oidc != nil, Ended: r.URL.Query().Get("reason"), Next: Prefix}
	c.render(w, r, nil, http.StatusOK, "signin", view{Title: "Signed out", Data: d})
}

func (c *Console) oidcRedirect(r *http.Request) string {
	return c.origin(r) + Prefix + "/oidc/callback"
}

func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		c.errorPage(w, r, nil, http.StatusNotFound, "No identity provider", "This console has no identity provider configured: use a sign-in link from `accessd console-link`.")
		return
	}
	u, state, err := c.oidc.start(r.Context(), c.oidcRedirect(r), safeNext(r.URL.Query().Get("next")))
	if errors.Is(err, errBusy) {
		c.errorPage(w, r, nil, http.StatusServiceUnavailable, "Too many sign-ins", "Too many sign-ins are under way. Try again in a few minutes.")
		return
	}
	if err != nil {
		c.log.Error("console: oidc start", "err", err)
		c.errorPage(w, r, nil, http.StatusBadGateway, "The identity provider cannot be reached", "Try again in a moment; the error has been logged.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state, Path: Prefix + "/oidc/callback", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: c.secure(r), MaxAge: int(loginTTL / time.Second)})
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		c.errorPage(w, r, nil, http.StatusNotFound, "No identity provider", "This console has no identity provider configured.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: Prefix + "/oidc/callback", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: c.secure(r)})
	q := r.URL.Query()
	var cookieState string
	if ck, err := r.Cookie(loginCookie); err == nil {
		cookieState = ck.Value
	}
	// Only an answer to a sign-in this browser started is looked at, or
	// recorded: anyone can call this address with anything.
	pl, err := c.oidc.take(q.Get("state"), cookieState)
	if err != nil {
		c.errorPage(w, r, nil, http.StatusForbidden, "Sign-in refused", err.Error())
		return
	}
	if e := q.Get("error"); e != "" {
		c.record(r, domain.Actor{}, SignInRefused, "console/oidc", "the provider answered "+oauthCode(e))
		c.errorPage(w, r, nil, http.StatusUnauthorized, "Sign-in refused", "The identity provider did not sign you in.")
		return
	}
	actor, err := c.oidc.finish(r.Context(), c.oidcRedirect(r), pl, q.Get("code"))
	if err != nil {
		var se *errSignIn
		if !errors.As(err, &se) {
			c.log.Error("console: oidc: the provider cannot be reached", "err", err)
			c.errorPage(w, r, nil, http.StatusBadGateway, "The identity provider cannot be reached", "Try again in a moment; the error has been logged.")
			return
		}
		if se.cause != nil {
			c.log.Warn("console: oidc: sign-in refused", "why", se.why, "err", se.cause)
		}
		c.record(r, actor, SignInRefused, "console/oidc", se.why)
		c.errorPage(w, r, nil, http.StatusForbidden, "Sign-in refused", se.why)
		return
	}
	c.signIn(w, r, actor, "oidc", pl.next)
}

// signIn starts a session and sends the browser to the start page. The
// answer is a page that moves on by itself (meta refresh, and a link): a
// redirect would carry on the cross-site navigation from the provider, on
// which the SameSite=Strict session cookie is not sent.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request, actor domain.Actor, via, next string) {
	next = safeNext(next)
	c.sessions.sweep(c.sessionPolicy(r), c.cfg.MaxSessionAge)
	if ck, err := r.Cookie(SessionCookie); err == nil {
		c.sessions.end(ck.Value) // never two sessions in one browser
	}
	id, s := c.sessions.start(actor, via)
	c.setSessionCookie(w, r, id)
	c.record(r, actor, SignedIn, "console/"+via, "signed in through "+via)
	c.render(w, r, s, http.StatusOK, "signedin", view{Title: "Signed in", Data: next, Refresh: next})
}

type linkData struct {
	Token string
	Actor string
	Role  string
}

func (c *Console) linkPage(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	a, err := c.links.check(tok)
	if err != nil {
		c.errorPage(w, r, nil, http.StatusUnauthorized, "This sign-in link cannot be used",
			"It has expired, was used already, or is not a link of this console. Ask for a new one (`accessd console-link`).")
		return
	}
	c.render(w, r, nil, http.StatusOK, "link", view{Title: "Sign in", Data: linkData{Token: tok, Actor: a.ID, Role: string(a.Role)}})
}

func (c *Console) linkRedeem(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !c.sameOrigin(r) || r.ParseForm() != nil {
		c.errorPage(w, r, nil, http.StatusForbidden, "Form refused", "The form was not sent from this console's page.")
		return
	}
	a, err := c.links.redeem(r.PostForm.Get("token"))
	if err != nil {
		// Only a link of ours used twice names who it was for; anything
		// else anyone can send, so it goes to the engine's log, not to
		// the security log.
		if errors.Is(err, errLinkUsed) {
			c.record(r, a, SignInRefused, "console/link", "a sign-in link used again")
		} else {
			c.log.Warn("console: a sign-in link that is not valid", "err", err)
		}
		c.errorPage(w, r, nil, http.StatusUnauthorized, "This sign-in link cannot be used",
			"It has expired, was used already, or is not a link of this console. Ask for a new one (`accessd console-link`).")
		return
	}
	c.signIn(w, r, a, "link", Prefix)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	if ck, err := r.Cookie(SessionCookie); err == nil {
		c.sessions.end(ck.Value)
	}
	c.setSessionCookie(w, r, "")
	c.record(r, s.actor, SignedOut, "console/session", "signed out")
	http.Redirect(w, r, Prefix+"/signed-out", http.StatusSeeOther)
	return "", nil
}

// keepAlive records activity (the countdown's "stay signed in"): 204 for
// the script, else back to the page.
func (c *Console) keepAlive(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	if r.Header.Get("Accept") == "application/json" {
		p := c.sessionPolicy(r)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"idle_seconds": int(p.idle / time.Second), "warn_seconds": int(p.warn / time.Second)})
		return "", nil
	}
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
	return "", nil
}

// ---- search ----

type homeData struct {
	Kind, Query string
	NotFound    string
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	c.render(w, r, s, http.StatusOK, "home", view{Title: "Find a child or an account", Nav: "search", Data: homeData{Kind: "reference"}})
	return "console/home", nil
}

// search finds a child by reference or an account by email. The term comes
// in a POST body, so it is in no URL, history or log.
func (c *Console) search(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	kind, q := r.PostForm.Get("kind"), strings.TrimSpace(r.PostForm.Get("q"))
	d := homeData{Kind: kind, Query: q}
	switch {
	case q == "":
		d.NotFound = "Enter a reference or an email address."
	case kind == "reference":
		list, err := c.cfg.Queries.ListChildren(r.Context(), caller(r, s), queries.ListChildrenParams{Reference: q})
		if err != nil && domain.KindOf(err) != domain.KindInvalid {
			return "console/search", err
		}
		if err == nil && len(list.Children) > 0 {
			http.Redirect(w, r, Prefix+"/children/"+list.Children[0].ChildID.String(), http.StatusSeeOther)
			return "console/search", nil
		}
		d.NotFound = "No child has that reference."
	case kind == "email":
		if !queries.Allows(queries.QueryListAccounts, s.actor.Role) {
			return "console/search", fmt.Errorf("console: %w", queries.ErrForbidden)
		}
		list, err := c.cfg.Queries.ListAccounts(r.Context(), caller(r, s), queries.ListAccountsParams{Email: q, HasEmail: true})
		if err != nil && domain.KindOf(err) != domain.KindInvalid {
			return "console/search", err
		}
		if err == nil && len(list.Accounts) > 0 {
			http.Redirect(w, r, Prefix+"/accounts/"+list.Accounts[0].AccountID.String(), http.StatusSeeOther)
			return "console/search", nil
		}
		d.NotFound = "No account has that email address."
	default:
		return "console/search", invalid("Choose what to search for: a child's reference or an account's email.")
	}
	c.render(w, r, s, http.StatusOK, "home", view{Title: "Find a child or an account", Nav: "search", Data: d})
	return "console/search", nil
}

// ---- a child ----

// parseWhen reads a time a form sent: the date and time of a
// datetime-local input (taken as UTC), a date, or RFC 3339.
func parseWhen(name, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			if t.Year() < 1900 || t.Year() > 9899 {
				break
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, invalid("%q is not a date and time (use 2024-03-03T09:00, in UTC).", clip(v, 40))
}

func pathID(r *http.Request, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue(name))
	if err != nil || id == uuid.Nil {
		return uuid.Nil, fmt.Errorf("console: %s: %w", name, domain.ErrChildNotFound)
	}
	return id, nil
}

type childData struct {
	Record     api.ChildRecord
	Viewers    []api.Viewer
	Timeline   timeline
	Rows       []intervalRow
	At, Known  time.Time
	AtInput    string
	KnownInput string
	AtRows     []intervalRow
	Views      []api.ViewEntry
	ViewsMore  bool
	Alerts     []api.Alert
}

func inputTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04")
}

func (c *Console) childPage(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	id, err := pathID(r, "child_id")
	if err != nil {
		return "", err
	}
	target := "child/" + id.String()
	d, err := c.childData(r, s, id)
	if err != nil {
		return target, err
	}
	// The title names the child by id: a title is kept in the browser's
	// history, the reference is personal data.
	c.render(w, r, s, http.StatusOK, "child", view{Title: "Child " + shortID(id), Nav: "search", Data: d})
	return target, nil
}

// childData reads everything the child's page shows that the person's
// role may see.
func (c *Console) childData(r *http.Request, s *session, id uuid.UUID) (childData, error) {
	ctx, who, role := r.Context(), caller(r, s), s.actor.Role
	q := r.URL.Query()
	at, err := parseWhen("at", q.Get("at"))
	if err != nil {
		return childData{}, err
	}
	known, err := parseWhen("known_at", q.Get("known_at"))
	if err != nil {
		return childData{}, err
	}
	now := c.cfg.Clock()
	d := childData{At: at, Known: known, AtInput: inputTime(at), KnownInput: inputTime(known)}
	if d.Record, err = c.cfg.Queries.GetChild(ctx, who, id, now); err != nil {
		return d, err
	}
	if queries.Allows(queries.QueryChildViewers, role) {
		v, err := c.cfg.Queries.ChildViewers(ctx, who, id, now, noWait)
		if err != nil {
			return d, err
		}
		d.Viewers = v.Viewers
	}
	var ivs []api.Interval
	if queries.Allows(queries.QueryChildHistory, role) {
		h, err := c.cfg.Queries.ChildHistory(ctx, who, id, queries.HistoryParams{KnownAt: known})
		if err != nil {
			return d, err
		}
		ivs = h.Intervals
	}
	var views []api.ViewEntry
	if queries.Allows(queries.QueryChildViews, role) {
		vp, err := c.cfg.Queries.ChildViews(ctx, who, id, queries.ViewFilter{Child: &id, Limit: maxMarks}, noWait)
		if err != nil {
			return d, err
		}
		views, d.ViewsMore = vp.Views, vp.Next != nil
		d.Views = views
	}
	if queries.Allows(queries.QueryAlerts, role) {
		ap, err := c.cfg.Queries.Alerts(ctx, who, queries.ViewFilter{Child: &id, Limit: maxMarks}, noWait)
		if err != nil {
			return d, err
		}
		d.Alerts = ap.Alerts
	}
	d.Timeline, d.Rows = buildTimeline(ivs, views, d.Alerts, at, now)
	for _, row := range d.Rows {
		if row.Contains {
			d.AtRows = append(d.AtRows, row)
		}
	}
	return d, nil
}

// ---- an account ----

type accountData struct {
	Account   *api.Account
	Lifecycle []api.AuditEntry
	Children  []childAccess
	Views     []api.ViewEntry
	ViewsMore bool
	ID        uuid.UUID
}

// childAccess is what one child's record an account could see, and when.
type childAccess struct {
	ChildID   uuid.UUID
	Intervals []intervalRow
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	id, err := pathID(r, "account_id")
	if err != nil {
		return "", err
	}
	target := "account/" + id.String()
	ctx, who, role := r.Context(), caller(r, s), s.actor.Role
	d := accountData{ID: id}
	now := c.cfg.Clock()
	if queries.Allows(queries.QueryGetAccount, role) {
		a, err := c.cfg.Queries.GetAccount(ctx, who, id, now, noWait)
		if err != nil {
			return target, err
		}
		d.Account = &a
	}
	if queries.Allows(queries.QueryAuditList, role) {
		for after := int64(0); ; {
			page, err := c.cfg.Queries.AuditList(ctx, who, queries.AuditFilter{AccountID: &id, After: after, Limit: 1000}, noWait)
			if err != nil {
				return target, err
			}
			for _, e := range page.Entries {
				if e.ChildID == nil { // the account's own events: its lifecycle
					d.Lifecycle = append(d.Lifecycle, e)
				}
			}
			if page.Next == nil || len(d.Lifecycle) > 500 {
				break
			}
			if after, err = strconv.ParseInt(*page.Next, 10, 64); err != nil {
				return target, fmt.Errorf("console: audit cursor: %w", err)
			}
		}
	}
	if queries.Allows(queries.QueryAccountHistory, role) {
		h, err := c.cfg.Queries.AccountHistory(ctx, who, id, queries.HistoryParams{})
		if err != nil {
			return target, err
		}
		_, rows := buildTimeline(h.Intervals, nil, nil, time.Time{}, now)
		byChild := map[uuid.UUID]int{}
		for i, iv := range h.Intervals {
			j, ok := byChild[iv.ChildID]
			if !ok {
				j = len(d.Children)
				byChild[iv.ChildID] = j
				d.Children = append(d.Children, childAccess{ChildID: iv.ChildID})
			}
			d.Children[j].Intervals = append(d.Children[j].Intervals, rows[i])
		}
	}
	if queries.Allows(queries.QueryAccountViews, role) {
		vp, err := c.cfg.Queries.AccountViews(ctx, who, id, queries.ViewFilter{Account: &id, Limit: pageSize}, noWait)
		if err != nil {
			return target, err
		}
		d.Views, d.ViewsMore = vp.Views, vp.Next != nil
	}
	c.render(w, r, s, http.StatusOK, "account", view{Title: "Account " + shortID(id), Nav: "search", Data: d})
	return target, nil
}

// ---- exports ----

func (c *Console) childExport(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	id, err := pathID(r, "child_id")
	if err != nil {
		return "", err
	}
	if err := checkFormat(r); err != nil {
		return "", err
	}
	x, err := c.cfg.Queries.ChildExport(r.Context(), caller(r, s), id, noWait)
	if err != nil {
		return "child/" + id.String(), err
	}
	return "child/" + id.String(), download(w, r, "child-"+id.String(), x, exportcsv.ChildZip)
}

func (c *Console) accountExport(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	id, err := pathID(r, "account_id")
	if err != nil {
		return "", err
	}
	if err := checkFormat(r); err != nil {
		return "", err
	}
	x, err := c.cfg.Queries.AccountExport(r.Context(), caller(r, s), id, noWait)
	if err != nil {
		return "account/" + id.String(), err
	}
	return "account/" + id.String(), download(w, r, "account-"+id.String(), x, exportcsv.AccountZip)
}

// checkFormat refuses an export's format other than json and csv, before
// the export is made.
func checkFormat(r *http.Request) error {
	switch r.URL.Query().Get("format") {
	case "", "json", "csv":
		return nil
	}
	return invalid("The export's format is json or csv.")
}

// download answers an export as a JSON document or a zip of CSV files
// (format=json|csv), as an attachment.
func download[T any](w http.ResponseWriter, r *http.Request, name string, x T, zip func(io.Writer, T) error) error {
	var body []byte
	var err error
	switch r.URL.Query().Get("format") {
	case "", "json":
		body, err = json.MarshalIndent(x, "", "  ")
		w.Header().Set("Content-Type", "application/json")
		name += ".json"
	case "csv":
		var buf bytes.Buffer
		err = zip(&buf, x)
		body = buf.Bytes()
		w.Header().Set("Content-Type", "application/zip")
		name += "-csv.zip"
	default:
		return invalid("The export's format is json or csv.")
	}
	if err != nil {
		return fmt.Errorf("console: export: %w", err)
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, _ = w.Write(body)
	return nil
}

// ---- listings ----

type reviewsData struct {
	Page      api.ReviewList
	DueBefore string
	Worker    string
	Next      string
}

func (c *Console) reviewsPage(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	q := r.URL.Query()
	due, err := parseWhen("due_before", q.Get("due_before"))
	if err != nil {
		return "console/reviews", err
	}
	worker := strings.TrimSpace(q.Get("worker"))
	p := queries.ListReviewsParams{DueBefore: due, WorkerID: worker, After: q.Get("after"), Limit: pageSize}
	if p.DueBefore.IsZero() {
		p.DueBefore = c.cfg.Clock().AddDate(0, 1, 0)
	}
	page, err := c.cfg.Queries.ListReviews(r.Context(), caller(r, s), p)
	if err != nil {
		return "console/reviews", err
	}
	d := reviewsData{Page: page, DueBefore: inputTime(p.DueBefore), Worker: worker}
	if page.Next != nil {
		d.Next = "?" + url.Values{"due_before": {d.DueBefore}, "worker": {worker}, "after": {*page.Next}}.Encode()
	}
	c.render(w, r, s, http.StatusOK, "reviews", view{Title: "Grants due for review", Nav: "reviews", Data: d})
	return "console/reviews", nil
}

type alertsData struct {
	Page     api.AlertPage
	From, To string
	Next     string
}

func (c *Console) alertsPage(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	q := r.URL.Query()
	f := queries.ViewFilter{Limit: pageSize}
	var err error
	if f.From, err = parseWhen("from", q.Get("from")); err != nil {
		return "console/alerts", err
	}
	if f.To, err = parseWhen("to", q.Get("to")); err != nil {
		return "console/alerts", err
	}
	if a := q.Get("after"); a != "" {
		if f.After, err = queries.ParseViewCursor(a); err != nil {
			return "console/alerts", invalid("That page of alerts does not exist.")
		}
	}
	page, err := c.cfg.Queries.Alerts(r.Context(), caller(r, s), f, noWait)
	if err != nil {
		return "console/alerts", err
	}
	d := alertsData{Page: page, From: inputTime(f.From), To: inputTime(f.To)}
	if page.Next != nil {
		d.Next = "?" + url.Values{"from": {d.From}, "to": {d.To}, "after": {*page.Next}}.Encode()
	}
	c.render(w, r, s, http.StatusOK, "alerts", view{Title: "Alerts", Nav: "alerts", Data: d})
	return "console/alerts", nil
}

type securityData struct {
	Page                 api.SecurityLogPage
	Actor, Command, Code string
	From, To             string
	Next                 string
}

func (c *Console) securityPage(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	q := r.URL.Query()
	f := queries.SecurityFilter{Actor: strings.TrimSpace(q.Get("actor")), Command: strings.TrimSpace(q.Get("command")),
		Code: strings.TrimSpace(q.Get("code")), Limit: pageSize}
	var err error
	if f.From, err = parseWhen("from", q.Get("from")); err != nil {
		return "console/security-log", err
	}
	if f.To, err = parseWhen("to", q.Get("to")); err != nil {
		return "console/security-log", err
	}
	if a := q.Get("after"); a != "" {
		if f.After, err = strconv.ParseInt(a, 10, 64); err != nil || f.After < 0 {
			return "console/security-log", invalid("That page of the security log does not exist.")
		}
	}
	page, err := c.cfg.Queries.SecurityLogPage(r.Context(), caller(r, s), f, noWait)
	if err != nil {
		return "console/security-log", err
	}
	d := securityData{Page: page, Actor: f.Actor, Command: f.Command, Code: f.Code, From: inputTime(f.From), To: inputTime(f.To)}
	if page.Next != nil {
		d.Next = "?" + url.Values{"actor": {f.Actor}, "command": {f.Command}, "code": {f.Code}, "from": {d.From}, "to": {d.To},
			"after": {*page.Next}}.Encode()
	}
	c.render(w, r, s, http.StatusOK, "security", view{Title: "Security log", Nav: "security", Data: d})
	return "console/security-log", nil
}

// ---- the ledger ----

type ledgerData struct {
	Checkpoint string
	Origin     string
	Size       string
	Root       string
	Verified   *verifyView
	CanVerify  bool
}

type verifyView struct {
	OK      bool
	Summary string
	At      string
}

func (c *Console) ledgerPage(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	d, err := c.ledgerData(r, s)
	if err != nil {
		return "console/ledger", err
	}
	c.render(w, r, s, http.StatusOK, "ledger", view{Title: "The ledger", Nav: "ledger", Data: d})
	return "console/ledger", nil
}

func (c *Console) ledgerData(r *http.Request, s *session) (ledgerData, error) {
	d := ledgerData{CanVerify: c.cfg.Ledger != nil && queries.Allows(queries.QueryAuditVerify, s.actor.Role)}
	cp, err := c.cfg.Queries.LedgerCheckpoint(r.Context(), caller(r, s))
	if err != nil {
		return d, err
	}
	d.Checkpoint = string(cp)
	// A checkpoint's body: origin, size, root hash, one per line.
	lines := strings.SplitN(d.Checkpoint, "\n", 4)
	if len(lines) >= 3 {
		d.Origin, d.Size, d.Root = lines[0], lines[1], lines[2]
	}
	return d, nil
}

func (c *Console) verifyNow(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	if c.cfg.Ledger == nil || !queries.Allows(queries.QueryAuditVerify, s.actor.Role) {
		return "console/ledger", fmt.Errorf("console: verify: %w", queries.ErrForbidden)
	}
	d, err := c.ledgerData(r, s)
	if err != nil {
		return "console/ledger", err
	}
	rep, err := c.cfg.Ledger.VerifyNow(r.Context())
	if err != nil {
		return "console/ledger", err
	}
	d.Verified = &verifyView{OK: rep.OK, Summary: rep.Summary(), At: fmtTime(c.cfg.Clock())}
	c.render(w, r, s, http.StatusOK, "ledger", view{Title: "The ledger", Nav: "ledger", Data: d})
	return "console/ledger", nil
}

func (c *Console) publicKey(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	k, err := c.cfg.Queries.LedgerPublicKey(r.Context(), caller(r, s))
	if err != nil {
		return "console/ledger", err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="ledger-public-key.txt"`)
	_, _ = w.Write([]byte(k + "\n"))
	return "console/ledger", nil
}

func (c *Console) checkpoint(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	cp, err := c.cfg.Queries.LedgerCheckpoint(r.Context(), caller(r, s))
	if err != nil {
		return "console/ledger", err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="ledger-checkpoint.txt"`)
	_, _ = w.Write(cp)
	return "console/ledger", nil
}

// ---- templates ----

var funcs = template.FuncMap{
	"time": fmtTime,
	"optTime": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return fmtTime(*t)
	},
	"short": shortID,
	"ref":   refText,
	"opt": func(s *string) string {
		if s == nil {
			return "—"
		}
		return *s
	},
	"perms": permissionsText,
	"reason": func(r any) string {
		return reasonLabel(fmt.Sprint(r))
	},
	"f1":  func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"add": func(a, b int) int { return a + b },
}

var pageNames = []string{"error", "signin", "signedin", "link", "home", "child", "account", "reviews", "alerts", "security", "ledger"}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFiles, "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// clip cuts s to n bytes at a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
