// Package idempotency stores the outcomes of HTTP commands sent with an
// Idempotency-Key header, so that a retried request gets the first answer
// and the command runs once.
//
// # Protocol
//
// The HTTP layer calls Begin with the caller's id (keys are scoped per
// actor), the key and a fingerprint of the request (e.g. a hash of the
// method, path and body):
//
//   - (nil, nil): this request holds the key's claim. It runs the command,
//     then calls Finish with the answer to keep (any 2xx or 4xx), or
//     Abandon when the answer must not be replayed (5xx, a panic, a
//     cancelled request) so that a retry runs the command again.
//   - (*Response, nil): the key was used before by the same request: send
//     the stored answer as it is.
//   - ErrKeyReused: the key was used by a different request (another
//     fingerprint): refuse (422).
//   - ErrInProgress: the first request with this key is still running:
//     refuse (409); the client retries later.
//   - ErrInvalidKey: the header is not a valid key (400).
//
// The claim is a pending row (below), which every process on the database
// sees, or, WithClaimsInProcess, an entry in the Store's memory, which
// saves a write per key where one process serves the database.
//
// A claim is a lease: a pending row older than the lease (default
// DefaultLease) belongs to a process that died, and the next Begin with the
// same fingerprint takes it over. A request that runs longer than the lease
// can therefore overlap a retry; the first Finish wins and the other gets
// ErrNotClaimed. Answers are kept for the retention (default
// DefaultRetention), counted from the claim: a done row older than that is
// forgotten (Begin claims the key afresh, whatever the fingerprint), and
// Purge or PurgeExpired deletes old rows.
//
// # Table
//
// The migrations (Migrations, recorded under Component) create
// idempotency_keys: actor, key (TEXT, together the primary key),
// fingerprint, state ('pending' or 'done'), status, content_type, body
// (BYTEA on PostgreSQL, BLOB on SQLite) and created_at (Unix microseconds of
// the claim), indexed for Purge.
//
// The Store issues single statements, never a transaction of its own, so it
// works on a *bun.DB (or a wrapper with a Bun method, as adapters/sqldb.DB),
// a bun.Conn or inside the caller's bun.Tx (on an in-memory SQLite
// database, which has one connection, pass the Tx when one is open). It
// runs them through the database/sql handle beneath, with bound
// parameters, so that a cache of prepared statements keeps them.
//
// # Durability
//
// When the event log is an SQLite file that also holds the read store (the
// embedded default), the engine keeps the keys in it through
// sqldb.DB.Unsynced: a claim or an answer is not fsynced when it commits,
// and a power loss may take the last ones, never one written before a
// later commit with fsync (the event log's appends are, on the same file).
// With a read store of its own (--read-store), whose commits no append's
// fsync covers, the keys are written with fsync. What a loss leaves is a state a crash
// leaves anyway: a claim lost with no command appended after it is a key
// never used (a retry runs the command); a claim kept (an append after it
// was synced) whose answer was lost is a pending claim, as after a crash
// between the command and Finish: a retry gets ErrInProgress until the
// lease passes, then runs the command again, which finds the events the
// first run appended (their ids derive from the key) and answers with
// them. A refused command appended nothing: its retry is decided afresh.
// WithClaimsInProcess there is no pending row to lose or keep: a key whose
// answer was lost is a key never used, and its retry runs the command
// again at once, finding the first run's events.
package idempotency

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/boundsql"
	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the migrations are recorded under (tables
// idempotency_migrations and idempotency_migration_locks): pass it with
// Migrations to sqldb.Migrate.
const Component = "idempotency"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the bun/migrate SQL migrations of the store for
// PostgreSQL and for SQLite, for sqldb.Migrate(ctx, db, Component, pg,
// sqlite).
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}

// Errors. Every error of the package that is one of these wraps it.
var (
	// ErrInvalidKey: the Idempotency-Key is empty, longer than MaxKeyBytes or
	// has a character other than visible ASCII (0x21 to 0x7E). It wraps
	// domain.ErrInvalid.
	ErrInvalidKey = fmt.Errorf("idempotency: invalid Idempotency-Key (1 to %d visible ASCII characters): %w", MaxKeyBytes, domain.ErrInvalid)
	// ErrKeyReused: the key was first used for a different request.
	ErrKeyReused = errors.New("idempotency: the Idempotency-Key was used for a different request")
	// ErrInProgress: the first request with the key has not finished yet.
	ErrInProgress = errors.New("idempotency: a request with this Idempotency-Key is still in progress")
	// ErrNotClaimed: Finish found no pending claim of the key (it was
	// abandoned, purged, taken over after its lease, or finished already).
	ErrNotClaimed = errors.New("idempotency: no pending claim of this Idempotency-Key")
)

