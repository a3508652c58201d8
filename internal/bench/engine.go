package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// benchClock is the command service's and the process manager's clock in a
// bench run: the wall clock moved on by an offset that Advance raises, so
// that deadlines a week ahead fall due at once.
type benchClock struct {
	mu      sync.Mutex
	offset  time.Duration
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

// Now is the wall clock plus the offset.
func (c *benchClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// At returns a channel that receives once Now reaches t.
func (c *benchClock) At(t time.Time) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().Add(c.offset)
	if !now.Before(t) {
		ch <- now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: t, ch: ch})
	time.AfterFunc(t.Sub(now), c.wake)
	return ch
}

// Advance moves the clock on by d and wakes whoever waits for a time it
// has now reached.
func (c *benchClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
	c.wake()
}

func (c *benchClock) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().Add(c.offset)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if now.Before(w.at) {
			kept = append(kept, w)
			continue
		}
		w.ch <- now
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

// benchEngine is the engine a bench run measures, wired as accessd serve
// wires it: the stores, the projections and the access index, the command
// service on the event store with the security log, the messaging (outbox
// relay, access.changed publisher and process manager on the in-process
// gochannel bus) and the HTTP API on a real listener. Its command service
// and process manager run on a benchClock.
type benchEngine struct {
	e    *engine.Engine
	cmds *commands.Service
	// kept is the kept-state snapshot the command service loaded
	// (restored false: none, and warmDone is closed once the warm-up
	// from the log is over).
	kept     commands.KeptSnapshotInfo
	restored bool
	warmDone chan struct{}
	msg      *engine.Messaging
	clock    *benchClock
	policy   domain.Policy
	data     *benchData
	url      string // http://127.0.0.1:PORT
	client   *http.Client
	tokens   map[domain.Role]string
	// secret signs the API's tokens: measurements mint the tokens of the
	// actors they act as (a child's worker).
	secret []byte

	stopRun    context.CancelFunc
	srv        *http.Server
	stopping   chan struct{}
	engineDone chan error
	msgDone    chan error
	httpDone   chan error
}

// startEngine starts the engine on the data set as serve does and returns
// it once ready (read models and index caught up), with the time from
// start to ready.
func (b *bencher) startEngine(ctx context.Context, ds *dataset) (*benchEngine, time.Duration, error) {
	return b.startEngineWith(ctx, ds, accessindex.SnapshotConfig{})
}

