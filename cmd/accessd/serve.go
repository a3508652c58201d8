package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/dirlock"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/gcpolicy"
)

// serve opens the engine, starts the HTTP API and runs until ctx ends, then
// shuts down gracefully: the listener stops accepting, in-flight requests
// (commands included) finish within --shutdown-timeout, then the
// projections stop. An acknowledged command is in the event log before its
// answer is written, so shutting down loses none.
func serve(ctx context.Context, cfg *storeConfig, sc *serveConfig, log *slog.Logger, env *environment) error {
	start := time.Now()
	if err := cfg.CheckPrivate(); err != nil {
		return err
	}
	// One serving process per data directory (internal/dirlock): the
	// embedded SQLite file's writers and idempotency claims are
	// coordinated within one process.
	lock, err := dirlock.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() { _ = lock.Release() }()
	secret, err := loadSecret(cfg.DataDir, sc.secretFile)
	if err != nil {
		return fmt.Errorf("signing secret: %w", err)
	}
	verifier, err := auth.NewVerifier(secret, sc.jwtIssuer, sc.jwtAudience, nil)
	if err != nil {
		return err
	}
	if gc, err := gcpolicy.Apply(gcpolicy.System); err != nil {
		log.Warn("accessd: no memory limit for the garbage collector", "settings", gc.String(), "error", err)
	} else {
		log.Info("accessd: garbage collector", "settings", gc.String())
	}
	e, err := engine.Open(ctx, &cfg.Config, engine.Options{Instance: sc.instanceID,
		CheckpointInterval: sc.checkpointInterval, CheckpointEvery: sc.checkpointEvery,
		Snapshot: sc.snapshotConfig(cfg.DataDir), ProjectionLinger: sc.projectionLinger}, log)
	if err != nil {
		return err
	}
	defer e.Close() // openEngine applied every read-store migration
	policy := sc.policy()
	cmds, err := commands.New(e.GatedStreams(), securitylog.New(e.ReadDB),
		commands.Config{Policy: policy, Logger: log, Eraser: e.Stores.Log, IDs: e.Stores.IDs, KeptChildren: sc.keptChildren,
			KeptSnapshots: e.KeptSnapshots()})
	if err != nil {
		return err
	}
	// The initial policy is recorded before the engine runs, so from the
	// log itself: cmds reads streams only once the ledger has verified the
	// whole log (engine.GatedStreams), which may be after ready.
	initial, err := commands.New(e.Stores.Log, securitylog.New(e.ReadDB),
		commands.Config{Policy: policy, Logger: log, Eraser: e.Stores.Log, IDs: e.Stores.IDs})
	if err != nil {
		return err
	}
	if err := recordInitialPolicy(ctx, initial, policy, log); err != nil {
		return err
	}
	bcfg, err := engine.BusConfig(sc.bus, log)
	if err != nil {
		return err
	}
	msg, err := engine.OpenMessaging(ctx, bcfg, e, cmds, nil, sc.instanceID, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := msg.Close(); err != nil {
			log.Warn("close bus", "err", err)
		}
	}()
	e.Ledger.AddSink(bus.CheckpointSink{Publisher: msg.Pub})
	var ready atomic.Bool
	stopping := make(chan struct{})
	ccfg, err := sc.consoleConfig(secret)
	if err != nil {
		return err
	}
	handler, err := engine.APIHandler(e, cmds, verifier, sc.minPositionWait, ready.Load, stopping, log,
		engine.WithConsole(ccfg), engine.WithAccessLog(sc.accessLogConfig()))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", sc.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sc.addr, err)
	}
	if err := sc.printConsoleLink(env, secret, ln.Addr()); err != nil {
		return err
	}
	// Shutdown waits for in-flight requests; watch streams never end by
	// themselves, so closing stopping ends them when shutdown starts.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	srv.RegisterOnShutdown(func() { close(stopping) })
	log.Info("listening", "addr", ln.Addr().String(), "store", e.Stores.Events.Name, "read_store", e.ReadDB.String(), "bus", string(bcfg.Kind))

	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	// The command service's kept state saved by the last run, loaded while
	// the engine starts (a snapshot that does not load is logged, and the
	// service starts with nothing kept); commands may run meanwhile.
	// ForgetErased, the snapshot's writer and the warm-up start after it.
	keptLoaded := make(chan struct{})
	var keptRestored bool
	go func() {
		defer close(keptLoaded)
		_, keptRestored = cmds.StartFromKeptSnapshot(runCtx, e.Stores.Log)
	}()
	engineDone := make(chan error, 1)
	readyCh := make(chan struct{})
	go func() {
		engineDone <- e.Run(runCtx, func() {
			close(readyCh)
			ready.Store(true)
			log.Info("ready: read models and access index caught up", "start_to_ready", time.Since(start).Round(time.Millisecond).String())
			e.LogStatus()
		})
	}()
	// The children's and accounts' state kept between commands holds
	// personal data: an erasure by any replica drops it here too.
	go func() {
		<-keptLoaded
		_ = cmds.ForgetErased(runCtx, e.Stores.Log)
	}()
	// The kept state's snapshot, written in the background and once more
	// at the stop, after the last command.
	keptDone := make(chan struct{})
	go func() {
		defer close(keptDone)
		<-keptLoaded
		_ = cmds.RunKeptSnapshots(runCtx) // returns nil; failures are logged
	}()
	// Without a kept-state snapshot to start from, the children are kept
	// from one pass over the log, in the background once ready, so that
	// the first snapshot holds them.
	warmDone := make(chan struct{})
	go func() {
		defer close(warmDone)
		<-keptLoaded
		if e.KeptSnapshots().Dir != "" && !keptRestored {
			e.WarmUpKept(runCtx, cmds, readyCh)
		}
	}()
	if sc.viewsRetention > 0 {
		go func() {
			_ = viewlog.New(e.ReadDB).PruneEvery(runCtx, sc.viewsRetention, viewsPruneInterval, time.Now, log)
		}()
	}
	msgDone := make(chan error, 1)
	go func() { msgDone <- e.AfterVerified(runCtx, msg.Run) }()
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
	<-warmDone
	<-keptDone
	if err := <-msgDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("messaging: %w", err)
	}
	if err := <-engineDone; err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	log.Info("stopped")
	return runErr
}

