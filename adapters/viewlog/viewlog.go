// Package viewlog keeps the record views (R20): every opening of a child's
// record that a portal backend reports, with the access decision at the
// moment of the view, and the alerts raised by views made without access.
//
// Views are observations, not decisions that change access: they are not
// in the event log (a county's portal reports hundreds a second, and none
// of them changes who may see what). They live in two append-only tables of
// the read store, written in one transaction per batch with one multi-row
// INSERT each:
//
//   - record_views: view_id (UUIDv7), account_id, child_id, permission,
//     viewed_at, recorded_at (Unix microseconds), allowed, reason, position
//     (the access index's position the decision was made at) and actor_id
//     (the service that reported it);
//   - view_alerts: alert_id (UUIDv7), kind, account_id, child_id, at (the
//     time of the view), raised_at, detail, view_id.
//
// Rows hold ids only, no personal data. Nothing updates a row; only Prune
// (the retention schedule) deletes rows. The migrations (Migrations, under
// Component) create both tables.
package viewlog

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the migrations are recorded under: pass it with
// Migrations to sqldb.Migrate.
const Component = "viewlog"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the bun/migrate SQL migrations of the view log for
// PostgreSQL and for SQLite.
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}

// KindViewWithoutAccess is the kind of the alert raised by a view made
// without access.
const KindViewWithoutAccess = "view_without_access"

// ErrInvalid is returned (wrapped) for a view, alert or filter the log
// cannot take. It wraps domain.ErrInvalid.
var ErrInvalid = fmt.Errorf("viewlog: %w", domain.ErrInvalid)

// View is one opening of a child's record, with the decision at ViewedAt.
type View struct {
	ID         uuid.UUID
	AccountID  uuid.UUID
	ChildID    uuid.UUID
	Permission domain.Permission
	// ViewedAt is when the record was opened (the portal's time);
	// RecordedAt is when the engine stored the view.
	ViewedAt, RecordedAt time.Time
	// Allowed and Reason are the access index's decision at ViewedAt.
	Allowed bool
	Reason  domain.Reason
	// Position is the access index's position the decision was made at.
	Position string
	// ActorID is the service that reported the view.
	ActorID string
}

// Alert is one alert: a view without access.
type Alert struct {
	ID        uuid.UUID
	Kind      string
	AccountID uuid.UUID
	ChildID   uuid.UUID
	// At is when what the alert is about happened (the view's ViewedAt);
	// RaisedAt is when the engine raised it.
	At, RaisedAt time.Time
	Detail       string
	ViewID       uuid.UUID
}

// Batch is what one request records: its views, the alerts they raise and
// the security log entries of those alerts.
type Batch struct {
	Views    []View
	Alerts   []Alert
	Security []securitylog.Entry
}

// MaxBatch bounds the views of one Batch.
const MaxBatch = 1000

// Log reads and writes the view log.
type Log struct {
	db bun.IDB
}

// New returns a Log on db. The tables must exist (see Migrations).
func New(db bun.IDB) *Log { return &Log{db: db} }

type viewRow struct {
	bun.BaseModel `bun:"table:record_views,alias:v"`

	ViewID     string `bun:"view_id,pk"`
	AccountID  string `bun:"account_id"`
	ChildID    string `bun:"child_id"`
	Permission string `bun:"permission"`
	ViewedAt   int64  `bun:"viewed_at"`
	RecordedAt int64  `bun:"recorded_at"`
	Allowed    bool   `bun:"allowed"`
	Reason     string `bun:"reason"`
	Position   string `bun:"position"`
	ActorID    string `bun:"actor_id"`
}

type alertRow struct {
	bun.BaseModel `bun:"table:view_alerts,alias:a"`

	AlertID   string `bun:"alert_id,pk"`
	Kind      string `bun:"kind"`
	AccountID string `bun:"account_id"`
	ChildID   string `bun:"child_id"`
	At        int64  `bun:"at"`
	RaisedAt  int64  `bun:"raised_at"`
	Detail    string `bun:"detail"`
	ViewID    string `bun:"view_id"`
}

