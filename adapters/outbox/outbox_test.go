package outbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/adapters/outbox"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain/eventlog"
)

const timeout = 90 * time.Second

// stores are the event stores the relay is tested on: the real SQL store on
// an SQLite file and on PostgreSQL, with the checkpoint table beside it.
var stores = []struct {
	name string
	url  func(testing.TB) string
}{
	{"sqlite", sqltest.SQLiteFile},
	{"postgres", sqltest.Postgres},
}

type env struct {
	db    *sqldb.DB
	store *sqlstore.Store
}

func openEnv(t *testing.T, url string) env {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, url)
	require.NoError(t, sqlstore.Migrate(ctx, db))
	require.NoError(t, outbox.Migrate(ctx, db))
	s, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return env{db: db, store: s}
}

// forEach runs f for every store and bus kind (NATS and PostgreSQL skip
// when their variables are unset).
func forEach(t *testing.T, f func(t *testing.T, e env, cfg bus.Config)) {
	for _, st := range stores {
		for _, kind := range bustest.Kinds() {
			t.Run(st.name+"/"+string(kind), func(t *testing.T) {
				cfg := bustest.Config(t, kind)
				f(t, openEnv(t, st.url(t)), cfg)
			})
		}
	}
}

// run starts r.Run and returns a function that stops it and checks that it
// returned because its context ended.
func run(t *testing.T, ctx context.Context, r interface{ Run(context.Context) error }) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.Canceled)
			case <-time.After(timeout):
				t.Fatal("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// checkDelivered checks that msgs hold every record at least once, with the
// event id as UUID and the record's metadata, and that the first delivery
// of each event comes in log order (hence in stream order). It returns the
// number of duplicates.
func checkDelivered(t *testing.T, recs []eventlog.Record, msgs []*message.Message) int {
	t.Helper()
	byID := make(map[string]eventlog.Record, len(recs))
	for _, r := range recs {
		byID[r.ID.String()] = r
	}
	seen := map[string]bool{}
	lastVersion := map[string]uint64{}
	var last eventlog.Position
	dups := 0
	for _, m := range msgs {
		rec, ok := byID[m.UUID]
		require.True(t, ok, "message %s is an event of the log", m.UUID)
		if seen[m.UUID] {
			dups++
			continue
		}
		seen[m.UUID] = true
		got, err := bus.DecodeRecord(m)
		require.NoError(t, err)
		require.Equal(t, rec, got)
		require.Equal(t, rec.Meta.CorrelationID.String(), m.Metadata.Get(bus.MetaCorrelationID))
		require.Equal(t, rec.Meta.CausationID.String(), m.Metadata.Get(bus.MetaCausationID))
		require.Equal(t, lastVersion[rec.Stream]+1, rec.Version, "stream %s in order, no gap", rec.Stream)
		lastVersion[rec.Stream] = rec.Version
		require.True(t, last.Before(rec.Position), "log order: %s after %s", rec.Position, last)
		last = rec.Position
	}
	require.Len(t, seen, len(recs), "every event delivered")
	return dups
}

func TestRelayDeliversEveryEventInOrder(t *testing.T) {
	recs := bustest.History(t, 400)
	forEach(t, func(t *testing.T, e env, cfg bus.Config) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		pub, sub := bustest.Open(t, cfg)
		topic := bustest.Topic(t, bus.TopicEvents)
		col := bustest.Collect(t, ctx, sub, topic)

		half := len(recs) / 2
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:half]))
		relay := outbox.NewRelay(e.store, e.db, pub, outbox.WithTopic(topic), outbox.WithPageSize(64))
		st, err := relay.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(half), st.Lag)
		require.False(t, st.Running)

		run(t, ctx, relay)
		// The rest arrives while the relay follows the log.
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[half:]))

		dups := checkDelivered(t, recs, col.UniqueUUIDs(t, timeout, len(recs)))
		t.Logf("%d events, %d duplicates", len(recs), dups)

		head := recs[len(recs)-1].Position
		require.Eventually(t, func() bool {
			st, err := relay.Status(ctx)
			return err == nil && st.Checkpoint == head && st.Position == head && st.Lag == 0 && st.Running
		}, 10*time.Second, 10*time.Millisecond)
		cp, err := outbox.NewCheckpoints(e.db).Load(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.Equal(t, head, cp)
	})
}

