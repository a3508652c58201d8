package commands_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// wholeCounting is countingStore with the SQL store's whole-stream bulk
// read (its records of children's streams counted too) and batch append,
// but not its reads of streams' ends: a store FireDeadlines reads whole
// streams from.
type wholeCounting struct {
	*countingStore
	sql interface {
		eventlog.StreamsReader
		eventlog.StreamTailsReader
		eventlog.BatchAppender
	}
}

func (s wholeCounting) ReadStreams(ctx context.Context, streams []string) (map[string][]eventlog.Record, error) {
	got, err := s.sql.ReadStreams(ctx, streams)
	s.countChildren(got)
	return got, err
}

func (s wholeCounting) AppendBatch(ctx context.Context, batch []eventlog.StreamAppend) ([]eventlog.AppendResult, error) {
	return s.sql.AppendBatch(ctx, batch)
}

func (s *countingStore) countChildren(got map[string][]eventlog.Record) {
	for stream, recs := range got {
		if strings.HasPrefix(stream, "child-") {
			s.childRecords.Add(int64(len(recs)))
		}
	}
}

// tailCounting is wholeCounting with the reads of streams' ends, counted.
type tailCounting struct{ wholeCounting }

func (s tailCounting) ReadStreamsFrom(ctx context.Context, from []eventlog.StreamFrom) (map[string][]eventlog.Record, error) {
	got, err := s.sql.ReadStreamsFrom(ctx, from)
	s.countChildren(got)
	return got, err
}

// keptStateStores are the ways FireDeadlines reads a batch's streams:
// each stream's end alone (the in-memory log: ReadStream from the kept
// version), the ends of all in one statement (the SQL stores), and whole
// streams in one statement (a store without ReadStreamsFrom). wholeRead
// tells whether the batch reads a child's whole stream though its state is
// kept.
var keptStateStores = []struct {
	name      string
	url       func(testing.TB) string
	wrap      func(s commands.Store, counted *countingStore) commands.Store
	wholeRead bool
}{
	{"memory, ends one by one", func(testing.TB) string { return memory },
		func(_ commands.Store, c *countingStore) commands.Store { return c }, false},
	{"sqlite, ends in one statement", sqltest.SQLiteFile, func(s commands.Store, c *countingStore) commands.Store {
		return tailCounting{wholeCounting{countingStore: c, sql: s.(wholeCounting).sql}}
	}, false},
	{"sqlite, whole streams in one statement", sqltest.SQLiteFile, func(s commands.Store, c *countingStore) commands.Store {
		return s
	}, true},
	{"postgres, ends in one statement", sqltest.Postgres, func(s commands.Store, c *countingStore) commands.Store {
		return tailCounting{wholeCounting{countingStore: c, sql: s.(wholeCounting).sql}}
	}, false},
}

// newKeptEnv is newEnv whose service's store counts the records of
// children's streams it reads, in the way tt names.
func newKeptEnv(t *testing.T, url string, wrap func(commands.Store, *countingStore) commands.Store, opts ...option) (*env, *countingStore) {
	t.Helper()
	var counted *countingStore
	opts = append(opts, withStore(func(s commands.Store) commands.Store {
		counted = &countingStore{Store: s}
		if sql, ok := s.(interface {
			eventlog.StreamsReader
			eventlog.StreamTailsReader
			eventlog.BatchAppender
		}); ok {
			return wrap(wholeCounting{countingStore: counted, sql: sql}, counted)
		}
		return wrap(s, counted)
	}))
	e := newEnv(t, url, opts...)
	return e, counted
}