// Record stores b in one transaction: every view, alert and security log
// entry, or none. It fails with ErrInvalid, storing nothing, for more than
// MaxBatch views, a view or alert without an id, account or child, a time
// out of the years 1900 to 9999, or an invalid security log entry.
func (l *Log) Record(ctx context.Context, b Batch) error {
	if len(b.Views) > MaxBatch {
		return fmt.Errorf("record views: %d views, at most %d: %w", len(b.Views), MaxBatch, ErrInvalid)
	}
	views := make([]viewRow, len(b.Views))
	for i, v := range b.Views {
		if err := checkIDs(v.ID, v.AccountID, v.ChildID); err != nil {
			return fmt.Errorf("record views: view %d: %w", i, err)
		}
		if err := checkTimes(v.ViewedAt, v.RecordedAt); err != nil {
			return fmt.Errorf("record views: view %d: %w", i, err)
		}
		if _, err := domain.ParsePermission(v.Permission.String()); err != nil {
			return fmt.Errorf("record views: view %d: %w: %w", i, err, ErrInvalid)
		}
		views[i] = viewRow{ViewID: v.ID.String(), AccountID: v.AccountID.String(), ChildID: v.ChildID.String(),
			Permission: v.Permission.String(), ViewedAt: v.ViewedAt.UnixMicro(), RecordedAt: v.RecordedAt.UnixMicro(),
			Allowed: v.Allowed, Reason: string(v.Reason), Position: v.Position, ActorID: v.ActorID}
	}
	alerts := make([]alertRow, len(b.Alerts))
	for i, a := range b.Alerts {
		if err := checkIDs(a.ID, a.AccountID, a.ChildID); err != nil {
			return fmt.Errorf("record views: alert %d: %w", i, err)
		}
		if err := checkTimes(a.At, a.RaisedAt); err != nil {
			return fmt.Errorf("record views: alert %d: %w", i, err)
		}
		if a.Kind == "" {
			return fmt.Errorf("record views: alert %d: kind: required: %w", i, ErrInvalid)
		}
		alerts[i] = alertRow{AlertID: a.ID.String(), Kind: a.Kind, AccountID: a.AccountID.String(), ChildID: a.ChildID.String(),
			At: a.At.UnixMicro(), RaisedAt: a.RaisedAt.UnixMicro(), Detail: a.Detail, ViewID: a.ViewID.String()}
	}
	insert := func(ctx context.Context, db bun.IDB) error {
		if len(views) > 0 {
			if _, err := db.NewInsert().Model(&views).Exec(ctx); err != nil {
				return fmt.Errorf("record views: %w", err)
			}
		}
		if len(alerts) > 0 {
			if _, err := db.NewInsert().Model(&alerts).Exec(ctx); err != nil {
				return fmt.Errorf("record alerts: %w", err)
			}
		}
		return securitylog.New(db).RecordAll(ctx, b.Security)
	}
	if len(alerts) == 0 && len(b.Security) == 0 {
		return insert(ctx, l.db) // one statement: no transaction needed
	}
	return l.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return insert(ctx, tx) })
}

func checkIDs(id, account, child uuid.UUID) error {
	switch {
	case id == uuid.Nil:
		return fmt.Errorf("id: required: %w", ErrInvalid)
	case account == uuid.Nil:
		return fmt.Errorf("account: required: %w", ErrInvalid)
	case child == uuid.Nil:
		return fmt.Errorf("child: required: %w", ErrInvalid)
	}
	return nil
}

func checkTimes(ts ...time.Time) error {
	for _, t := range ts {
		if y := t.UTC().Year(); y < 1900 || y > 9999 {
			return fmt.Errorf("time %s: out of range: %w", t.UTC().Format(time.RFC3339), ErrInvalid)
		}
	}
	return nil
}

// Cursor is a position in a list ordered by (time, id): a page starts
// after it. The zero Cursor is the start.
type Cursor struct {
	At time.Time
	ID uuid.UUID
}

// IsZero reports whether c is the start.
func (c Cursor) IsZero() bool { return c.ID == uuid.Nil }

// String is c as the API answers it: "<Unix microseconds>_<id>", "" for
// the start.
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	return strconv.FormatInt(c.At.UnixMicro(), 10) + "_" + c.ID.String()
}

// ParseCursor parses String's form; it fails with ErrInvalid.
func ParseCursor(s string) (Cursor, error) {
	at, id, ok := strings.Cut(s, "_")
	if !ok || len(id) != 36 || at == "" || len(at) > 18 {
		return Cursor{}, fmt.Errorf("cursor %q: %w", s, ErrInvalid)
	}
	us, err := strconv.ParseInt(at, 10, 64)
	if err != nil || us < 0 {
		return Cursor{}, fmt.Errorf("cursor %q: %w", s, ErrInvalid)
	}
	u, err := uuid.Parse(id)
	if err != nil || u == uuid.Nil {
		return Cursor{}, fmt.Errorf("cursor %q: %w", s, ErrInvalid)
	}
	return Cursor{At: time.UnixMicro(us).UTC(), ID: u}, nil
}

