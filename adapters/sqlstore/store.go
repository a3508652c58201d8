// Package sqlstore implements the event log port (eventlog.Store) on SQL
// through bun, for PostgreSQL and SQLite (see adapters/sqldb).
//
// # Schema
//
// Migrate creates two tables (component "eventstore"): events, one row per
// event, and events_head, one row holding the last position handed out. On
// PostgreSQL data is a JSON column (not JSONB: JSON keeps the appended bytes
// exactly and accepts \u0000 escapes, which JSONB rejects); on SQLite it is
// TEXT.
//
// # Global order
//
// An append takes its positions by incrementing the counter row as the first
// statement of its transaction. The row lock (PostgreSQL) or the database
// write lock (SQLite) is held until commit, so appends run one at a time,
// commit in position order and never leave gaps: a reader that has seen
// position P has seen every event before P. docs/adr/0001-global-order.md
// gives the reasoning. The price is that appends to different streams do
// not run in parallel.
//
// # Data fidelity
//
// Event data is returned byte for byte as appended. Times are stored in UTC
// with microsecond precision (PostgreSQL's timestamptz precision): Append
// truncates Meta.EffectiveAt and Meta.RecordedAt to the microsecond, so a
// time round-trips exactly when it has no finer part, and every returned
// time is in UTC. Strings (stream, type, actor, role, reason) and data must
// be valid UTF-8 without NUL bytes, which PostgreSQL cannot store, and times
// must lie in years 1-9999 (UTC); Append refuses others with
// eventlog.ErrInvalidAppend on both engines.
//
// # Following the log
//
// Subscribe catches up with ReadAll and then sleeps until an append wakes
// it: on PostgreSQL the append transaction sends pg_notify (delivered at
// commit) and every Store keeps one LISTEN connection; on SQLite appends
// wake the subscribers of every Store of the process on the same file. A
// slow re-check (WithRecheckInterval, 1 s by default) covers what no
// notification reports: another process appending to the same SQLite file,
// or notifications lost while the LISTEN connection reconnects. What it
// reads after a wake-up usually comes from memory: the events this
// process's Stores on the database have just appended (tail.go).
package sqlstore

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the event store's migrations are recorded under
// (tables eventstore_migrations and eventstore_migration_locks).
const Component = "eventstore"

// ErrClosed is returned (wrapped) by a Store's methods after Close, and by
// a Subscribe that was running when the Store was closed.
var ErrClosed = errors.New("sqlstore: store closed")

//go:embed migrations
var migrationFiles embed.FS

// Migrate creates or updates the event store's tables in db. It is safe to
// call concurrently from several processes and again when up to date; see
// sqldb.Migrate.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	pg, lite := sqlmigrations.Split(migrationFiles)
	return sqldb.Migrate(ctx, db, Component, pg, lite)
}

const (
	defaultRecheck = time.Second

	// subscribeBatch is how many events Subscribe reads per query.
	subscribeBatch = 500
	// Appends on PostgreSQL insert at most insertRows rows or about
	// insertBytes bytes per statement: bun formats values into the SQL
	// text, so this bounds statement size (SQLite binds them: insert.go).
	insertRows  = 500
	insertBytes = 4 << 20
	// idChunk bounds the ids per IN list of the idempotency check.
	idChunk = 1000
)

// Option configures a Store.
type Option func(*config)

type config struct {
	clock   func() time.Time
	logger  *slog.Logger
	recheck time.Duration
	// health is how long the LISTEN connection may stay silent before it is
	// pinged; a failed ping reconnects it.
	health time.Duration
	// noTail makes Subscribe read every event from the database (the
	// benchmarks' baseline).
	noTail bool
}

// WithClock sets the clock that fills Meta.RecordedAt when an append leaves
// it zero. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithLogger sets the logger for background events (the PostgreSQL LISTEN
// connection dropping and coming back). The default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRecheckInterval sets how often an idle Subscribe re-reads the log even
// without a notification (default 1 s). Only appends that no notification
// reports wait that long: those of another process on the same SQLite file,
// or those made while the LISTEN connection was reconnecting.
func WithRecheckInterval(d time.Duration) Option { return func(c *config) { c.recheck = d } }

// Store is an eventlog.Store on a SQL database. Create it with New and
// Close it when done; it is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	cfg    config
	pg     bool
	shared *shared
	// release drops this Store's reference to shared.
	release func()

	channel    string // PostgreSQL NOTIFY channel of this schema
	stopListen context.CancelFunc
	listenDone chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
}