// Bounds.
const (
	// MaxKeyBytes is the longest key accepted.
	MaxKeyBytes = 200
	// MaxActorBytes and MaxFingerprintBytes bound the other parts of a
	// claim (they come from the server, not the caller).
	MaxActorBytes       = 512
	MaxFingerprintBytes = 512
	// MaxContentTypeBytes and MaxBodyBytes bound a stored answer.
	MaxContentTypeBytes = 255
	MaxBodyBytes        = 1 << 20
)

// Defaults of the options.
const (
	DefaultLease     = 30 * time.Second
	DefaultRetention = 24 * time.Hour
)

// Response is a stored answer.
type Response struct {
	// Status is the HTTP status, 100 to 599.
	Status int
	// ContentType is the Content-Type header ("" for none).
	ContentType string
	// Body is the body, byte for byte (nil when empty).
	Body []byte
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock leases and retention are measured with
// (default time.Now).
func WithClock(clock func() time.Time) Option {
	if clock == nil {
		panic("idempotency: WithClock(nil)")
	}
	return func(s *Store) { s.clock = clock }
}

// WithLease sets how long a pending claim holds before another request may
// take it over (default DefaultLease). It panics unless d > 0.
func WithLease(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("idempotency: WithLease(%s): must be positive", d))
	}
	return func(s *Store) { s.lease = d }
}

// WithRetention sets how long answers are replayed (default
// DefaultRetention). It panics unless d > 0.
func WithRetention(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("idempotency: WithRetention(%s): must be positive", d))
	}
	return func(s *Store) { s.retention = d }
}

// WithClaimsInProcess keeps the claims of running requests in the Store's
// memory instead of as pending rows: a command's key then costs one write
// (its answer, at Finish) instead of two. Begin reads the key's row and
// the Store's claims; Finish inserts the done row, unless a row appeared
// or changed since Begin read it (ErrNotClaimed: the first answer stays);
// Abandon forgets the claim. Within the Store the protocol is the same
// (ErrInProgress, ErrKeyReused, a claim older than the lease taken over by
// the same request, the first Finish wins).
//
// What it gives up: another Store on the same database (another process)
// does not see a running request's claim. Two processes given the same
// key at once both run the command; with the key's event ids (package
// commands, "Idempotency") the second finds the first's events and
// answers with them, or, when the two requests differ, both are carried
// out and the second's answer is not kept. A request cut off by a crash
// leaves no pending row, so its retry runs at once instead of waiting for
// the lease. Use it where one process serves the database's commands (the
// embedded SQLite file), and durable claims where replicas share it.
func WithClaimsInProcess() Option {
	return func(s *Store) { s.local = &claims{held: map[claimKey]*claim{}} }
}

// Store keeps Idempotency-Key outcomes in the idempotency_keys table. It is
// safe for concurrent use, also by several processes on one database
// (but see WithClaimsInProcess).
type Store struct {
	q         boundsql.Runner
	clock     func() time.Time
	lease     time.Duration
	retention time.Duration
	local     *claims // nil: claims are pending rows
}

// claims are the running requests' claims of a Store WithClaimsInProcess.
type claims struct {
	mu   sync.Mutex
	held map[claimKey]*claim
}

type claimKey struct{ actor, key string }

// claim is one running request's claim.
type claim struct {
	fingerprint string
	since       int64 // Unix microseconds of the claim: the row's created_at
	// seen is the created_at of the key's row when Begin read it (an
	// answer past the retention, or a pending row past the lease), or -1
	// for none: Finish replaces only that row.
	seen int64
}