// Page sizes of the lists.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Filter selects views (ListViews) or alerts (ListAlerts). Zero fields
// select everything.
type Filter struct {
	// Child and Account keep the rows of that child, of that account.
	Child, Account *uuid.UUID
	// From keeps rows at or after it, To rows before it (viewed_at for
	// views, at for alerts).
	From, To time.Time
	// After is the cursor: the page starts after it.
	After Cursor
	// Limit is the page size: 0 means DefaultLimit; at most MaxLimit.
	Limit int
}

func (f Filter) limit() (int, error) {
	switch {
	case !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To):
		return 0, fmt.Errorf("from is not before to: %w", ErrInvalid)
	case f.Limit < 0 || f.Limit > MaxLimit:
		return 0, fmt.Errorf("limit %d not in 0..%d: %w", f.Limit, MaxLimit, ErrInvalid)
	case f.Limit == 0:
		return DefaultLimit, nil
	}
	return f.Limit, nil
}

// where adds f's conditions on the time column col and the id column id
// (of the table aliased alias) to q.
func (f Filter) where(q *bun.SelectQuery, alias, col, id string) *bun.SelectQuery {
	if f.Child != nil {
		q = q.Where(alias+".child_id = ?", f.Child.String())
	}
	if f.Account != nil {
		q = q.Where(alias+".account_id = ?", f.Account.String())
	}
	if !f.From.IsZero() {
		q = q.Where(alias+"."+col+" >= ?", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		q = q.Where(alias+"."+col+" < ?", f.To.UnixMicro())
	}
	if !f.After.IsZero() {
		at, after := f.After.At.UnixMicro(), f.After.ID.String()
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where(alias+"."+col+" > ?", at).
				WhereOr(alias+"."+col+" = ? AND "+alias+"."+id+" > ?", at, after)
		})
	}
	return q.OrderExpr(alias + "." + col + " ASC, " + alias + "." + id + " ASC")
}

// ListViews returns one page of the views f selects, oldest first (by
// viewed_at, then view_id), and the cursor of the next page (zero on the
// last). It fails with ErrInvalid for a limit out of range or From not
// before To.
//
// A view reported late (its viewed_at before a page already read) is found
// by reading the period again: read a period once the portals' reporting
// delay has passed.
func (l *Log) ListViews(ctx context.Context, f Filter) ([]View, Cursor, error) {
	limit, err := f.limit()
	if err != nil {
		return nil, Cursor{}, fmt.Errorf("list views: %w", err)
	}
	var rows []viewRow
	q := f.where(l.db.NewSelect().Model(&rows), "v", "viewed_at", "view_id")
	if err := q.Limit(int64(limit) + 1).Scan(ctx); err != nil {
		return nil, Cursor{}, fmt.Errorf("list views: %w", err)
	}
	var next Cursor
	out := make([]View, 0, min(len(rows), limit))
	for i, r := range rows {
		if i == limit {
			last := out[limit-1]
			next = Cursor{At: last.ViewedAt, ID: last.ID}
			break
		}
		v, err := r.view()
		if err != nil {
			return nil, Cursor{}, fmt.Errorf("list views: %w", err)
		}
		out = append(out, v)
	}
	return out, next, nil
}

func (r viewRow) view() (View, error) {
	ids, err := parseIDs(r.ViewID, r.AccountID, r.ChildID)
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", r.ViewID, err)
	}
	perm, err := domain.ParsePermission(r.Permission)
	if err != nil {
		return View{}, fmt.Errorf("view %s: %w", r.ViewID, err)
	}
	return View{ID: ids[0], AccountID: ids[1], ChildID: ids[2], Permission: perm,
		ViewedAt: time.UnixMicro(r.ViewedAt).UTC(), RecordedAt: time.UnixMicro(r.RecordedAt).UTC(),
		Allowed: r.Allowed, Reason: domain.Reason(r.Reason), Position: r.Position, ActorID: r.ActorID}, nil
}

