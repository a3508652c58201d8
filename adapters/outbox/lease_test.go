package outbox_test

import (
	"context"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// leaseTTL is the lease of the tests' publishers. The lease's times come
// from a manualClock that only the test moves, so no lease runs out by
// itself however slow the machine: the real-time ttl only sets how often
// holders renew and standbys try (ttl/3).
const leaseTTL = 300 * time.Millisecond

// manualClock is a clock that only moves when the test advances it.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *manualClock { return &manualClock{now: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logRecorder is a slog.Handler that keeps the records logged.
type logRecorder struct {
	mu   *sync.Mutex
	recs *[]logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogRecorder() logRecorder { return logRecorder{mu: new(sync.Mutex), recs: new([]logRecord)} }

func (h logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h logRecorder) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, logRecord{level: r.Level, msg: r.Message, attrs: attrs})
	return nil
}

func (h logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns how many records satisfy ok.
func (h logRecorder) count(ok func(logRecord) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range *h.recs {
		if ok(r) {
			n++
		}
	}
	return n
}

// forEachDB runs f on a fresh event store and read store on an SQLite file
// and on PostgreSQL (skipped when its variable is unset); url opens a second
// handle on the same database.
func forEachDB(t *testing.T, f func(t *testing.T, e env, url string)) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			url := st.url(t)
			f(t, openEnv(t, url), url)
		})
	}
}

func leasedRelay(e env, db bun.IDB, pub message.Publisher, owner string, clk *manualClock, opts ...outbox.Option) *outbox.Relay {
	return outbox.NewRelay(e.store, db, pub, append([]outbox.Option{outbox.WithLease(owner, leaseTTL), outbox.WithClock(clk.Now),
		outbox.WithBatch(10, 20*time.Millisecond), outbox.WithPageSize(50), outbox.WithBackoff(time.Millisecond, 20*time.Millisecond)}, opts...)...)
}

func relayStatus(t *testing.T, r *outbox.Relay) outbox.Status {
	t.Helper()
	st, err := r.Status(context.Background())
	require.NoError(t, err)
	return st
}

// waitStatus waits until r's status satisfies ok.
func waitStatus(t *testing.T, r *outbox.Relay, ok func(outbox.Status) bool, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return ok(relayStatus(t, r)) }, timeout, 5*time.Millisecond, msg)
}

func holding(st outbox.Status) bool { return st.Holding }

// waitPublished waits until pub published at least n messages.
func waitPublished(t *testing.T, pub *recordingPublisher, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(pub.published()) >= n }, timeout, 5*time.Millisecond,
		"%d messages published", n)
}

// inOrder checks that uuids are events of recs, each once, in log order,
// and returns their positions.
func inOrder(t *testing.T, recs []eventlog.Record, uuids []string) []eventlog.Position {
	t.Helper()
	var last eventlog.Position
	out := make([]eventlog.Position, len(uuids))
	for i, id := range uuids {
		pos := position(t, recs, id)
		require.True(t, last.Before(pos), "message %d (%s, at %s) after %s: in order, none twice", i, id, pos, last)
		last, out[i] = pos, pos
	}
	return out
}

func ids(recs []eventlog.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID.String()
	}
	return out
}

// runUntilCancelled runs r.Run(ctx) and returns a channel with its result.
func runUntilCancelled(ctx context.Context, r interface{ Run(context.Context) error }) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return done
}

