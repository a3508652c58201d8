// Package processmanager is the engine's process manager (architecture
// decision 9): it turns the events that set deadlines into durable rows of a
// deadlines table, and at each deadline sends the expiry command through a
// watermill command bus, leaving the decision to the aggregate.
//
// # Deadlines
//
// The event side is a watermill components/cqrs event group on
// bus.TopicEvents. It keeps one row per deadline (see Deadline):
//
//   - PlacementEnded sets the grace deadline of the placement
//     (GraceID(placement)) at its grace_until; GraceExpired and
//     GraceEndedEarly resolve it for good.
//   - AccessGranted with an expires_at sets the expiry deadline of the
//     grant (GrantExpiryID(child, account, granted_at), R19);
//     GrantExpired and the AccessRevoked naming the grant resolve it.
//   - AccountInvited sets the invitation deadline of the account
//     (InvitationID(account)) at its expires_at; a renewed invitation moves
//     it to the later expires_at and makes it pending again.
//     InvitationExpired resolves it up to its expired_at; AccountActivated
//     and AccountClosed resolve it for good.
//
// Recording is idempotent and does not depend on the order the events
// arrive in (JetStream may redeliver out of order): the latest due and the
// furthest resolution win, and a row is resolved when its resolution covers
// its due — also when the resolving event arrived first. Duplicate
// deliveries change nothing.
//
// # Firing
//
// A scheduler, driven by the injected Clock, sleeps until the earliest
// pending deadline (or until a nearer one is recorded, or PollInterval at
// most, to see rows other instances recorded and leases that ran out). It
// then claims up to BatchSize due rows at a time with a lease (claimed_by,
// claimed_until: one UPDATE ... RETURNING, with FOR UPDATE SKIP LOCKED on
// PostgreSQL, so two instances on one database never claim the same row;
// on SQLite the single writer serializes claims) and carries out their
// commands as domain.System with the idempotency key
// "deadline/<kind>/<subject id>/<due micros>" and the event that set the
// deadline as causation:
//
//   - the expiries and time marks (grace, invitation, grant_expiry,
//     placement_start, placement_end) of a claim go together to
//     Commands.FireDeadlines, which decides each through its aggregate as
//     its own command would and appends them together (on SQL, one read of
//     their streams and one AppendBatch transaction; see
//     commands.Service.FireDeadlines); the successes are then settled with
//     one statement, and a row whose command appended its expiry or mark
//     is resolved by that event at once (the event, when it comes back on
//     the bus, finds nothing to write);
//   - the erasures at retention are sent one by one through a cqrs
//     CommandBus, whose CommandHandler calls the command service.
//
// Either way a firing's outcome settles its row:
//
//   - success (the expiry appended, or nothing to do: R5, R6, already
//     expired, activated, closed): fired, or resolved by the expiry it
//     appended (batches);
//   - domain.ErrNotDue (the service's clock is behind ours, or the
//     aggregate knows a later due we have not seen yet): retried at the
//     later of the due and now+backoff;
//   - any other error: retried after an exponential backoff (Backoff
//     doubling up to MaxBackoff), with the error in last_error.
//
// A claim whose firing never settles (the process died, the command
// message was lost) runs out after Lease and the deadline is claimed again.
// At start an instance releases the claims left under its own InstanceID,
// then fires every overdue deadline at once. The idempotency key makes a
// repeated firing append nothing, so together with the aggregate's own
// checks there is exactly one expiry event per deadline.
//
// # Clock
//
// All times come from Config.Clock (the scheduler's sleeps too: Clock.At
// takes the absolute time to wake at), so tests drive time without
// sleeping. The command service decides with its own
// clock; a service clock behind ours shows as ErrNotDue and is retried.
package processmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// Topics the process manager uses besides bus.TopicEvents, which it
// subscribes to. Each expiry command has a topic of its own, so that a bus
// with consumer groups (NATS JetStream, PostgreSQL) never hands one
// command's messages to the other's handler.
const (
	TopicExpireCarerAccess = "accessledger.commands.v1." + commands.CommandExpireCarerAccess
	TopicExpireInvitation  = "accessledger.commands.v1." + commands.CommandExpireInvitation

	TopicEraseAccountAtRetention = "accessledger.commands.v1." + commands.CommandRetainAccount
	TopicEraseChildAtRetention   = "accessledger.commands.v1." + commands.CommandRetainChild
	// The time marks' topics.
	TopicMarkPlacementStart = "accessledger.commands.v1." + commands.CommandMarkPlacementStart
	TopicMarkPlacementEnd   = "accessledger.commands.v1." + commands.CommandMarkPlacementEnd
	TopicExpireGrant        = "accessledger.commands.v1." + commands.CommandExpireGrant
)