var _ eventlog.Store = (*Store)(nil)

// New returns a Store on db, whose tables Migrate must have created. On
// PostgreSQL it also opens the LISTEN connection (with db.DSN()) before it
// returns, so a Subscribe started afterwards hears every append committed
// afterwards, from any process.
//
// The Store does not own db: Close the Store, then db.
func New(ctx context.Context, db *sqldb.DB, opts ...Option) (*Store, error) {
	cfg := config{
		clock:   time.Now,
		logger:  slog.Default(),
		recheck: defaultRecheck,
		health:  30 * time.Second,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	var problems []error
	if cfg.clock == nil {
		problems = append(problems, errors.New("clock is nil"))
	}
	if cfg.logger == nil {
		problems = append(problems, errors.New("logger is nil"))
	}
	if cfg.recheck <= 0 {
		problems = append(problems, fmt.Errorf("recheck interval %s is not positive", cfg.recheck))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("sqlstore: invalid options: %w", err)
	}

	s := &Store{
		db:     db,
		cfg:    cfg,
		pg:     db.IsPostgres(),
		closed: make(chan struct{}),
	}
	if _, err := s.head(ctx, db.DB); err != nil {
		return nil, fmt.Errorf("sqlstore: %s: cannot read the event tables (has sqlstore.Migrate run?): %w", db, err)
	}
	if s.pg {
		s.shared, s.release = newShared(), func() {}
		if err := s.startListener(ctx); err != nil {
			return nil, fmt.Errorf("sqlstore: %s: %w", db, err)
		}
	} else {
		s.shared, s.release = acquireShared(db.Path())
	}
	return s, nil
}

// Close stops the Store's background work (the LISTEN connection) and makes
// running Subscribe calls return ErrClosed. It does not close the database.
// Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.stopListen != nil {
			s.stopListen()
			<-s.listenDone
		}
		s.release()
	})
	return nil
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// shared is the state every Store of the process on one SQLite database
// shares: the lock that serializes their appends, and the signal that wakes
// their subscribers.
type shared struct {
	// appendSem (capacity 1) admits one append at a time; a channel rather
	// than a mutex so that waiting for it respects the append's ctx.
	appendSem chan struct{}
	wake      *signal
	// tail is the last events appended through these Stores (tail.go).
	tail tail
	refs int
	// group is the queue of appends waiting to be committed together
	// (group.go).
	group groupQueue
}

func newShared() *shared {
	return &shared{appendSem: make(chan struct{}, 1), wake: newSignal()}
}

var sharedByPath = struct {
	sync.Mutex
	m map[string]*shared
}{m: make(map[string]*shared)}

func acquireShared(key string) (*shared, func()) {
	sharedByPath.Lock()
	defer sharedByPath.Unlock()
	sh := sharedByPath.m[key]
	if sh == nil {
		sh = newShared()
		sharedByPath.m[key] = sh
	}
	sh.refs++
	return sh, func() {
		sharedByPath.Lock()
		defer sharedByPath.Unlock()
		if sh.refs--; sh.refs == 0 {
			delete(sharedByPath.m, key)
		}
	}
}

// signal is a broadcast: wait returns a channel that the next broadcast
// closes.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (g *signal) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ch
}

func (g *signal) broadcast() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.ch)
	g.ch = make(chan struct{})
}

// eventRow is one row of the events table.
type eventRow struct {
	bun.BaseModel `bun:"table:events,alias:e"`

	Position      int64     `bun:"position"`
	EventID       uuid.UUID `bun:"event_id"`
	Stream        string    `bun:"stream"`
	StreamVersion int64     `bun:"stream_version"`
	Type          string    `bun:"type"`
	// bun writes a json.RawMessage as a string literal; a plain []byte
	// would be written as bytea on PostgreSQL.
	Data          json.RawMessage `bun:"data"`
	ActorID       string          `bun:"actor_id"`
	ActorRole     string          `bun:"actor_role"`
	Reason        string          `bun:"reason"`
	EffectiveAt   time.Time       `bun:"effective_at"`
	RecordedAt    time.Time       `bun:"recorded_at"`
	CorrelationID uuid.UUID       `bun:"correlation_id"`
	CausationID   uuid.UUID       `bun:"causation_id"`
}

func (r *eventRow) size() int {
	return len(r.Data) + len(r.Stream) + len(r.Type) + len(r.ActorID) + len(r.ActorRole) + len(r.Reason) + 256
}