// 1. Two relays with a lease on the same read store and log: one publishes
// everything exactly once, the other stands by and publishes nothing; their
// statuses and the row say who holds the lease.
func TestLeaseOnePublisherAtATime(t *testing.T) {
	recs := bustest.History(t, 200)
	forEachDB(t, func(t *testing.T, e env, _ string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:100]))
		clk := newClock() // shared, standing still: no lease runs out
		pubs := map[string]*recordingPublisher{"a": {}, "b": {}}
		relays := map[string]*outbox.Relay{}
		for owner, pub := range pubs {
			relays[owner] = leasedRelay(e, e.db, pub, owner, clk)
		}
		st := relayStatus(t, relays["a"])
		require.Equal(t, "a", st.Lease)
		require.False(t, st.Holding)
		for _, r := range relays {
			run(t, ctx, r)
		}

		var holder, standby string
		require.Eventually(t, func() bool {
			for owner, r := range relays {
				if relayStatus(t, r).Holding {
					holder = owner
					return true
				}
			}
			return false
		}, timeout, 5*time.Millisecond, "one takes the lease")
		standby = map[string]string{"a": "b", "b": "a"}[holder]
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[100:]))
		waitPublished(t, pubs[holder], len(recs))
		require.Equal(t, ids(recs), pubs[holder].published(), "every event once, in order, by the holder")

		waitStatus(t, relays[holder], func(st outbox.Status) bool { return st.Checkpoint == recs[len(recs)-1].Position },
			"the holder writes its checkpoint")
		waitStatus(t, relays[standby], func(st outbox.Status) bool { return st.LeaseOwner == holder },
			"the standby read who holds the lease")
		require.Empty(t, pubs[standby].published(), "the standby published nothing")

		hs, ss := relayStatus(t, relays[holder]), relayStatus(t, relays[standby])
		require.True(t, hs.Running)
		require.True(t, hs.Holding)
		require.Equal(t, holder, hs.Lease)
		require.Equal(t, holder, hs.LeaseOwner)
		require.True(t, hs.LeaseUntil.Equal(clk.Now().Add(leaseTTL)), "until %s", hs.LeaseUntil)
		require.True(t, ss.Running)
		require.False(t, ss.Holding)
		require.Equal(t, standby, ss.Lease)
		require.True(t, ss.LeaseUntil.Equal(clk.Now().Add(leaseTTL)))
		require.Equal(t, uint64(len(recs)), hs.Published)
		require.Zero(t, ss.Published)

		owner, until, err := outbox.NewCheckpoints(e.db).Lease(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.Equal(t, holder, owner)
		require.True(t, until.Equal(clk.Now().Add(leaseTTL)))
	})
}

// 2. The holder stopped cleanly (its context ends mid-stream) writes its
// last checkpoint and releases the lease; the standby takes it over at its
// next try (the clock stands still: the lease could never run out) and
// continues right after the last event the holder published: every event
// once in all, in order per publisher.
func TestLeaseHandOverOnCleanStop(t *testing.T) {
	recs := bustest.History(t, 300)
	forEachDB(t, func(t *testing.T, e env, _ string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:200]))
		clk := newClock()
		cps := outbox.NewCheckpoints(e.db)

		ctxA, stopA := context.WithCancel(ctx)
		defer stopA()
		// a is stopped after 120 events; it publishes once b stands by.
		pubA := &recordingPublisher{after: 120, cancel: stopA, gate: make(chan struct{})}
		a := leasedRelay(e, e.db, pubA, "a", clk)
		doneA := runUntilCancelled(ctxA, a)
		waitStatus(t, a, holding, "a takes the free lease")
		pubB := &recordingPublisher{}
		b := leasedRelay(e, e.db, pubB, "b", clk)
		run(t, ctx, b)
		waitStatus(t, b, func(st outbox.Status) bool { return st.LeaseOwner == "a" }, "b stands by")
		close(pubA.gate)

		select {
		case err := <-doneA:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(timeout):
			t.Fatal("a's Run did not return")
		}
		first := inOrder(t, recs, pubA.published())
		require.GreaterOrEqual(t, len(first), 120)
		require.Less(t, len(first), 200, "stopped mid-stream")
		st := relayStatus(t, a)
		require.False(t, st.Running)
		require.False(t, st.Holding)
		require.Equal(t, first[len(first)-1], st.Checkpoint, "last checkpoint written on stop")

		waitStatus(t, b, holding, "b takes the released lease")
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[200:]))
		waitPublished(t, pubB, len(recs)-len(first))
		second := inOrder(t, recs, pubB.published())
		require.Equal(t, ids(recs), append(pubA.published(), pubB.published()...),
			"b continues right after a: every event once, in order")
		require.Equal(t, eventlog.At(first[len(first)-1].Commit+1), second[0])

		owner, _, err := cps.Lease(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.Equal(t, "b", owner)
	})
}