// TestFireDeadlinesOnKeptState: a batch decides on the child's state the
// service kept and reads only the events appended since (on a store that
// reads ends), by this replica or another: another replica's end of the
// placement makes the expiry due, where the kept state alone would refuse
// it. A deadline not yet due is refused and appends nothing; the batch
// keeps the state it loaded, so the next command reads only the batch's
// own expiry; a repeated batch finds its expiry and appends nothing.
func TestFireDeadlinesOnKeptState(t *testing.T) {
	for _, tt := range keptStateStores {
		t.Run(tt.name, func(t *testing.T) {
			e, counted := newKeptEnv(t, tt.url(t), tt.wrap)
			ctx := context.Background()
			other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)

			w := e.worker()
			child := e.child(t, w)
			carer, member := e.active(t, domain.KindFosterCarer), e.active(t, domain.KindParent)
			for range 8 {
				e.grant(t, w, child, member.id)
				_, err := e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: member.id, Reason: "ended"})
				require.NoError(t, err)
			}
			p := e.place(t, w, child, carer.id, t0.Add(-30*day)) // this replica keeps the child as loaded before the placement
			_, err = other.EndPlacement(ctx, as(w), commands.EndPlacement{ChildID: child, PlacementID: p, EndedAt: t0, Reason: "moved on"})
			require.NoError(t, err)
			length := int64(len(e.stream(t, domain.ChildStream(child))))
			batch := []commands.DeadlineCommand{{Meta: system("deadline/grace/" + p.String() + "/1"),
				Command: commands.ExpireCarerAccess{ChildID: child, PlacementID: p}}}
			wantRead := func(tail int64) int64 {
				if tt.wholeRead {
					return length
				}
				return tail
			}

			// Not due yet: refused, nothing appended.
			e.clock.Set(t0.Add(6 * day))
			head, refusals := e.head(t), len(e.refusals.All())
			counted.childRecords.Store(0)
			outs := e.svc.FireDeadlines(ctx, batch)
			require.ErrorIs(t, outs[0].Err, domain.ErrNotDue, "the other replica's end was read")
			require.Empty(t, outs[0].Events)
			require.Equal(t, head, e.head(t), "a refused deadline appends nothing")
			require.Len(t, e.refusals.All(), refusals+1)
			require.Equal(t, wantRead(2), counted.childRecords.Load(), "this replica's placement (kept as loaded before it) and the other's end")

			// Due: appended once.
			e.clock.Set(t0.Add(8 * day))
			counted.childRecords.Store(0)
			outs = e.svc.FireDeadlines(ctx, batch)
			require.NoError(t, outs[0].Err)
			require.Len(t, outs[0].Events, 1)
			g, ok := outs[0].Events[0].Event.(*domain.GraceExpired)
			require.True(t, ok)
			require.Equal(t, p, g.PlacementID)
			require.Equal(t, uint64(length+1), outs[0].Events[0].StreamVersion)
			require.Equal(t, map[uuid.UUID]int{p: 1}, e.graceExpired(t))
			require.Equal(t, wantRead(0), counted.childRecords.Load(), "nothing new since the refusal's load")

			// The batch kept the state it loaded: the next command reads
			// the expiry alone, and sees it (nothing to expire).
			counted.childRecords.Store(0)
			head = e.head(t)
			_, err = e.svc.ExpireCarerAccess(ctx, system("another key"), commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
			require.NoError(t, err)
			require.Equal(t, int64(1), counted.childRecords.Load())
			require.Equal(t, head, e.head(t))

			// Repeated: the kept stream holds its event, so the batch
			// reads the whole stream, finds it and appends nothing.
			head = e.head(t)
			again := e.svc.FireDeadlines(ctx, batch)
			require.NoError(t, again[0].Err)
			require.Len(t, again[0].Events, 1)
			require.Equal(t, outs[0].Events[0].EventID, again[0].Events[0].EventID)
			require.Equal(t, outs[0].Result, again[0].Result)
			require.Equal(t, head, e.head(t))
			require.Equal(t, map[uuid.UUID]int{p: 1}, e.graceExpired(t))
		})
	}
}

// TestFireDeadlinesDoesNotKeepAnErasedChild: a batch that reads a child's
// erasure (another replica's) decides on it as the single command does and
// does not keep the erased child's state: the next batch on the child
// reads its whole stream again.
func TestFireDeadlinesDoesNotKeepAnErasedChild(t *testing.T) {
	for _, tt := range keptStateStores {
		t.Run(tt.name, func(t *testing.T) {
			e, counted := newKeptEnv(t, tt.url(t), tt.wrap)
			ctx := context.Background()
			other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler),
				Eraser: &recordingEraser{}})
			require.NoError(t, err)

			w := e.worker()
			child := e.child(t, w)
			carerA, carerB := e.active(t, domain.KindFosterCarer), e.active(t, domain.KindFosterCarer)
			pA := e.place(t, w, child, carerA.id, t0.Add(-30*day))
			pB := e.place(t, w, child, carerB.id, t0.Add(-30*day))
			e.end(t, w, child, pA, t0)
			e.end(t, w, child, pB, t0.Add(day)) // this replica keeps the child as loaded before this end
			_, err = other.EraseChild(ctx, as(e.actor(domain.RoleDPO)), commands.EraseChild{ChildID: child, Reason: "Art. 17 request"})
			require.NoError(t, err)
			e.clock.Set(t0.Add(9 * day))

			counted.childRecords.Store(0)
			outs := e.svc.FireDeadlines(ctx, []commands.DeadlineCommand{{Meta: system("deadline/grace/" + pA.String() + "/1"),
				Command: commands.ExpireCarerAccess{ChildID: child, PlacementID: pA}}})
			require.NoError(t, outs[0].Err)
			require.Len(t, outs[0].Events, 1, "an erased child's carer still loses access")
			length := int64(len(e.stream(t, domain.ChildStream(child))))
			if tt.wholeRead {
				require.Equal(t, length-1, counted.childRecords.Load())
			} else {
				require.Equal(t, int64(2), counted.childRecords.Load(), "this replica's end of pB and the other's erasure")
			}

			counted.childRecords.Store(0)
			outs = e.svc.FireDeadlines(ctx, []commands.DeadlineCommand{{Meta: system("deadline/grace/" + pB.String() + "/1"),
				Command: commands.ExpireCarerAccess{ChildID: child, PlacementID: pB}}})
			require.NoError(t, outs[0].Err)
			require.Len(t, outs[0].Events, 1)
			require.Equal(t, length, counted.childRecords.Load(), "the erased child was not kept: its whole stream read")
		})
	}
}

