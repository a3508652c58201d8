package engine

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
	"github.com/accessledger/accessledger/queries"
)

// DefaultMinPositionWait is the longest wait of a query for its
// min_position before it answers 503 stale, unless configured.
const DefaultMinPositionWait = 2 * time.Second

// APIHandler builds the HTTP API handler serve serves: the routes over
// cmds and the engine's index and read models, authenticated by verifier,
// with its metrics in a new registry (with the Go and process collectors).
// ready answers GET /readyz; closing stopping ends the watch streams.
//
// With WithConsole, the auditor's console is served at /console over the
// same query service; WithAccessLog sets which requests the access log
// keeps (default: httpapi's).
func APIHandler(e *Engine, cmds *commands.Service, verifier httpapi.Authenticator, minPositionWait time.Duration,
	ready func() bool, stopping <-chan struct{}, log *slog.Logger, opts ...APIOption) (http.Handler, error) {
	var o apiOptions
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	qs, err := NewQueries(e, cmds, minPositionWait, log)
	if err != nil {
		return nil, err
	}
	cfg := httpapi.Config{
		Commands: cmds, Queries: qs, Auth: verifier,
		Idempotency: e.idempotencyKeys(),

		Ready: ready, Registry: reg, Logger: log, Stopping: stopping, AccessLog: o.accessLog,
		Collectors: []prometheus.Collector{accessindex.PositionGauge(e.Index), projections.Collector(e.Runner.Status)},
	}
	if o.console != nil {
		ccfg := *o.console
		ccfg.Queries, ccfg.SecurityLog = qs, securitylog.New(e.ReadDB)
		if ccfg.Logger == nil {
			ccfg.Logger = log
		}
		if e.Ledger != nil {
			ccfg.Ledger = ledger.Checker{Ledger: e.Ledger, Log: e.Stores.Events.Log}
		}
		c, err := console.New(ccfg)
		if err != nil {
			return nil, err
		}
		cfg.Console = c
	}
	return httpapi.New(cfg)
}

// APIOption configures APIHandler.
type APIOption func(*apiOptions)

type apiOptions struct {
	console   *console.Config
	accessLog httpapi.AccessLog
}

// WithAccessLog sets which requests the access log keeps (httpapi.AccessLog;
// the zero value is httpapi's default).
func WithAccessLog(a httpapi.AccessLog) APIOption {
	return func(o *apiOptions) { o.accessLog = a }
}

// WithConsole serves the auditor's console with cfg (its Queries,
// SecurityLog and Ledger are the engine's).
func WithConsole(cfg console.Config) APIOption {
	return func(o *apiOptions) { o.console = &cfg }
}

// NewQueries builds the query service over the engine's index and read
// models, with the security log for refused queries, answering the policy
// cmds reads from the event log (R25).
//
// The policy route is served even when the ledger has found the log
// changed (docs/ledger.md), so it reads the policy stream from the log
// itself, not through GatedStreams (which holds cmds' reads until the
// whole log is verified): a service of its own, sharing cmds' initial
// policy.
func NewQueries(e *Engine, cmds *commands.Service, wait time.Duration, log *slog.Logger) (*queries.Service, error) {
	policies, err := commands.New(e.Stores.Log, securitylog.New(e.ReadDB), commands.Config{Policy: cmds.Policy(), Logger: log})
	if err != nil {
		return nil, err
	}
	cfg := queries.Config{
		Index: e.Index, History: accesshistory.NewReader(e.ReadDB), Accounts: accounts.NewReader(e.ReadDB),
		Audit: audit.NewReader(e.ReadDB, e.Stores.Log.Open), SecurityLog: securitylog.New(e.ReadDB), Views: viewlog.New(e.ReadDB),
		ChildRecords: queries.ChildrenFromLog(e.GatedStreams()), Refusals: securitylog.New(e.ReadDB),
		Progress: e.Runner.Status, Policy: cmds.Policy(), Policies: policies, MinPositionWait: wait, Logger: log,
		ChildIDFor: e.Stores.IDs.ChildID,
	}
	if e.Ledger != nil {
		cfg.Ledger, cfg.LedgerLog = e.Ledger, e.Stores.Events.Log
	}
	return queries.New(cfg)
}

// idempotencyKeys is the store of the HTTP commands' Idempotency-Keys, in
// keysDB (see the idempotency package's Durability). On SQLite the claims
// of running requests are kept in memory (idempotency.WithClaimsInProcess):
// one process serves an SQLite file's commands, and a key then costs one
// write instead of two (docs/performance.md, "The sixth round"). On
// PostgreSQL, which replicas share, they are pending rows that every
// replica sees.
func (e *Engine) idempotencyKeys() *idempotency.Store {
	db := e.keysDB()
	if db.IsSQLite() {
		return idempotency.New(db, idempotency.WithClaimsInProcess())
	}
	return idempotency.New(db)
}
