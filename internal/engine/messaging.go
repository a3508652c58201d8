package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/commands"
)

// BusConfig maps --bus to a bus configuration: "gochannel" (in-process, the
// embedded default), a nats:// URL (NATS JetStream) or a postgres:// URL
// (watermill-sql on PostgreSQL).
func BusConfig(flagValue string, log *slog.Logger) (bus.Config, error) {
	v := strings.TrimSpace(flagValue)
	cfg := bus.Config{Consumer: "processmanager", Logger: log}
	switch {
	case v == "" || v == string(bus.KindGoChannel):
		cfg.Kind = bus.KindGoChannel
	case strings.HasPrefix(v, "nats://") || strings.HasPrefix(v, "tls://"):
		cfg.Kind, cfg.URL = bus.KindNATS, v
	case strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://"):
		cfg.Kind, cfg.URL = bus.KindPostgres, v
	default:
		return bus.Config{}, fmt.Errorf("%w: --bus %q: want gochannel, nats://HOST:4222 or postgres://...", ErrUsage, v)
	}
	return cfg, nil
}

// Messaging is the outbox relay (event log → bus), the access.changed
// publisher (index → bus) and the process manager (bus → deadlines →
// commands).
type Messaging struct {
	// Pub publishes on the bus (the ledger's checkpoints go out on it).
	Pub      message.Publisher
	closeBus func() error
	relay    *outbox.Relay
	access   *outbox.AccessChangedPublisher
	// PM is the process manager.
	PM *processmanager.ProcessManager
}

// outboxLease is how long a replica's hold on the outbox publishers lasts
// without renewal: after a crash, another replica takes over within it (a
// restarted replica with the same instance id at once).
const outboxLease = 15 * time.Second

// OpenMessaging opens the bus and builds the process manager (on clk; nil:
// the real clock), the outbox relay and the access.changed publisher, all
// under the instance id: the process manager's claims and the publishers'
// lease (one replica publishes, the others stand by) are held in its name.
// The read store is already migrated.
func OpenMessaging(ctx context.Context, cfg bus.Config, e *Engine, cmds *commands.Service, clk processmanager.Clock, instance string, log *slog.Logger) (*Messaging, error) {
	pub, sub, closeBus, err := bus.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open bus %s: %w", cfg.Kind, err)
	}
	pm, err := processmanager.New(processmanager.Config{DB: deadlinesDB(cfg, e), Publisher: pub, Subscriber: sub,
		Commands: cmds, Logger: log, Clock: clk, InstanceID: instance,
		ClosedAccountRetention: cmds.Policy().ClosedAccountRetention, Policy: cmds})
	if err != nil {
		_ = closeBus()
		return nil, err
	}
	lease := outbox.WithLease(instance, outboxLease)
	return &Messaging{Pub: pub, closeBus: closeBus, PM: pm,
		relay:  outbox.NewRelay(e.Stores.Log, e.ReadDB, relayPublisher(cfg, pub, pm), outbox.WithLogger(log), lease),
		access: outbox.NewAccessChangedPublisher(e.Index, e.ReadDB, pub, outbox.WithLogger(log), lease),
	}, nil
}

// relayPublisher is what the outbox relay publishes through. On the
// in-process bus a publish that the process manager's subscription drops
// (closing, or not there) returns as if handled: there the relay's
// publishes are confirmed by the process manager
// (processmanager.Confirming), so that its checkpoint never passes an
// event the process manager missed. A bus that stores its messages
// (NATS, PostgreSQL) is used as it is.
func relayPublisher(cfg bus.Config, pub message.Publisher, pm *processmanager.ProcessManager) message.Publisher {
	if cfg.Kind == bus.KindGoChannel || cfg.Kind == "" { // bus.Open's default
		return pm.Confirming(pub)
	}
	return pub
}

// deadlinesDB is the pool the process manager writes its deadlines
// through. On the in-process bus it is the read store's unsynced one
// (Engine.UnsyncedDB: without an fsync at each commit on SQLite; the read
// store itself on PostgreSQL): a message reaches the process manager only
// from the outbox relay, whose checkpoint, in the same database, is
// written after the process manager has handled the message (the
// in-process publish waits for that). SQLite's WAL keeps a prefix of the
// commits after a power loss, so a deadline write lost with it takes the
// relay's later checkpoint with it, and the relay publishes the message
// again; the deadlines' writes are idempotent. The scheduler's own writes
// (claims, fired and retried marks) follow no checkpoint: losing one
// leaves what a crash just before it leaves, a deadline claimed or fired
// again, and a firing's command is idempotent (its key derives from the
// deadline). Every deadline write
// otherwise cost an fsync on SQLite's one writer, about as many as the
// commands' own appends (docs/performance.md, "The sixth round"). On a
// bus outside the process (NATS, PostgreSQL) the process manager
// acknowledges the message to the bus, which would not deliver it again:
// its writes are synced there.
func deadlinesDB(cfg bus.Config, e *Engine) *sqldb.DB {
	if cfg.Kind == bus.KindGoChannel {
		return e.UnsyncedDB
	}
	return e.ReadDB
}

// DefaultInstanceID is the instance id of a replica when --instance-id is
// not given: the host name (in Kubernetes the pod's name, the same across
// the restarts of its container).
func DefaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "accessd"
	}
	return host
}

// Run runs the process manager and, once it is subscribed (an in-process
// bus drops what nobody listens to yet), the relay and the access.changed
// publisher, until ctx ends. It stops them in the opposite order: the
// publishers first, then the process manager, so that no publish is in
// flight while the consumer stops. (On the in-process bus a publish that
// its consumer abandons returns as if delivered; the relay's publishes
// are confirmed by the process manager (processmanager.Confirming), so
// that one abandoned when the process manager stops on its own is
// retried, not skipped by the checkpoint.)
func (m *Messaging) Run(ctx context.Context) error {
	pmCtx, stopPM := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPM()
	pmDone := make(chan error, 1)
	go func() { pmDone <- m.PM.Run(pmCtx) }()
	select {
	case <-ctx.Done():
		stopPM()
		return <-pmDone
	case err := <-pmDone:
		return fmt.Errorf("process manager: %w", err)
	case <-m.PM.Ready():
	}
	// The relays' checkpoints and leases trail the log: on SQLite their
	// writes yield to the commands' at the write gate (sqldb.Yielding).
	relCtx, stopRelays := context.WithCancel(sqldb.Yielding(ctx))
	defer stopRelays()
	g, gctx := errgroup.WithContext(relCtx)
	g.Go(func() error { return ignoreCanceled(relCtx, m.relay.Run(gctx)) })
	g.Go(func() error { return ignoreCanceled(relCtx, m.access.Run(gctx)) })
	var pmErr error
	select {
	case <-gctx.Done():
	case pmErr = <-pmDone:
		pmErr = fmt.Errorf("process manager stopped: %w", pmErr)
		stopRelays()
	}
	err := g.Wait()
	stopPM()
	if pmErr == nil {
		pmErr = <-pmDone
	}
	if err != nil {
		return err
	}
	return pmErr
}

func ignoreCanceled(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// Close closes the bus.
func (m *Messaging) Close() error { return m.closeBus() }

// RelayStatus reports the outbox relay's progress (outbox.Relay.Status).
// On the in-process bus a publish returns once the process manager has
// handled the message, so its Position is also the process manager's.
func (m *Messaging) RelayStatus(ctx context.Context) (outbox.Status, error) {
	return m.relay.Status(ctx)
}
