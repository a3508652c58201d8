package accesshistory

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// foldScale is the generated history of the fold's benchmark and of the
// comparison with the reference fold: a fifth of the county (the same
// years, so each pair's history is as long as the county's), about
// 215,000 records.
var foldScale = datagen.Scale{Name: "fold", Regions: 1, Children: 2_000, Carers: 600, Members: 4_000, Years: 5}

// rebuildBatch is the number of records a rebuild folds at once
// (projections' bulk batches).
const rebuildBatch = 10_000

var generatedLogs sync.Map // datagen.Scale -> []eventlog.Record

// generatedLog returns sc's history (seed 1) as records, positions
// numbered as a SQL store numbers them, generated once per test binary.
func generatedLog(tb testing.TB, sc datagen.Scale) []eventlog.Record {
	tb.Helper()
	if recs, ok := generatedLogs.Load(sc); ok {
		return recs.([]eventlog.Record)
	}
	var recs []eventlog.Record
	var seq uint64
	_, err := datagen.Generate(context.Background(), sc, datagen.SinkFunc(func(_ context.Context, batch []datagen.Append) error {
		for _, a := range batch {
			base, _ := a.Expected.Version()
			for i, e := range a.Events {
				seq++
				recs = append(recs, eventlog.Record{ID: e.ID, Stream: a.Stream, Version: base + uint64(i) + 1,
					Position: eventlog.At(seq), Type: e.Type, Data: e.Data, Meta: e.Meta})
			}
		}
		return nil
	}), datagen.Options{Seed: 1})
	require.NoError(tb, err)
	generatedLogs.Store(sc, recs)
	return recs
}

// newFold returns a projection ready to fold from the start of the log,
// as a rebuild's Load leaves it.
func newFold() *Projection {
	p := New()
	p.model, p.rows, p.nextID = accessmodel.New(), map[accessmodel.Pair][]keptRow{}, 1
	return p
}

// BenchmarkFold measures the access history's fold alone (the model, the
// pairs' intervals and the rows to write; no store) over foldScale's
// history, in a rebuild's batches of 10,000 records. events/s is the
// rate of a whole fold; cpu-ns/event the process's CPU time per record
// (user and system, getrusage: the figure to compare on a loaded machine).
func BenchmarkFold(b *testing.B) {
	recs := generatedLog(b, foldScale)
	b.ReportAllocs()
	var inserts, supersedes int
	var cpu time.Duration
	for b.Loop() {
		before := cputime.Process()
		p := newFold()
		inserts, supersedes = 0, 0
		for batch := range slices.Chunk(recs, rebuildBatch) {
			w, err := p.fold(batch)
			if err != nil {
				b.Fatal(err)
			}
			inserts += len(w.inserts)
			for _, s := range w.supersedes {
				supersedes += len(s.ids)
			}
		}
		cpu += cputime.Process() - before
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(recs)*b.N), "cpu-ns/event")
	b.ReportMetric(float64(inserts), "inserts")
	b.ReportMetric(float64(supersedes), "supersedes")
}

// TestFoldMatchesReference folds generated histories with the projection
// and with refFold (the fold as it was before it was made incremental:
// every pair a record names re-derived whole from its facts, with the
// policy's full answer at every fact time), batch by batch, and requires
// the same rows inserted (every column), the same rows superseded by the
// same events, and the same current rows kept, at every batch.
func TestFoldMatchesReference(t *testing.T) {
	if raceEnabled {
		t.Skip("one goroutine folding a fifth of the county twice: runs without the race detector in make test's second pass (RACE_SKIPPED)")
	}
	tests := []struct {
		name  string
		scale datagen.Scale
		batch int
	}{
		{name: "small, batches of 1", scale: datagen.Small, batch: 1},
		{name: "small, batches of 97", scale: datagen.Small, batch: 97},
		{name: "a fifth of the county, a rebuild's batches", scale: foldScale, batch: rebuildBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.scale == foldScale {
				t.Skip("short: the larger history")
			}
			recs := generatedLog(t, tt.scale)
			p, ref := newFold(), newRefFold()
			var inserts, supersedes int
			for batch := range slices.Chunk(recs, tt.batch) {
				got, err := p.fold(batch)
				require.NoError(t, err)
				want, err := ref.fold(batch)
				require.NoError(t, err)
				require.Equal(t, want.inserts, got.inserts, "rows inserted by the batch ending at %s", batch[len(batch)-1].Position)
				require.Equal(t, want.supersedes, got.supersedes, "rows superseded by the batch ending at %s", batch[len(batch)-1].Position)
				inserts += len(got.inserts)
				supersedes += len(got.supersedes)
			}
			require.Equal(t, ref.rows, p.rows, "current rows")
			require.Equal(t, ref.nextID, p.nextID)
			require.NotZero(t, inserts)
			require.NotZero(t, supersedes)
			t.Logf("%d records: %d rows inserted, %d supersedes", len(recs), inserts, supersedes)
		})
	}
}

// refFold is the fold as it was before it was made incremental, kept as
// the reference the projection's output is compared with: for every pair
// a record names, the pair's whole timeline from its facts (the policy's
// full answer, domain.ChildAccess, at every fact time), each segment's
// opening and closing events in full, and the rows compared with the
// pair's current ones.
type refFold struct {
	model  *accessmodel.Model
	rows   map[accessmodel.Pair][]keptRow
	nextID int64
}

