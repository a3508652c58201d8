package projections_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// counts is a projection that keeps everything in its tables: per stream
// the number of events, the last stream version and a running checksum of
// the event ids (which changes if an event is skipped, doubled or
// reordered); per event type the number of events. Version 2 puts a
// version_tag column in the middle of counts, a change the PostgreSQL view
// cannot follow with CREATE OR REPLACE VIEW.
type counts struct {
	version int
	// applied and replayed count records through Apply and Replay; several
	// instances may share them.
	applied  *atomic.Int64
	replayed *atomic.Int64
	// fail, when set, is called by Apply after it has written; an error
	// fails the batch.
	fail func(recs []eventlog.Record) error
}

func newCounts(version int) *counts {
	return &counts{version: version, applied: new(atomic.Int64), replayed: new(atomic.Int64)}
}

func (c *counts) Name() string { return "counts" }
func (c *counts) Version() int { return c.version }

func (c *counts) Tables() []projections.Table {
	return []projections.Table{
		{Name: "counts", Create: func(d dialect.Name, physical string) []string {
			tag := ""
			if c.version >= 2 {
				tag = "version_tag BIGINT NOT NULL, "
			}
			return []string{fmt.Sprintf("CREATE TABLE %s (stream TEXT NOT NULL PRIMARY KEY, %sevents BIGINT NOT NULL, "+
				"last_version BIGINT NOT NULL, checksum TEXT NOT NULL)", physical, tag)}
		}},
		{Name: "count_types", Create: func(d dialect.Name, physical string) []string {
			return []string{
				fmt.Sprintf("CREATE TABLE %s (type TEXT NOT NULL PRIMARY KEY, events BIGINT NOT NULL)", physical),
				fmt.Sprintf("CREATE INDEX %s_events_idx ON %s (events)", physical, physical),
			}
		}},
	}
}

func (c *counts) Load(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (bool, error) {
	return false, nil
}

func (c *counts) Replay(recs []eventlog.Record) error {
	c.replayed.Add(int64(len(recs)))
	return nil
}

type countRow struct {
	Stream      string `bun:"stream,pk"`
	Events      int64  `bun:"events"`
	LastVersion int64  `bun:"last_version"`
	Checksum    string `bun:"checksum"`
}

type countRowV2 struct {
	Stream      string `bun:"stream,pk"`
	VersionTag  int64  `bun:"version_tag"`
	Events      int64  `bun:"events"`
	LastVersion int64  `bun:"last_version"`
	Checksum    string `bun:"checksum"`
}

type typeRow struct {
	Type   string `bun:"type,pk"`
	Events int64  `bun:"events"`
}

// foldCount advances a stream's row by rec.
func foldCount(r countRow, rec eventlog.Record) countRow {
	sum := sha256.Sum256([]byte(r.Checksum + rec.ID.String()))
	return countRow{Stream: rec.Stream, Events: r.Events + 1, LastVersion: int64(rec.Version), Checksum: hex.EncodeToString(sum[:8])}
}

func (c *counts) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	streams := map[string]countRow{}
	types := map[string]int64{}
	var names []string
	for _, rec := range recs {
		if _, ok := streams[rec.Stream]; !ok {
			streams[rec.Stream] = countRow{Stream: rec.Stream}
			names = append(names, rec.Stream)
		}
	}
	var old []countRow
	if err := tx.NewRaw("SELECT stream, events, last_version, checksum FROM ? WHERE stream IN (?)",
		t.Ident("counts"), bun.List(names)).Scan(ctx, &old); err != nil {
		return fmt.Errorf("read counts: %w", err)
	}
	for _, r := range old {
		streams[r.Stream] = r
	}
	var typeNames []string
	for _, rec := range recs {
		streams[rec.Stream] = foldCount(streams[rec.Stream], rec)
		if _, ok := types[rec.Type]; !ok {
			typeNames = append(typeNames, rec.Type)
		}
		types[rec.Type]++
	}
	var oldTypes []typeRow
	if err := tx.NewRaw("SELECT type, events FROM ? WHERE type IN (?)", t.Ident("count_types"), bun.List(typeNames)).
		Scan(ctx, &oldTypes); err != nil {
		return fmt.Errorf("read types: %w", err)
	}
	for _, r := range oldTypes {
		types[r.Type] += r.Events
	}

	set := func(q *bun.InsertQuery, cols ...string) *bun.InsertQuery {
		for _, col := range cols {
			q = q.Set("? = EXCLUDED.?", bun.Ident(col), bun.Ident(col))
		}
		return q
	}
	if c.version >= 2 {
		rows := make([]countRowV2, 0, len(names))
		for _, n := range names {
			r := streams[n]
			rows = append(rows, countRowV2{r.Stream, int64(c.version), r.Events, r.LastVersion, r.Checksum})
		}
		q := tx.NewInsert().Model(&rows).ModelTableExpr("?", t.Ident("counts")).On("CONFLICT (stream) DO UPDATE")
		if _, err := set(q, "version_tag", "events", "last_version", "checksum").Exec(ctx); err != nil {
			return fmt.Errorf("write counts: %w", err)
		}
	} else {
		rows := make([]countRow, 0, len(names))
		for _, n := range names {
			rows = append(rows, streams[n])
		}
		q := tx.NewInsert().Model(&rows).ModelTableExpr("?", t.Ident("counts")).On("CONFLICT (stream) DO UPDATE")
		if _, err := set(q, "events", "last_version", "checksum").Exec(ctx); err != nil {
			return fmt.Errorf("write counts: %w", err)
		}
	}
	trows := make([]typeRow, 0, len(typeNames))
	for _, n := range typeNames {
		trows = append(trows, typeRow{n, types[n]})
	}
	q := tx.NewInsert().Model(&trows).ModelTableExpr("?", t.Ident("count_types")).On("CONFLICT (type) DO UPDATE")
	if _, err := set(q, "events").Exec(ctx); err != nil {
		return fmt.Errorf("write types: %w", err)
	}
	if c.fail != nil {
		if err := c.fail(recs); err != nil {
			return err
		}
	}
	c.applied.Add(int64(len(recs)))
	return nil
}