// Defaults of Config.
const (
	DefaultLease        = 30 * time.Second
	DefaultBackoff      = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultPollInterval = time.Minute
	DefaultBatchSize    = 500
)

// ErrAlreadyRunning is returned by a second call of Run.
var ErrAlreadyRunning = errors.New("processmanager: already running")

// Clock is the process manager's time: Now for every decision, At for the
// scheduler's sleeps. At returns a channel that receives a value once the
// clock reaches t, at once when it already has. (An absolute time, not a
// duration, so that a test that moves a fake clock can never slip between
// the scheduler reading the time and starting its timer.)
type Clock interface {
	Now() time.Time
	At(t time.Time) <-chan time.Time
}

// SystemClock is the wall clock. Its timers run on the monotonic clock:
// after a jump of the wall clock, a sleep ends late or early by the jump,
// at most until the next PollInterval.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// At returns time.After(time.Until(t)).
func (SystemClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// Commands is what the process manager needs of the command service
// (*commands.Service has these methods).
type Commands interface {
	ExpireCarerAccess(ctx context.Context, meta commands.Meta, cmd commands.ExpireCarerAccess) (commands.Result, error)
	ExpireInvitation(ctx context.Context, meta commands.Meta, cmd commands.ExpireInvitation) (commands.Result, error)
	EraseAccountAtRetention(ctx context.Context, meta commands.Meta, cmd commands.EraseAccountAtRetention) (commands.Result, error)
	EraseChildAtRetention(ctx context.Context, meta commands.Meta, cmd commands.EraseChildAtRetention) (commands.Result, error)
	MarkPlacementStart(ctx context.Context, meta commands.Meta, cmd commands.MarkPlacementStart) (commands.Result, error)
	MarkPlacementEnd(ctx context.Context, meta commands.Meta, cmd commands.MarkPlacementEnd) (commands.Result, error)
	ExpireGrant(ctx context.Context, meta commands.Meta, cmd commands.ExpireGrant) (commands.Result, error)
	// FireDeadlines carries out a batch of expiries and time marks, each
	// as its own method would, and returns their outcomes in batch order
	// (see commands.Service.FireDeadlines).
	FireDeadlines(ctx context.Context, batch []commands.DeadlineCommand) []commands.DeadlineOutcome
}

// Config configures a ProcessManager. DB, Publisher, Subscriber and
// Commands are required; zero fields take the defaults given.
type Config struct {
	// DB holds the deadlines table (apply Migrations first). Every access
	// is a single statement, so a *bun.DB, a bun.Conn or an in-memory
	// SQLite database with one connection all work. Several instances may
	// share one PostgreSQL database.
	DB bun.IDB
	// Publisher sends the expiry commands (TopicExpireCarerAccess,
	// TopicExpireInvitation).
	Publisher message.Publisher
	// Subscriber receives bus.TopicEvents and the command topics. On a bus
	// with consumer groups, instances sharing a database may share a
	// consumer group (each event then reaches one of them) or not (each
	// reaches all: recording is idempotent). The process manager never
	// closes Publisher or Subscriber: the caller does, after Run returns.
	Subscriber message.Subscriber
	// Commands carries out the expiry commands.
	Commands Commands
	// Clock is the time source. Default SystemClock.
	Clock Clock
	// Logger receives firings (info), retries (warn), failures (error) and
	// watermill's logs (its info as debug). Default slog.Default().
	Logger *slog.Logger
	// InstanceID names this instance in claims: unique among the instances
	// sharing the database, and stable across restarts of one instance so
	// that a restart takes back its own claims at once (else they wait for
	// their lease). Default: hostname-pid-random (unique, not stable).
	InstanceID string
	// Lease is how long a claim keeps other instances off a deadline while
	// its command is in flight. Default DefaultLease.
	Lease time.Duration
	// Backoff is the delay before the first retry of a failed firing; it
	// doubles with each attempt up to MaxBackoff. Defaults DefaultBackoff,
	// DefaultMaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// PollInterval is the longest the scheduler sleeps without reading the
	// table (to see deadlines other instances recorded and leases that ran
	// out). Default DefaultPollInterval.
	PollInterval time.Duration
	// BatchSize is how many due deadlines one claim takes, and so the
	// largest batch of expiries carried out and appended together: a batch
	// must be carried out well within Lease (500 take well under a second
	// on SQLite and PostgreSQL). Default DefaultBatchSize.
	BatchSize int
	// ClosedAccountRetention is the retention period of closed accounts
	// (R22) when Policy is nil: an account's retention deadline falls this
	// long after it was closed. Default domain.DefaultClosedAccountRetention.
	ClosedAccountRetention time.Duration
	// Policy, when set, answers the recorded policy in force at a time
	// (R25): an account's retention deadline falls the retention period
	// in force at its closure after it, as the command service decides.
	// (A deadline set under a shorter period than the service's is refused
	// as not due and retried.)
	Policy PolicySource
}

// PolicySource answers the recorded policy in force at a time (R25):
// commands.Service.
type PolicySource interface {
	PolicyAt(ctx context.Context, t time.Time) (domain.PolicyRecord, error)
}

func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.InstanceID == "" {
		c.InstanceID = defaultInstanceID()
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.Backoff)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.ClosedAccountRetention == 0 {
		c.ClosedAccountRetention = domain.DefaultClosedAccountRetention
	}
	return c
}

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "accessd"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// validate reports every problem of a defaulted configuration, joined.
func (c Config) validate() error {
	var problems []error
	if c.DB == nil {
		problems = append(problems, errors.New("DB is nil"))
	}
	if c.Publisher == nil {
		problems = append(problems, errors.New("Publisher is nil"))
	}
	if c.Subscriber == nil {
		problems = append(problems, errors.New("Subscriber is nil"))
	}
	if c.Commands == nil {
		problems = append(problems, errors.New("Commands is nil"))
	}
	if len(c.InstanceID) > 200 {
		problems = append(problems, errors.New("InstanceID is longer than 200 bytes"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Lease", c.Lease}, {"Backoff", c.Backoff}, {"MaxBackoff", c.MaxBackoff}, {"PollInterval", c.PollInterval},
		{"ClosedAccountRetention", c.ClosedAccountRetention}} {
		if d.v < 0 {
			problems = append(problems, fmt.Errorf("%s %s is negative", d.name, d.v))
		}
	}
	if c.MaxBackoff < c.Backoff {
		problems = append(problems, fmt.Errorf("MaxBackoff %s is below Backoff %s", c.MaxBackoff, c.Backoff))
	}
	if c.BatchSize < 0 {
		problems = append(problems, fmt.Errorf("BatchSize %d is negative", c.BatchSize))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("processmanager: invalid config: %w", err)
	}
	return nil
}

// ProcessManager records deadlines from events and fires them. Create it
// with New, then Run it once.
type ProcessManager struct {
	cfg    Config
	log    *slog.Logger
	table  *table
	router *message.Router
	send   *cqrs.CommandBus
	// handled remembers the event messages handled (see Confirming).
	handled handledLog

	poke    chan struct{}
	ready   chan struct{}
	started atomic.Bool
	running atomic.Bool

	fired    atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	nextWake time.Time
	// recorded is the earliest due recorded by a handler since the
	// scheduler last began to read the table (zero: none): the scheduler
	// wakes for it even when its read came before the deadline's commit.
	recorded time.Time
	lastErr  string
	lastErrT time.Time

	// idle, when set (tests), is called each time the scheduler goes to
	// sleep, with the time it will wake at the latest.
	idle func(wake time.Time)
}

// New checks cfg and builds the process manager: its watermill router with
// the event group (bus.TopicEvents) and the two command handlers, and its
// command bus. Nothing runs until Run.
func New(cfg Config) (*ProcessManager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t, err := newTable(cfg.DB)
	if err != nil {
		return nil, err
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(cfg.Logger.With("component", "processmanager"),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	// A router closed while it is still subscribing (a stop right after a
	// start, on a bus whose subscriber initializes its schema) waits its
	// whole close timeout; watermill's default, 30 s, outlasts serve's
	// shutdown timeout. Handlers are idempotent and unacked messages come
	// again, so a short one loses nothing.
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: routerCloseTimeout}, wlog)
	if err != nil {
		return nil, fmt.Errorf("processmanager: router: %w", err)
	}
	pm := &ProcessManager{
		cfg: cfg, log: cfg.Logger.With("component", "processmanager", "instance", cfg.InstanceID),
		table: t, router: router,
		poke: make(chan struct{}, 1), ready: make(chan struct{}),
	}
	// The outermost middleware: it records the messages whose handling
	// succeeded in the end, after the retries (see Confirming).
	router.AddMiddleware(pm.handled.middleware)
	// A failing handler (the database away) is retried in place a few
	// times before the message is nacked and redelivered.
	router.AddMiddleware(middleware.Retry{
		MaxRetries: 3, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2,
		Logger: wlog,
	}.Middleware)

	sub := keepOpen{cfg.Subscriber}

	events, err := cqrs.NewEventGroupProcessorWithConfig(router, cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return bus.TopicEvents, nil
		},
		SubscriberConstructor: func(cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return sub, nil
		},
		AckOnUnknownEvent: true,
		Marshaler:         bus.EventMarshaler{},
		Logger:            wlog,
	})
	if err != nil {
		return nil, fmt.Errorf("processmanager: event processor: %w", err)
	}
	if err := events.AddHandlersGroup("processmanager.deadlines",
		cqrs.NewGroupEventHandler(pm.onPlacementEnded),
		cqrs.NewGroupEventHandler(pm.onGraceExpired),
		cqrs.NewGroupEventHandler(pm.onGraceEndedEarly),
		cqrs.NewGroupEventHandler(pm.onAccountInvited),
		cqrs.NewGroupEventHandler(pm.onInvitationExpired),
		cqrs.NewGroupEventHandler(pm.onAccountActivated),
		cqrs.NewGroupEventHandler(pm.onAccountClosed),
		cqrs.NewGroupEventHandler(pm.onAccountErased),
		cqrs.NewGroupEventHandler(pm.onChildRegistered),
		cqrs.NewGroupEventHandler(pm.onChildRetentionSet),
		cqrs.NewGroupEventHandler(pm.onPlacementCancelled),
		cqrs.NewGroupEventHandler(pm.onAccountReopened),
		cqrs.NewGroupEventHandler(pm.onPlacementStarted),
		cqrs.NewGroupEventHandler(pm.onPlacementStartReached),
		cqrs.NewGroupEventHandler(pm.onPlacementEndReached),
		cqrs.NewGroupEventHandler(pm.onAccessGranted),
		cqrs.NewGroupEventHandler(pm.onAccessRevoked),
		cqrs.NewGroupEventHandler(pm.onGrantExpired),
	); err != nil {
		return nil, fmt.Errorf("processmanager: event handlers: %w", err)
	}

	marshaler := bus.EventMarshaler{}
	cmds, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return commandTopic(p.CommandName)
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return sub, nil
		},
		Marshaler: marshaler,
		Logger:    wlog,
	})
	if err != nil {
		return nil, fmt.Errorf("processmanager: command processor: %w", err)
	}
	if err := cmds.AddHandlers(
		cqrs.NewCommandHandler("processmanager."+commands.CommandExpireCarerAccess, pm.expireCarerAccess),
		cqrs.NewCommandHandler("processmanager."+commands.CommandExpireInvitation, pm.expireInvitation),
		cqrs.NewCommandHandler("processmanager."+commands.CommandRetainAccount, pm.eraseAccountAtRetention),
		cqrs.NewCommandHandler("processmanager."+commands.CommandRetainChild, pm.eraseChildAtRetention),
		cqrs.NewCommandHandler("processmanager."+commands.CommandMarkPlacementStart, pm.markPlacementStart),
		cqrs.NewCommandHandler("processmanager."+commands.CommandMarkPlacementEnd, pm.markPlacementEnd),
		cqrs.NewCommandHandler("processmanager."+commands.CommandExpireGrant, pm.expireGrant),
	); err != nil {
		return nil, fmt.Errorf("processmanager: command handlers: %w", err)
	}
	pm.send, err = cqrs.NewCommandBusWithConfig(cfg.Publisher, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return commandTopic(p.CommandName)
		},
		Marshaler: marshaler,
		Logger:    wlog,
	})
	if err != nil {
		return nil, fmt.Errorf("processmanager: command bus: %w", err)
	}
	return pm, nil
}