// New returns a Store on db, whose table the Migrations must have created.
func New(db bun.IDB, opts ...Option) *Store {
	s := &Store{q: boundsql.For(db), clock: time.Now, lease: DefaultLease, retention: DefaultRetention}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Lease returns the configured lease.
func (s *Store) Lease() time.Duration { return s.lease }

// Retention returns the configured retention.
func (s *Store) Retention() time.Duration { return s.retention }

const (
	statePending = "pending"
	stateDone    = "done"
)

// row is a key's row as Begin reads it.
type row struct {
	Fingerprint string
	State       string
	Status      int
	ContentType string
	Body        []byte
	CreatedAt   int64
}

// The statements, with ? for their parameters (internal/boundsql numbers
// them for PostgreSQL). They run through database/sql with bound parameters,
// not through bun, which writes the values into the text: the same text
// each time lets adapters/sqldb's statement cache keep them compiled on
// SQLite (before, the claim and the answer were compiled at each
// command: about as much CPU as the grant command itself,
// docs/performance.md).
const (
	claimSQL = `INSERT INTO idempotency_keys (actor, key, fingerprint, state, status, content_type, body, created_at)
VALUES (?, ?, ?, '` + statePending + `', 0, '', ?, ?) ON CONFLICT (actor, key) DO NOTHING`
	readSQL = `SELECT fingerprint, state, status, content_type, body, created_at
FROM idempotency_keys WHERE actor = ? AND key = ?`
	takeOverSQL = `UPDATE idempotency_keys SET fingerprint = ?, state = '` + statePending + `', status = 0, content_type = '', body = ?, created_at = ?
WHERE actor = ? AND key = ? AND state = ? AND fingerprint = ? AND created_at = ?`
	finishSQL = `UPDATE idempotency_keys SET state = '` + stateDone + `', status = ?, content_type = ?, body = ?
WHERE actor = ? AND key = ? AND state = '` + statePending + `'`
	// answerSQL is Finish's statement WithClaimsInProcess: the done row,
	// replacing only the row Begin saw (created_at = ?; -1 for none).
	answerSQL = `INSERT INTO idempotency_keys (actor, key, fingerprint, state, status, content_type, body, created_at)
VALUES (?, ?, ?, '` + stateDone + `', ?, ?, ?, ?) ON CONFLICT (actor, key) DO UPDATE SET
fingerprint = excluded.fingerprint, state = excluded.state, status = excluded.status,
content_type = excluded.content_type, body = excluded.body, created_at = excluded.created_at
WHERE idempotency_keys.created_at = ?`
	abandonSQL = `DELETE FROM idempotency_keys WHERE actor = ? AND key = ? AND state = '` + statePending + `'`
	purgeSQL   = `DELETE FROM idempotency_keys WHERE created_at < ?`
)

// readRow reads the key's row; found is false when there is none.
func (s *Store) readRow(ctx context.Context, actor, key string) (old row, found bool, err error) {
	err = s.q.QueryRowContext(ctx, readSQL, actor, key).
		Scan(&old.Fingerprint, &old.State, &old.Status, &old.ContentType, &old.Body, &old.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return row{}, false, nil
	}
	if err != nil {
		return row{}, false, fmt.Errorf("idempotency: read key: %w", err)
	}
	return old, true, nil
}

// judge says what the key's row old means for a request with fingerprint
// at now (Unix microseconds): its answer to replay (a done row of the same
// request), ErrKeyReused (another request's row), ErrInProgress (a pending
// row within its lease), or (nil, nil): the request may replace the row
// (an answer past the retention, for any request; a pending row past its
// lease, for the same request).
func (s *Store) judge(old row, fingerprint string, now int64) (*Response, error) {
	age := time.Duration(now-old.CreatedAt) * time.Microsecond
	switch {
	case old.State == stateDone && age >= s.retention:
		return nil, nil // forgotten
	case old.Fingerprint != fingerprint:
		return nil, ErrKeyReused
	case old.State == stateDone:
		r := &Response{Status: old.Status, ContentType: old.ContentType}
		if len(old.Body) > 0 {
			r.Body = old.Body
		}
		return r, nil
	case age < s.lease:
		return nil, ErrInProgress
	}
	return nil, nil
}

// maxAttempts bounds Begin's retries when rows change under it.
const maxAttempts = 8

// Begin claims key for actor's request with fingerprint, or reports what
// became of the key before (see the package documentation):
//
//   - no row, a done row older than the retention, or a pending row with the
//     same fingerprint older than the lease: the key is claimed for this
//     request, (nil, nil);
//   - a done row with the same fingerprint: (its answer, nil);
//   - a row (done, or pending at any age) with another fingerprint:
//     ErrKeyReused;
//   - a pending row with the same fingerprint younger than the lease:
//     ErrInProgress.
//
// Concurrent Begins with one key claim it exactly once: the claim is an
// INSERT on the primary key, and a take-over an UPDATE conditional on the
// row being unchanged.
func (s *Store) Begin(ctx context.Context, actor, key, fingerprint string) (*Response, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := checkServerText("actor", actor, MaxActorBytes); err != nil {
		return nil, err
	}
	if err := checkServerText("fingerprint", fingerprint, MaxFingerprintBytes); err != nil {
		return nil, err
	}
	if s.local != nil {
		return s.beginInProcess(ctx, actor, key, fingerprint)
	}
	for range maxAttempts {
		now := s.clock().UnixMicro()
		res, err := s.q.ExecContext(ctx, claimSQL, actor, key, fingerprint, []byte{}, now)
		if err != nil {
			return nil, fmt.Errorf("idempotency: claim key: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("idempotency: claim key: %w", err)
		} else if n == 1 {
			return nil, nil
		}

		old, found, err := s.readRow(ctx, actor, key)
		if err != nil {
			return nil, err
		}
		if !found {
			continue // abandoned or purged since the INSERT: claim again
		}
		if r, err := s.judge(old, fingerprint, now); r != nil || err != nil {
			return r, err
		}
		// Take the row over if it is still the one just read.
		res, err = s.q.ExecContext(ctx, takeOverSQL, fingerprint, []byte{}, now,
			actor, key, old.State, old.Fingerprint, old.CreatedAt)
		if err != nil {
			return nil, fmt.Errorf("idempotency: take over key: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("idempotency: take over key: %w", err)
		} else if n == 1 {
			return nil, nil
		}
		// Someone else changed the row: look again.
	}
	return nil, fmt.Errorf("idempotency: key %q of %q changed %d times during one Begin", key, actor, maxAttempts)
}

// Finish stores r as the answer of actor's pending claim of key, which
// Begin returned (nil, nil) for; later Begins with the same fingerprint
// return it. It fails with ErrNotClaimed when the key has no pending claim,
// and refuses a status outside 100..599, a content type longer than
// MaxContentTypeBytes or with control characters, and a body over
// MaxBodyBytes (a durable claim then stays pending; WithClaimsInProcess
// it is let go).
func (s *Store) Finish(ctx context.Context, actor, key string, r Response) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := checkResponse(r); err != nil {
		if s.local != nil {
			// No answer will be kept: let the claim go (a retry runs the
			// command again and finds its events), or it would stay in
			// memory for the life of the process.
			s.release(claimKey{actor, key})
		}
		return err
	}
	body := r.Body
	if body == nil {
		body = []byte{}
	}
	if s.local != nil {
		return s.finishInProcess(ctx, actor, key, r, body)
	}
	return finished(s.q.ExecContext(ctx, finishSQL, r.Status, r.ContentType, body, actor, key))
}

// finished is Finish's outcome from its statement's: ErrNotClaimed when it
// wrote no row (no claim of the key, or another Store's answer first).
func finished(res sql.Result, err error) error {
	if err != nil {
		return fmt.Errorf("idempotency: finish: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("idempotency: finish: %w", err)
	}
	if n == 0 {
		return ErrNotClaimed
	}
	return nil
}

// Abandon deletes actor's pending claim of key, so that a retry runs the
// command again; it leaves a done answer alone, and succeeds when there is
// no claim.
func (s *Store) Abandon(ctx context.Context, actor, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if s.local != nil {
		s.release(claimKey{actor, key})
		return nil
	}
	_, err := s.q.ExecContext(ctx, abandonSQL, actor, key)
	if err != nil {
		return fmt.Errorf("idempotency: abandon: %w", err)
	}
	return nil
}

// checkResponse refuses a status outside 100..599, a content type longer
// than MaxContentTypeBytes or with control characters, and a body over
// MaxBodyBytes.
func checkResponse(r Response) error {
	if r.Status < 100 || r.Status > 599 {
		return fmt.Errorf("idempotency: finish: status %d not in 100..599", r.Status)
	}
	if len(r.ContentType) > MaxContentTypeBytes || strings.IndexFunc(r.ContentType, isControl) >= 0 || !utf8.ValidString(r.ContentType) {
		return fmt.Errorf("idempotency: finish: content type is not a header value of at most %d bytes", MaxContentTypeBytes)
	}
	if len(r.Body) > MaxBodyBytes {
		return fmt.Errorf("idempotency: finish: body of %d bytes is over %d", len(r.Body), MaxBodyBytes)
	}
	return nil
}

// release forgets the in-process claim of k, whoever holds it.
func (s *Store) release(k claimKey) {
	s.local.mu.Lock()
	delete(s.local.held, k)
	s.local.mu.Unlock()
}

// beginInProcess is Begin WithClaimsInProcess. The claim is registered
// before the row is read, and Finish writes the row before it lets the
// claim go: a Begin that finds no claim therefore reads the answer of any
// request that held one.
func (s *Store) beginInProcess(ctx context.Context, actor, key, fingerprint string) (*Response, error) {
	now := s.clock().UnixMicro()
	k := claimKey{actor, key}
	mine := &claim{fingerprint: fingerprint, since: now, seen: -1}
	s.local.mu.Lock()
	if c, ok := s.local.held[k]; ok {
		switch {
		case c.fingerprint != fingerprint:
			s.local.mu.Unlock()
			return nil, ErrKeyReused
		case time.Duration(now-c.since)*time.Microsecond < s.lease:
			s.local.mu.Unlock()
			return nil, ErrInProgress
		}
		// A request running past the lease: this retry takes the claim
		// over, as it would a dead process's.
		mine.seen = c.seen
	}
	s.local.held[k] = mine
	s.local.mu.Unlock()

	r, err := s.readInProcess(ctx, k, fingerprint, now, mine)
	if r != nil || err != nil {
		s.local.mu.Lock()
		if s.local.held[k] == mine {
			delete(s.local.held, k)
		}
		s.local.mu.Unlock()
	}
	return r, err
}

// readInProcess reads the key's row for beginInProcess: an answer to
// replay, an error, or (nil, nil) with the row the claim may replace noted
// in mine.
func (s *Store) readInProcess(ctx context.Context, k claimKey, fingerprint string, now int64, mine *claim) (*Response, error) {
	old, found, err := s.readRow(ctx, k.actor, k.key)
	if err != nil || !found {
		return nil, err
	}
	if r, err := s.judge(old, fingerprint, now); r != nil || err != nil {
		return r, err // a pending row: another Store's claim
	}
	s.local.mu.Lock()
	mine.seen = old.CreatedAt
	s.local.mu.Unlock()
	return nil, nil
}

// finishInProcess is Finish WithClaimsInProcess.
func (s *Store) finishInProcess(ctx context.Context, actor, key string, r Response, body []byte) error {
	k := claimKey{actor, key}
	s.local.mu.Lock()
	c, ok := s.local.held[k]
	var since, seen int64
	if ok {
		since, seen = c.since, c.seen
	}
	s.local.mu.Unlock()
	if !ok {
		return ErrNotClaimed
	}
	// The claim goes once the row is written, or could not be: a retry
	// then runs the command again, which finds its events (commands'
	// derived ids) instead of waiting for the lease.
	res, err := s.q.ExecContext(ctx, answerSQL, actor, key, c.fingerprint, r.Status, r.ContentType, body, since, seen)
	s.local.mu.Lock()
	if s.local.held[k] == c {
		delete(s.local.held, k)
	}
	s.local.mu.Unlock()
	return finished(res, err)
}

// Purge deletes every row claimed before olderThan, done or pending, and
// returns how many it deleted. Pass a time at least the lease in the past,
// or it deletes claims still running.
func (s *Store) Purge(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := s.q.ExecContext(ctx, purgeSQL, olderThan.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("idempotency: purge: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("idempotency: purge: %w", err)
	}
	return n, nil
}

// PurgeExpired deletes the rows older than the retention (Purge of now
// minus the retention).
func (s *Store) PurgeExpired(ctx context.Context) (int64, error) {
	return s.Purge(ctx, s.clock().Add(-s.retention))
}

// CheckKey reports whether key is a valid Idempotency-Key: 1 to MaxKeyBytes
// visible ASCII characters (0x21 to 0x7E; no space, no control, no
// non-ASCII). The error wraps ErrInvalidKey.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes", ErrInvalidKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: character %d is not visible ASCII", ErrInvalidKey, i+1)
		}
	}
	return nil
}

func checkServerText(field, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("idempotency: %s is empty", field)
	case len(s) > max:
		return fmt.Errorf("idempotency: %s longer than %d bytes", field, max)
	case !utf8.ValidString(s), strings.ContainsRune(s, 0):
		return fmt.Errorf("idempotency: %s is not valid UTF-8 without NUL", field)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