// 3. The holder's lease runs out and the standby takes it over after ttl
// by its own clock: the old holder notices (its next write finds the row
// under another owner, or it could not renew before the lease ran out by
// its own clock), stops publishing and stands by; what comes after is
// published by the new holder only.
func TestLeaseExpiry(t *testing.T) {
	recs := bustest.History(t, 200)
	tests := []struct {
		name string
		// away makes a's renewals fail (or not), given its clock and its
		// own handle on the read store.
		away func(t *testing.T, clkA *manualClock, dbA *sqldb.DB)
		// lostBecause is in the error of a's warning once it noticed.
		lostBecause string
	}{
		{
			// a's clock stands still: its renewals keep writing the same
			// lease_until, which b's clock passes.
			name:        "taken over",
			away:        func(*testing.T, *manualClock, *sqldb.DB) {},
			lostBecause: outbox.ErrLeaseLost.Error(),
		},
		{
			// a's database goes away; its renewals fail until the lease
			// runs out by its own clock.
			name: "database away",
			away: func(t *testing.T, clkA *manualClock, dbA *sqldb.DB) {
				require.NoError(t, dbA.Close())
				clkA.Advance(2 * leaseTTL)
			},
			lostBecause: "lease not renewed before it ran out",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachDB(t, func(t *testing.T, e env, url string) {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				dbA, err := sqldb.Open(ctx, url)
				require.NoError(t, err)
				t.Cleanup(func() { _ = dbA.Close() })
				require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:100]))
				clkA, clkB := newClock(), newClock()

				pubA, pubB := &recordingPublisher{}, &recordingPublisher{}
				logA := newLogRecorder()
				a := leasedRelay(e, dbA, pubA, "a", clkA, outbox.WithLogger(slog.New(logA)))
				run(t, ctx, a)
				waitStatus(t, a, holding, "a takes the free lease")
				b := leasedRelay(e, e.db, pubB, "b", clkB)
				run(t, ctx, b)
				waitPublished(t, pubA, 100)
				waitStatus(t, a, func(st outbox.Status) bool { return st.Checkpoint == recs[99].Position }, "a's checkpoint")
				waitStatus(t, b, func(st outbox.Status) bool { return st.LeaseOwner == "a" }, "b stands by")

				tt.away(t, clkA, dbA)
				clkB.Advance(leaseTTL + time.Microsecond) // a's lease ran out by b's clock
				waitStatus(t, b, holding, "b takes the lease that ran out")
				lost := func(r logRecord) bool { return r.level == slog.LevelWarn && strings.Contains(r.msg, "lease lost") }
				require.Eventually(t, func() bool { return logA.count(lost) > 0 }, timeout, 5*time.Millisecond, "a notices and warns")
				require.Equal(t, 1, logA.count(func(r logRecord) bool { return lost(r) && strings.Contains(r.attrs["error"], tt.lostBecause) }),
					"a warned once, saying why it stopped")
				st := relayStatus(t, a)
				require.False(t, st.Holding, "a stopped publishing")
				require.True(t, st.Running, "a stands by")

				require.NoError(t, bustest.AppendAll(ctx, e.store, recs[100:]))
				waitPublished(t, pubB, len(recs)-100)
				require.Equal(t, ids(recs[100:]), pubB.published(), "b resumes from a's checkpoint")
				require.Equal(t, ids(recs[:100]), pubA.published(), "a published nothing after it noticed")
				st = relayStatus(t, b)
				require.Equal(t, "b", st.LeaseOwner)
				require.True(t, st.LeaseUntil.Equal(clkB.Now().Add(leaseTTL)))
			})
		})
	}
}

