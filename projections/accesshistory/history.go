// Package accesshistory keeps the access history: one row per interval of
// effective time in which an account could exercise permissions on a child's
// record, with the reason and the events that opened and closed it (R15).
//
// # Bitemporal rows
//
// Each row has a valid time, [valid_from, valid_to) in effective time (a
// NULL valid_to is open-ended), and a known time in log positions: the row
// became known at recorded_position and stopped being the current knowledge
// at superseded_position (NULL while current). Rows are never updated except
// to set superseded_*: when a later event changes what is known about an
// interval (a backdated placement end, a grant revoked, an account closed),
// the old row is superseded and the corrected rows are inserted, recorded at
// that event's position. So
//
//   - "who could see child C at T, and why" reads the current rows
//     (superseded IS NULL) whose valid time contains T;
//   - the same question "as known at position P" reads the rows with
//     recorded ≤ P < superseded (R4: before a backdated end was recorded).
//
// The intervals are the segments of accessmodel.Facts.Timeline: the domain's
// own policy evaluated at every fact time, so the history and the access
// index never disagree. The event that opened an interval is the event that
// set its start time in the facts (a placement start, a grant, an
// activation, a reopening...), or the placement start or grant behind it
// when that was recorded later (accessmodel.Model.Opener); the one that
// closed it the event that set its end (a placement end, an early grace
// end, a revoke, a closure); a grace period's end is set by the placement
// end that scheduled it, or by the early end, and once the process manager
// has recorded the expiry, by the expiry.
//
// The carer's access to their own record (R1) is not kept here: it is the
// account's active interval, read from the accounts read model.
package accesshistory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/snapshotfile"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// Name is the projection's name.
const Name = "access_history"

// table is the logical table name.
const table = "access_history"

// version of the table and of the logic that fills it. 2: a grace
// interval names its grace period and the policy event that set it (R25);
// the opener of a segment whose source was recorded after the event at its
// start; recorded grace expiries close grace periods; reopenings (R18).
// 3: on SQLite, id is the table's rowid (INTEGER PRIMARY KEY), not a
// second b-tree beside it; the rows are the same.
const version = 3

// Projection builds the access history. Use New; it is driven by the
// projections runner.
type Projection struct {
	model *accessmodel.Model
	// rows holds each pair's current rows, in id order, as far as the fold
	// compares and supersedes them (keptRow): the rest of a row is in the
	// table only.
	rows   map[accessmodel.Pair][]keptRow
	nextID int64
	// facts, segs, want and used are diff's scratch space, kept between
	// its calls.
	facts  accessmodel.Facts
	segs   []accessmodel.Segment
	want   []segmentRow
	used   []bool
	loaded int64 // max id in the table at Load, checked after warm-up
	// warmTo is the position Load was called at. The rows of the records
	// up to it are in the table, and Load has read the current ones: the
	// warm-up passes those records through the model only.
	warmTo eventlog.Position

	// mu guards the fold (model, and what a snapshot keeps beside it)
	// against WriteSnapshot, which copies it from another goroutine.
	mu sync.Mutex
	// snap configures snapshots (WithSnapshots); warmFrom is where Load
	// restored the fold (eventlog.Start: from nothing); last the record the
	// fold is at; erasures the child erasures folded; broken: a record
	// failed to fold, and the fold is unusable until the next Load.
	snap                          SnapshotConfig
	warmFrom                      eventlog.Position
	last                          snapshotfile.Record
	erasures                      uint64
	loadedErasures, loadedApplied uint64
	broken                        bool
	// committed is the position the table holds (Load's, then Replay's
	// and Committed's): a snapshot saves no fold ahead of it.
	committed eventlog.Position
	// loadedOnce closes loadedCh after the first Load that succeeded.
	loadedOnce sync.Once
	loadedCh   chan struct{}
}

// New returns the projection.
func New(opts ...Option) *Projection {
	p := &Projection{loadedCh: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	return p
}

var _ projections.Projection = (*Projection)(nil)

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return version }