// warm is a projection whose state lives in memory and needs the warm-up:
// for each event it writes the event's position with the number of events
// it has seen in the event's stream and in all. Those numbers come from
// memory, so a warm-up, a replay or a reload that skipped or doubled an event
// would write wrong ones (they must equal the stream version and the
// position, as the SQL store's positions are dense); an event written twice
// breaks the primary key.
type warm struct {
	mu        sync.Mutex // the runner does not need it; tests peek at loads
	perStream map[string]int64
	total     int64
	loads     int
}

func newWarm() *warm { return &warm{} }

func (w *warm) Name() string { return "warm" }
func (w *warm) Version() int { return 1 }

func (w *warm) Tables() []projections.Table {
	return []projections.Table{{Name: "warm_events", Create: func(d dialect.Name, physical string) []string {
		return []string{fmt.Sprintf("CREATE TABLE %s (position BIGINT NOT NULL PRIMARY KEY, stream TEXT NOT NULL, "+
			"nth_in_stream BIGINT NOT NULL, nth BIGINT NOT NULL)", physical)}
	}}}
}

func (w *warm) Load(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.perStream, w.total = map[string]int64{}, 0
	w.loads++
	return true, nil
}

func (w *warm) Loads() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.loads
}

func (w *warm) Replay(recs []eventlog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rec := range recs {
		w.perStream[rec.Stream]++
		w.total++
	}
	return nil
}

type warmRow struct {
	Position    int64  `bun:"position,pk"`
	Stream      string `bun:"stream"`
	NthInStream int64  `bun:"nth_in_stream"`
	Nth         int64  `bun:"nth"`
}

func (w *warm) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	return w.fold(recs).Write(ctx, tx, t)
}

// fold advances the counts in memory by recs and returns their rows.
func (w *warm) fold(recs []eventlog.Record) warmRows {
	w.mu.Lock()
	defer w.mu.Unlock()
	rows := make(warmRows, 0, len(recs))
	for _, rec := range recs {
		w.perStream[rec.Stream]++
		w.total++
		rows = append(rows, warmRow{int64(rec.Position.Commit), rec.Stream, w.perStream[rec.Stream], w.total})
	}
	return rows
}

// warmRows are rows of warm_events to insert.
type warmRows []warmRow

// Write implements projections.Staged.
func (rows warmRows) Write(ctx context.Context, tx bun.Tx, t projections.Tables) error {
	if _, err := tx.NewInsert().Model(&rows).ModelTableExpr("?", t.Ident("warm_events")).Exec(ctx); err != nil {
		return fmt.Errorf("write warm_events: %w", err)
	}
	return nil
}

// snapshot is what the views of both projections show.
type snapshot struct {
	Counts []countRow
	Types  []typeRow
	Warm   []warmRow
}

// expected computes from the log what the views must show after applying
// the records at positions up to and including upto.
func expected(recs []eventlog.Record, upto uint64) snapshot {
	streams := map[string]countRow{}
	types := map[string]int64{}
	var s snapshot
	for _, rec := range recs {
		if rec.Position.Commit > upto {
			break
		}
		streams[rec.Stream] = foldCount(streams[rec.Stream], rec)
		types[rec.Type]++
		s.Warm = append(s.Warm, warmRow{int64(rec.Position.Commit), rec.Stream, int64(rec.Version), int64(rec.Position.Commit)})
	}
	for _, r := range streams {
		s.Counts = append(s.Counts, r)
	}
	sort.Slice(s.Counts, func(i, j int) bool { return s.Counts[i].Stream < s.Counts[j].Stream })
	for n, e := range types {
		s.Types = append(s.Types, typeRow{n, e})
	}
	sort.Slice(s.Types, func(i, j int) bool { return s.Types[i].Type < s.Types[j].Type })
	return s
}

// warmStart is warm restored from a saved state (a snapshot) at from: its
// Load installs the counts saved there and WarmStart names from, so the
// runner replays only the records after it; replayed counts them.
type warmStart struct {
	*warm
	from      eventlog.Position
	perStream map[string]int64
	total     int64
	replayed  int
}

func (w *warmStart) Load(ctx context.Context, db bun.IDB, t projections.Tables, at eventlog.Position) (bool, error) {
	if _, err := w.warm.Load(ctx, db, t, at); err != nil {
		return false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.Copy(w.warm.perStream, w.perStream)
	w.warm.total = w.total
	return true, nil
}

func (w *warmStart) Replay(recs []eventlog.Record) error {
	w.replayed += len(recs)
	return w.warm.Replay(recs)
}

func (w *warmStart) WarmStart() eventlog.Position { return w.from }

var _ projections.WarmStarter = (*warmStart)(nil)