// failingPublisher passes the first `allow` messages to the real publisher
// and then fails every call (the broker went away): a call that crosses the
// limit publishes its first messages and fails.
type failingPublisher struct {
	inner message.Publisher

	mu        sync.Mutex
	allow     int
	published int
	failed    chan struct{}
}

func (p *failingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := min(len(msgs), p.allow-p.published)
	if k > 0 {
		if err := p.inner.Publish(topic, msgs[:k]...); err != nil {
			return err
		}
		p.published += k
	}
	if k < len(msgs) {
		select {
		case <-p.failed:
		default:
			close(p.failed)
		}
		return errors.New("broker unreachable")
	}
	return nil
}

func (p *failingPublisher) Close() error { return nil }

// recordingPublisher records the UUIDs it published (after inner, when set,
// published them), and cancels a context once `after` messages went through
// (a relay killed at an arbitrary moment), when cancel is set. When gate is
// set, every Publish waits until it is closed; when entered is set, it is
// signalled (without blocking) as each Publish begins.
type recordingPublisher struct {
	inner   message.Publisher
	after   int
	cancel  context.CancelFunc
	gate    chan struct{}
	entered chan struct{}

	mu    sync.Mutex
	uuids []string
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.entered != nil {
		select {
		case p.entered <- struct{}{}:
		default:
		}
	}
	if p.gate != nil {
		<-p.gate
	}
	if p.inner != nil {
		if err := p.inner.Publish(topic, msgs...); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.uuids = append(p.uuids, m.UUID)
	}
	if p.cancel != nil && len(p.uuids) >= p.after {
		p.cancel()
	}
	return nil
}

func (p *recordingPublisher) Close() error { return nil }

func (p *recordingPublisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.uuids...)
}

func position(t *testing.T, recs []eventlog.Record, uuid string) eventlog.Position {
	t.Helper()
	for _, r := range recs {
		if r.ID.String() == uuid {
			return r.Position
		}
	}
	t.Fatalf("no event %s", uuid)
	return eventlog.Start
}

// A relay that stops mid-way (its publisher fails for good, or it is
// cancelled at an arbitrary moment) and is started again resumes from its
// checkpoint, which never passed what was published: every event arrives,
// in order per stream, none is skipped.
func TestRelayRestartsWithoutGaps(t *testing.T) {
	recs := bustest.History(t, 400)
	forEach(t, func(t *testing.T, e env, cfg bus.Config) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		pub, sub := bustest.Open(t, cfg)
		topic := bustest.Topic(t, bus.TopicEvents)
		col := bustest.Collect(t, ctx, sub, topic)
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[:300]))
		cps := outbox.NewCheckpoints(e.db)
		opts := []outbox.Option{outbox.WithTopic(topic), outbox.WithBatch(100, time.Hour), outbox.WithBackoff(time.Millisecond, 20*time.Millisecond)}

		// 1. The broker fails after 250 messages, in the middle of a
		// Publish of 100.
		failing := &failingPublisher{inner: pub, allow: 250, failed: make(chan struct{})}
		relay := outbox.NewRelay(e.store, e.db, failing, opts...)
		stop := run(t, ctx, relay)
		select {
		case <-failing.failed:
		case <-ctx.Done():
			t.Fatal("the publisher never failed")
		}
		require.Eventually(t, func() bool {
			st, err := relay.Status(ctx)
			return err == nil && st.Retries >= 2 && st.LastError == "broker unreachable"
		}, 10*time.Second, time.Millisecond, "retried with backoff")
		stop()
		cp, err := cps.Load(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.Equal(t, recs[199].Position, cp, "checkpoint after the last successful Publish (200), not after the 250 half-published")
		col.UniqueUUIDs(t, timeout, 250)

		// 2. Started again with a working broker, then killed after its
		// first Publish.
		ctx2, kill := context.WithCancel(ctx)
		rec2 := &recordingPublisher{inner: pub, after: 1, cancel: kill}
		relay = outbox.NewRelay(e.store, e.db, rec2, opts...)
		err = relay.Run(ctx2)
		require.ErrorIs(t, err, context.Canceled)
		first := rec2.published()
		require.Equal(t, recs[200].ID.String(), first[0], "resumed right after the checkpoint")
		cp2, err := cps.Load(ctx, outbox.DefaultRelayName)
		require.NoError(t, err)
		require.False(t, cp2.Before(cp), "the checkpoint only moves forward")
		require.False(t, position(t, recs, first[len(first)-1]).Before(cp2), "the checkpoint never passes what was published")

		// 3. Started again: the rest, including what is appended now.
		rec3 := &recordingPublisher{inner: pub}
		relay = outbox.NewRelay(e.store, e.db, rec3, opts...)
		run(t, ctx, relay)
		require.NoError(t, bustest.AppendAll(ctx, e.store, recs[300:]))
		msgs := col.UniqueUUIDs(t, timeout, len(recs))
		dups := checkDelivered(t, recs, msgs)
		third := rec3.published()
		require.Equal(t, position(t, recs, third[0]), eventlog.At(cp2.Commit+1), "resumed right after the checkpoint")
		t.Logf("%d events, %d duplicates after two restarts", len(recs), dups)
	})
}