// Tables implements projections.Projection.
func (*Projection) Tables() []projections.Table {
	return []projections.Table{{Name: table, Create: createTable, DeferIndexes: true}}
}

// createTable returns the DDL of the table and its indexes. On SQLite id,
// as INTEGER PRIMARY KEY, is the rowid: a row is one entry of one b-tree,
// and a supersede's UPDATE finds it by rowid (with BIGINT PRIMARY KEY
// SQLite keeps a separate unique index of id beside the rowid's b-tree,
// which every insert writes and every supersede searches first).
func createTable(d dialect.Name, t string) []string {
	text := "TEXT"
	big := "BIGINT"
	id := big
	if d == dialect.SQLite {
		id = "INTEGER"
	}
	stmts := []string{`CREATE TABLE ` + t + ` (
	id ` + id + ` PRIMARY KEY,
	account_id ` + text + ` NOT NULL,
	child_id ` + text + ` NOT NULL,
	permissions INTEGER NOT NULL,
	reason ` + text + ` NOT NULL,
	valid_from ` + big + ` NOT NULL,
	valid_to ` + big + `,
	opened_event_id ` + text + `,
	opened_event_type ` + text + `,
	opened_actor ` + text + `,
	opened_actor_role ` + text + `,
	opened_commit ` + big + `,
	opened_prepare ` + big + `,
	closed_event_id ` + text + `,
	closed_event_type ` + text + `,
	closed_actor ` + text + `,
	closed_actor_role ` + text + `,
	closed_commit ` + big + `,
	closed_prepare ` + big + `,
	recorded_event_id ` + text + ` NOT NULL,
	recorded_commit ` + big + ` NOT NULL,
	recorded_prepare ` + big + ` NOT NULL,
	superseded_event_id ` + text + `,
	superseded_commit ` + big + `,
	superseded_prepare ` + big + `,
	grace_seconds ` + big + `,
	grace_policy_event_id ` + text + `,
	grace_policy_commit ` + big + `,
	grace_policy_prepare ` + big + `
)`,
		`CREATE INDEX ` + t + `_child ON ` + t + ` (child_id, valid_from)`,
		`CREATE INDEX ` + t + `_account ON ` + t + ` (account_id, valid_from)`,
	}
	return stmts
}

// row is one interval as written.
type row struct {
	bun.BaseModel `bun:"table:access_history"`

	ID           int64          `bun:"id,pk"`
	AccountID    string         `bun:"account_id"`
	ChildID      string         `bun:"child_id"`
	Permissions  int64          `bun:"permissions"`
	Reason       string         `bun:"reason"`
	ValidFrom    int64          `bun:"valid_from"`
	ValidTo      sql.NullInt64  `bun:"valid_to"`
	OpenedID     sql.NullString `bun:"opened_event_id"`
	OpenedType   sql.NullString `bun:"opened_event_type"`
	OpenedActor  sql.NullString `bun:"opened_actor"`
	OpenedRole   sql.NullString `bun:"opened_actor_role"`
	OpenedC      sql.NullInt64  `bun:"opened_commit"`
	OpenedP      sql.NullInt64  `bun:"opened_prepare"`
	ClosedID     sql.NullString `bun:"closed_event_id"`
	ClosedType   sql.NullString `bun:"closed_event_type"`
	ClosedActor  sql.NullString `bun:"closed_actor"`
	ClosedRole   sql.NullString `bun:"closed_actor_role"`
	ClosedC      sql.NullInt64  `bun:"closed_commit"`
	ClosedP      sql.NullInt64  `bun:"closed_prepare"`
	RecordedID   string         `bun:"recorded_event_id"`
	RecordedC    int64          `bun:"recorded_commit"`
	RecordedP    int64          `bun:"recorded_prepare"`
	SupersededID sql.NullString `bun:"superseded_event_id"`
	SupersededC  sql.NullInt64  `bun:"superseded_commit"`
	SupersededP  sql.NullInt64  `bun:"superseded_prepare"`
	// GraceSeconds, for a grace interval, is the grace period its
	// placement end gave; GracePolicy* the policy event that set it (R25).
	GraceSeconds  sql.NullInt64  `bun:"grace_seconds"`
	GracePolicyID sql.NullString `bun:"grace_policy_event_id"`
	GracePolicyC  sql.NullInt64  `bun:"grace_policy_commit"`
	GracePolicyP  sql.NullInt64  `bun:"grace_policy_prepare"`
}