// ListAlerts returns one page of the alerts f selects, oldest first (by
// at, then alert_id), and the cursor of the next page (zero on the last).
// It fails with ErrInvalid as ListViews does.
func (l *Log) ListAlerts(ctx context.Context, f Filter) ([]Alert, Cursor, error) {
	limit, err := f.limit()
	if err != nil {
		return nil, Cursor{}, fmt.Errorf("list alerts: %w", err)
	}
	var rows []alertRow
	q := f.where(l.db.NewSelect().Model(&rows), "a", "at", "alert_id")
	if err := q.Limit(int64(limit) + 1).Scan(ctx); err != nil {
		return nil, Cursor{}, fmt.Errorf("list alerts: %w", err)
	}
	var next Cursor
	out := make([]Alert, 0, min(len(rows), limit))
	for i, r := range rows {
		if i == limit {
			last := out[limit-1]
			next = Cursor{At: last.At, ID: last.ID}
			break
		}
		a, err := r.alert()
		if err != nil {
			return nil, Cursor{}, fmt.Errorf("list alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, next, nil
}

// AlertsRaisedAfter returns up to limit alerts raised after the cursor
// (raised_at, alert_id), in the order they were raised (by raised_at, then
// alert_id): what a live follower (the watch stream) polls. A cursor with
// a nil ID selects the alerts raised at or after its At.
//
// On PostgreSQL a transaction can commit alerts raised a moment before
// ones already read: a follower reads again a few seconds back and skips
// the alerts it has seen.
func (l *Log) AlertsRaisedAfter(ctx context.Context, after Cursor, limit int) ([]Alert, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, fmt.Errorf("alerts raised after: limit %d not in 1..%d: %w", limit, MaxLimit, ErrInvalid)
	}
	var rows []alertRow
	q := l.db.NewSelect().Model(&rows)
	at := after.At.UnixMicro()
	if after.IsZero() {
		q = q.Where("a.raised_at >= ?", at)
	} else {
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("a.raised_at > ?", at).WhereOr("a.raised_at = ? AND a.alert_id > ?", at, after.ID.String())
		})
	}
	if err := q.OrderExpr("a.raised_at ASC, a.alert_id ASC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("alerts raised after: %w", err)
	}
	out := make([]Alert, len(rows))
	for i, r := range rows {
		var err error
		if out[i], err = r.alert(); err != nil {
			return nil, fmt.Errorf("alerts raised after: %w", err)
		}
	}
	return out, nil
}

func (r alertRow) alert() (Alert, error) {
	ids, err := parseIDs(r.AlertID, r.AccountID, r.ChildID, r.ViewID)
	if err != nil {
		return Alert{}, fmt.Errorf("alert %s: %w", r.AlertID, err)
	}
	return Alert{ID: ids[0], Kind: r.Kind, AccountID: ids[1], ChildID: ids[2], At: time.UnixMicro(r.At).UTC(),
		RaisedAt: time.UnixMicro(r.RaisedAt).UTC(), Detail: r.Detail, ViewID: ids[3]}, nil
}

func parseIDs(ss ...string) ([]uuid.UUID, error) {
	out := make([]uuid.UUID, len(ss))
	var errs []error
	for i, s := range ss {
		var err error
		if out[i], err = uuid.Parse(s); err != nil {
			errs = append(errs, fmt.Errorf("id %q: %w", s, err))
		}
	}
	return out, errors.Join(errs...)
}

// Prune deletes the views recorded before before and the alerts raised
// before it (the retention schedule: the one path that deletes rows), and
// returns how many of each it deleted.
func (l *Log) Prune(ctx context.Context, before time.Time) (views, alerts int64, err error) {
	us := before.UnixMicro()
	err = l.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*viewRow)(nil)).Where("recorded_at < ?", us).Exec(ctx)
		if err != nil {
			return err
		}
		if views, err = res.RowsAffected(); err != nil {
			return err
		}
		if res, err = tx.NewDelete().Model((*alertRow)(nil)).Where("raised_at < ?", us).Exec(ctx); err != nil {
			return err
		}
		alerts, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("prune views: %w", err)
	}
	return views, alerts, nil
}

// DefaultRetention is how long views and alerts are kept by default: six
// years (2,192 days), as closed accounts' personal data (R22), so that a
// subject access request made while the account could still be erased
// finds every view.
const DefaultRetention = 2192 * 24 * time.Hour

// PruneEvery applies the retention schedule until ctx ends: at once, then
// every interval, it deletes the views recorded and the alerts raised more
// than retention before now(). A failed prune is logged and tried again at
// the next interval. It returns ctx's error.
func (l *Log) PruneEvery(ctx context.Context, retention, interval time.Duration, now func() time.Time, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		before := now().Add(-retention)
		views, alerts, err := l.Prune(ctx, before)
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "views retention: prune failed", "error", err)
		case views+alerts > 0:
			log.InfoContext(ctx, "views retention: pruned", "views", views, "alerts", alerts, "before", before)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
