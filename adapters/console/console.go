// Package console is the auditor's console: server-rendered web pages at
// /console that answer "who could see this child, when, and why" for
// auditors, managers and data protection officers (api.md, "The auditor's
// console").
//
// The pages are html/template, with their styles and one small script
// embedded in the binary; every page works with JavaScript off (the script
// only adds the session countdown's live update). There is no build step.
//
// # Who may sign in, and how
//
// Only the roles auditor, manager and dpo may sign in (AllowedRoles). A
// person signs in either through the council's OpenID Connect provider
// (authorization code with PKCE, the role taken from a configured claim;
// see OIDCConfig), or, for local use with no provider, through a one-time
// link that `accessd console-link` prints (MintLink): the link opens a page
// whose button redeems it, so a link scanner that fetches it does not use
// it up.
//
// Every page reads through the query service as the signed-in person
// (queries.Caller), so the roles of the API decide what each person sees:
// a section a role may not see says so, and is never asked for.
//
// # Sessions
//
// A session lives in the memory of the engine that created it (a restart
// signs everyone out). Its id is 256 random bits in an HttpOnly,
// SameSite=Strict cookie (Secure when the console is served over TLS or
// its base URL is https); the server keeps only the id's SHA-256. Every
// state-changing form carries the session's CSRF token and is refused
// without it. The session policy of R16 applies to the console itself: a
// session idle for the policy's session_idle_timeout ends, and each page
// shows a countdown from session_warning_after. A session also ends
// MaxSessionAge after sign-in, whatever its activity.
//
// # What is written down
//
// Every page a person opens, every sign-in, refused sign-in and sign-out
// goes into the security log (Command "console", codes PageView, SignedIn,
// SignInRefused, SignedOut), naming the child or account by id only: no
// search term (an email, a reference) is ever written to a log, put in a
// URL or kept in the browser's history, since searches are POSTed.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/ledger"
	"github.com/accessledger/accessledger/queries"
)

// Prefix is the path under which the console is served.
const Prefix = "/console"

// The security log's entries of the console: Command is SecurityCommand,
// Code one of these.
const (
	SecurityCommand = "console"
	PageView        = "page_view"
	SignedIn        = "signed_in"
	SignInRefused   = "sign_in_refused"
	SignedOut       = "signed_out"
)

// DefaultMaxSessionAge is the longest a console session lives after
// sign-in, however active: a working day.
const DefaultMaxSessionAge = 12 * time.Hour

// AllowedRoles are the roles that may sign in to the console.
var AllowedRoles = []domain.Role{domain.RoleAuditor, domain.RoleManager, domain.RoleDPO}

// Allowed reports whether role may sign in to the console.
func Allowed(role domain.Role) bool {
	for _, r := range AllowedRoles {
		if r == role {
			return true
		}
	}
	return false
}

// Queries is what the console reads: *queries.Service implements it. Each
// method authorizes the caller itself.
type Queries interface {
	GetChild(ctx context.Context, c queries.Caller, id uuid.UUID, at time.Time) (api.ChildRecord, error)
	ListChildren(ctx context.Context, c queries.Caller, p queries.ListChildrenParams) (api.ChildList, error)
	ChildViewers(ctx context.Context, c queries.Caller, child uuid.UUID, at time.Time, w queries.Consistency) (api.ViewersAnswer, error)
	ChildHistory(ctx context.Context, c queries.Caller, child uuid.UUID, p queries.HistoryParams) (api.ChildHistory, error)
	AccountHistory(ctx context.Context, c queries.Caller, account uuid.UUID, p queries.HistoryParams) (api.AccountHistory, error)
	GetAccount(ctx context.Context, c queries.Caller, id uuid.UUID, at time.Time, w queries.Consistency) (api.Account, error)
	ListAccounts(ctx context.Context, c queries.Caller, p queries.ListAccountsParams) (api.AccountList, error)
	AuditList(ctx context.Context, c queries.Caller, f queries.AuditFilter, w queries.Consistency) (api.AuditPage, error)
	SecurityLogPage(ctx context.Context, c queries.Caller, f queries.SecurityFilter, w queries.Consistency) (api.SecurityLogPage, error)
	Policy(ctx context.Context, c queries.Caller, w queries.Consistency, at time.Time) (api.Policy, error)
	ListReviews(ctx context.Context, c queries.Caller, p queries.ListReviewsParams) (api.ReviewList, error)
	ChildViews(ctx context.Context, c queries.Caller, child uuid.UUID, f queries.ViewFilter, w queries.Consistency) (api.ViewPage, error)
	AccountViews(ctx context.Context, c queries.Caller, account uuid.UUID, f queries.ViewFilter, w queries.Consistency) (api.ViewPage, error)
	Alerts(ctx context.Context, c queries.Caller, f queries.ViewFilter, w queries.Consistency) (api.AlertPage, error)
	AccountExport(ctx context.Context, c queries.Caller, id uuid.UUID, w queries.Consistency) (api.AccountExport, error)
	ChildExport(ctx context.Context, c queries.Caller, id uuid.UUID, w queries.Consistency) (api.ChildExport, error)
	LedgerCheckpoint(ctx context.Context, c queries.Caller) ([]byte, error)
	LedgerPublicKey(ctx context.Context, c queries.Caller) (string, error)
	// LedgerHealth is not nil while the ledger has not verified the log,
	// and a *queries.Mismatch once it found the log tampered with: every
	// page then says so.
	LedgerHealth() error
}