func newRefFold() *refFold {
	return &refFold{model: accessmodel.New(), rows: map[accessmodel.Pair][]keptRow{}, nextID: 1}
}

func (p *refFold) fold(recs []eventlog.Record) (writes, error) {
	var w writes
	pending := map[int64]*row{}
	for _, rec := range recs {
		res, err := p.model.Apply(rec)
		if err != nil {
			return writes{}, err
		}
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

// refTimeline is accessmodel.Facts.Timeline as it was: the policy's full
// answer (domain.ChildAccess) at every distinct fact time.
func refTimeline(f *accessmodel.Facts) []accessmodel.Segment {
	var times []time.Time
	add := func(t time.Time) {
		if !t.IsZero() {
			times = append(times, t)
		}
	}
	add(f.Account.ActivatedAt)
	add(f.Account.ClosedAt)
	for _, l := range f.Account.Lapses {
		add(l.ClosedAt)
		add(l.ReopenedAt)
	}
	for _, pl := range f.Placements {
		add(pl.Start)
		add(pl.End)
		add(pl.GraceEnd)
	}
	for _, g := range f.Grants {
		add(g.From)
		add(g.To)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	times = slices.CompactFunc(times, func(a, b time.Time) bool { return a.Equal(b) })
	var out []accessmodel.Segment
	for i, t := range times {
		a := domain.ChildAccess(f.Account, f.Placements, f.Grants, t)
		if a.Permissions == 0 {
			continue
		}
		var to time.Time
		if i+1 < len(times) {
			to = times[i+1]
		}
		if n := len(out); n > 0 && out[n-1].To.Equal(t) && out[n-1].Permissions == a.Permissions && out[n-1].Reason == a.Reason {
			out[n-1].To = to
			continue
		}
		out = append(out, accessmodel.Segment{From: t, To: to, Permissions: a.Permissions, Reason: a.Reason})
	}
	return out
}

// refSegment is a segment's row as far as keptRow.same compares it, with
// the events that opened and closed it in full.
type refSegment struct {
	key            keptRow
	seg            accessmodel.Segment
	opener, closer accessmodel.EventRef
	opened, closed bool
}

func (p *refFold) diff(pair accessmodel.Pair, rec eventlog.Record) (ins []*row, gone []int64) {
	facts := p.model.Facts(pair)
	var want []refSegment
	for _, s := range refTimeline(&facts) {
		k := refSegment{seg: s, key: keptRow{Permissions: int64(s.Permissions), Reason: string(s.Reason), ValidFrom: s.From.UnixMicro()}}
		if ref, ok := p.model.Opener(pair, &facts, s); ok {
			k.opener, k.opened, k.key.Opened = ref, true, ref.ID
		}
		if !s.To.IsZero() {
			k.key.ValidTo = sql.NullInt64{Int64: s.To.UnixMicro(), Valid: true}
			if ref, ok := p.model.Source(pair, s.To); ok {
				k.closer, k.closed, k.key.Closed = ref, true, ref.ID
			}
		}
		want = append(want, k)
	}
	old := p.rows[pair]
	var keep []keptRow
	used := make([]bool, len(want))
	for i := range old {
		o := &old[i]
		matched := false
		for j := range want {
			if !used[j] && o.same(&want[j].key) {
				used[j], matched = true, true
				keep = append(keep, *o)
				break
			}
		}
		if !matched {
			gone = append(gone, o.ID)
		}
	}
	for i := range want {
		if used[i] {
			continue
		}
		k := want[i]
		r := &row{Permissions: k.key.Permissions, Reason: k.key.Reason, ValidFrom: k.key.ValidFrom, ValidTo: k.key.ValidTo}
		r.AccountID, r.ChildID = pair.Account.String(), pair.Child.String()
		r.RecordedID, r.RecordedC, r.RecordedP = rec.ID.String(), int64(rec.Position.Commit), int64(rec.Position.Prepare)
		if k.opened {
			r.OpenedID, r.OpenedType, r.OpenedActor, r.OpenedRole, r.OpenedC, r.OpenedP = refCols(k.opener)
			if g, ok := p.model.GraceOf(k.opener.ID); ok && k.seg.Reason == domain.ReasonGracePeriod {
				r.GraceSeconds = sql.NullInt64{Int64: int64(g.Period / time.Second), Valid: true}
				if g.Policy != nil {
					r.GracePolicyID = sql.NullString{String: g.Policy.ID.String(), Valid: true}
					r.GracePolicyC = sql.NullInt64{Int64: int64(g.Policy.Position.Commit), Valid: true}
					r.GracePolicyP = sql.NullInt64{Int64: int64(g.Policy.Position.Prepare), Valid: true}
				}
			}
		}
		if k.closed {
			r.ClosedID, r.ClosedType, r.ClosedActor, r.ClosedRole, r.ClosedC, r.ClosedP = refCols(k.closer)
		}
		r.ID = p.nextID
		p.nextID++
		ins = append(ins, r)
		kk := k.key
		kk.ID = r.ID
		keep = append(keep, kk)
	}
	if len(keep) == 0 {
		delete(p.rows, pair)
	} else {
		p.rows[pair] = keep
	}
	return ins, gone
}
