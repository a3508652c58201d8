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
// Run one Relay (and one AccessChangedPublisher) per checkpoint name: a
// second one publishes every message twice. Checkpoints only move forward,
// so two never lose messages; deleting a row republishes from the start.
//
// # Table
//
// The migrations (Migrations, recorded under Component) create
// outbox_checkpoints: name (primary key), position and prepare (the two
// parts of an eventlog.Position; equal on the SQL stores), updated_at (Unix
// microseconds). They run on PostgreSQL and SQLite.
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
type Checkpoints struct{ db bun.IDB }

// NewCheckpoints returns the checkpoints of db, whose table Migrate created.
func NewCheckpoints(db bun.IDB) *Checkpoints { return &Checkpoints{db: db} }

// Load returns the checkpoint of name, or eventlog.Start when it has none.
func (c *Checkpoints) Load(ctx context.Context, name string) (eventlog.Position, error) {
	var commit, prepare int64
	err := c.db.NewRaw("SELECT position, prepare FROM outbox_checkpoints WHERE name = ?", name).
		Scan(ctx, &commit, &prepare)
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
	_, err := c.db.NewRaw(`INSERT INTO outbox_checkpoints (name, position, prepare, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, prepare = excluded.prepare, updated_at = excluded.updated_at
WHERE (outbox_checkpoints.position, outbox_checkpoints.prepare) < (excluded.position, excluded.prepare)`,
		name, int64(pos.Commit), int64(pos.Prepare), time.Now().UnixMicro()).Exec(ctx)
	if err != nil {
		return fmt.Errorf("outbox: save checkpoint %q at %s: %w", name, pos, err)
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
}

func newConfig(name, topic string, opts []Option) config {
	c := config{name: name, topic: topic, batch: DefaultBatch, interval: DefaultInterval,
		minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff, pageSize: DefaultPageSize, logger: slog.Default()}
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