// routerCloseTimeout bounds how long closing the router waits for its
// handlers.
const routerCloseTimeout = 5 * time.Second

// commandTopic is the topic of a command named as bus.EventMarshaler names
// it.
func commandTopic(name string) (string, error) {
	switch name {
	case bus.EventMarshaler{}.Name(commands.ExpireCarerAccess{}):
		return TopicExpireCarerAccess, nil
	case bus.EventMarshaler{}.Name(commands.ExpireInvitation{}):
		return TopicExpireInvitation, nil
	case bus.EventMarshaler{}.Name(commands.EraseAccountAtRetention{}):
		return TopicEraseAccountAtRetention, nil
	case bus.EventMarshaler{}.Name(commands.EraseChildAtRetention{}):
		return TopicEraseChildAtRetention, nil
	case bus.EventMarshaler{}.Name(commands.MarkPlacementStart{}):
		return TopicMarkPlacementStart, nil
	case bus.EventMarshaler{}.Name(commands.MarkPlacementEnd{}):
		return TopicMarkPlacementEnd, nil
	case bus.EventMarshaler{}.Name(commands.ExpireGrant{}):
		return TopicExpireGrant, nil
	}
	return "", fmt.Errorf("processmanager: no topic for command %q", name)
}

// keepOpen hides the caller's subscriber's Close from the router, which
// closes its subscribers when it stops.
type keepOpen struct{ message.Subscriber }

