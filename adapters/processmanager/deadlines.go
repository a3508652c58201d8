package processmanager

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/internal/boundsql"
	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the migrations are recorded under (tables
// deadlines_migrations and deadlines_migration_locks): pass it with
// Migrations to sqldb.Migrate, or call Migrate.
const Component = "deadlines"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the bun/migrate SQL migrations of the deadlines table
// for PostgreSQL and for SQLite, for sqldb.Migrate(ctx, db, Component, pg,
// sqlite).
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}

// Migrate creates or updates the deadlines table in db (sqldb.Migrate with
// Component and Migrations). Safe to call concurrently and again.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	pg, lite := Migrations()
	return sqldb.Migrate(ctx, db, Component, pg, lite)
}

// Kind is the kind of a deadline.
type Kind string

// The deadline kinds.
const (
	// KindGrace is the end of a carer's grace period after a placement
	// ended (R3): at it the process manager sends ExpireCarerAccess.
	KindGrace Kind = "grace"
	// KindInvitation is the expiry of an unaccepted invitation (R9): at it
	// the process manager sends ExpireInvitation.
	KindInvitation Kind = "invitation"
	// KindAccountRetention is the end of a closed account's retention
	// period (R22): at it the process manager sends
	// EraseAccountAtRetention.
	KindAccountRetention Kind = "account_retention"
	// KindChildRetention is a child's retention date (R22), one deadline
	// per event that set it: at it the process manager sends
	// EraseChildAtRetention, which does nothing when the date was moved
	// since.
	KindChildRetention Kind = "child_retention"
	// KindPlacementStart and KindPlacementEnd are the start and the end of
	// a placement recorded ahead of them: at them the process manager sends
	// MarkPlacementStart, MarkPlacementEnd, so that followers of the log
	// learn of the change time makes when it takes effect.
	KindPlacementStart Kind = "placement_start"
	KindPlacementEnd   Kind = "placement_end"
	// KindGrantExpiry is the end of a time-limited grant (R19), one
	// deadline per grant (child, account, granted_at): at it the process
	// manager sends ExpireGrant, which does nothing when the grant was
	// revoked or replaced before it ran out.
	KindGrantExpiry Kind = "grant_expiry"
)

// State is where a deadline stands.
type State string

// The deadline states.
const (
	// StatePending: not yet carried out; due at DueAt (or later, when a
	// retry or another instance's lease holds it).
	StatePending State = "pending"
	// StateFired: the expiry command succeeded for DueAt (whether or not the
	// aggregate appended anything).
	StateFired State = "fired"
	// StateResolved: an event settled the deadline (the expiry recorded,
	// the grace ended early, the invitation accepted or the account
	// closed): nothing is left to do.
	StateResolved State = "resolved"
)

// GraceID is the id of the grace deadline of a placement.
func GraceID(placementID uuid.UUID) string { return string(KindGrace) + "/" + placementID.String() }

// InvitationID is the id of the invitation deadline of an account.
func InvitationID(accountID uuid.UUID) string {
	return string(KindInvitation) + "/" + accountID.String()
}

// AccountRetentionID is the id of the retention deadline of an account.
func AccountRetentionID(accountID uuid.UUID) string {
	return string(KindAccountRetention) + "/" + accountID.String()
}

// ChildRetentionID is the id of the retention deadline a child's event
// (its registration, or a retention date set later) set.
func ChildRetentionID(childID, eventID uuid.UUID) string {
	return string(KindChildRetention) + "/" + childID.String() + "/" + eventID.String()
}

// PlacementStartID and PlacementEndID are the ids of the time marks of a
// placement.
func PlacementStartID(placementID uuid.UUID) string {
	return string(KindPlacementStart) + "/" + placementID.String()
}

// PlacementEndID: see PlacementStartID.
func PlacementEndID(placementID uuid.UUID) string {
	return string(KindPlacementEnd) + "/" + placementID.String()
}

// GrantExpiryID is the id of the expiry deadline of the grant to account
// on child made at grantedAt.
func GrantExpiryID(childID, accountID uuid.UUID, grantedAt time.Time) string {
	return string(KindGrantExpiry) + "/" + childID.String() + "/" + accountID.String() + "/" + strconv.FormatInt(grantedAt.UnixMicro(), 10)
}