// A holder whose Publish does not return for a whole lease (a bus or a
// consumer that hangs) gives the lease up instead of renewing it for ever,
// so that another replica publishes; the call in flight may still go
// through (at least once), nothing after it does.
func TestLeaseGivenUpWhenPublishHangs(t *testing.T) {
	recs := bustest.History(t, 60)
	forEachDB(t, func(t *testing.T, e env, url string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs))
		clkA, clkB := newClock(), newClock()
		gate := make(chan struct{})
		pubA, pubB := &recordingPublisher{gate: gate, entered: make(chan struct{}, 1)}, &recordingPublisher{}
		logA := newLogRecorder()
		a := leasedRelay(e, e.db, pubA, "a", clkA, outbox.WithLogger(slog.New(logA)))
		run(t, ctx, a)
		var release sync.Once
		t.Cleanup(func() { release.Do(func() { close(gate) }) }) // before a is stopped
		waitStatus(t, a, holding, "a takes the free lease")
		b := leasedRelay(e, e.db, pubB, "b", clkB)
		run(t, ctx, b)
		waitStatus(t, b, func(st outbox.Status) bool { return st.LeaseOwner == "a" }, "b stands by")

		// a's first Publish hangs; a whole lease passes by its clock.
		select {
		case <-pubA.entered:
		case <-ctx.Done():
			t.Fatal("a never published")
		}
		clkA.Advance(leaseTTL)
		stuck := func(r logRecord) bool {
			return r.level == slog.LevelWarn && strings.Contains(r.msg, "lease lost") &&
				strings.Contains(r.attrs["error"], "has not returned for a whole lease")
		}
		require.Eventually(t, func() bool { return logA.count(stuck) > 0 }, timeout, 5*time.Millisecond, "a gives the lease up")
		require.False(t, relayStatus(t, a).Holding)

		// Its lease runs out by b's clock: b takes over from the checkpoint.
		clkB.Advance(3 * leaseTTL)
		waitStatus(t, b, holding, "b takes the lease a stopped renewing")
		waitPublished(t, pubB, len(recs))
		require.Equal(t, ids(recs), pubB.published(), "b publishes everything, from the checkpoint")

		// The hung call returns at last: what it carried went out (at least
		// once), and a publishes nothing after it.
		release.Do(func() { close(gate) })
		require.Eventually(t, func() bool { return len(pubA.published()) > 0 }, timeout, 5*time.Millisecond)
		first := pubA.published()
		require.LessOrEqual(t, len(first), 10, "one batch in flight")
		require.Equal(t, ids(recs[:len(first)]), first)
		waitStatus(t, a, func(st outbox.Status) bool { return !st.Holding && st.LeaseOwner == "b" }, "a stands by again")
		require.Equal(t, first, pubA.published(), "a published nothing after the hung call")
	})
}