// startEngineWith is startEngine with the access index's snapshots
// configured by snap (none when snap.Dir is "").
func (b *bencher) startEngineWith(ctx context.Context, ds *dataset, snap accessindex.SnapshotConfig) (*benchEngine, time.Duration, error) {
	start := time.Now()
	secret := make([]byte, auth.MinSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, 0, err
	}
	verifier, err := auth.NewVerifier(secret, "", "", nil)
	if err != nil {
		return nil, 0, err
	}
	cfg := engine.Config{EventStore: ds.url, DataDir: ds.dir, MasterKey: b.masterKeyPath()}
	e, err := engine.Open(ctx, &cfg, engine.Options{Instance: "bench", Snapshot: snap, ProjectionLinger: b.cfg.linger}, b.log)
	if err != nil {
		return nil, 0, err
	}
	be := &benchEngine{e: e, clock: &benchClock{}, data: ds.data, stopping: make(chan struct{}),
		engineDone: make(chan error, 1), msgDone: make(chan error, 1), httpDone: make(chan error, 1)}
	fail := func(err error) (*benchEngine, time.Duration, error) {
		_ = be.stop()
		return nil, 0, err
	}
	if err := engine.MigrateReadStore(ctx, e.ReadDB); err != nil {
		return fail(err)
	}
	be.policy = domain.DefaultPolicy
	// The kept state's snapshot lives in the data set's directory: the
	// first start finds none (and warms the children up from the log),
	// a restart (startFromSnapshot) the one written before it. It is
	// written only when the bench says (no writer runs while measuring).
	be.cmds, err = commands.New(e.GatedStreams(), securitylog.New(e.ReadDB),
		commands.Config{Policy: be.policy, Logger: b.log, Clock: be.clock.Now, Eraser: e.Stores.Log, IDs: e.Stores.IDs,
			KeptChildren:  b.cfg.kept,
			KeptSnapshots: commands.KeptSnapshotConfig{Dir: filepath.Join(ds.dir, "kept"), Every: 1 << 62, Interval: 24 * time.Hour}})
	if err != nil {
		return fail(err)
	}
	be.warmDone = make(chan struct{})
	if be.msg, err = openBenchMessaging(ctx, e, be.cmds, be.clock, b.log); err != nil {
		return fail(err)
	}
	var ready atomic.Bool
	handler, err := engine.APIHandler(e, be.cmds, verifier, engine.DefaultMinPositionWait, ready.Load, be.stopping, b.log)
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	be.url = "http://" + ln.Addr().String()
	be.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(b.log.Handler(), slog.LevelWarn)}
	be.srv.RegisterOnShutdown(func() { close(be.stopping) })
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	be.stopRun = stopRun
	readyCh := make(chan struct{})
	go func() {
		be.engineDone <- e.Run(runCtx, func() {
			ready.Store(true)
			close(readyCh)
		})
	}()
	go func() { be.msgDone <- e.AfterVerified(runCtx, be.msg.Run) }()
	// As serve: the kept state loads while the engine starts; the
	// warm-up, without one, once ready.
	keptLoaded := make(chan struct{})
	go func() {
		defer close(keptLoaded)
		be.kept, be.restored = be.cmds.StartFromKeptSnapshot(runCtx, e.Stores.Log)
	}()
	go func() {
		defer close(be.warmDone)
		<-keptLoaded
		if !be.restored {
			e.WarmUpKept(runCtx, be.cmds, readyCh)
		}
	}()
	go func() { be.httpDone <- be.srv.Serve(ln) }()
	select {
	case <-readyCh:
	case err := <-be.engineDone:
		be.engineDone <- err
		return fail(fmt.Errorf("engine stopped before it was ready: %w", err))
	case err := <-be.msgDone:
		be.msgDone <- err
		return fail(fmt.Errorf("messaging stopped before the engine was ready: %w", err))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	took := time.Since(start)
	// The measurements start once the kept state is loaded (serve takes
	// commands before; they read whole streams until it is).
	select {
	case <-keptLoaded:
	case <-ctx.Done():
		return fail(ctx.Err())
	}

	be.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConns: 128, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute, DisableCompression: true}}
	be.secret = secret
	be.tokens = map[domain.Role]string{}
	for _, role := range []domain.Role{domain.RoleService, domain.RoleAuditor, domain.RoleWorker} {
		tok, err := auth.Mint(secret, auth.Claims{Subject: "bench-" + string(role), Role: role, TTL: 24 * time.Hour}, time.Now())
		if err != nil {
			return fail(err)
		}
		be.tokens[role] = tok
	}
	return be, took, nil
}

// stop shuts the engine down as serve does: the HTTP server, then the
// messaging and the projections; then it closes the stores.
func (be *benchEngine) stop() error {
	var errs []error
	if be.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := be.srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			_ = be.srv.Close()
		}
		cancel()
		if err := <-be.httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if be.client != nil {
		be.client.CloseIdleConnections()
	}
	if be.stopRun != nil {
		be.stopRun()
		<-be.warmDone
		if err := <-be.msgDone; err != nil {
			errs = append(errs, fmt.Errorf("messaging: %w", err))
		}
		if err := <-be.engineDone; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("engine: %w", err))
		}
	}
	if be.msg != nil {
		if err := be.msg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close bus: %w", err))
		}
	}
	if err := be.e.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// openBenchMessaging is engine.OpenMessaging with the process manager on clk.
// Like a long-running engine's, the relays start at the head of the log,
// not at the start of the data set (whose deadlines the generator has
// already settled): their checkpoints are set to the head when they have
// none.
func openBenchMessaging(ctx context.Context, e *engine.Engine, cmds *commands.Service, clk processmanager.Clock, log *slog.Logger) (*engine.Messaging, error) {
	if err := engine.MigrateReadStore(ctx, e.ReadDB); err != nil {
		return nil, err
	}
	head, err := e.Stores.Events.Log.Head(ctx)
	if err != nil {
		return nil, err
	}
	cps := outbox.NewCheckpoints(e.ReadDB)
	for _, name := range []string{outbox.DefaultRelayName, outbox.DefaultAccessName} {
		pos, err := cps.Load(ctx, name)
		if err != nil {
			return nil, err
		}
		if pos.IsZero() {
			if err := cps.Save(ctx, name, head); err != nil {
				return nil, err
			}
		}
	}
	bcfg, err := engine.BusConfig(string(bus.KindGoChannel), log)
	if err != nil {
		return nil, err
	}
	return engine.OpenMessaging(ctx, bcfg, e, cmds, clk, "accessd-bench-"+engine.DefaultInstanceID(), log)
}