func (keepOpen) Close() error { return nil }

// InstanceID returns the instance id claims are made under.
func (pm *ProcessManager) InstanceID() string { return pm.cfg.InstanceID }

// Ready is closed once Run has subscribed to every topic and the scheduler
// has started. On a bus that keeps no messages for absent subscribers
// (gochannel), publish events only after it is closed.
func (pm *ProcessManager) Ready() <-chan struct{} { return pm.ready }

// Run runs the watermill router (the event and command handlers) and the
// scheduler until ctx is done, then stops them and returns nil. It returns
// an error when the router cannot start or stops on its own (its
// subscriptions ended). Run may be called once; a second call returns
// ErrAlreadyRunning.
func (pm *ProcessManager) Run(ctx context.Context) error {
	if !pm.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var routerErr error
	routerDone := make(chan struct{})
	go func() {
		defer close(routerDone)
		routerErr = pm.router.Run(ctx)
	}()
	stop := func() {
		cancel()
		if err := pm.router.Close(); err != nil {
			pm.log.Warn("processmanager: closing the router", "error", err)
		}
		<-routerDone
		pm.running.Store(false)
	}

	select {
	case <-pm.router.Running():
	case <-routerDone:
		return fmt.Errorf("processmanager: the router did not start: %w", errOrStopped(routerErr))
	case <-ctx.Done():
		stop()
		return nil
	}

	if err := pm.table.release(ctx, pm.cfg.InstanceID, pm.cfg.Clock.Now()); err != nil {
		pm.log.Warn("processmanager: cannot release this instance's old claims; they run out with their lease", "error", err)
	}
	pm.running.Store(true)
	close(pm.ready)
	pm.log.Info("processmanager: running", "lease", pm.cfg.Lease, "poll_interval", pm.cfg.PollInterval)

	pm.schedule(ctx, routerDone)
	stopped := ctx.Err() == nil
	stop()
	if stopped {
		return fmt.Errorf("processmanager: the router stopped: %w", errOrStopped(routerErr))
	}
	return nil
}

func errOrStopped(err error) error {
	if err != nil {
		return err
	}
	return errors.New("all subscriptions ended")
}

// wake makes the scheduler look at the table again now.
func (pm *ProcessManager) wake() {
	select {
	case pm.poke <- struct{}{}:
	default:
	}
}

// Metadata keys of the command messages.
const (
	metaDeadline    = "deadline_id"
	metaDue         = "deadline_due_at" // Unix microseconds
	metaClaimedBy   = "deadline_claimed_by"
	metaAttempt     = "deadline_attempt"
	metaCausation   = "causation_id"
	metaCorrelation = "correlation_id"
)
