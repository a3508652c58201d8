package engine

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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
	"github.com/accessledger/accessledger/queries"
)

// DefaultMinPositionWait is the longest wait of a query for its
// min_position before it answers 503 stale, unless configured.
const DefaultMinPositionWait = 2 * time.Second

// APIOptions are the HTTP API's settings that are not the engine's.
type APIOptions struct {
	// MinPositionWait is the longest wait of a query for its min_position
	// before it answers 503 stale. Default DefaultMinPositionWait.
	MinPositionWait time.Duration
	// Ready answers GET /readyz. Required.
	Ready func() bool
	// Stopping, when closed, ends the watch streams. Nil: they end only
	// with their requests.
	Stopping <-chan struct{}
	// AccessLog says which requests the access log keeps; the zero value
	// is httpapi's default (httpapi.AccessLog).
	AccessLog httpapi.AccessLog
}

// APIHandler builds the HTTP API handler serve serves: the routes over
// cmds and the engine's index and read models, authenticated by verifier,
// with its metrics in a new registry (with the Go and process collectors),
// set up by opts.
func APIHandler(e *Engine, cmds *commands.Service, verifier httpapi.Authenticator, opts APIOptions, log *slog.Logger) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.MinPositionWait == 0 {
		opts.MinPositionWait = DefaultMinPositionWait
	}
	qs, err := NewQueries(e, cmds, opts.MinPositionWait, log)
	if err != nil {
		return nil, err
	}
	cfg := httpapi.Config{
		Commands: cmds, Queries: qs, Auth: verifier,
		Idempotency: idempotency.New(e.ReadDB),
		Ready:       opts.Ready, Registry: reg, Logger: log, Stopping: opts.Stopping, AccessLog: opts.AccessLog,
		Collectors: []prometheus.Collector{accessindex.PositionGauge(e.Index), projections.Collector(e.Runner.Status)},
	}
	return httpapi.New(cfg)
}

// NewQueries builds the query service over the engine's index and read
// models, with the security log for refused queries, answering the policy
// cmds reads from the event log (R25).
func NewQueries(e *Engine, cmds *commands.Service, wait time.Duration, log *slog.Logger) (*queries.Service, error) {
	cfg := queries.Config{
		Index: e.Index, History: accesshistory.NewReader(e.ReadDB), Accounts: accounts.NewReader(e.ReadDB),
		Audit: audit.NewReader(e.ReadDB, e.Stores.Log.Open), SecurityLog: securitylog.New(e.ReadDB), Views: viewlog.New(e.ReadDB),
		ChildRecords: queries.ChildrenFromLog(e.Stores.Log), Refusals: securitylog.New(e.ReadDB),
		Progress: e.Runner.Status, Policy: cmds.Policy(), Policies: cmds, MinPositionWait: wait, Logger: log,
		ChildIDFor: e.Stores.IDs.ChildID,
	}
	if e.Ledger != nil {
		cfg.Ledger, cfg.LedgerLog = e.Ledger, e.Stores.Events.Log
	}
	return queries.New(cfg)
}
