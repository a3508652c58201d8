// Package securitylog keeps the security log of refused commands and
// queries (R8): who
// tried what, on what, when, and why it was refused. Auditors read it
// (GET /v1/security-log).
//
// It is not a projection of the event log: a refused command appends no
// event. The command layer writes an Entry with Record when it refuses a
// command, in its own statement (not in a transaction that the refusal rolls
// back).
//
// # Table
//
// The migrations (Migrations, recorded under Component) create one table,
// security_log: id (BIGSERIAL on PostgreSQL, INTEGER PRIMARY KEY
// AUTOINCREMENT on SQLite: increasing, never reused), at (Unix
// microseconds), actor_id, actor_role, command, target, code, detail,
// request_id and correlation_id (the canonical UUID, or "" for none).
package securitylog

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the migrations are recorded under (tables
// securitylog_migrations and securitylog_migration_locks): pass it with
// Migrations to sqldb.Migrate.
const Component = "securitylog"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the bun/migrate SQL migrations of the security log for
// PostgreSQL and for SQLite, for sqldb.Migrate(ctx, db, Component, pg,
// sqlite).
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}

// Length bounds, in bytes.
const (
	MaxActorID   = 255
	MaxActorRole = 64
	MaxCommand   = 64
	MaxCode      = 64
	MaxTarget    = 512
	MaxRequestID = 200
	MaxDetail    = 2000
)

// Entry is one refused command.
type Entry struct {
	// ID is assigned by Record (ignored on input): increasing in the order
	// entries were inserted.
	ID int64
	// At is when the command was refused (required). It is stored in UTC
	// with microsecond precision.
	At time.Time
	// ActorID and ActorRole are who sent the command, from the verified
	// token (required).
	ActorID   string
	ActorRole string
	// Command names what was attempted, e.g. "grant" (required).
	Command string
	// Target names what it was attempted on, e.g. "child/<id>" (optional).
	Target string
	// Code is the problem code of the refusal: "forbidden", "invalid",
	// "conflict", ... (required).
	Code string
	// Detail is the refusal's message (optional).
	Detail string
	// RequestID and CorrelationID tie the entry to the request (optional).
	RequestID     string
	CorrelationID uuid.UUID
}

// ErrInvalid is returned (wrapped) by Record for an entry it cannot store and
// by List for a bad filter. It wraps domain.ErrInvalid.
var ErrInvalid = fmt.Errorf("securitylog: %w", domain.ErrInvalid)

// Log reads and writes the security log through a database handle.
type Log struct {
	db bun.IDB
}

// New returns a Log on db (a *bun.DB, or a bun.Tx to write within a
// transaction). The table must exist (see Migrations).
func New(db bun.IDB) *Log { return &Log{db: db} }

// RecordRefusal records a refused command or query (commands.Refusals:
// the one port through which the command and query services reach the
// security log).
func (l *Log) RecordRefusal(ctx context.Context, f commands.Refusal) error {
	return l.Record(ctx, Entry{
		At: f.At, ActorID: f.Actor.ID, ActorRole: string(f.Actor.Role),
		Command: f.Command, Target: f.Target, Code: f.Code, Detail: f.Detail,
		RequestID: f.RequestID, CorrelationID: f.CorrelationID,
	})
}

type row struct {
	bun.BaseModel `bun:"table:security_log,alias:s"`

	ID            int64  `bun:"id,pk,autoincrement"`
	At            int64  `bun:"at"`
	ActorID       string `bun:"actor_id"`
	ActorRole     string `bun:"actor_role"`
	Command       string `bun:"command"`
	Target        string `bun:"target"`
	Code          string `bun:"code"`
	Detail        string `bun:"detail"`
	RequestID     string `bun:"request_id"`
	CorrelationID string `bun:"correlation_id"`
}

