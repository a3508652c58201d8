package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// Name, Version and Table of the projection.
const (
	// Name is the projection's name (its checkpoint, accessd rebuild
	// --projection audit).
	Name = "audit"
	// Version is the version of the table and of the hashing; a change of
	// either rebuilds the trail. Version 2 added leaf_index and leaf_hash
	// and the encoding "accessledger.audit.v2".
	Version = 2
	// Table is the logical name of the entries table: the view queries and
	// Verify read.
	Table = "audit_entries"
)

// Errors of the projection.
var (
	// ErrRejected: a record cannot enter the trail (the domain does not
	// decode it, its data is not a JSON object, or a text is not valid
	// UTF-8 or holds a NUL byte). Apply and Replay fail with it and write
	// nothing.
	ErrRejected = errors.New("audit: record rejected")
	// ErrInconsistent: the trail's table and the runner's checkpoint
	// disagree, or records arrive out of order.
	ErrInconsistent = errors.New("audit: trail inconsistent with its checkpoint")
)

// columns are the columns of the entries table, in the order
// entryRow.values gives them.
var columns = []projections.Column{
	{Name: "seq", PGType: "bigint"},
	{Name: "position_commit", PGType: "bigint"},
	{Name: "position_prepare", PGType: "bigint"},
	{Name: "event_id", PGType: "text"},
	{Name: "type", PGType: "text"},
	{Name: "stream", PGType: "text"},
	{Name: "child_id", PGType: "text"},
	{Name: "account_id", PGType: "text"},
	{Name: "actor", PGType: "text"},
	{Name: "actor_role", PGType: "text"},
	{Name: "reason", PGType: "text"},
	{Name: "effective_at", PGType: "bigint"},
	{Name: "recorded_at", PGType: "bigint"},
	{Name: "data", PGType: "text"},
	{Name: "leaf_index", PGType: "bigint"},
	{Name: "leaf_hash", PGType: "text"},
	{Name: "prev_hash", PGType: "text"},
	{Name: "hash", PGType: "text"},
}

// Projection is the audit trail read model; it implements
// projections.Projection. Its only state is the last entry's seq, hash and
// position, which Load reads back from the table, so it needs no warm-up.
// Like every projection it is used from one goroutine at a time.
type Projection struct {
	loaded bool
	head   head
}

// head is the end of the chain: the last entry written (seq 0 and Genesis
// when there is none).
type head struct {
	seq  int64
	hash string
	pos  eventlog.Position
}

var _ projections.Projection = (*Projection)(nil)

// New returns the projection; the runner calls Load before anything else.
func New() *Projection { return &Projection{} }

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Tables implements projections.Projection: the one table audit_entries.
func (*Projection) Tables() []projections.Table {
	return []projections.Table{{Name: Table, Create: createTable, DeferIndexes: true}}
}