// Append implements eventlog.Store.
//
// It validates with eventlog.Validate and refuses strings or data that are
// not valid UTF-8 or contain NUL (eventlog.ErrInvalidAppend), then, in one
// transaction: takes positions from the counter row (serializing appends),
// checks idempotency (the same ids already stored consecutively in stream,
// in order: returns the first append's result and writes nothing; any other
// reuse: eventlog.ErrDuplicateEventID), checks the expected version
// (*eventlog.ConflictError), and inserts in batches. Times are truncated to
// microseconds; a zero RecordedAt becomes the store clock's time in UTC.
//
// When the commit itself fails the outcome is unknown: retry with the same
// event ids, which is safe.
func (s *Store) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	if err := eventlog.Validate(stream, events); err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("sqlstore: append to %q: %w", stream, err)
	}
	if err := eventlog.ValidateStorable(stream, events); err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("sqlstore: append to %q: %w", stream, err)
	}
	if s.isClosed() {
		return eventlog.AppendResult{}, fmt.Errorf("sqlstore: append to %q: %w", stream, ErrClosed)
	}

	rows := newRows(stream, events, s.cfg.clock().UTC().Truncate(time.Microsecond))

	// One writer at a time per database in this process, which commits
	// the appends waiting meanwhile together (group.go); other processes
	// wait on the file lock (SQLite, busy_timeout) or on the counter row
	// (PostgreSQL).
	res, err := s.groupAppend(ctx, stream, expected, events, rows)
	if err != nil {
		return eventlog.AppendResult{}, fmt.Errorf("sqlstore: append to %q: %w", stream, err)
	}
	return res, nil
}

// newRows converts an append's events into rows, without positions and
// stream versions: times truncated to microseconds in UTC, a zero RecordedAt
// replaced by now.
func newRows(stream string, events []eventlog.EventData, now time.Time) []eventRow {
	rows := make([]eventRow, len(events))
	for i, e := range events {
		recorded := e.Meta.RecordedAt
		if recorded.IsZero() {
			recorded = now
		}
		rows[i] = eventRow{
			EventID:       e.ID,
			Stream:        stream,
			Type:          e.Type,
			Data:          json.RawMessage(e.Data),
			ActorID:       e.Meta.ActorID,
			ActorRole:     e.Meta.ActorRole,
			Reason:        e.Meta.Reason,
			EffectiveAt:   e.Meta.EffectiveAt.UTC().Truncate(time.Microsecond),
			RecordedAt:    recorded.UTC().Truncate(time.Microsecond),
			CorrelationID: e.Meta.CorrelationID,
			CausationID:   e.Meta.CausationID,
		}
	}
	return rows
}

// insertEvents inserts rows, which carry their positions and stream
// versions: on SQLite in prepared statements (insertEventsLite), on
// PostgreSQL in statements of at most insertRows rows or about insertBytes
// bytes.
func (s *Store) insertEvents(ctx context.Context, tx bun.Tx, rows []eventRow) error {
	if !s.pg {
		return insertEventsLite(ctx, tx, rows)
	}
	for start := 0; start < len(rows); {
		end, size := start, 0
		for end < len(rows) && end-start < insertRows && (end == start || size+rows[end].size() <= insertBytes) {
			size += rows[end].size()
			end++
		}
		chunk := rows[start:end]
		if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		start = end
	}
	return nil
}

// storedIDs returns the stored rows (position, event id, stream, stream
// version only) of those of ids that are stored, by event id: one
// statement per idChunk ids, their values bound to placeholders (so that
// the statement of a full chunk is compiled once per connection on
// SQLite).
func storedIDs(ctx context.Context, tx bun.Tx, ids []uuid.UUID) (map[uuid.UUID]eventRow, error) {
	found := make(map[uuid.UUID]eventRow)
	pg := tx.Dialect().Name() == dialect.PG
	args := make([]any, 0, min(len(ids), idChunk))
	for start := 0; start < len(ids); start += idChunk {
		chunk := ids[start:min(start+idChunk, len(ids))]
		args = args[:0]
		for _, id := range chunk {
			args = append(args, id.String())
		}
		q := "SELECT position, event_id, stream, stream_version FROM events WHERE event_id IN (" +
			placeholders(pg, len(chunk)) + ")"
		if err := scanStored(ctx, tx, q, args, found); err != nil {
			return nil, fmt.Errorf("check event ids: %w", err)
		}
	}
	return found, nil
}