// Record stores e (its ID is ignored).
//
// The fields the engine itself fills must be clean: At must be set (years
// 1900 to 9999), and ActorID, ActorRole, Command and Code must be present,
// valid UTF-8 without control characters, within their Max* bounds;
// otherwise Record fails with ErrInvalid and stores nothing.
//
// The free-text fields, which may echo what the caller sent (Target,
// Detail, RequestID), never make Record fail: a refusal must not go
// unlogged because its message quotes bad input. Invalid UTF-8 and NUL
// bytes (which PostgreSQL cannot store) are replaced by U+FFFD, and a value
// longer than its bound is cut at a character boundary and ends with "…".
func (l *Log) Record(ctx context.Context, e Entry) error {
	r, err := toRow(e)
	if err != nil {
		return err
	}
	if _, err := l.db.NewInsert().Model(&r).Exec(ctx); err != nil {
		return fmt.Errorf("record refusal: %w", err)
	}
	return nil
}

// RecordAll stores entries in one INSERT (their IDs are ignored, and
// increase in the slice's order), as Record stores each: it fails with
// ErrInvalid, storing nothing, when one of them is invalid. Nothing to
// store is not an error.
func (l *Log) RecordAll(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	rows := make([]row, len(entries))
	for i, e := range entries {
		var err error
		if rows[i], err = toRow(e); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	if _, err := l.db.NewInsert().Model(&rows).Exec(ctx); err != nil {
		return fmt.Errorf("record refusals: %w", err)
	}
	return nil
}

// toRow checks e as Record documents and returns its row.
func toRow(e Entry) (row, error) {
	if e.At.IsZero() {
		return row{}, fmt.Errorf("record refusal: at: required: %w", ErrInvalid)
	}
	if y := e.At.UTC().Year(); y < 1900 || y > 9999 {
		return row{}, fmt.Errorf("record refusal: at %s: out of range: %w", e.At.UTC().Format(time.RFC3339), ErrInvalid)
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"actor_id", e.ActorID, MaxActorID},
		{"actor_role", e.ActorRole, MaxActorRole},
		{"command", e.Command, MaxCommand},
		{"code", e.Code, MaxCode},
	} {
		if err := checkName(f.value, f.max); err != nil {
			return row{}, fmt.Errorf("record refusal: %s: %w: %w", f.name, err, ErrInvalid)
		}
	}
	r := row{
		At:        e.At.UnixMicro(),
		ActorID:   e.ActorID,
		ActorRole: e.ActorRole,
		Command:   e.Command,
		Target:    clean(e.Target, MaxTarget),
		Code:      e.Code,
		Detail:    clean(e.Detail, MaxDetail),
		RequestID: clean(e.RequestID, MaxRequestID),
	}
	if e.CorrelationID != uuid.Nil {
		r.CorrelationID = e.CorrelationID.String()
	}
	return r, nil
}

// checkName checks a field the engine fills: present, at most max bytes,
// valid UTF-8, no control characters.
func checkName(s string, max int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("required")
	case len(s) > max:
		return fmt.Errorf("longer than %d bytes", max)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	}
	return nil
}

// ellipsis ends a cut value.
const ellipsis = "…"

// clean makes s storable on both engines and at most max bytes: invalid
// UTF-8 and NUL become U+FFFD; a longer value is cut at a character
// boundary and ends with an ellipsis.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// Filter selects entries for List. Zero fields select everything.
type Filter struct {
	// Actor keeps the entries of this actor id.
	Actor string
	// Command keeps the entries of this command.
	Command string
	// Code keeps the entries with this problem code.
	Code string
	// From keeps entries at or after it; To keeps entries before it.
	From, To time.Time
	// Child keeps the entries that named that child: a command whose
	// target is the child ("child/<id>", its placements and grants) or a
	// query on one of its paths ("/v1/children/<id>…").
	Child *uuid.UUID
	// Account keeps the entries that named that account: a command whose
	// target is the account ("account/<id>…"), a grant to it
	// ("child/…/grant/<id>") or a view by it without access
	// ("child/…/view/<id>", R20), or a query on one of its paths
	// ("/v1/accounts/<id>…").
	Account *uuid.UUID
	// After is the cursor: List returns entries with an ID below it (0:
	// from the newest).
	After int64
	// Limit is the page size: 0 means DefaultLimit; at most MaxLimit.
	Limit int
}