// keptRow is what the fold keeps of a current row: its id and what same
// compares. Reason is the access's reason (placement, grant, grace
// period), not free text; Opened and Closed are the ids of the events that
// opened and closed the interval (uuid.Nil: none). A snapshot saves these
// (savedRow).
type keptRow struct {
	ID             int64
	Permissions    int64
	Reason         string
	ValidFrom      int64
	ValidTo        sql.NullInt64
	Opened, Closed uuid.UUID
}

// same reports whether r describes the same interval, from the same
// events, as n (their ids aside).
func (r *keptRow) same(n *keptRow) bool {
	return r.Permissions == n.Permissions && r.Reason == n.Reason && r.ValidFrom == n.ValidFrom &&
		r.ValidTo == n.ValidTo && r.Opened == n.Opened && r.Closed == n.Closed
}

// Load implements projections.Projection. The model of the fold lives in
// memory only, so the runner replays the log up to at first; the rows the
// fold compares new intervals with are read from the table, as they stood
// at at, so that the warm-up only advances the model (recomputing every
// pair's intervals for every record would take twice as long).
//
// With WithSnapshots, Load restores the fold, its current rows and next id
// from the snapshot when it is usable at at (see the snapshot notes): the
// table is not read, and the runner then replays only the records after
// WarmStart, through the whole fold.
func (p *Projection) Load(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.model, p.warmFrom, p.last, p.erasures, p.broken = accessmodel.New(), eventlog.Start, snapshotfile.Record{}, 0, false
	p.loadedErasures, p.loadedApplied = 0, 0
	p.warmTo, p.committed = at, at
	if snap := p.loadSnapshot(ctx, at); snap != nil {
		// The fold's rows and next id at the snapshot's position come with
		// it: the records after it, up to at, go through the whole fold
		// (as records another runner wrote), which checks them against the
		// table's largest id at the first Apply.
		var maxID sql.NullInt64
		if err := db.NewRaw("SELECT MAX(id) FROM ?", t.Ident(table)).Scan(ctx, &maxID); err != nil {
			return false, fmt.Errorf("accesshistory: load at %s: max id: %w", at, err)
		}
		p.rows, p.nextID, p.loaded = snap.rows(), snap.NextID, maxID.Int64
		p.warmTo = snap.Model.Position
		p.loadedOnce.Do(func() { close(p.loadedCh) })
		return true, nil
	}
	rows, next, maxID, err := loadState(ctx, db, t, at)
	if err != nil {
		return false, fmt.Errorf("accesshistory: load at %s: %w", at, err)
	}
	p.rows, p.nextID, p.loaded = rows, next, maxID
	p.loadedOnce.Do(func() { close(p.loadedCh) })
	return true, nil
}

// Loaded is closed once a Load has succeeded: WarmStart then names where
// the fold was restored (the engine's ledger check reads the log from the
// earliest of such positions).
func (p *Projection) Loaded() <-chan struct{} { return p.loadedCh }

// Replay implements projections.Projection. Records up to the position of
// Load only advance the model (their rows are loaded); later ones (written
// by another runner) go through the whole fold, so that the rows and ids
// kept in memory follow the table.
func (p *Projection) Replay(recs []eventlog.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(recs) > 0 && p.committed.Before(recs[len(recs)-1].Position) {
		p.committed = recs[len(recs)-1].Position
	}
	n := 0
	for n < len(recs) && !p.warmTo.Before(recs[n].Position) {
		prev := p.model.Position()
		res, err := p.model.Apply(recs[n])
		if err != nil {
			p.broken = true
			return err
		}
		p.noted(&recs[n], prev, res)
		n++
	}
	if n == len(recs) {
		return nil
	}
	_, err := p.fold(recs[n:])
	return err
}