// TestFireDeadlinesDoesNotAddChildrenItReadWhole: a batch on a child the
// service does not keep reads its whole stream and does not keep it (a
// burst of deadlines must not push out the children commands work on):
// the next batch on it reads the whole stream again; a command keeps it.
func TestFireDeadlinesDoesNotAddChildrenItReadWhole(t *testing.T) {
	for _, tt := range keptStateStores {
		t.Run(tt.name, func(t *testing.T) {
			e, counted := newKeptEnv(t, tt.url(t), tt.wrap)
			ctx := context.Background()
			other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)

			w := e.worker()
			r, err := other.RegisterChild(ctx, as(w), commands.RegisterChild{Reference: e.uniq("C")})
			require.NoError(t, err)
			child := r.ChildID
			carerA, carerB := e.active(t, domain.KindFosterCarer), e.active(t, domain.KindFosterCarer)
			var ps []uuid.UUID
			for _, carer := range []uuid.UUID{carerA.id, carerB.id} {
				placed, err := other.StartPlacement(ctx, as(w), commands.StartPlacement{ChildID: child, CarerAccountID: carer, StartedAt: t0.Add(-30 * day)})
				require.NoError(t, err)
				_, err = other.EndPlacement(ctx, as(w), commands.EndPlacement{ChildID: child, PlacementID: placed.PlacementID, EndedAt: t0, Reason: "moved on"})
				require.NoError(t, err)
				ps = append(ps, placed.PlacementID)
			}
			e.clock.Set(t0.Add(8 * day))
			fire := func(p uuid.UUID, attempt string, events int) {
				t.Helper()
				outs := e.svc.FireDeadlines(ctx, []commands.DeadlineCommand{{Meta: system("deadline/grace/" + p.String() + "/" + attempt),
					Command: commands.ExpireCarerAccess{ChildID: child, PlacementID: p}}})
				require.NoError(t, outs[0].Err)
				require.Len(t, outs[0].Events, events)
			}

			length := int64(len(e.stream(t, domain.ChildStream(child))))
			counted.childRecords.Store(0)
			fire(ps[0], "1", 1)
			require.Equal(t, length, counted.childRecords.Load(), "not kept: the whole stream")
			counted.childRecords.Store(0)
			fire(ps[1], "1", 1)
			require.Equal(t, length+1, counted.childRecords.Load(), "still not kept: the whole stream again")

			counted.childRecords.Store(0)
			_, err = e.svc.ExpireCarerAccess(ctx, system("another key"), commands.ExpireCarerAccess{ChildID: child, PlacementID: ps[1]})
			require.NoError(t, err)
			require.Equal(t, length+2, counted.childRecords.Load(), "a command reads the whole stream and keeps it")
			counted.childRecords.Store(0)
			fire(ps[1], "2", 0) // expired already: nothing to do
			require.Equal(t, wantTail(tt.wholeRead, length+2, 0), counted.childRecords.Load(), "kept now: nothing new")
		})
	}
}

// wantTail is the records a batch reads of a kept child's stream of length
// events, tail of them new: the tail, or the whole stream on a store that
// reads whole streams.
func wantTail(wholeRead bool, length, tail int64) int64 {
	if wholeRead {
		return length
	}
	return tail
}