// grantedAtOf reads the granted_at of a GrantExpiryID.
func grantedAtOf(id string) (time.Time, error) {
	i := strings.LastIndexByte(id, '/')
	us, err := strconv.ParseInt(id[i+1:], 10, 64)
	if i < 0 || err != nil {
		return time.Time{}, fmt.Errorf("deadline id %q: no granted_at", id)
	}
	return time.UnixMicro(us).UTC(), nil
}

// Deadline is one row of the deadlines table.
type Deadline struct {
	ID          string // GraceID or InvitationID
	Kind        Kind
	ChildID     uuid.UUID // grace only
	PlacementID uuid.UUID // grace only
	// AccountID is the carer's account (grace) or the invited account
	// (invitation).
	AccountID uuid.UUID
	// DueAt is the deadline: the placement's grace_until or the latest
	// invitation's expires_at. Zero when only a resolving event was seen.
	DueAt time.Time
	// SourceEventID is the event that set DueAt: the causation of the
	// expiry command. CorrelationID is that event's correlation id, passed
	// on to the command.
	SourceEventID uuid.UUID
	CorrelationID uuid.UUID
	State         State
	// ResolvedBy is the event that settled the deadline (uuid.Nil if none).
	ResolvedBy uuid.UUID
	// ClaimedBy is the instance whose firing is in flight ("" when none);
	// ClaimedUntil ends its lease, or, with ClaimedBy empty, is the
	// earliest time of the next attempt after a failed one.
	ClaimedBy    string
	ClaimedUntil time.Time
	// Attempts counts the firings started for DueAt; LastError is the last
	// one's failure ("" after a success).
	Attempts  int
	LastError string
	UpdatedAt time.Time
}

// forever is resolved_through for deadlines settled for good.
const forever = math.MaxInt64

// maxErrorBytes bounds last_error.
const maxErrorBytes = 2000

// row is a deadlines row as stored.
type row struct {
	ID              string `bun:"id"`
	Kind            string `bun:"kind"`
	ChildID         string `bun:"child_id"`
	PlacementID     string `bun:"placement_id"`
	AccountID       string `bun:"account_id"`
	DueAt           int64  `bun:"due_at"`
	SourceEventID   string `bun:"source_event_id"`
	CorrelationID   string `bun:"correlation_id"`
	State           string `bun:"state"`
	ResolvedThrough int64  `bun:"resolved_through"`
	ResolvedBy      string `bun:"resolved_by"`
	ClaimedBy       string `bun:"claimed_by"`
	ClaimedUntil    int64  `bun:"claimed_until"`
	Attempts        int    `bun:"attempts"`
	LastError       string `bun:"last_error"`
	UpdatedAt       int64  `bun:"updated_at"`
}

const columns = `id, kind, child_id, placement_id, account_id, due_at, source_event_id, correlation_id, state,
	resolved_through, resolved_by, claimed_by, claimed_until, attempts, last_error, updated_at`

// qualifiedColumns is columns, each prefixed with the table's name.
var qualifiedColumns = func() string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = "deadlines." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}()

func (r row) deadline() Deadline {
	return Deadline{
		ID: r.ID, Kind: Kind(r.Kind),
		ChildID: parseID(r.ChildID), PlacementID: parseID(r.PlacementID), AccountID: parseID(r.AccountID),
		DueAt: fromMicros(r.DueAt), SourceEventID: parseID(r.SourceEventID), CorrelationID: parseID(r.CorrelationID),
		State: State(r.State), ResolvedBy: parseID(r.ResolvedBy),
		ClaimedBy: r.ClaimedBy, ClaimedUntil: fromMicros(r.ClaimedUntil),
		Attempts: r.Attempts, LastError: r.LastError, UpdatedAt: fromMicros(r.UpdatedAt),
	}
}

func parseID(s string) uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil
	}
	return id
}