// Committed implements projections.Committer: the table holds the fold up
// to pos.
func (p *Projection) Committed(pos eventlog.Position) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.committed.Before(pos) {
		p.committed = pos
	}
}

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	w, err := p.Stage(recs)
	if err != nil {
		return err
	}
	return w.Write(ctx, tx, t)
}

// Stage implements projections.Stager: it folds recs and returns the rows
// to insert and the rows they supersede. The rows it returns are not
// changed by later folds (a row is superseded at most once, by an UPDATE
// of a later batch or in place within its own), so Write may run beside
// the next Stage.
func (p *Projection) Stage(recs []eventlog.Record) (projections.Staged, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loaded >= p.nextID {
		// The warm-up must have produced every row the table holds.
		return nil, fmt.Errorf("accesshistory: table holds rows up to id %d but the replay made %d: %w",
			p.loaded, p.nextID-1, ErrOutOfSync)
	}
	w, err := p.fold(recs)
	if err != nil {
		return nil, err
	}
	p.loaded = 0
	return &w, nil
}

var _ projections.Stager = (*Projection)(nil)

// Write implements projections.Staged: it inserts w's rows and marks the
// rows they supersede.
func (w *writes) Write(ctx context.Context, tx bun.Tx, t projections.Tables) error {
	err := projections.InsertRows(ctx, tx, t.Name(table), columns, len(w.inserts), func(i int, dst []any) []any {
		return w.inserts[i].values(dst)
	})
	if err != nil {
		return fmt.Errorf("accesshistory: insert: %w", err)
	}
	// One update per superseded row, all in one statement on PostgreSQL
	// (a row is superseded once: the fold forgets it).
	var gone []supersededRow
	for i := range w.supersedes {
		s := &w.supersedes[i]
		for _, id := range s.ids {
			gone = append(gone, supersededRow{id: id, s: s})
		}
	}
	err = projections.UpdateRows(ctx, tx, t.Name(table), projections.Column{Name: "id", PGType: "bigint"}, supersededColumns,
		len(gone), func(i int, dst []any) []any {
			g := gone[i]
			return append(dst, g.id, g.s.event.String(), int64(g.s.pos.Commit), int64(g.s.pos.Prepare))
		})
	if err != nil {
		return fmt.Errorf("accesshistory: supersede: %w", err)
	}
	return nil
}

// ErrOutOfSync is returned when the table does not match the replayed log:
// the projection must be rebuilt.
var ErrOutOfSync = errors.New("accesshistory: table out of sync with the log")

// supersededRow is one row a supersede marks.
type supersededRow struct {
	id int64
	s  *supersede
}

// supersededColumns are the columns a supersede sets.
var supersededColumns = []projections.Column{
	{Name: "superseded_event_id", PGType: "text"},
	{Name: "superseded_commit", PGType: "bigint"},
	{Name: "superseded_prepare", PGType: "bigint"},
}

// columns are the columns of the table, in the order row.values gives
// them.
var columns = []projections.Column{
	{Name: "id", PGType: "bigint"},
	{Name: "account_id", PGType: "text"},
	{Name: "child_id", PGType: "text"},
	{Name: "permissions", PGType: "integer"},
	{Name: "reason", PGType: "text"},
	{Name: "valid_from", PGType: "bigint"},
	{Name: "valid_to", PGType: "bigint"},
	{Name: "opened_event_id", PGType: "text"},
	{Name: "opened_event_type", PGType: "text"},
	{Name: "opened_actor", PGType: "text"},
	{Name: "opened_actor_role", PGType: "text"},
	{Name: "opened_commit", PGType: "bigint"},
	{Name: "opened_prepare", PGType: "bigint"},
	{Name: "closed_event_id", PGType: "text"},
	{Name: "closed_event_type", PGType: "text"},
	{Name: "closed_actor", PGType: "text"},
	{Name: "closed_actor_role", PGType: "text"},
	{Name: "closed_commit", PGType: "bigint"},
	{Name: "closed_prepare", PGType: "bigint"},
	{Name: "recorded_event_id", PGType: "text"},
	{Name: "recorded_commit", PGType: "bigint"},
	{Name: "recorded_prepare", PGType: "bigint"},
	{Name: "superseded_event_id", PGType: "text"},
	{Name: "superseded_commit", PGType: "bigint"},
	{Name: "superseded_prepare", PGType: "bigint"},
	{Name: "grace_seconds", PGType: "bigint"},
	{Name: "grace_policy_event_id", PGType: "text"},
	{Name: "grace_policy_commit", PGType: "bigint"},
	{Name: "grace_policy_prepare", PGType: "bigint"},
}

