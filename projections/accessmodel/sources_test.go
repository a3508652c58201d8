package accessmodel

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
)

// refSource is Model.Source as it was before Sources: the pair's and the
// account's provenance looked up for each question, the events copied
// whole.
func refSource(m *Model, p Pair, t time.Time) (EventRef, bool) {
	k := t.UnixMicro()
	a, aok := m.prov[p].find(k)
	b, bok := m.acctProv[p.Account].find(k)
	switch {
	case aok && bok:
		if m.refs[a].pos.Before(m.refs[b].pos) {
			return m.eventRef(b), true
		}
		return m.eventRef(a), true
	case aok:
		return m.eventRef(a), true
	case bok:
		return m.eventRef(b), true
	}
	return EventRef{}, false
}

// refOpener is Model.Opener as it was before Sources.
func refOpener(m *Model, p Pair, f *Facts, s Segment) (EventRef, bool) {
	ref, ok := refSource(m, p, s.From)
	var start time.Time
	switch s.Reason {
	case domain.ReasonPlacement:
		for _, pl := range f.Placements {
			if !s.From.Before(pl.Start) && (pl.End.IsZero() || s.From.Before(pl.End)) && pl.Start.After(start) {
				start = pl.Start
			}
		}
	case domain.ReasonGrant:
		for _, g := range f.Grants {
			if !s.From.Before(g.From) && (g.To.IsZero() || s.From.Before(g.To)) && g.From.After(start) {
				start = g.From
			}
		}
	}
	if start.IsZero() || start.Equal(s.From) {
		return ref, ok
	}
	if src, found := refSource(m, p, start); found && (!ok || ref.Position.Before(src.Position)) {
		return src, true
	}
	return ref, ok
}

// TestSourcesMatchTheirReference folds a generated history and, after
// every record, asks each pair it names the questions the access history
// asks (the opener of every segment, the source of every fact time and of
// every segment's end) through Sources and through the reference
// implementations above, and requires the same events; FactsInto, with
// room reused from pair to pair, must give the facts Facts gives.
func TestSourcesMatchTheirReference(t *testing.T) {
	tests := []struct {
		name  string
		scale datagen.Scale
	}{
		{name: "small", scale: datagen.Small},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			var reused Facts
			var seq uint64
			var questions, found int
			_, err := datagen.Generate(context.Background(), tt.scale, datagen.SinkFunc(func(_ context.Context, batch []datagen.Append) error {
				for _, a := range batch {
					base, _ := a.Expected.Version()
					for i, e := range a.Events {
						seq++
						res, err := m.Apply(eventlog.Record{ID: e.ID, Stream: a.Stream, Version: base + uint64(i) + 1,
							Position: eventlog.At(seq), Type: e.Type, Data: e.Data, Meta: e.Meta})
						require.NoError(t, err)
						for _, p := range res.Pairs {
							f := m.Facts(p)
							m.FactsInto(p, &reused)
							require.Equal(t, f.Account, reused.Account)
							require.Equal(t, len(f.Placements), len(reused.Placements))
							require.Equal(t, len(f.Grants), len(reused.Grants))
							if len(f.Placements) > 0 {
								require.Equal(t, f.Placements, reused.Placements)
							}
							if len(f.Grants) > 0 {
								require.Equal(t, f.Grants, reused.Grants)
							}
							src := m.SourcesOf(p)
							ask := func(at time.Time) {
								want, wok := refSource(m, p, at)
								r, ok := src.Source(at)
								require.Equal(t, wok, ok, "source of %s", at)
								require.Equal(t, want, m.EventRef(r), "source of %s", at)
								require.Equal(t, want.ID, src.ID(r))
								questions++
								if ok {
									found++
								}
							}
							for _, at := range f.breakpoints(nil) {
								ask(at)
							}
							for _, s := range f.Timeline() {
								want, wok := refOpener(m, p, &f, s)
								r, ok := src.Opener(&f, s)
								require.Equal(t, wok, ok, "opener of %+v", s)
								require.Equal(t, want, m.EventRef(r), "opener of %+v", s)
								if !s.To.IsZero() {
									ask(s.To)
								}
							}
						}
					}
				}
				return nil
			}), datagen.Options{Seed: 1})
			require.NoError(t, err)
			require.NotZero(t, found)
			t.Logf("%d source questions, %d answered", questions, found)
		})
	}
}