// flakyPublisher fails its first `fail` calls.
type flakyPublisher struct {
	inner message.Publisher
	mu    sync.Mutex
	fail  int
	calls int
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	p.calls++
	failing := p.calls <= p.fail
	p.mu.Unlock()
	if failing {
		return errors.New("temporarily unavailable")
	}
	return p.inner.Publish(topic, msgs...)
}

func (p *flakyPublisher) Close() error { return nil }

func TestRelayRetriesAFailingPublisher(t *testing.T) {
	recs := bustest.History(t, 50)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e := openEnv(t, sqltest.SQLiteMemory(t))
	pub, sub := bustest.Open(t, bustest.Config(t, bus.KindGoChannel))
	topic := bustest.Topic(t, bus.TopicEvents)
	col := bustest.Collect(t, ctx, sub, topic)
	require.NoError(t, bustest.AppendAll(ctx, e.store, recs))

	flaky := &flakyPublisher{inner: pub, fail: 4}
	relay := outbox.NewRelay(e.store, e.db, flaky, outbox.WithTopic(topic), outbox.WithBackoff(time.Millisecond, 4*time.Millisecond))
	run(t, ctx, relay)
	msgs := col.UniqueUUIDs(t, timeout, len(recs))
	require.Zero(t, checkDelivered(t, recs, msgs), "gochannel: nothing twice")
	// The counters move just after a publish returns, which is after the
	// subscriber has the message.
	var st outbox.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = relay.Status(ctx)
		return err == nil && st.Published == uint64(len(recs))
	}, timeout, time.Millisecond)
	require.Equal(t, uint64(4), st.Retries)
	require.Equal(t, "temporarily unavailable", st.LastError)
}

func TestRelayRunsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e := openEnv(t, sqltest.SQLiteMemory(t))
	pub, _ := bustest.Open(t, bustest.Config(t, bus.KindGoChannel))
	relay := outbox.NewRelay(e.store, e.db, pub)
	run(t, ctx, relay)
	require.Eventually(t, func() bool {
		st, _ := relay.Status(ctx)
		return st.Running
	}, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, relay.Run(ctx), outbox.ErrRunning)
}

func TestCheckpoints(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := sqltest.Open(t, b.URL(t))
			require.NoError(t, outbox.Migrate(ctx, db))
			require.NoError(t, outbox.Migrate(ctx, db), "migrating again changes nothing")
			cps := outbox.NewCheckpoints(db)

			pos, err := cps.Load(ctx, "x")
			require.NoError(t, err)
			require.Equal(t, eventlog.Start, pos)

			require.NoError(t, cps.Save(ctx, "x", eventlog.At(5)))
			require.NoError(t, cps.Save(ctx, "y", eventlog.Position{Commit: 7, Prepare: 3}))
			require.NoError(t, cps.Save(ctx, "x", eventlog.At(3)), "moving back is ignored")
			pos, err = cps.Load(ctx, "x")
			require.NoError(t, err)
			require.Equal(t, eventlog.At(5), pos)
			pos, err = cps.Load(ctx, "y")
			require.NoError(t, err)
			require.Equal(t, eventlog.Position{Commit: 7, Prepare: 3}, pos)

			require.NoError(t, cps.Save(ctx, "y", eventlog.Position{Commit: 7, Prepare: 4}))
			pos, err = cps.Load(ctx, "y")
			require.NoError(t, err)
			require.Equal(t, eventlog.Position{Commit: 7, Prepare: 4}, pos)

			require.NoError(t, cps.Delete(ctx, "x"))
			pos, err = cps.Load(ctx, "x")
			require.NoError(t, err)
			require.Equal(t, eventlog.Start, pos)
		})
	}
}
