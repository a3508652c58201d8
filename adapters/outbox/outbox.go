// Package outbox publishes what the engine records to the message bus
// (adapters/bus): the event store is the outbox.
//
//   - Relay follows the event log from its own checkpoint and publishes every
//     event, in log order, on bus.TopicEvents (bus.EncodeEvent).
//   - AccessChangedPublisher follows the access index's change feed and
//     publishes an access.changed message per change on bus.TopicAccess
//     (bus.EncodeAccessChanged).
//
// # Delivery
//
// Both publish at least once and in order: one Publish at a time, the next
// only after the previous succeeded. A failing Publish is retried with
// exponential backoff for as long as it takes (never skipped); Status
// reports the retries and the last error. The checkpoint, a row of
// outbox_checkpoints in the read store, is written after the messages up to
// it were published, in batches (every WithBatch events or interval,
// whichever comes first, and when Run returns): a restart resumes after the
// checkpoint and may publish again what was published after it (at most
// about one batch, or one interval's worth), never skipping anything.
// Message UUIDs are stable (the event id; a name-based UUID per change), so
// consumers can deduplicate, and NATS JetStream drops republished messages
// within its duplicate window.
//
// Without a lease (the default), run one Relay (and one
// AccessChangedPublisher) per checkpoint name: a second one publishes every
// message twice. Checkpoints only move forward, so two never lose messages;
// deleting a row republishes from the start.
//
// # Lease
//
// With WithLease(owner, ttl), any number of publishers with the same
// checkpoint name may run, say one per engine replica sharing the read
// store: only the one holding the lease of the name, kept in its row,
// publishes. Run first takes the lease, which it gets when the row has no
// owner, is already owner's (a replica restarted under the same owner takes
// its lease back at once), or its lease ran out (lease_until before now by
// Run's clock, WithClock); only then does it load the checkpoint, so it
// resumes where the previous holder's last write left it. The others stand
// by and try again every ttl/3 (at least 50 ms). The holder renews the lease
// (to now + ttl) at least every ttl/3, with its checkpoint writes or on its
// own when nothing was published; every write is conditional on the row
// still being owner's. When Run returns because its context ended, the
// holder writes its last checkpoint and releases the lease: a standby takes
// over at its next try and continues from that checkpoint, so a clean
// hand-over publishes nothing twice. A holder that dies keeps the lease
// until lease_until passes.
//
// A holder that finds the row under another owner (a write fails with
// ErrLeaseLost: its lease ran out and a standby took it), or that cannot
// renew the lease before lease_until passes by its own clock (the database
// is away: it can no longer be sure it holds it), or whose Publish call has
// not returned for a whole ttl (a bus or consumer that hangs: it stops
// renewing, so that another publisher can take over), stops publishing at
// once, logs a warning and stands by again. The message in flight at that moment
// may still be published, and until it notices, the old holder may publish
// messages the new one publishes too; the new holder resumes from the last
// checkpoint written under the lease. So across a hand-over that is not a
// clean stop, messages after that checkpoint may be published twice (by
// either holder), never skipped; each holder still publishes in order.
// Give every publisher its own owner (two with the same owner both hold
// the lease) and keep the clocks of the replicas in step to well within
// ttl.
//
// # Table
//
// The migrations (Migrations, recorded under Component) create
// outbox_checkpoints: name (primary key), position and prepare (the two
// parts of an eventlog.Position; equal on the SQL stores), updated_at (Unix
// microseconds), and the lease: lease_owner (the holder's owner string, empty
// when free) and lease_until (the end of the lease in Unix microseconds, 0
// when released). They run on PostgreSQL and SQLite.
package outbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"time"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/boundsql"
	"github.com/accessledger/accessledger/internal/sqllease"
	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the migrations are recorded under (tables
// outbox_migrations and outbox_migration_locks).
const Component = "outbox"

// Default checkpoint names.
const (
	// DefaultRelayName is the Relay's checkpoint name.
	DefaultRelayName = "events"
	// DefaultAccessName is the AccessChangedPublisher's checkpoint name.
	DefaultAccessName = "access.changed"
)

// Defaults of the options.
const (
	DefaultBatch      = 100
	DefaultInterval   = 200 * time.Millisecond
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	DefaultPageSize   = 500
)

// ErrRunning is returned by Run when another Run of the same publisher has
// not returned.
var ErrRunning = errors.New("outbox: already running")

// ErrLeaseLost is returned (wrapped) by the conditional writes of
// Checkpoints (Renew, SaveLeased, Release) when the row is not, or no
// longer, the owner's: another owner took the lease after it ran out, or the
// row was deleted.
var ErrLeaseLost = errors.New("outbox: lease lost")

// errLeaseExpired ends a hold whose lease could not be renewed before it
// ran out by the holder's clock.
var errLeaseExpired = errors.New("outbox: lease not renewed before it ran out")

// errPublishStuck ends a hold whose Publish call has not returned for a
// whole lease: the holder stops renewing, so that another replica can
// publish.
var errPublishStuck = errors.New("outbox: a publish has not returned for a whole lease; giving the lease up")

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the SQL migrations of the checkpoint table for
// PostgreSQL and SQLite, for sqldb.Migrate(ctx, db, Component, pg, sqlite).
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}

