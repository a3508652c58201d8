package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/queries"
)

// serve opens the engine, starts the HTTP API and runs until ctx ends, then
// shuts down gracefully: the listener stops accepting, in-flight requests
// (commands included) finish within --shutdown-timeout, then the
// projections stop. An acknowledged command is in the event log before its
// answer is written, so shutting down loses none.
func serve(ctx context.Context, cfg *storeConfig, sc *serveConfig, log *slog.Logger, env *environment) error {
	start := time.Now()
	secret, err := loadSecret(cfg.dataDir, sc.secretFile)
	if err != nil {
		return fmt.Errorf("signing secret: %w", err)
	}
	verifier, err := auth.NewVerifier(secret, sc.jwtIssuer, sc.jwtAudience, nil)
	if err != nil {
		return err
	}
	e, err := openEngine(ctx, cfg, engineOptions{instance: sc.instanceID,
		checkpointInterval: sc.checkpointInterval, checkpointEvery: sc.checkpointEvery}, log)
	if err != nil {
		return err
	}
	defer e.Close() // openEngine applied every read-store migration
	policy := sc.policy()
	cmds, err := commands.New(e.stores.events.log, securitylog.New(e.readDB),
		commands.Config{Policy: policy, Logger: log})
	if err != nil {
		return err
	}
	bcfg, err := busConfig(sc.bus, log)
	if err != nil {
		return err
	}
	msg, err := openMessaging(ctx, bcfg, e, cmds, sc.instanceID, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := msg.close(); err != nil {
			log.Warn("close bus", "err", err)
		}
	}()
	e.ledger.AddSink(bus.CheckpointSink{Publisher: msg.pub})
	var ready atomic.Bool
	stopping := make(chan struct{})
	handler, err := apiHandler(e, cmds, verifier, sc, ready.Load, stopping, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", sc.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sc.addr, err)
	}
	// Shutdown waits for in-flight requests; watch streams never end by
	// themselves, so closing stopping ends them when shutdown starts.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	srv.RegisterOnShutdown(func() { close(stopping) })
	log.Info("listening", "addr", ln.Addr().String(), "store", e.stores.events.name, "read_store", e.readDB.String(), "bus", string(bcfg.Kind))

	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	engineDone := make(chan error, 1)
	go func() {
		engineDone <- e.run(runCtx, func() {
			ready.Store(true)
			log.Info("ready: read models and access index caught up", "start_to_ready", time.Since(start).Round(time.Millisecond).String())
			e.logStatus()
		})
	}()
	msgDone := make(chan error, 1)
	go func() { msgDone <- e.afterVerified(runCtx, msg.run) }()
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-engineDone:
		runErr = fmt.Errorf("engine stopped: %w", err)
		engineDone <- nil
	case err := <-httpDone:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-msgDone:
		runErr = fmt.Errorf("messaging stopped: %w", err)
		msgDone <- nil
	}
	log.Info("shutting down", "timeout", sc.shutdownTimeout.String())
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), sc.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	stopRun()
	if err := <-msgDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("messaging: %w", err)
	}
	if err := <-engineDone; err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	log.Info("stopped")
	return runErr
}

// apiHandler builds the HTTP API handler serve serves: the routes over
// cmds and the engine's index and read models, authenticated by verifier,
// with its metrics in a new registry (with the Go and process collectors).
// ready answers GET /readyz; closing stopping ends the watch streams.
func apiHandler(e *engine, cmds *commands.Service, verifier httpapi.Authenticator, sc *serveConfig,
	ready func() bool, stopping <-chan struct{}, log *slog.Logger) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	qs, err := newQueries(e, cmds.Policy(), sc.minPositionWait, log)
	if err != nil {
		return nil, err
	}
	cfg := httpapi.Config{
		Commands: cmds, Queries: qs, Auth: verifier,
		Idempotency: idempotency.New(e.readDB),
		Ready:       ready, Registry: reg, Logger: log, Stopping: stopping,
		Collectors: []prometheus.Collector{accessindex.PositionGauge(e.index), projections.Collector(e.runner.Status)},
	}
	return httpapi.New(cfg)
}

// newQueries builds the query service over the engine's index and read
// models, with the security log for refused queries.
func newQueries(e *engine, policy domain.Policy, wait time.Duration, log *slog.Logger) (*queries.Service, error) {
	cfg := queries.Config{
		Index: e.index, History: accesshistory.NewReader(e.readDB), Accounts: accounts.NewReader(e.readDB),
		Audit: audit.NewReader(e.readDB), SecurityLog: securitylog.New(e.readDB),
		ChildRecords: queries.ChildrenFromLog(e.stores.events.log), Refusals: securitylog.New(e.readDB),
		Progress: e.runner.Status, Policy: policy, MinPositionWait: wait, Logger: log,
	}
	if e.ledger != nil {
		cfg.Ledger, cfg.LedgerLog = e.ledger, e.stores.events.log
	}
	return queries.New(cfg)
}