func idText(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// subject names a deadline and the ids it concerns.
type subject struct {
	id          string
	kind        Kind
	childID     uuid.UUID
	placementID uuid.UUID
	accountID   uuid.UUID
}

func graceSubject(child, placement, carer uuid.UUID) subject {
	return subject{id: GraceID(placement), kind: KindGrace, childID: child, placementID: placement, accountID: carer}
}

func invitationSubject(account uuid.UUID) subject {
	return subject{id: InvitationID(account), kind: KindInvitation, accountID: account}
}

func accountRetentionSubject(account uuid.UUID) subject {
	return subject{id: AccountRetentionID(account), kind: KindAccountRetention, accountID: account}
}

func placementStartSubject(child, placement, carer uuid.UUID) subject {
	return subject{id: PlacementStartID(placement), kind: KindPlacementStart, childID: child, placementID: placement, accountID: carer}
}

func placementEndSubject(child, placement, carer uuid.UUID) subject {
	return subject{id: PlacementEndID(placement), kind: KindPlacementEnd, childID: child, placementID: placement, accountID: carer}
}

func grantExpirySubject(child, account uuid.UUID, grantedAt time.Time) subject {
	return subject{id: GrantExpiryID(child, account, grantedAt), kind: KindGrantExpiry, childID: child, accountID: account}
}

func childRetentionSubject(child, event uuid.UUID) subject {
	return subject{id: ChildRetentionID(child, event), kind: KindChildRetention, childID: child}
}

// table is the deadlines table on one database. Every method is one
// statement: no transaction of its own, so any bun.IDB works (a single
// connection in-memory SQLite among them).
type table struct {
	db bun.IDB
	// q runs the statements the handlers and the firing run for every
	// deadline with bound parameters (internal/boundsql), so that on
	// SQLite they are compiled once, not at each write under the file's
	// write lock.
	q  boundsql.Runner
	pg bool
	// fullScans counts the times next scanned every pending row (its
	// walk did not settle it), for the tests.
	fullScans atomic.Int64
	// seen holds resolutions known to be in the table (see resolutions);
	// resolveReads counts resolve's reads of a row, for the tests.
	seen         resolutions
	resolveReads atomic.Int64
}

// resolutions remembers, by deadline id, a resolution the table is known
// to hold or to have held: one this process wrote (a batch's settlement)
// or read. A row's settlement only moves forward (resolveSQL: to a later
// resolved_through, or to the same one by a smaller event id; a batch's
// settlement resolves only a pending row, whose resolved_through is below
// its due, through the due or later), so a
// resolution it held it covers for good; resolve consults this first and
// spares a read for each settling event that comes back after its batch
// settled its row (a burst of expiries: one read per event, a tenth of the
// engine's CPU). Bounded: it forgets everything when full.
type resolutions struct {
	mu sync.Mutex
	m  map[string]resolution
}

type resolution struct {
	through int64
	by      string
}

// maxResolutions bounds the resolutions remembered.
const maxResolutions = 1 << 15

func (r *resolutions) note(id string, through int64, by string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxResolutions {
		r.m = make(map[string]resolution, 1024)
	}
	if old, ok := r.m[id]; ok && (old.through > through || (old.through == through && old.by <= by)) {
		return // it knows a settlement as far or further
	}
	r.m[id] = resolution{through: through, by: by}
}

func (r *resolutions) get(id string) (resolution, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.m[id]
	return res, ok
}

// covers reports whether a row resolved through through0 by by0 needs no
// write to be resolved through through by by.
func covers(through0 int64, by0 string, through int64, by string) bool {
	return through0 > through || (through0 == through && by0 == by)
}

func newTable(db bun.IDB) (*table, error) {
	switch db.Dialect().Name() {
	case dialect.PG:
		return &table{db: db, q: boundsql.For(db), pg: true}, nil
	case dialect.SQLite:
		return &table{db: db, q: boundsql.For(db)}, nil
	default:
		return nil, fmt.Errorf("processmanager: unsupported database dialect %s", db.Dialect().Name())
	}
}

// setDue records that the event eventID set the deadline of s at due. The
// latest due wins, whatever the order the events arrive in; a due the row
// already has (a duplicate delivery) or an earlier one changes nothing. A
// later due makes the deadline pending again (a renewed invitation) unless
// it is already resolved through it, and starts its attempts afresh. It
// reports whether the row changed.
func (t *table) setDue(ctx context.Context, s subject, due time.Time, eventID, correlationID uuid.UUID, now time.Time) (bool, error) {
	res, err := t.q.ExecContext(ctx, setDueSQL,
		s.id, string(s.kind), idText(s.childID), idText(s.placementID), idText(s.accountID),
		micros(due), idText(eventID), idText(correlationID), micros(now))
	if err != nil {
		return false, fmt.Errorf("processmanager: record deadline %s: %w", s.id, err)
	}
	return affected(res), nil
}

// The statements of setDue and resolve.
const (
	setDueSQL = `
INSERT INTO deadlines (id, kind, child_id, placement_id, account_id, due_at, source_event_id, correlation_id, state, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)
ON CONFLICT (id) DO UPDATE SET
	child_id = CASE WHEN deadlines.child_id = '' THEN excluded.child_id ELSE deadlines.child_id END,
	placement_id = CASE WHEN deadlines.placement_id = '' THEN excluded.placement_id ELSE deadlines.placement_id END,
	account_id = CASE WHEN deadlines.account_id = '' THEN excluded.account_id ELSE deadlines.account_id END,
	due_at = excluded.due_at,
	source_event_id = excluded.source_event_id,
	correlation_id = excluded.correlation_id,
	state = CASE WHEN deadlines.resolved_through >= excluded.due_at THEN 'resolved' ELSE 'pending' END,
	claimed_by = '',
	claimed_until = 0,
	attempts = 0,
	last_error = '',
	updated_at = excluded.updated_at
WHERE excluded.due_at > deadlines.due_at`
	resolvedSQL = `SELECT resolved_through, resolved_by FROM deadlines WHERE id = ?`
	resolveSQL  = `
INSERT INTO deadlines (id, kind, child_id, placement_id, account_id, state, resolved_through, resolved_by, updated_at)
VALUES (?, ?, ?, ?, ?, 'resolved', ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	child_id = CASE WHEN deadlines.child_id = '' THEN excluded.child_id ELSE deadlines.child_id END,
	placement_id = CASE WHEN deadlines.placement_id = '' THEN excluded.placement_id ELSE deadlines.placement_id END,
	account_id = CASE WHEN deadlines.account_id = '' THEN excluded.account_id ELSE deadlines.account_id END,
	resolved_through = excluded.resolved_through,
	resolved_by = excluded.resolved_by,
	state = CASE WHEN excluded.resolved_through >= deadlines.due_at THEN 'resolved' ELSE deadlines.state END,
	claimed_by = CASE WHEN excluded.resolved_through >= deadlines.due_at THEN '' ELSE deadlines.claimed_by END,
	claimed_until = CASE WHEN excluded.resolved_through >= deadlines.due_at THEN 0 ELSE deadlines.claimed_until END,
	updated_at = excluded.updated_at
WHERE excluded.resolved_through > deadlines.resolved_through
	OR (excluded.resolved_through = deadlines.resolved_through AND excluded.resolved_by < deadlines.resolved_by)`
)

// resolve records that the event eventID settled every due of s up to
// through (forever: for good). The furthest settlement wins, whatever the
// order the events arrive in (between two settling the same span, the
// smaller event id, so that the row does not depend on the order either);
// it resolves the row when it covers its due, which an event that arrives
// before the one setting the due already does. It reports whether the row
// changed.
func (t *table) resolve(ctx context.Context, s subject, through int64, eventID uuid.UUID, now time.Time) (bool, error) {
	// Most settling events find their row settled already (by the batch
	// that appended them, or by an earlier delivery): a read tells, and
	// spares the single writer of SQLite a write. The settlement only moves
	// forward, so a row that covers this one now always will.
	by := idText(eventID)
	if known, ok := t.seen.get(s.id); ok && covers(known.through, known.by, through, by) {
		return false, nil
	}
	var through0 int64
	var by0 string
	t.resolveReads.Add(1)
	switch err := t.q.QueryRowContext(ctx, resolvedSQL, s.id).Scan(&through0, &by0); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, fmt.Errorf("processmanager: read deadline %s: %w", s.id, err)
	case covers(through0, by0, through, by):
		t.seen.note(s.id, through0, by0)
		return false, nil
	}
	res, err := t.q.ExecContext(ctx, resolveSQL,
		s.id, string(s.kind), idText(s.childID), idText(s.placementID), idText(s.accountID),
		through, idText(eventID), micros(now))
	if err != nil {
		return false, fmt.Errorf("processmanager: resolve deadline %s: %w", s.id, err)
	}
	return affected(res), nil
}