func scanStored(ctx context.Context, tx bun.Tx, q string, args []any, found map[uuid.UUID]eventRow) error {
	rows, err := tx.Tx.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var r eventRow
		var id string
		if err := rows.Scan(&r.Position, &id, &r.Stream, &r.StreamVersion); err != nil {
			return err
		}
		if r.EventID, err = uuid.Parse(id); err != nil {
			return fmt.Errorf("stored event id %q: %w", id, err)
		}
		found[r.EventID] = r
	}
	return rows.Err()
}

// placeholders is a list of n bound parameters: ?, ?, … on SQLite
// (positional: the SQLite driver matches each $N against every argument
// by its formatted number, quadratic in n), $1, $2, … on PostgreSQL.
func placeholders(pg bool, n int) string {
	var b strings.Builder
	b.Grow(n * 6)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		if pg {
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i + 1))
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// matchExisting implements an append's idempotency, given found, the
// stored rows of (at least) its event ids: if none of its event ids is
// stored it returns done=false; if all are stored consecutively in stream in
// the same order it returns the result their append returned and
// done=true; otherwise an error wrapping eventlog.ErrDuplicateEventID.
func matchExisting(stream string, events []eventlog.EventData, found map[uuid.UUID]eventRow) (eventlog.AppendResult, bool, error) {
	stored := false
	for _, e := range events {
		if _, ok := found[e.ID]; ok {
			stored = true
			break
		}
	}
	if !stored {
		return eventlog.AppendResult{}, false, nil
	}

	base, baseFound := found[events[0].ID]
	for i, e := range events {
		r, ok := found[e.ID]
		if ok && baseFound && r.Stream == stream && r.StreamVersion == base.StreamVersion+int64(i) {
			continue
		}
		if !ok {
			// Part of the append is stored and part is not: name a stored one.
			for _, e2 := range events {
				if r2, ok2 := found[e2.ID]; ok2 {
					return eventlog.AppendResult{}, false, fmt.Errorf("%w: %s is version %d of stream %q but %s is not stored",
						eventlog.ErrDuplicateEventID, e2.ID, r2.StreamVersion, r2.Stream, e.ID)
				}
			}
		}
		return eventlog.AppendResult{}, false, fmt.Errorf("%w: %s is already version %d of stream %q",
			eventlog.ErrDuplicateEventID, e.ID, r.StreamVersion, r.Stream)
	}
	lastRow := found[events[len(events)-1].ID]
	return eventlog.AppendResult{
		Version:  uint64(lastRow.StreamVersion),
		Position: eventlog.At(uint64(lastRow.Position)),
	}, true, nil
}

// ReadStream implements eventlog.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlstore: read stream %q: %w", stream, ErrClosed)
	}
	if from > math.MaxInt64 {
		return nil, nil
	}
	recs, err := s.queryRecords(ctx, max(limit, 0), readStreamClause(limit), stream, int64(max(from, 1)))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read stream %q: %w", stream, err)
	}
	return recs, nil
}

// ReadStreams (bulk.go) implements eventlog.StreamsReader.
var _ eventlog.StreamsReader = (*Store)(nil)

// ReadStreamsFrom (bulk.go) implements eventlog.StreamTailsReader.
var _ eventlog.StreamTailsReader = (*Store)(nil)

// ReadAll implements eventlog.Store. Positions of this store have Commit ==
// Prepare; ReadAll compares after.Commit.
func (s *Store) ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlstore: read all: %w", ErrClosed)
	}
	if after.Commit >= math.MaxInt64 {
		return nil, nil
	}
	recs, err := s.queryRecords(ctx, max(limit, 0), readAllClause(limit), int64(after.Commit))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read all after %s: %w", after, err)
	}
	return recs, nil
}

// Head implements eventlog.Store.
func (s *Store) Head(ctx context.Context) (eventlog.Position, error) {
	if s.isClosed() {
		return eventlog.Start, fmt.Errorf("sqlstore: head: %w", ErrClosed)
	}
	p, err := s.head(ctx, s.db.DB)
	if err != nil {
		return eventlog.Start, fmt.Errorf("sqlstore: head: %w", err)
	}
	return p, nil
}

func (s *Store) head(ctx context.Context, db bun.IDB) (eventlog.Position, error) {
	var last int64
	if err := db.NewRaw("SELECT position FROM events_head WHERE id = 1").Scan(ctx, &last); err != nil {
		return eventlog.Start, err
	}
	return eventlog.At(uint64(last)), nil
}