// Migrate creates or updates the checkpoint table in db (see sqldb.Migrate).
func Migrate(ctx context.Context, db *sqldb.DB) error {
	pg, lite := Migrations()
	return sqldb.Migrate(ctx, db, Component, pg, lite)
}

// Checkpoints reads and writes rows of outbox_checkpoints. It issues single
// statements, so it works on a *bun.DB, a bun.Conn or a bun.Tx. It is safe
// for concurrent use.
type Checkpoints struct {
	db bun.IDB
	// q runs the statements of every batch (Load, Save, SaveLeased) with
	// bound parameters (internal/boundsql): on SQLite they are compiled
	// once, not at each checkpoint under the file's write lock.
	q boundsql.Runner
}

// NewCheckpoints returns the checkpoints of db, whose table Migrate created.
func NewCheckpoints(db bun.IDB) *Checkpoints { return &Checkpoints{db: db, q: boundsql.For(db)} }

// Load returns the checkpoint of name, or eventlog.Start when it has none.
func (c *Checkpoints) Load(ctx context.Context, name string) (eventlog.Position, error) {
	var commit, prepare int64
	err := c.q.QueryRowContext(ctx, "SELECT position, prepare FROM outbox_checkpoints WHERE name = ?", name).
		Scan(&commit, &prepare)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return eventlog.Start, nil
	case err != nil:
		return eventlog.Start, fmt.Errorf("outbox: load checkpoint %q: %w", name, err)
	}
	return eventlog.Position{Commit: uint64(commit), Prepare: uint64(prepare)}, nil
}

// Save sets the checkpoint of name to pos unless it already is at pos or
// after it: a checkpoint never moves back.
func (c *Checkpoints) Save(ctx context.Context, name string, pos eventlog.Position) error {
	if pos.Commit > math.MaxInt64 || pos.Prepare > math.MaxInt64 {
		return fmt.Errorf("outbox: save checkpoint %q: position %s out of range", name, pos)
	}
	_, err := c.q.ExecContext(ctx, `INSERT INTO outbox_checkpoints (name, position, prepare, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, prepare = excluded.prepare, updated_at = excluded.updated_at
WHERE (outbox_checkpoints.position, outbox_checkpoints.prepare) < (excluded.position, excluded.prepare)`,
		name, int64(pos.Commit), int64(pos.Prepare), time.Now().UnixMicro())
	if err != nil {
		return fmt.Errorf("outbox: save checkpoint %q at %s: %w", name, pos, err)
	}
	return nil
}