// SecurityLog records the console's entries: *securitylog.Log implements
// it.
type SecurityLog interface {
	Record(ctx context.Context, e securitylog.Entry) error
}

// LedgerVerifier verifies the stored event log against the ledger's tree
// and its published checkpoints on demand (the ledger page's "verify
// now"): *ledger.Ledger with its log implements it through LedgerCheck.
type LedgerVerifier interface {
	VerifyNow(ctx context.Context) (*ledger.Report, error)
}

// Config configures the console. Queries, SecurityLog and LinkSecret are
// required.
type Config struct {
	Queries     Queries
	SecurityLog SecurityLog
	// LinkSecret is the engine's signing secret: sign-in links are signed
	// with a key derived from it (MintLink), never with the secret itself,
	// so a link is not a bearer token of the API.
	LinkSecret []byte
	// OIDC, when set, signs people in through the council's provider.
	OIDC *OIDCConfig
	// Ledger answers "verify now"; nil hides the button.
	Ledger LedgerVerifier
	// BaseURL is the console's external origin (e.g.
	// https://access.council.example): the OIDC redirect URL is built on
	// it and cookies are Secure when it is https. Empty: taken from each
	// request (http, or https under TLS).
	BaseURL string
	// MaxSessionAge bounds a session's life (default DefaultMaxSessionAge).
	MaxSessionAge time.Duration
	// Clock is the time (default time.Now).
	Clock func() time.Time
	// Logger receives errors (default slog.Default()).
	Logger *slog.Logger
}

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Console is the console's handler.
type Console struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	links    *linkVerifier
	oidc     *oidcLogin
	static   http.Handler

	policyMu sync.Mutex
	policy   sessionPolicy
	policyAt time.Time
}

// New returns the console's handler, to be served under Prefix.
func New(cfg Config) (*Console, error) {
	var problems []error
	if cfg.Queries == nil {
		problems = append(problems, errors.New("Queries is nil"))
	}
	if cfg.SecurityLog == nil {
		problems = append(problems, errors.New("SecurityLog is nil"))
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			problems = append(problems, fmt.Errorf("BaseURL %q is not an http(s) origin", cfg.BaseURL))
		}
		cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	}
	links, err := newLinkVerifier(cfg.LinkSecret, cfg.Clock)
	if err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("console: invalid config: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxSessionAge <= 0 {
		cfg.MaxSessionAge = DefaultMaxSessionAge
	}
	c := &Console{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), sessions: newSessions(cfg.Clock), links: links}
	if cfg.OIDC != nil {
		if c.oidc, err = newOIDCLogin(*cfg.OIDC, cfg.Clock); err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	c.static = http.StripPrefix(Prefix+"/static/", http.FileServerFS(sub))
	c.routes()
	return c, nil
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: with it a browser sends "Origin: null" on forms
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"/static/") {
		h.Set("Cache-Control", "no-store")
	}
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			c.log.Error("console: panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
			c.errorPage(w, r, nil, http.StatusInternalServerError, "Something went wrong", "The page could not be shown. It has been logged.")
		}
	}()
	c.mux.ServeHTTP(w, r)
}

// secure reports whether cookies must be Secure for r.
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(c.cfg.BaseURL, "https://")
}

// origin is the console's external origin for r.
func (c *Console) origin(r *http.Request) string {
	if c.cfg.BaseURL != "" {
		return c.cfg.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// sameOrigin refuses a POST whose Origin (or, without one, Referer would
// be absent under our Referrer-Policy) names another site: a second guard
// beside the CSRF token and SameSite=Strict.
func (c *Console) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == "" // a privacy-stripped "null" origin is refused
	}
	return strings.EqualFold(o, c.origin(r))
}

// record writes a security log entry; a failure is logged, never shown.
func (c *Console) record(r *http.Request, actor domain.Actor, code, target, detail string) {
	id, role := actor.ID, string(actor.Role)
	if id == "" {
		id = "anonymous"
	}
	if role == "" {
		role = "none"
	}
	e := securitylog.Entry{At: c.cfg.Clock(), ActorID: id, ActorRole: role, Command: SecurityCommand,
		Target: target, Code: code, Detail: detail, RequestID: r.Header.Get("X-Request-Id")}
	if err := c.cfg.SecurityLog.Record(context.WithoutCancel(r.Context()), e); err != nil {
		c.log.Error("console: security log", "code", code, "err", err)
	}
}