func affected(res sql.Result) bool {
	n, err := res.RowsAffected()
	return err != nil || n > 0 // when unknown, assume it changed
}

// claim leases up to limit due pending deadlines (due_at and claimed_until
// at or before now) to instance until now+lease, counting an attempt on
// each, earliest due first, and returns them. On PostgreSQL, rows another
// transaction is claiming are skipped (FOR UPDATE SKIP LOCKED, in a
// materialized CTE so that no more than limit rows are taken) and the
// outer conditions are checked again on the locked row, so two instances
// never claim the same row within its lease; on SQLite the single writer
// serializes claims.
func (t *table) claim(ctx context.Context, instance string, now time.Time, lease time.Duration, limit int) ([]row, error) {
	n := micros(now)
	var rows []row
	var err error
	if t.pg {
		// The candidates in a materialized CTE: as a subquery of IN, with
		// LIMIT and FOR UPDATE SKIP LOCKED, PostgreSQL may run the subquery
		// again and claim more than limit rows.
		err = t.db.NewRaw(`
WITH c AS MATERIALIZED (
	SELECT id FROM deadlines
	WHERE state = 'pending' AND due_at <= ? AND claimed_until <= ?
	ORDER BY due_at, id LIMIT ? FOR UPDATE SKIP LOCKED
)
UPDATE deadlines SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1, updated_at = ?
FROM c
WHERE deadlines.id = c.id AND deadlines.state = 'pending' AND deadlines.due_at <= ? AND deadlines.claimed_until <= ?
RETURNING `+qualifiedColumns,
			n, n, limit, instance, micros(now.Add(lease)), n, n, n).Scan(ctx, &rows)
	} else {
		err = t.db.NewRaw(`
UPDATE deadlines SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1, updated_at = ?
WHERE id IN (
	SELECT id FROM deadlines
	WHERE state = 'pending' AND due_at <= ? AND claimed_until <= ?
	ORDER BY due_at, id LIMIT ?
) AND state = 'pending' AND due_at <= ? AND claimed_until <= ?
RETURNING `+columns,
			instance, micros(now.Add(lease)), n, n, n, limit, n, n).Scan(ctx, &rows)
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("processmanager: claim due deadlines: %w", err)
	}
	return rows, nil
}