// Page sizes of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// List returns one page of the entries that match f, newest first (by ID,
// the insertion order), and the cursor of the next page: the ID of the
// page's last entry when more may follow, 0 when this is the last page. It
// fails with ErrInvalid for a negative cursor or limit, a limit above
// MaxLimit, or From not before To.
//
// Paging newest-first misses nothing that was committed when a page is
// read: on PostgreSQL concurrent Records may commit out of ID order, but an
// entry that commits late with a lower ID than a page's last one is still
// found by the following pages; one with a higher ID is newer than the
// first page and appears when the list is read again from the start.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, int64, error) {
	limit, err := f.check()
	if err != nil {
		return nil, 0, err
	}
	var rows []row
	q := l.db.NewSelect().Model(&rows)
	if f.Actor != "" {
		q = q.Where("s.actor_id = ?", f.Actor)
	}
	if f.Command != "" {
		q = q.Where("s.command = ?", f.Command)
	}
	if f.Code != "" {
		q = q.Where("s.code = ?", f.Code)
	}
	if f.Child != nil {
		q = q.WhereGroup(" AND ", targets("child/"+f.Child.String(), "/v1/children/"+f.Child.String()))
	}
	if f.Account != nil {
		id := f.Account.String()
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return targets("account/"+id, "/v1/accounts/"+id)(q).WhereOr("s.target LIKE ?", "child/%/grant/"+id).
				WhereOr("s.target LIKE ?", "child/%/view/"+id)
		})
	}
	if !f.From.IsZero() {
		q = q.Where("s.at >= ?", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		q = q.Where("s.at < ?", f.To.UnixMicro())
	}
	if f.After > 0 {
		q = q.Where("s.id < ?", f.After)
	}
	if err := q.OrderExpr("s.id DESC").Limit(int64(limit + 1)).Scan(ctx); err != nil {
		return nil, 0, fmt.Errorf("list security log: %w", err)
	}
	var next int64
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].ID
	}
	entries := make([]Entry, len(rows))
	for i, r := range rows {
		e := Entry{
			ID: r.ID, At: time.UnixMicro(r.At).UTC(), ActorID: r.ActorID, ActorRole: r.ActorRole,
			Command: r.Command, Target: r.Target, Code: r.Code, Detail: r.Detail, RequestID: r.RequestID,
		}
		if r.CorrelationID != "" {
			if e.CorrelationID, err = uuid.Parse(r.CorrelationID); err != nil {
				return nil, 0, fmt.Errorf("list security log: entry %d: correlation id: %w", r.ID, err)
			}
		}
		entries[i] = e
	}
	return entries, next, nil
}

// targets matches the entries whose target is one of names or lies under
// it ("<name>/…"). Names are ids and fixed words: no LIKE wildcards.
func targets(names ...string) func(*bun.SelectQuery) *bun.SelectQuery {
	return func(q *bun.SelectQuery) *bun.SelectQuery {
		for _, n := range names {
			q = q.WhereOr("s.target = ?", n).WhereOr("s.target LIKE ?", n+"/%")
		}
		return q
	}
}

func (f *Filter) check() (int, error) {
	switch {
	case f.After < 0:
		return 0, fmt.Errorf("list security log: negative cursor: %w", ErrInvalid)
	case !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To):
		return 0, fmt.Errorf("list security log: from is not before to: %w", ErrInvalid)
	case f.Limit < 0 || f.Limit > MaxLimit:
		return 0, fmt.Errorf("list security log: limit %d not in 0..%d: %w", f.Limit, MaxLimit, ErrInvalid)
	case f.Limit == 0:
		return DefaultLimit, nil
	}
	return f.Limit, nil
}
