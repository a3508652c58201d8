// Package httpapi is the thin HTTP API of accessledger: the commands of
// workers, managers, the portals team and the service, the queries of
// portal backends and auditors, the watch stream, and the operational
// endpoints (/healthz, /readyz, /metrics). docs/openapi.yaml describes every
// route; the tests check that the server and the document agree.
//
// The handler is thin by design. Commands are decoded, checked for shape
// (JSON, UTF-8, UUIDs, RFC 3339 times) and passed with the caller's actor to
// the command service, which decides authorization (R8) and everything
// else. Queries are answered from the in-memory access index (checks, lists,
// the watch stream) or from the SQL read models (history, accounts, audit
// trail, security log); the HTTP layer enforces the roles of api.md for
// queries and records a refused query in the security log.
//
// Cross-cutting concerns live in one place each:
//
//   - errors: every error becomes an RFC 9457 problem in writeProblem
//     (problem.go), the only place that chooses a status and a code;
//   - bodies: decodeBody (decode.go) limits a body to MaxBodyBytes, requires
//     application/json, valid UTF-8, exactly one JSON object without
//     duplicate or unknown keys, and clean text (decodeChecks, checks.go,
//     the same for the one query with a body, POST /v1/checks, up to
//     MaxChecksBodyBytes);
//   - idempotency: runCommand (commands.go) fingerprints the request,
//     replays stored answers (header Idempotent-Replayed: true) and
//     abandons the key when the command fails with a 5xx;
//   - request ids, access logs, panics and metrics: the outer handler
//     (middleware.go);
//   - consistency tokens: every command answer carries "position"; every
//     query answers the position it was computed at and accepts
//     min_position (consistency.go);
//   - the ledger's guard: a log the ledger found tampered with stops every
//     decision with 503 "ledger_mismatch" in the route handler
//     (middleware.go), and /readyz waits for the ledger's verification
//     (ledger.go).
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// Defaults of Config.
const (
	// DefaultWatchHeartbeat is how often an idle watch stream sends a
	// comment line, so that proxies and clients see the connection alive.
	DefaultWatchHeartbeat = 15 * time.Second
	// DefaultWatchAlertPoll is how often a watch stream reads the alerts
	// raised since its last read (R20).
	DefaultWatchAlertPoll = time.Second
)

// MaxBodyBytes is the largest request body accepted (64 KiB); a larger one
// is answered 413 "too_large".
const MaxBodyBytes = 64 << 10

// Commands is the command service: *commands.Service implements it. Every
// method decides authorization itself (R8) from Meta.Actor.
type Commands interface {
	RegisterChild(context.Context, commands.Meta, commands.RegisterChild) (commands.ChildRegistered, error)
	AllocateWorker(context.Context, commands.Meta, commands.AllocateWorker) (commands.Result, error)
	Invite(context.Context, commands.Meta, commands.Invite) (commands.Invited, error)
	Activate(context.Context, commands.Meta, commands.Activate) (commands.Result, error)
	CloseAccount(context.Context, commands.Meta, commands.CloseAccount) (commands.Result, error)
	CancelInvitation(context.Context, commands.Meta, commands.CancelInvitation) (commands.Result, error)
	ReopenAccount(context.Context, commands.Meta, commands.ReopenAccount) (commands.Result, error)
	RequestEmailChange(context.Context, commands.Meta, commands.RequestEmailChange) (commands.Result, error)
	ChangeEmail(context.Context, commands.Meta, commands.ChangeEmail) (commands.Result, error)
	CancelPlacement(context.Context, commands.Meta, commands.CancelPlacement) (commands.Result, error)
	EraseAccount(context.Context, commands.Meta, commands.EraseAccount) (commands.Result, error)
	EraseChild(context.Context, commands.Meta, commands.EraseChild) (commands.Result, error)
	SetRetention(context.Context, commands.Meta, commands.SetRetention) (commands.Result, error)
	SetPolicy(context.Context, commands.Meta, commands.SetPolicy) (commands.Result, error)
	StartPlacement(context.Context, commands.Meta, commands.StartPlacement) (commands.PlacementStarted, error)
	EndPlacement(context.Context, commands.Meta, commands.EndPlacement) (commands.PlacementEnded, error)
	EndGrace(context.Context, commands.Meta, commands.EndGrace) (commands.Result, error)
	Grant(context.Context, commands.Meta, commands.Grant) (commands.GrantMade, error)
	Revoke(context.Context, commands.Meta, commands.Revoke) (commands.Result, error)
	ReviewGrant(context.Context, commands.Meta, commands.ReviewGrant) (commands.GrantReviewed, error)
	RequestPhoneReset(context.Context, commands.Meta, commands.RequestPhoneReset) (commands.Result, error)
	ClearPhone(context.Context, commands.Meta, commands.ClearPhone) (commands.Result, error)
	EnrolPhone(context.Context, commands.Meta, commands.EnrolPhone) (commands.Result, error)
}