// Acquire takes the lease of name for owner until `until`: it creates the
// row (checkpoint at eventlog.Start, lease free) if there is none, then, in
// one compare-and-set (internal/sqllease), sets lease_owner and
// lease_until when the row has no owner, is already owner's (then it only extends the lease), or its
// lease_until is before now. It reports whether owner holds the lease now;
// when another owner's lease is still running it returns false and changes
// nothing (Lease tells who holds it). The checkpoint itself is not touched:
// Load it after Acquire to resume where the previous holder left it. owner
// must not be empty.
func (c *Checkpoints) Acquire(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	if owner == "" {
		return false, fmt.Errorf("outbox: acquire lease %q: empty owner", name)
	}
	_, err := c.db.NewRaw(`INSERT INTO outbox_checkpoints (name, position, prepare, updated_at, lease_owner, lease_until) VALUES (?, 0, 0, ?, '', 0)
ON CONFLICT (name) DO NOTHING`, name, now.UnixMicro()).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("outbox: acquire lease %q for %q: %w", name, owner, err)
	}
	ok, err := leaseTable.Acquire(ctx, c.db, name, owner, now, until)
	if err != nil {
		return false, fmt.Errorf("outbox: %w", err)
	}
	return ok, nil
}

// leaseTable is the lease of a publisher: its checkpoint row.
var leaseTable = sqllease.Table{Name: "outbox_checkpoints", Key: "name", Owner: "lease_owner", Until: "lease_until"}

// lost turns sqllease's ErrNotHeld into ErrLeaseLost, keeping the message
// the outbox has always given.
func lost(err error, format string, args ...any) error {
	if errors.Is(err, sqllease.ErrNotHeld) {
		return fmt.Errorf("outbox: "+format+": %w", append(args, ErrLeaseLost)...)
	}
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Renew extends owner's lease of name to `until`, provided the row is
// still owner's (whether or not its lease_until has passed: nobody took
// it). Otherwise it changes nothing and returns ErrLeaseLost (wrapped).
func (c *Checkpoints) Renew(ctx context.Context, name, owner string, until time.Time) error {
	return lost(leaseTable.Renew(ctx, c.db, name, owner, until), "renew lease %q for %q", name, owner)
}

// SaveLeased sets the checkpoint of name to pos (unless it already is at
// pos or after it: a checkpoint never moves back) and extends owner's
// lease to `until`, in one statement, provided the row is owner's.
// Otherwise it changes nothing and returns ErrLeaseLost (wrapped): a
// publisher that lost its lease never moves the checkpoint. now is the
// row's updated_at.
func (c *Checkpoints) SaveLeased(ctx context.Context, name, owner string, pos eventlog.Position, now, until time.Time) error {
	if pos.Commit > math.MaxInt64 || pos.Prepare > math.MaxInt64 {
		return fmt.Errorf("outbox: save checkpoint %q: position %s out of range", name, pos)
	}
	commit, prepare := int64(pos.Commit), int64(pos.Prepare)
	res, err := c.q.ExecContext(ctx, `UPDATE outbox_checkpoints SET
position = CASE WHEN (position, prepare) < (?, ?) THEN ? ELSE position END,
prepare = CASE WHEN (position, prepare) < (?, ?) THEN ? ELSE prepare END,
updated_at = ?, lease_until = ?
WHERE name = ? AND lease_owner = ?`,
		commit, prepare, commit, commit, prepare, prepare, now.UnixMicro(), until.UnixMicro(), name, owner)
	return leased(res, err, "save checkpoint %q at %s for %q", name, pos, owner)
}

// Release gives up owner's lease of name (lease_owner empty, lease_until
// 0), provided the row is owner's, so that another owner takes it at its
// next try instead of waiting for it to run out. Otherwise it changes
// nothing and returns ErrLeaseLost (wrapped). The checkpoint stays.
func (c *Checkpoints) Release(ctx context.Context, name, owner string) error {
	return lost(leaseTable.Release(ctx, c.db, name, owner), "release lease %q of %q", name, owner)
}

// Lease returns who holds the lease of name and until when, as the row
// says: owner is "" when nobody does (free, released, or no row), and until
// is the zero time when it is 0. A lease whose until has passed is
// returned as it is: it is free for another owner to take.
func (c *Checkpoints) Lease(ctx context.Context, name string) (owner string, until time.Time, err error) {
	h, _, err := leaseTable.Holder(ctx, c.db, name)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("outbox: %w", err)
	}
	return h.Owner, h.Until, nil
}