// 4. The lease operations of Checkpoints on every state of a row.
func TestCheckpointsLease(t *testing.T) {
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	until := now.Add(time.Minute)
	const name = "x"
	type row struct {
		exists bool
		owner  string
		until  time.Time
	}
	// states are the rows the operations meet, as seen by owner "a" at now.
	states := []struct {
		name string
		row  row
	}{
		{"missing row", row{}},
		{"free row", row{exists: true}},
		{"own row", row{exists: true, owner: "a", until: now.Add(time.Second)}},
		{"own expired row", row{exists: true, owner: "a", until: now.Add(-time.Second)}},
		{"other's live lease", row{exists: true, owner: "b", until: now.Add(time.Second)}},
		{"other's expired lease", row{exists: true, owner: "b", until: now.Add(-time.Second)}},
	}
	holds := func(r row) bool { return r.owner == "a" }
	ops := []struct {
		name string
		do   func(ctx context.Context, cps *outbox.Checkpoints) error
		// ok reports whether the operation succeeds on r; want is the row
		// and checkpoint after a success.
		ok      func(r row) bool
		want    row
		wantPos eventlog.Position
	}{
		{
			name: "Acquire",
			do: func(ctx context.Context, cps *outbox.Checkpoints) error {
				ok, err := cps.Acquire(ctx, name, "a", now, until)
				if err == nil && !ok {
					err = outbox.ErrLeaseLost
				}
				return err
			},
			ok:   func(r row) bool { return r.owner == "" || r.owner == "a" || r.until.Before(now) },
			want: row{exists: true, owner: "a", until: until},
		},
		{
			name: "Renew",
			do: func(ctx context.Context, cps *outbox.Checkpoints) error {
				return cps.Renew(ctx, name, "a", until)
			},
			ok:   holds,
			want: row{exists: true, owner: "a", until: until},
		},
		{
			name: "SaveLeased",
			do: func(ctx context.Context, cps *outbox.Checkpoints) error {
				return cps.SaveLeased(ctx, name, "a", eventlog.At(9), now, until)
			},
			ok:      holds,
			want:    row{exists: true, owner: "a", until: until},
			wantPos: eventlog.At(9),
		},
		{
			name: "SaveLeased never moves back",
			do: func(ctx context.Context, cps *outbox.Checkpoints) error {
				return cps.SaveLeased(ctx, name, "a", eventlog.At(2), now, until)
			},
			ok:   holds,
			want: row{exists: true, owner: "a", until: until},
		},
		{
			name: "Release",
			do: func(ctx context.Context, cps *outbox.Checkpoints) error {
				return cps.Release(ctx, name, "a")
			},
			ok:   holds,
			want: row{exists: true},
		},
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := sqltest.Open(t, b.URL(t))
			require.NoError(t, outbox.Migrate(ctx, db))
			cps := outbox.NewCheckpoints(db)
			for _, op := range ops {
				for _, s := range states {
					t.Run(op.name+"/"+s.name, func(t *testing.T) {
						require.NoError(t, cps.Delete(ctx, name))
						pos := eventlog.Start
						if s.row.exists {
							pos = eventlog.At(5)
							require.NoError(t, cps.Save(ctx, name, pos))
						}
						if s.row.owner != "" {
							ok, err := cps.Acquire(ctx, name, s.row.owner, s.row.until.Add(-time.Hour), s.row.until)
							require.NoError(t, err)
							require.True(t, ok)
						}

						err := op.do(ctx, cps)
						want, wantPos := s.row, pos
						if op.ok(s.row) {
							require.NoError(t, err)
							want = op.want
							if op.wantPos != eventlog.Start {
								wantPos = op.wantPos
							}
						} else {
							require.ErrorIs(t, err, outbox.ErrLeaseLost)
						}
						owner, gotUntil, err := cps.Lease(ctx, name)
						require.NoError(t, err)
						require.Equal(t, want.owner, owner)
						require.True(t, want.until.Equal(gotUntil), "until %s, want %s", gotUntil, want.until)
						got, err := cps.Load(ctx, name)
						require.NoError(t, err)
						require.Equal(t, wantPos, got)
					})
				}
			}

			t.Run("Save keeps the lease", func(t *testing.T) {
				require.NoError(t, cps.Delete(ctx, name))
				ok, err := cps.Acquire(ctx, name, "a", now, until)
				require.NoError(t, err)
				require.True(t, ok)
				require.NoError(t, cps.Save(ctx, name, eventlog.At(4)))
				require.NoError(t, cps.Save(ctx, name, eventlog.At(3)), "moving back is ignored")
				pos, err := cps.Load(ctx, name)
				require.NoError(t, err)
				require.Equal(t, eventlog.At(4), pos)
				owner, got, err := cps.Lease(ctx, name)
				require.NoError(t, err)
				require.Equal(t, "a", owner)
				require.True(t, until.Equal(got))
			})
			t.Run("empty owner", func(t *testing.T) {
				_, err := cps.Acquire(ctx, name, "", now, until)
				require.Error(t, err)
			})
		})
	}
}