// values appends the columns of r to dst, in the order of columns.
func (r *row) values(dst []any) []any {
	ns, ni := projections.NullString, projections.NullInt64
	return append(dst, r.ID, r.AccountID, r.ChildID, r.Permissions, r.Reason, r.ValidFrom, ni(r.ValidTo),
		ns(r.OpenedID), ns(r.OpenedType), ns(r.OpenedActor), ns(r.OpenedRole), ni(r.OpenedC), ni(r.OpenedP),
		ns(r.ClosedID), ns(r.ClosedType), ns(r.ClosedActor), ns(r.ClosedRole), ni(r.ClosedC), ni(r.ClosedP),
		r.RecordedID, r.RecordedC, r.RecordedP, ns(r.SupersededID), ni(r.SupersededC), ni(r.SupersededP),
		ni(r.GraceSeconds), ns(r.GracePolicyID), ni(r.GracePolicyC), ni(r.GracePolicyP))
}

type supersede struct {
	event uuid.UUID
	pos   eventlog.Position
	ids   []int64
}

type writes struct {
	inserts    []*row
	supersedes []supersede
}

// fold applies recs to the model and computes the rows to insert and the
// rows to supersede.
func (p *Projection) fold(recs []eventlog.Record) (writes, error) {
	var w writes
	pending := map[int64]*row{}
	for i := range recs {
		rec := recs[i]
		prev := p.model.Position()
		res, err := p.model.Apply(rec)
		if err != nil {
			p.broken = true
			return writes{}, err
		}
		p.noted(&recs[i], prev, res)
		var sup []int64
		for _, pair := range res.Pairs {
			ins, gone := p.diff(pair, rec)
			for _, id := range gone {
				if pr, ok := pending[id]; ok {
					pr.SupersededID = sql.NullString{String: rec.ID.String(), Valid: true}
					pr.SupersededC = sql.NullInt64{Int64: int64(rec.Position.Commit), Valid: true}
					pr.SupersededP = sql.NullInt64{Int64: int64(rec.Position.Prepare), Valid: true}
					continue
				}
				sup = append(sup, id)
			}
			for _, r := range ins {
				pending[r.ID] = r
				w.inserts = append(w.inserts, r)
			}
		}
		if len(sup) > 0 {
			w.supersedes = append(w.supersedes, supersede{event: rec.ID, pos: rec.Position, ids: sup})
		}
	}
	return w, nil
}

// diff recomputes the pair's intervals after rec and returns the rows to
// insert and the ids of the current rows that no longer hold. A segment's
// row is completed (names, times, grace) only when it is new: most
// segments match a current row. A pair whose rows all still hold keeps
// its slice; one that changed gets a new slice (a snapshot may share the
// old one).
func (p *Projection) diff(pair accessmodel.Pair, rec eventlog.Record) (ins []*row, gone []int64) {
	facts := &p.facts
	p.model.FactsInto(pair, facts)
	segs := facts.AppendTimeline(p.segs[:0])
	p.segs = segs
	src := p.model.SourcesOf(pair)
	want := p.want[:0]
	for _, s := range segs {
		want = append(want, keyFor(src, facts, s))
	}
	p.want = want
	old := p.rows[pair]
	used := p.used[:0]
	for range want {
		used = append(used, false)
	}
	p.used = used
	// Match each current row with a segment; the rows that match none
	// are gone.
	matched := 0
	var oldGone []bool
	for i := range old {
		o := &old[i]
		found := false
		for j := range want {
			if !used[j] && o.same(&want[j].key) {
				used[j], found = true, true
				matched++
				break
			}
		}
		if !found {
			if oldGone == nil {
				oldGone = make([]bool, len(old))
			}
			oldGone[i] = true
			gone = append(gone, o.ID)
		}
	}
	if matched == len(old) && matched == len(want) {
		return nil, nil
	}
	keep := make([]keptRow, 0, len(want))
	for i := range old {
		if oldGone == nil || !oldGone[i] {
			keep = append(keep, old[i])
		}
	}
	for i := range want {
		if used[i] {
			continue
		}
		n := p.complete(pair, &want[i], rec)
		n.ID = p.nextID
		p.nextID++
		ins = append(ins, n)
		k := want[i].key
		k.ID = n.ID
		keep = append(keep, k)
	}
	if len(keep) == 0 {
		delete(p.rows, pair)
	} else {
		p.rows[pair] = keep
	}
	return ins, gone
}