// createTable returns the DDL of the physical table and its indexes. On
// SQLite the table is STRICT and seq, as INTEGER PRIMARY KEY, is the rowid.
func createTable(d dialect.Name, physical string) []string {
	q := func(s string) string { return `"` + s + `"` }
	t := q(physical)
	integer, seq, pk, suffix := "BIGINT", "seq BIGINT NOT NULL", ",\n    CONSTRAINT "+q(physical+"_pkey")+" PRIMARY KEY (seq)", ""
	if d == dialect.SQLite {
		integer, seq, pk, suffix = "INTEGER", "seq INTEGER NOT NULL PRIMARY KEY", "", " STRICT"
	}
	cols := []string{
		seq,
		"position_commit " + integer + " NOT NULL",
		"position_prepare " + integer + " NOT NULL",
		"event_id TEXT NOT NULL",
		"type TEXT NOT NULL",
		"stream TEXT NOT NULL",
		"child_id TEXT",
		"account_id TEXT",
		"actor TEXT NOT NULL",
		"actor_role TEXT NOT NULL",
		"reason TEXT NOT NULL",
		"effective_at " + integer + " NOT NULL",
		"recorded_at " + integer + " NOT NULL",
		"data TEXT NOT NULL",
		"leaf_index " + integer + " NOT NULL",
		"leaf_hash TEXT NOT NULL",
		"prev_hash TEXT NOT NULL",
		"hash TEXT NOT NULL",
	}
	return []string{
		"CREATE TABLE " + t + " (\n    " + strings.Join(cols, ",\n    ") + pk + "\n)" + suffix,
		"CREATE UNIQUE INDEX " + q(physical+"_event_id") + " ON " + t + " (event_id)",
		"CREATE INDEX " + q(physical+"_child") + " ON " + t + " (child_id, seq) WHERE child_id IS NOT NULL",
		"CREATE INDEX " + q(physical+"_account") + " ON " + t + " (account_id, seq) WHERE account_id IS NOT NULL",
		"CREATE INDEX " + q(physical+"_actor") + " ON " + t + " (actor, seq)",
		"CREATE INDEX " + q(physical+"_recorded") + " ON " + t + " (recorded_at, seq)",
	}
}

// Load implements projections.Projection: it reads the last entry of t's
// table, the end of the chain, and reports no warm-up. It fails with
// ErrInconsistent when the table holds an entry after at, or is empty
// although at is not the start of the log (every record makes an entry).
func (p *Projection) Load(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (bool, error) {
	p.loaded = false
	var last struct {
		Seq             int64  `bun:"seq"`
		Hash            string `bun:"hash"`
		PositionCommit  int64  `bun:"position_commit"`
		PositionPrepare int64  `bun:"position_prepare"`
	}
	err := db.NewSelect().
		ModelTableExpr("? AS e", t.Ident(Table)).
		Column("seq", "hash", "position_commit", "position_prepare").
		OrderExpr("seq DESC").Limit(1).
		Scan(ctx, &last)
	h := head{hash: Genesis}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if !at.IsZero() {
			return false, fmt.Errorf("%w: table %s is empty but the checkpoint is at %s", ErrInconsistent, t.Name(Table), at)
		}
	case err != nil:
		return false, fmt.Errorf("audit: load the last entry of %s: %w", t.Name(Table), err)
	default:
		h = head{seq: last.Seq, hash: last.Hash,
			pos: eventlog.Position{Commit: uint64(last.PositionCommit), Prepare: uint64(last.PositionPrepare)}}
		if at.Before(h.pos) {
			return false, fmt.Errorf("%w: entry %d of %s is at %s, after the checkpoint %s",
				ErrInconsistent, h.seq, t.Name(Table), h.pos, at)
		}
	}
	p.head, p.loaded = h, true
	return false, nil
}

// Replay implements projections.Projection: it advances the end of the
// chain over records another runner has written, recomputing their hashes
// exactly as Apply did.
func (p *Projection) Replay(recs []eventlog.Record) error {
	_, h, err := p.chain(recs)
	if err != nil {
		return err
	}
	p.head = h
	return nil
}

// Apply implements projections.Projection: it appends one entry per record
// to t's table, chained to the previous one, in batched inserts. On error
// nothing of recs is kept in memory (the runner rolls back and calls Load).
func (p *Projection) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	rows, h, err := p.chain(recs)
	if err != nil {
		return err
	}
	if err := entries(rows).Write(ctx, tx, t); err != nil {
		return err
	}
	p.head = h
	return nil
}

// Stage implements projections.Stager: it chains the entries of recs after
// the head, moves the head past them and returns them to be written.
func (p *Projection) Stage(recs []eventlog.Record) (projections.Staged, error) {
	rows, h, err := p.chain(recs)
	if err != nil {
		return nil, err
	}
	p.head = h
	return entries(rows), nil
}

var _ projections.Stager = (*Projection)(nil)

// entries are the rows of a batch, as Stage returns them.
type entries []entryRow