// fired marks the deadline fired for due, if it is still pending for that
// due (not resolved meanwhile, not renewed to a later due). Whoever holds
// the claim, a success is a success.
func (t *table) fired(ctx context.Context, id string, due, now time.Time) (bool, error) {
	res, err := t.q.ExecContext(ctx, `
UPDATE deadlines SET state = 'fired', claimed_by = '', claimed_until = 0, last_error = '', updated_at = ?
WHERE id = ? AND due_at = ? AND state = 'pending'`, micros(now), id, micros(due))
	if err != nil {
		return false, fmt.Errorf("processmanager: mark deadline %s fired: %w", id, err)
	}
	return affected(res), nil
}

// retry releases instance's claim of the deadline (for due) and sets the
// earliest time of the next attempt and the failure. It changes nothing
// when the claim is no longer instance's (its lease ran out and another
// instance took it) or the row moved on.
func (t *table) retry(ctx context.Context, id string, due time.Time, instance string, at, now time.Time, failure string) (bool, error) {
	res, err := t.q.ExecContext(ctx, `
UPDATE deadlines SET claimed_by = '', claimed_until = ?, last_error = ?, updated_at = ?
WHERE id = ? AND due_at = ? AND state = 'pending' AND claimed_by = ?`,
		micros(at), truncate(failure, maxErrorBytes), micros(now), id, micros(due), instance)
	if err != nil {
		return false, fmt.Errorf("processmanager: reschedule deadline %s: %w", id, err)
	}
	return affected(res), nil
}

// release drops every claim instance holds on pending deadlines (at start:
// no firing of this instance is in flight any more).
func (t *table) release(ctx context.Context, instance string, now time.Time) error {
	_, err := t.db.ExecContext(ctx, `
UPDATE deadlines SET claimed_by = '', claimed_until = 0, updated_at = ?
WHERE claimed_by = ? AND state = 'pending'`, micros(now), instance)
	if err != nil {
		return fmt.Errorf("processmanager: release the claims of %s: %w", instance, err)
	}
	return nil
}