// The lease migration's down file drops the columns (SQLite >= 3.35 too)
// and its up file adds them again.
func TestLeaseMigrationDownAndUp(t *testing.T) {
	const file = "20261126000000_outbox_lease.tx."
	pg, lite := outbox.Migrations()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := sqltest.Open(t, b.URL(t))
			require.NoError(t, outbox.Migrate(ctx, db))
			fsys := lite
			if db.IsPostgres() {
				fsys = pg
			}
			exec := func(name string) {
				src, err := fs.ReadFile(fsys, name)
				require.NoError(t, err)
				for _, stmt := range strings.Split(string(src), "--bun:split") {
					_, err := db.ExecContext(ctx, stmt)
					require.NoError(t, err, name)
				}
			}
			cps := outbox.NewCheckpoints(db)
			require.NoError(t, cps.Save(ctx, "x", eventlog.At(5)))

			exec(file + "down.sql")
			_, _, err := cps.Lease(ctx, "x")
			require.Error(t, err, "no lease columns")
			pos, err := cps.Load(ctx, "x")
			require.NoError(t, err)
			require.Equal(t, eventlog.At(5), pos)

			exec(file + "up.sql")
			owner, until, err := cps.Lease(ctx, "x")
			require.NoError(t, err)
			require.Empty(t, owner, "a row of before the lease is free")
			require.True(t, until.IsZero())
		})
	}
}

// 5. Without WithLease nothing is enforced, as before: two relays with the
// same checkpoint name both publish every event.
func TestWithoutLeaseBothPublish(t *testing.T) {
	recs := bustest.History(t, 100)
	forEachDB(t, func(t *testing.T, e env, _ string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		logs := newLogRecorder()
		pubs := []*recordingPublisher{{}, {}}
		for _, pub := range pubs {
			r := outbox.NewRelay(e.store, e.db, pub, outbox.WithBatch(10, 20*time.Millisecond), outbox.WithLogger(slog.New(logs)))
			run(t, ctx, r)
			require.Empty(t, relayStatus(t, r).Lease)
		}
		// Both loaded the checkpoint (Start) before there is anything to
		// publish, so neither skips what the other checkpointed.
		require.Eventually(t, func() bool {
			return logs.count(func(r logRecord) bool { return r.msg == "outbox: relay started" }) == 2
		}, timeout, 5*time.Millisecond)
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs))
		for _, pub := range pubs {
			waitPublished(t, pub, len(recs))
			require.Equal(t, ids(recs), pub.published(), "each publishes every event")
		}
		owner, _, err := outbox.NewCheckpoints(e.db).Lease(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.Empty(t, owner)
	})
}

// The AccessChangedPublisher shares the lease: of two, one publishes every
// change once, the other nothing.
func TestLeaseAccessChangedPublisher(t *testing.T) {
	recs := bustest.History(t, 150)
	forEachDB(t, func(t *testing.T, e env, _ string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ix := runIndex(t, ctx, e)
		clk := newClock()
		opts := func(owner string) []outbox.Option {
			return []outbox.Option{outbox.WithLease(owner, leaseTTL), outbox.WithClock(clk.Now), outbox.WithBatch(10, 20*time.Millisecond)}
		}
		pubA, pubB := &recordingPublisher{}, &recordingPublisher{}
		a := outbox.NewAccessChangedPublisher(ix, e.db, pubA, opts("a")...)
		run(t, ctx, a)
		require.Eventually(t, func() bool { return a.Status().Holding }, timeout, 5*time.Millisecond, "a takes the lease")
		b := outbox.NewAccessChangedPublisher(ix, e.db, pubB, opts("b")...)
		run(t, ctx, b)
		require.Eventually(t, func() bool { return b.Status().LeaseOwner == "a" }, timeout, 5*time.Millisecond, "b stands by")

		require.NoError(t, bustest.AppendAll(ctx, e.store, recs))
		head := recs[len(recs)-1].Position
		waitIndex(t, ix, head)
		want, _, _, err := ix.Changes(eventlog.Start)
		require.NoError(t, err)
		require.NotEmpty(t, want)
		require.Eventually(t, func() bool { return len(pubA.published()) >= len(want) }, timeout, 5*time.Millisecond)
		var wantIDs []string
		for _, c := range want {
			wantIDs = append(wantIDs, bus.AccessChangedUUID(c.Position, c.Account, c.Child).String())
		}
		require.Equal(t, wantIDs, pubA.published(), "every change once, in order")
		require.Eventually(t, func() bool { return a.Status().Checkpoint == head }, timeout, 5*time.Millisecond)
		require.Empty(t, pubB.published())
		require.False(t, b.Status().Holding)
	})
}