// leased turns the result of a write conditional on the lease's owner into
// an error: ErrLeaseLost when it changed no row.
func leased(res sql.Result, err error, format string, args ...any) error {
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrLeaseLost
		}
	}
	if err != nil {
		return fmt.Errorf("outbox: "+format+": %w", append(args, err)...)
	}
	return nil
}

// Delete removes the checkpoint of name: its publisher starts again from
// the beginning (an operator's tool; stop the publisher first).
func (c *Checkpoints) Delete(ctx context.Context, name string) error {
	if _, err := c.db.NewRaw("DELETE FROM outbox_checkpoints WHERE name = ?", name).Exec(ctx); err != nil {
		return fmt.Errorf("outbox: delete checkpoint %q: %w", name, err)
	}
	return nil
}

// Option configures a Relay or an AccessChangedPublisher.
type Option func(*config)

type config struct {
	name       string
	topic      string
	batch      int
	interval   time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	pageSize   int
	logger     *slog.Logger
	leaseOwner string // "" without a lease
	leaseTTL   time.Duration
	clock      func() time.Time
}

func (c *config) leased() bool { return c.leaseOwner != "" }

func newConfig(name, topic string, opts []Option) config {
	c := config{name: name, topic: topic, batch: DefaultBatch, interval: DefaultInterval,
		minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff, pageSize: DefaultPageSize, logger: slog.Default(),
		clock: time.Now}
	for _, o := range opts {
		o(&c)
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	c.logger = c.logger.With("component", "outbox", "publisher", c.name, "topic", c.topic)
	return c
}

// WithName sets the checkpoint name (defaults: DefaultRelayName,
// DefaultAccessName). An empty name keeps the default.
func WithName(name string) Option {
	return func(c *config) {
		if name != "" {
			c.name = name
		}
	}
}

// WithTopic sets the topic published to (defaults: bus.TopicEvents,
// bus.TopicAccess). An empty topic keeps the default.
func WithTopic(topic string) Option {
	return func(c *config) {
		if topic != "" {
			c.topic = topic
		}
	}
}

// WithBatch sets how often the checkpoint is written: after n messages or
// every interval, whichever comes first, and when Run returns. It is also
// the most messages one Publish call carries while catching up. Values < 1
// keep the defaults (DefaultBatch, DefaultInterval).
func WithBatch(n int, interval time.Duration) Option {
	return func(c *config) {
		if n >= 1 {
			c.batch = n
		}
		if interval > 0 {
			c.interval = interval
		}
	}
}

// WithBackoff sets the first and the longest wait between retries of a
// failing Publish (or of reading the log); the wait doubles on each failure.
// Values <= 0 keep the defaults (DefaultMinBackoff, DefaultMaxBackoff).
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) {
		if min > 0 {
			c.minBackoff = min
		}
		if max > 0 {
			c.maxBackoff = max
		}
	}
}

// WithPageSize sets how many events the Relay reads per page while it
// catches up (default DefaultPageSize). Values < 1 keep the default.
func WithPageSize(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.pageSize = n
		}
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithLease makes the publisher take the lease of its checkpoint name
// before it publishes, under owner (this replica's name among those that
// share the read store, e.g. its instance id), for ttl at a time (see
// "Lease" in the package documentation): of all the publishers with the
// same checkpoint name, only the one holding the lease publishes; the others
// stand by, trying to take it every ttl/3 (at least 50 ms). An empty owner
// or a ttl <= 0 leaves the publisher without a lease (the default).
func WithLease(owner string, ttl time.Duration) Option {
	return func(c *config) {
		if owner != "" && ttl > 0 {
			c.leaseOwner, c.leaseTTL = owner, ttl
		}
	}
}

// WithClock sets the clock the lease's times are read from and written
// with (default time.Now): tests drive the lease's expiry with it. The
// periods (renewing, standing by, WithBatch's interval) are real time. A nil
// clock keeps the default.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.clock = now
		}
	}
}