// nextWalk is how many pending deadlines, earliest due first, next reads
// before it asks the database for the minimum over all of them instead.
const nextWalk = 64

// next returns the earliest time a pending deadline can be claimed (its
// due_at, or its claimed_until when later), or false when none is pending.
//
// It reads the pending deadlines in the order they fall due (the partial
// index on due_at) and stops at the first whose due_at is not before the
// earliest time found so far: no later one can be earlier, as each is
// claimable at its due_at at the soonest. Usually the first is unclaimed
// and ends the walk. Only when the first nextWalk rows do not settle it
// (many claimed past their due at once) does it ask for the minimum over
// every pending row, as it did always before: with the county's pending
// retention and grace deadlines that scan was 18 % of the engine's CPU
// under the command mix, as every new deadline wakes the scheduler.
func (t *table) next(ctx context.Context) (time.Time, bool, error) {
	var rows []struct {
		Due     int64 `bun:"due_at"`
		Claimed int64 `bun:"claimed_until"`
	}
	err := t.db.NewRaw(`SELECT due_at, claimed_until FROM deadlines WHERE state = 'pending' ORDER BY due_at LIMIT ?`, nextWalk).Scan(ctx, &rows)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, fmt.Errorf("processmanager: next deadline: %w", err)
	}
	if len(rows) == 0 {
		return time.Time{}, false, nil
	}
	best := int64(math.MaxInt64)
	settled := len(rows) < nextWalk // every pending row was read
	for _, r := range rows {
		if r.Due >= best {
			settled = true
			break
		}
		best = min(best, max(r.Due, r.Claimed))
	}
	if !settled {
		t.fullScans.Add(1)
		return t.nextByScan(ctx)
	}
	return time.UnixMicro(best).UTC(), true, nil
}

// nextByScan is next by the minimum over every pending row.
func (t *table) nextByScan(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullInt64
	err := t.db.NewRaw(`
SELECT MIN(CASE WHEN claimed_until > due_at THEN claimed_until ELSE due_at END)
FROM deadlines WHERE state = 'pending'`).Scan(ctx, &at)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("processmanager: next deadline: %w", err)
	}
	if !at.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMicro(at.Int64).UTC(), true, nil
}

// get returns the deadline id, or false.
func (t *table) get(ctx context.Context, id string) (Deadline, bool, error) {
	var rows []row
	if err := t.db.NewRaw(`SELECT `+columns+` FROM deadlines WHERE id = ?`, id).Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Deadline{}, false, fmt.Errorf("processmanager: read deadline %s: %w", id, err)
	}
	if len(rows) == 0 {
		return Deadline{}, false, nil
	}
	return rows[0].deadline(), true, nil
}

// pending returns the pending deadlines, earliest due first.
func (t *table) pending(ctx context.Context) ([]Deadline, error) {
	var rows []row
	if err := t.db.NewRaw(`SELECT `+columns+` FROM deadlines WHERE state = 'pending' ORDER BY due_at, id`).Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("processmanager: read pending deadlines: %w", err)
	}
	out := make([]Deadline, len(rows))
	for i, r := range rows {
		out[i] = r.deadline()
	}
	return out, nil
}

// counts returns the number of pending deadlines, of those due at now, and
// of those whose last attempt failed.
func (t *table) counts(ctx context.Context, now time.Time) (pending, overdue, failing int, err error) {
	var c struct {
		Pending int `bun:"pending"`
		Overdue int `bun:"overdue"`
		Failing int `bun:"failing"`
	}
	err = t.db.NewRaw(`
SELECT COUNT(*) AS pending,
	COALESCE(SUM(CASE WHEN due_at <= ? THEN 1 ELSE 0 END), 0) AS overdue,
	COALESCE(SUM(CASE WHEN last_error <> '' THEN 1 ELSE 0 END), 0) AS failing
FROM deadlines WHERE state = 'pending'`, micros(now)).Scan(ctx, &c)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("processmanager: count deadlines: %w", err)
	}
	return c.Pending, c.Overdue, c.Failing, nil
}

// truncate cuts s to at most n bytes (on a UTF-8 boundary).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