// segmentRow is the row of a segment as far as keptRow.same compares it,
// with the events that opened and closed it (zero: none).
type segmentRow struct {
	key            keptRow
	seg            accessmodel.Segment
	opener, closer accessmodel.Ref
}

// keyFor returns the row of segment s of the pair whose provenance is src
// and facts are facts, with what row.same compares: permissions, reason,
// valid time and the ids of the opening and closing events.
func keyFor(src accessmodel.Sources, facts *accessmodel.Facts, s accessmodel.Segment) segmentRow {
	k := segmentRow{seg: s, key: keptRow{Permissions: int64(s.Permissions), Reason: string(s.Reason), ValidFrom: s.From.UnixMicro()}}
	if ref, ok := src.Opener(facts, s); ok {
		k.opener = ref
		k.key.Opened = src.ID(ref)
	}
	if !s.To.IsZero() {
		k.key.ValidTo = sql.NullInt64{Int64: s.To.UnixMicro(), Valid: true}
		if ref, ok := src.Source(s.To); ok {
			k.closer = ref
			k.key.Closed = src.ID(ref)
		}
	}
	return k
}

// complete fills in the rest of k's row, recorded at rec, and returns it.
func (p *Projection) complete(pair accessmodel.Pair, k *segmentRow, rec eventlog.Record) *row {
	r := &row{Permissions: k.key.Permissions, Reason: k.key.Reason, ValidFrom: k.key.ValidFrom, ValidTo: k.key.ValidTo}
	r.AccountID, r.ChildID = pair.Account.String(), pair.Child.String()
	r.RecordedID, r.RecordedC, r.RecordedP = rec.ID.String(), int64(rec.Position.Commit), int64(rec.Position.Prepare)
	if k.opener != 0 {
		opener := p.model.EventRef(k.opener)
		r.OpenedID, r.OpenedType, r.OpenedActor, r.OpenedRole, r.OpenedC, r.OpenedP = refCols(opener)
		if g, ok := p.model.GraceOf(opener.ID); ok && k.seg.Reason == domain.ReasonGracePeriod {
			r.GraceSeconds = sql.NullInt64{Int64: int64(g.Period / time.Second), Valid: true}
			if g.Policy != nil {
				r.GracePolicyID = sql.NullString{String: g.Policy.ID.String(), Valid: true}
				r.GracePolicyC = sql.NullInt64{Int64: int64(g.Policy.Position.Commit), Valid: true}
				r.GracePolicyP = sql.NullInt64{Int64: int64(g.Policy.Position.Prepare), Valid: true}
			}
		}
	}
	if k.closer != 0 {
		r.ClosedID, r.ClosedType, r.ClosedActor, r.ClosedRole, r.ClosedC, r.ClosedP = refCols(p.model.EventRef(k.closer))
	}
	return r
}

func refCols(ref accessmodel.EventRef) (id, typ, actor, role sql.NullString, c, p sql.NullInt64) {
	str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	return str(ref.ID.String()), str(ref.Type), str(ref.ActorID), str(ref.ActorRole),
		sql.NullInt64{Int64: int64(ref.Position.Commit), Valid: true},
		sql.NullInt64{Int64: int64(ref.Position.Prepare), Valid: true}
}