// Write implements projections.Staged: it inserts the entries into t's
// table.
func (rows entries) Write(ctx context.Context, tx bun.Tx, t projections.Tables) error {
	if len(rows) == 0 {
		return nil
	}
	err := projections.InsertRows(ctx, tx, t.Name(Table), columns, len(rows), func(i int, dst []any) []any {
		return rows[i].values(dst)
	})
	if err != nil {
		return fmt.Errorf("audit: insert entries %d-%d: %w", rows[0].Seq, rows[len(rows)-1].Seq, err)
	}
	return nil
}

// chain builds the entries of recs after the current head and returns them
// with the new head, leaving p unchanged.
func (p *Projection) chain(recs []eventlog.Record) ([]entryRow, head, error) {
	if !p.loaded {
		return nil, head{}, errors.New("audit: projection used before Load")
	}
	h := p.head
	rows := make([]entryRow, 0, len(recs))
	var buf []byte
	for _, rec := range recs {
		if h.seq > 0 && !h.pos.Before(rec.Position) {
			return nil, head{}, fmt.Errorf("%w: event %s at %s does not come after entry %d at %s",
				ErrInconsistent, rec.ID, rec.Position, h.seq, h.pos)
		}
		row, err := newRow(rec)
		if err != nil {
			return nil, head{}, err
		}
		row.Seq, row.PrevHash = h.seq+1, h.hash
		// Every event makes exactly one entry, in the log's global order,
		// as it makes exactly one leaf of the ledger: entry seq is leaf
		// seq-1.
		row.LeafIndex = row.Seq - 1
		row.LeafHash = leafHash(rec)
		row.Hash, buf = row.computeHash(buf)
		rows = append(rows, row)
		h = head{seq: row.Seq, hash: row.Hash, pos: rec.Position}
	}
	return rows, h, nil
}