// Queries is the query service: *queries.Service implements it. Every
// method authorizes its caller itself (the roles are the query service's);
// Authorize lets the route handler refuse before it reads the parameters.
type Queries interface {
	Authorize(ctx context.Context, q queries.Name, c queries.Caller) error
	Check(ctx context.Context, c queries.Caller, p queries.CheckParams) (api.CheckAnswer, error)
	Checks(ctx context.Context, c queries.Caller, p queries.ChecksParams) (api.ChecksAnswer, error)
	AccountChildren(ctx context.Context, c queries.Caller, account uuid.UUID, at time.Time, w queries.Consistency) (api.ChildrenAnswer, error)
	ChildViewers(ctx context.Context, c queries.Caller, child uuid.UUID, at time.Time, w queries.Consistency) (api.ViewersAnswer, error)
	Watch(ctx context.Context, c queries.Caller) (queries.Feed, error)
	ChildHistory(ctx context.Context, c queries.Caller, child uuid.UUID, p queries.HistoryParams) (api.ChildHistory, error)
	AccountHistory(ctx context.Context, c queries.Caller, account uuid.UUID, p queries.HistoryParams) (api.AccountHistory, error)
	GetChild(ctx context.Context, c queries.Caller, id uuid.UUID, at time.Time) (api.ChildRecord, error)
	ListChildren(ctx context.Context, c queries.Caller, p queries.ListChildrenParams) (api.ChildList, error)
	ListReviews(ctx context.Context, c queries.Caller, p queries.ListReviewsParams) (api.ReviewList, error)
	GetAccount(ctx context.Context, c queries.Caller, id uuid.UUID, at time.Time, w queries.Consistency) (api.Account, error)
	ListAccounts(ctx context.Context, c queries.Caller, p queries.ListAccountsParams) (api.AccountList, error)
	AuditList(ctx context.Context, c queries.Caller, f queries.AuditFilter, w queries.Consistency) (api.AuditPage, error)
	AuditVerify(ctx context.Context, c queries.Caller, opts queries.AuditVerifyOptions, w queries.Consistency) (api.VerifyResult, error)
	SecurityLogPage(ctx context.Context, c queries.Caller, f queries.SecurityFilter, w queries.Consistency) (api.SecurityLogPage, error)
	Policy(ctx context.Context, c queries.Caller, w queries.Consistency, at time.Time) (api.Policy, error)
	AccountExport(ctx context.Context, c queries.Caller, id uuid.UUID, w queries.Consistency) (api.AccountExport, error)
	ChildExport(ctx context.Context, c queries.Caller, id uuid.UUID, w queries.Consistency) (api.ChildExport, error)
	RecordViews(ctx context.Context, c queries.Caller, in []queries.ViewInput, w queries.Consistency) (api.RecordViewsAnswer, error)
	ChildViews(ctx context.Context, c queries.Caller, child uuid.UUID, f queries.ViewFilter, w queries.Consistency) (api.ViewPage, error)
	AccountViews(ctx context.Context, c queries.Caller, account uuid.UUID, f queries.ViewFilter, w queries.Consistency) (api.ViewPage, error)
	Alerts(ctx context.Context, c queries.Caller, f queries.ViewFilter, w queries.Consistency) (api.AlertPage, error)
	LedgerHealth() error
	LedgerCheckpointSize() (int64, bool)
	LedgerCheckpoint(ctx context.Context, c queries.Caller) ([]byte, error)
	LedgerPublicKey(ctx context.Context, c queries.Caller) (string, error)
	InclusionProof(ctx context.Context, c queries.Caller, p queries.InclusionParams) (api.InclusionProof, error)
	ConsistencyProof(ctx context.Context, c queries.Caller, p queries.ConsistencyParams) (api.ConsistencyProof, error)
}

// Authenticator verifies bearer tokens: *auth.Verifier implements it. Its
// errors should wrap auth.ErrUnauthenticated (any error is answered 401; its
// text is shown to the caller, so it must be safe to show).
type Authenticator interface {
	Verify(token string) (domain.Actor, error)
}

// Idempotency keeps the answers of commands sent with an Idempotency-Key:
// *idempotency.Store implements it (see its package documentation for the
// protocol). Keys are scoped per actor id.
type Idempotency interface {
	Begin(ctx context.Context, actor, key, fingerprint string) (*idempotency.Response, error)
	Finish(ctx context.Context, actor, key string, r idempotency.Response) error
	Abandon(ctx context.Context, actor, key string) error
}