// viewsPruneInterval is how often serve applies the views' retention.
const viewsPruneInterval = time.Hour

// recordInitialPolicy records the flags' policy as the first policy when
// the event log has none (R25); when it has one, the recorded one holds,
// and flags that differ from it are only logged. Two replicas starting on
// one log record one initial policy: the other reads it.
func recordInitialPolicy(ctx context.Context, cmds *commands.Service, flags domain.Policy, log *slog.Logger) error {
	cur, recorded, err := cmds.RecordInitialPolicy(ctx)
	if err != nil {
		return fmt.Errorf("record the initial policy: %w", err)
	}
	if recorded {
		log.Info("policy: recorded the initial policy from the start-up flags", "position", cur.Position.String())
		return nil
	}
	if flags.WithDefaults() != cur.Policy {
		log.Warn("policy: the start-up flags differ from the recorded policy; flags give only the initial policy, the recorded one is used (change it with PUT /v1/policy)",
			"set_at", cur.SetAt, "position", cur.Position.String(), "set_by", cur.ActorID,
			"grace_period", cur.Policy.GracePeriod.String(), "invitation_ttl", cur.Policy.InvitationTTL.String(),
			"session_idle_timeout", cur.Policy.SessionIdleTimeout.String(), "session_warning_after", cur.Policy.SessionWarningAfter.String(),
			"closed_account_retention", cur.Policy.ClosedAccountRetention.String(), "review_period", cur.Policy.ReviewPeriod.String())
	}
	return nil
}

// consoleConfig is the console's configuration from the flags.
func (c *serveConfig) consoleConfig(secret []byte) (console.Config, error) {
	cfg := console.Config{LinkSecret: secret, BaseURL: c.consoleBaseURL}
	if c.oidcIssuer != "" {
		o := &console.OIDCConfig{Issuer: c.oidcIssuer, ClientID: c.oidcClientID, RoleClaim: c.oidcRoleClaim, ActorClaim: c.oidcActorClaim}
		if c.oidcSecretFile != "" {
			b, err := os.ReadFile(c.oidcSecretFile)
			if err != nil {
				return cfg, fmt.Errorf("--oidc-client-secret-file: %w", err)
			}
			if o.ClientSecret = strings.TrimSpace(string(b)); o.ClientSecret == "" {
				return cfg, fmt.Errorf("--oidc-client-secret-file %s is empty", c.oidcSecretFile)
			}
		}
		cfg.OIDC = o
	}
	return cfg, nil
}

// printConsoleLink prints a one-time sign-in link to the console when
// --console-link asks for one.
func (c *serveConfig) printConsoleLink(env *environment, secret []byte, addr net.Addr) error {
	if c.consoleLinkRole == "" {
		return nil
	}
	base := c.consoleBaseURL
	if base == "" {
		base = "http://" + addr.String()
	}
	link, err := console.MintLink(secret, base, domain.Role(c.consoleLinkRole), c.consoleLinkSub, console.DefaultLinkTTL, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "accessd: the auditor's console: sign in as %s (%s) within %s, once, at\n  %s\n  (accessd console-link prints another)\n",
		c.consoleLinkSub, c.consoleLinkRole, console.DefaultLinkTTL, link.URL)
	return nil
}