// newRow checks rec and returns its entry without seq and hashes.
func newRow(rec eventlog.Record) (entryRow, error) {
	reject := func(format string, args ...any) (entryRow, error) {
		return entryRow{}, fmt.Errorf("%w: event %s at %s: %s", ErrRejected, rec.ID, rec.Position, fmt.Sprintf(format, args...))
	}
	if !isJSONObject(rec.Data) {
		return reject("data is not a JSON object in UTF-8")
	}
	for _, f := range []struct{ name, value string }{
		{"type", rec.Type}, {"stream", rec.Stream}, {"actor", rec.Meta.ActorID},
		{"actor role", rec.Meta.ActorRole}, {"reason", rec.Meta.Reason},
	} {
		if !utf8.ValidString(f.value) || strings.IndexByte(f.value, 0) >= 0 {
			return reject("%s is not valid UTF-8 without NUL", f.name)
		}
	}
	if rec.Position.Commit > math.MaxInt64 || rec.Position.Prepare > math.MaxInt64 {
		return reject("position beyond the range of BIGINT")
	}
	env, err := domain.DecodeRecord(rec)
	if err != nil {
		return entryRow{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	child, account, err := subjects(env.Event)
	if err != nil {
		return entryRow{}, fmt.Errorf("%w: event %s at %s: %w", ErrRejected, rec.ID, rec.Position, err)
	}
	return entryRow{
		PositionCommit:  int64(rec.Position.Commit),
		PositionPrepare: int64(rec.Position.Prepare),
		EventID:         rec.ID.String(),
		Type:            rec.Type,
		Stream:          rec.Stream,
		ChildID:         optionalID(child),
		AccountID:       optionalID(account),
		Actor:           rec.Meta.ActorID,
		ActorRole:       rec.Meta.ActorRole,
		Reason:          rec.Meta.Reason,
		EffectiveAt:     rec.Meta.EffectiveAt.UnixMicro(),
		RecordedAt:      rec.Meta.RecordedAt.UnixMicro(),
		Data:            string(rec.Data),
	}, nil
}

// subjects returns the child and the account an event concerns (uuid.Nil
// for none). Every type of the catalogue must have a case: a type added to
// the catalogue but not here is refused rather than filed under no one
// (a test checks the catalogue is covered).
func subjects(e domain.Event) (child, account uuid.UUID, err error) {
	switch e := e.(type) {
	case *domain.ChildRegistered:
		return e.ChildID, uuid.Nil, nil
	case *domain.WorkerAllocated:
		return e.ChildID, uuid.Nil, nil
	case *domain.PlacementStarted:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.PlacementEnded:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.GraceEndedEarly:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.GraceExpired:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.AccessGranted:
		return e.ChildID, e.AccountID, nil
	case *domain.AccessRevoked:
		return e.ChildID, e.AccountID, nil
	case *domain.GrantReviewed:
		return e.ChildID, e.AccountID, nil
	case *domain.GrantExpired:
		return e.ChildID, e.AccountID, nil
	case *domain.AccountInvited:
		return uuid.Nil, e.AccountID, nil
	case *domain.InvitationExpired:
		return uuid.Nil, e.AccountID, nil
	case *domain.AccountActivated:
		return uuid.Nil, e.AccountID, nil
	case *domain.AccountClosed:
		return uuid.Nil, e.AccountID, nil
	case *domain.PhoneResetRequested:
		return uuid.Nil, e.AccountID, nil
	case *domain.PhoneCleared:
		return uuid.Nil, e.AccountID, nil
	case *domain.PhoneEnrolled:
		return uuid.Nil, e.AccountID, nil
	case *domain.IdentityLinked:
		return uuid.Nil, e.AccountID, nil
	case *domain.AccountErased:
		return uuid.Nil, e.AccountID, nil
	case *domain.ChildErased:
		return e.ChildID, uuid.Nil, nil
	case *domain.ChildRetentionSet:
		return e.ChildID, uuid.Nil, nil
	case *domain.PlacementCancelled:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.PlacementStartReached:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.PlacementEndReached:
		return e.ChildID, e.CarerAccountID, nil
	case *domain.AccountReopened:
		return uuid.Nil, e.AccountID, nil
	case *domain.EmailChangeRequested:
		return uuid.Nil, e.AccountID, nil
	case *domain.EmailChanged:
		return uuid.Nil, e.AccountID, nil
	case *domain.EmailClaimed:
		return uuid.Nil, e.AccountID, nil
	case *domain.EmailReleased:
		return uuid.Nil, e.AccountID, nil
	case *domain.PolicySet:
		return uuid.Nil, uuid.Nil, nil // the policy (R25): about no child or account
	}
	return uuid.Nil, uuid.Nil, fmt.Errorf("audit: no subjects known for event type %s (%T)", e.EventType(), e)
}

// leafHash returns the lower-case hex of the ledger's RFC 6962 leaf hash of
// rec (ledger.LeafHash): what the ledger stores at the leaf of rec's event.
func leafHash(rec eventlog.Record) string {
	h := ledger.LeafHash(rec)
	return hex.EncodeToString(h[:])
}

func optionalID(id uuid.UUID) sql.NullString {
	if id == uuid.Nil {
		return sql.NullString{}
	}
	return sql.NullString{String: id.String(), Valid: true}
}

// isJSONObject reports whether b is one JSON object in valid UTF-8.
func isJSONObject(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i < len(b) && b[i] == '{' && utf8.Valid(b) && json.Valid(b)
}

// values appends the columns of r to dst, in the order of columns.
func (r *entryRow) values(dst []any) []any {
	return append(dst, r.Seq, r.PositionCommit, r.PositionPrepare, r.EventID, r.Type, r.Stream,
		projections.NullString(r.ChildID), projections.NullString(r.AccountID), r.Actor, r.ActorRole, r.Reason,
		r.EffectiveAt, r.RecordedAt, r.Data, r.LeafIndex, r.LeafHash, r.PrevHash, r.Hash)
}