// Config configures the handler. Commands, Queries, Auth, Idempotency and
// Ready are required; the other fields have defaults. Validate reports
// every problem.
type Config struct {
	// Commands carries out the commands.
	Commands Commands
	// Queries answers the queries and the watch stream, and decides who
	// may ask them.
	Queries Queries
	// Auth verifies bearer tokens.
	Auth Authenticator
	// Idempotency stores the answers of commands sent with an
	// Idempotency-Key.
	Idempotency Idempotency
	// Ready reports readiness for GET /readyz: the read models and the index
	// have caught up with the log.
	Ready func() bool
	// Registry receives the handler's metrics and is what GET /metrics
	// serves. Nil: a new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Collectors are the engine's own metrics (the access index's
	// position, the read models' progress) registered on Registry with
	// the handler's.
	Collectors []prometheus.Collector
	// Logger receives the access log and errors. Default slog.Default().
	Logger *slog.Logger
	// AccessLog says which requests the access log keeps. Default: one in
	// DefaultAccessLogSampleEvery successful hot reads, every other request
	// (AccessLog).
	AccessLog AccessLog
	// WatchHeartbeat is the interval of the watch stream's heartbeats.
	// Default DefaultWatchHeartbeat.
	WatchHeartbeat time.Duration
	// WatchAlertPoll is how often a watch stream reads the new alerts.
	// Default DefaultWatchAlertPoll.
	WatchAlertPoll time.Duration
	// Console, when set, is served at /console and below (the auditor's
	// console, adapters/console) behind the same request ids, access log,
	// panic guard and metrics as the API; it sees the request id in the
	// X-Request-Id request header.
	Console http.Handler
	// Stopping, when closed, ends every watch stream (they never end by
	// themselves, so http.Server.Shutdown would wait for them). Close it
	// when shutdown starts. Nil: streams end only with their request.
	Stopping <-chan struct{}
}

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var problems []error
	missing := func(name string, isNil bool) {
		if isNil {
			problems = append(problems, fmt.Errorf("%s is nil", name))
		}
	}
	missing("Commands", c.Commands == nil)
	missing("Queries", c.Queries == nil)
	missing("Auth", c.Auth == nil)
	missing("Idempotency", c.Idempotency == nil)
	missing("Ready", c.Ready == nil)
	if c.WatchAlertPoll < 0 {
		problems = append(problems, fmt.Errorf("WatchAlertPoll %s is negative", c.WatchAlertPoll))
	}
	if c.WatchHeartbeat < 0 {
		problems = append(problems, fmt.Errorf("WatchHeartbeat %s is negative", c.WatchHeartbeat))
	}
	problems = append(problems, c.AccessLog.validate()...)
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("httpapi: invalid config: %w", err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.WatchAlertPoll == 0 {
		c.WatchAlertPoll = DefaultWatchAlertPoll
	}
	if c.WatchHeartbeat == 0 {
		c.WatchHeartbeat = DefaultWatchHeartbeat
	}
	c.AccessLog = c.AccessLog.withDefaults()
	return c
}

// server holds what the handlers share.
type server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	metrics  *metrics
	registry *prometheus.Registry
	routes   map[string]*routeState // by "METHOD /path", every route

	metricsHandler http.Handler
}

// New returns the API's handler. It fails when cfg is invalid or the
// metrics cannot be registered on cfg.Registry (a second New on the same
// registry).
//
// The watch stream (GET /v1/watch) runs until the client disconnects or
// the request's context ends: to end streams on shutdown, give the
// http.Server a BaseContext that is cancelled when the server stops, since
// http.Server.Shutdown does not interrupt active requests. The handler
// extends the write deadline of a stream before each write, so a
// server WriteTimeout does not cut streams.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), registry: reg}
	m, err := newMetrics(reg, cfg.Collectors, cfg.Queries)
	if err != nil {
		return nil, fmt.Errorf("httpapi: metrics: %w", err)
	}
	s.metrics = m
	s.metricsHandler = metricsHandler(reg)
	s.routes = map[string]*routeState{}
	for _, rt := range routes() {
		p := rt.Method + " " + rt.Pattern
		s.mux.Handle(p, s.routeHandler(rt))
		s.routes[p] = &routeState{probe: rt.Access == public, hotRead: rt.HotRead}
	}
	if cfg.Console != nil {
		for _, p := range []string{"/console", "/console/"} {
			s.mux.Handle(p, cfg.Console)
			s.routes[p] = &routeState{} // always logged, at info
		}
	}
	return http.HandlerFunc(s.serveHTTP), nil
}
