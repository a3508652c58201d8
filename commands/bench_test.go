package commands_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/projtest"
)

// The command benchmarks run a command through commands.Service end to end
// (meta checks, loading the streams it decides on, the domain's decision,
// encoding and appending the events) on the SQL event store: SQLite in
// memory (the cost of the code) and an SQLite file (the embedded default:
// WAL, synchronous=FULL, an fsync on every commit).
//
// Every operation acts on a child of its own, made before the timer starts
// with the same short history (registered, one placement, one grant), so
// that ns/op does not drift with the number of operations as a child's
// stream grows: the figure is a command on a child with a typical short
// stream. The children are written to the store with
// sqlstore.AppendBatch, many per transaction, so that making them costs
// little next to the commands measured.
//
// run=seq is one client; run=parallel is b.RunParallel with 4 clients per
// GOMAXPROCS (8 on a 2-core machine, the load tool's concurrency): SQLite
// takes one appender at a time, so it shows what queueing for the writer
// does to the throughput.

var benchStores = []sqltest.Backend{
	{Name: "sqlite-memory", URL: sqltest.SQLiteMemory},
	{Name: "sqlite-file", URL: sqltest.SQLiteFile},
}

// benchParallelism is the clients per GOMAXPROCS of run=parallel.
const benchParallelism = 4

// noRefusals fails the benchmark on a refusal: every command of the
// benchmarks must be accepted.
type noRefusals struct{ n atomic.Int64 }

func (r *noRefusals) RecordRefusal(context.Context, commands.Refusal) error {
	r.n.Add(1)
	return nil
}

// cmdFixture is a Service on a migrated store holding carers and network
// members, and the World that wrote them, which makes the fresh children.
type cmdFixture struct {
	store    *sqlstore.Store
	svc      *commands.Service
	refusals *noRefusals
	w        *projtest.World
	carers   []uuid.UUID
	members  []uuid.UUID
	now      time.Time // the service's clock: fixed
	written  int       // records of w already in the store
	made     int       // children made
}

// newCmdFixture opens the store of url, writes 32 carers and 32 network
// members, and returns the fixture. It is built in the parent of the
// run=seq and run=parallel benchmarks, whose function runs once per round.
func newCmdFixture(b *testing.B, url string) *cmdFixture {
	ctx := context.Background()
	db := sqltest.Open(b, url)
	require.NoError(b, sqlstore.Migrate(ctx, db))
	st, err := sqlstore.New(ctx, db)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, st.Close()) })

	w := projtest.New(b.Fatalf)
	f := &cmdFixture{store: st, refusals: &noRefusals{}, w: w}
	for range 32 {
		f.carers = append(f.carers, w.Carer())
		f.members = append(f.members, w.Member())
	}
	w.Advance(30 * 24 * time.Hour)
	f.now = w.Now.Add(time.Hour)
	f.svc, err = commands.New(st, f.refusals, commands.Config{
		Clock:  func() time.Time { return f.now },
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(b, err)
	f.flush(b)
	return f
}

// flush appends the World's records not yet in the store, stream by stream
// (each a new stream), in transactions of up to 1,000 appends.
func (f *cmdFixture) flush(b *testing.B) {
	recs := f.w.Records[f.written:]
	var batch []sqlstore.StreamAppend
	at := map[string]int{}
	for _, r := range recs {
		i, ok := at[r.Stream]
		if !ok {
			i = len(batch)
			at[r.Stream] = i
			batch = append(batch, sqlstore.StreamAppend{Stream: r.Stream, Expected: eventlog.NoStream})
		}
		batch[i].Events = append(batch[i].Events, eventlog.EventData{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta})
	}
	for len(batch) > 0 {
		n := min(len(batch), 1000)
		_, err := f.store.AppendBatch(context.Background(), batch[:n])
		require.NoError(b, err)
		batch = batch[n:]
	}
	f.written = len(f.w.Records)
}

// child is one fresh child and the accounts its operation uses.
type child struct {
	id     uuid.UUID
	carer  uuid.UUID // placed with the child (Grant), or to place (PlaceAndEnd)
	member uuid.UUID // to grant (Grant), or granted (PlaceAndEnd)
}

// children makes n fresh children, each registered, placed with a carer
// and with a grant to a network member, and writes them to the store.
// place is the carer the operation will place the child with (PlaceAndEnd):
// the child's existing placement is with another.
func (f *cmdFixture) children(b *testing.B, n int) []child {
	out := make([]child, n)
	started := f.w.Now.Add(-20 * 24 * time.Hour)
	for i := range out {
		k := f.made + i
		c := child{id: f.w.RegisterChild(), carer: f.carers[k%len(f.carers)], member: f.members[k%len(f.members)]}
		f.w.Place(c.id, f.carers[(k+1)%len(f.carers)], started)
		f.w.Grant(c.id, f.members[(k+1)%len(f.members)], domain.PermView)
		out[i] = c
	}
	f.made += n
	f.flush(b)
	return out
}

// benchCommand runs op on fresh children, per store, sequentially and in
// parallel; op does one operation on its child and returns its error.
func benchCommand(b *testing.B, op func(ctx context.Context, f *cmdFixture, c child) error) {
	for _, be := range benchStores {
		b.Run("store="+be.Name, func(b *testing.B) {
			f := newCmdFixture(b, be.URL(b))
			check := func(b *testing.B) {
				require.Zero(b, f.refusals.n.Load(), "refused commands")
			}
			b.Run("run=seq", func(b *testing.B) {
				cs := f.children(b, b.N)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if err := op(ctx, f, cs[i]); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				check(b)
			})
			b.Run("run=parallel", func(b *testing.B) {
				cs := f.children(b, b.N)
				ctx := context.Background()
				var next atomic.Int64
				b.SetParallelism(benchParallelism)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op(ctx, f, cs[next.Add(1)-1]); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				check(b)
			})
		})
	}
}

var benchWorker = commands.Meta{Actor: projtest.Worker, RequestID: "bench"}

// BenchmarkGrant is one Grant (view) to a network member on a child with a
// placement and another grant: it loads the child's stream (3 events) and
// the member's account (2 events) and appends one event.
func BenchmarkGrant(b *testing.B) {
	benchCommand(b, func(ctx context.Context, f *cmdFixture, c child) error {
		_, err := f.svc.Grant(ctx, benchWorker, commands.Grant{ChildID: c.id, AccountID: c.member,
			Relationship: string(domain.RelNetworkMember), Permissions: []string{domain.PermView},
			Reason: "bench: contact agreed at review"})
		return err
	})
}

// BenchmarkPlaceAndEnd is two commands: StartPlacement of the child with a
// carer (loads the child's 3 events and the carer's 2, appends one), then
// EndPlacement of that placement (loads the child's 4 events, appends one
// PlacementEnded with its grace deadline). ns/op is for both.
func BenchmarkPlaceAndEnd(b *testing.B) {
	benchCommand(b, func(ctx context.Context, f *cmdFixture, c child) error {
		p, err := f.svc.StartPlacement(ctx, benchWorker, commands.StartPlacement{ChildID: c.id,
			CarerAccountID: c.carer, StartedAt: f.now.Add(-24 * time.Hour)})
		if err != nil {
			return err
		}
		_, err = f.svc.EndPlacement(ctx, benchWorker, commands.EndPlacement{ChildID: c.id,
			PlacementID: p.PlacementID, EndedAt: f.now, Reason: "bench: placement ended"})
		return err
	})
}
