package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
	"github.com/accessledger/accessledger/projections/projtest"
)

func TestProjectionIdentity(t *testing.T) {
	p := New()
	require.Equal(t, "audit", p.Name())
	require.Equal(t, 2, p.Version())
	require.Len(t, p.Tables(), 1)
	require.Equal(t, "audit_entries", p.Tables()[0].Name)
	for _, d := range []dialect.Name{dialect.PG, dialect.SQLite} {
		for _, stmt := range p.Tables()[0].Create(d, "audit_entries_g7") {
			// Every index and constraint is named after the physical table,
			// so that two generations never clash.
			for _, name := range regexp.MustCompile(`(?:INDEX|CONSTRAINT) "([a-z0-9_]+)"`).FindAllStringSubmatch(stmt, -1) {
				require.True(t, strings.HasPrefix(name[1], "audit_entries_g7"), name[1])
			}
		}
	}
}

// TestTrail builds a history through the domain, appends it to a real
// event store, projects it in batches and checks every entry against its
// record: one entry per event, dense seq, the data byte for byte, the
// subjects extracted from the payload, the chain linked from Genesis.
func TestTrail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 3)
		require.Greater(t, len(recs), 40)
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		project(t, db, tables, recs, 10, false)

		rows := readRows(t, db, tables.Name(Table))
		require.Len(t, rows, len(recs))
		prev := Genesis
		for i, r := range rows {
			rec := recs[i]
			env, err := domain.DecodeRecord(rec)
			require.NoError(t, err)
			child, account, err := subjects(env.Event)
			require.NoError(t, err)

			require.Equal(t, int64(i+1), r.Seq)
			require.Equal(t, rec.Position, eventlog.Position{Commit: uint64(r.PositionCommit), Prepare: uint64(r.PositionPrepare)})
			require.Equal(t, rec.ID.String(), r.EventID)
			require.Equal(t, rec.Type, r.Type)
			require.Equal(t, rec.Stream, r.Stream)
			require.Equal(t, optionalID(child), r.ChildID)
			require.Equal(t, optionalID(account), r.AccountID)
			require.Equal(t, rec.Meta.ActorID, r.Actor)
			require.Equal(t, rec.Meta.ActorRole, r.ActorRole)
			require.Equal(t, rec.Meta.Reason, r.Reason)
			require.Equal(t, rec.Meta.EffectiveAt.UnixMicro(), r.EffectiveAt)
			require.Equal(t, rec.Meta.RecordedAt.UnixMicro(), r.RecordedAt)
			require.Equal(t, string(rec.Data), r.Data, "data byte for byte")
			leaf := ledger.LeafHash(rec)
			require.Equal(t, int64(i), r.LeafIndex, "entry seq names leaf seq-1")
			require.Equal(t, hex.EncodeToString(leaf[:]), r.LeafHash)
			require.Equal(t, prev, r.PrevHash)
			want, _ := r.computeHash(nil)
			require.Equal(t, want, r.Hash)
			require.True(t, isHash(r.Hash))
			prev = r.Hash
		}
		require.Contains(t, func() []string {
			var reasons []string
			for _, r := range rows {
				reasons = append(reasons, r.Reason)
			}
			return reasons
		}(), awkward, "the awkward reason round-trips exactly")

		for _, size := range []int{0, 1, 7, len(rows), len(rows) + 1} {
			res, err := Verify(ctx, db, VerifyOptions{PageSize: size})
			require.NoError(t, err)
			require.Equal(t, Result{OK: true, Entries: int64(len(rows)), HeadHash: prev}, res, "page size %d", size)
			res, err = Verify(ctx, db, VerifyOptions{PageSize: size, Anchor: &Anchor{Seq: int64(len(rows)), Hash: prev}})
			require.NoError(t, err)
			require.True(t, res.OK)
			res, err = Verify(ctx, db, VerifyOptions{PageSize: size, Anchor: &Anchor{Seq: 5, Hash: rows[4].Hash}})
			require.NoError(t, err)
			require.True(t, res.OK)
		}
	})
}

// TestDeterministic projects the same records in different batch sizes,
// with and without restarts between batches, and with a second runner that
// replays what the first one wrote: every way gives identical entries.
func TestDeterministic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 2)

		whole := createGeneration(t, db, 1)
		project(t, db, whole, recs, 0, false)
		want := readRows(t, db, whole.Name(Table))
		require.Len(t, want, len(recs))

		for gen, run := range map[int]struct {
			size   int
			reload bool
		}{2: {1, false}, 3: {1, true}, 4: {7, true}, 5: {7, false}, 6: {len(recs) - 1, true}} {
			tables := createGeneration(t, db, gen)
			project(t, db, tables, recs, run.size, run.reload)
			require.Equal(t, want, readRows(t, db, tables.Name(Table)), "batches of %d, reload %v", run.size, run.reload)
		}

		// Two runners on one table: a writes the first half; b, loaded
		// before that, replays it (as a runner that finds the checkpoint
		// moved does) and writes the rest.
		tables := createGeneration(t, db, 9)
		a, b := New(), New()
		for _, p := range []*Projection{a, b} {
			_, err := p.Load(ctx, db, tables, eventlog.Start)
			require.NoError(t, err)
		}
		half := len(recs) / 2
		require.NoError(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return a.Apply(ctx, tx, tables, recs[:half])
		}))
		require.NoError(t, b.Replay(recs[:half]))
		require.NoError(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return b.Apply(ctx, tx, tables, recs[half:])
		}))
		require.Equal(t, want, readRows(t, db, tables.Name(Table)))
	})
}

// TestApplyFailureKeepsTheHead checks that a failed Apply leaves the
// projection where it was: the transaction is rolled back and the next
// Apply chains from the last committed entry, with no Load in between.
func TestApplyFailureKeepsTheHead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 1)
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		p := New()
		_, err := p.Load(ctx, db, tables, eventlog.Start)
		require.NoError(t, err)
		apply := func(recs []eventlog.Record) error {
			return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return p.Apply(ctx, tx, tables, recs) })
		}
		require.NoError(t, apply(recs[:3]))

		bad := recs[4]
		bad.Data = []byte(`[1]`)
		require.ErrorIs(t, apply([]eventlog.Record{recs[3], bad}), ErrRejected)
		// An entry at an event id already in the trail fails in the
		// database; the projection's head must not move either.
		dup := recs[3]
		dup.ID = recs[0].ID
		require.Error(t, apply([]eventlog.Record{dup}))

		require.NoError(t, apply(recs[3:]))
		res, err := Verify(ctx, db, VerifyOptions{})
		require.NoError(t, err)
		require.Equal(t, Result{OK: true, Entries: int64(len(recs)), HeadHash: readRows(t, db, tables.Name(Table))[len(recs)-1].Hash}, res)
	})
}

func TestEmptyTrail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		res, err := Verify(ctx, db, VerifyOptions{})
		require.NoError(t, err)
		require.Equal(t, Result{OK: true, Entries: 0, HeadHash: Genesis}, res)
		require.Equal(t, "ledger: not compared (no ledger tables)\naudit trail OK: 0 entries, head "+Genesis, VerifyReport(res))

		res, err = Verify(ctx, db, VerifyOptions{Anchor: &Anchor{Seq: 1, Hash: strings.Repeat("ab", 32)}})
		require.NoError(t, err)
		require.Equal(t, &Broken{Seq: 1, Check: CheckAnchor, Reason: "entry missing: the trail ends at entry 0, before the anchor at entry 1 (entries deleted)"}, res.FirstBroken)

		entries, next, err := List(ctx, db, Filter{})
		require.NoError(t, err)
		require.Empty(t, entries)
		require.Zero(t, next)
	})
}

func TestLoad(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 1)
		tables := createGeneration(t, db, 1)

		p := New()
		_, err := p.Load(ctx, db, tables, recs[2].Position)
		require.ErrorIs(t, err, ErrInconsistent, "an empty table behind a checkpoint")
		require.Error(t, p.Replay(recs[:1]), "a projection whose Load failed refuses records")

		project(t, db, tables, recs[:5], 0, false)
		_, err = p.Load(ctx, db, tables, recs[3].Position)
		require.ErrorIs(t, err, ErrInconsistent, "entries after the checkpoint")

		warmup, err := p.Load(ctx, db, tables, recs[4].Position)
		require.NoError(t, err)
		require.False(t, warmup)
		require.Equal(t, int64(5), p.head.seq)
		require.Equal(t, recs[4].Position, p.head.pos)

		// Records must come after the head.
		require.ErrorIs(t, p.Replay(recs[4:6]), ErrInconsistent)
		require.ErrorIs(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return p.Apply(ctx, tx, tables, []eventlog.Record{recs[6], recs[5]})
		}), ErrInconsistent)
	})
}

// TestApplyRejects checks that records that must not enter the trail are
// refused, and that nothing of their batch is written.
func TestApplyRejects(t *testing.T) {
	db := openMemory(t)
	ctx := context.Background()
	tables := createGeneration(t, db, 1)
	account := uuid.MustParse("00000000-0000-4000-8000-00000000000a")
	good := eventlog.Record{
		ID: uuid.MustParse("00000000-0000-4000-8000-000000000001"), Stream: domain.AccountStream(account), Version: 1,
		Position: eventlog.At(1), Type: domain.TypePhoneEnrolled,
		Data: []byte(`{"account_id":"` + account.String() + `","phone_hint":"***123","enrolled_at":"2026-03-02T09:00:00Z"}`),
		Meta: eventlog.Meta{ActorID: "portal-backend", ActorRole: "service", EffectiveAt: t0, RecordedAt: t0},
	}
	tests := []struct {
		name   string
		change func(r *eventlog.Record)
	}{
		{"data is an array", func(r *eventlog.Record) { r.Data = []byte(`[1]`) }},
		{"data is a string", func(r *eventlog.Record) { r.Data = []byte(`"x"`) }},
		{"data is null", func(r *eventlog.Record) { r.Data = []byte(`null`) }},
		{"data is empty", func(r *eventlog.Record) { r.Data = nil }},
		{"data is not JSON", func(r *eventlog.Record) { r.Data = []byte(`{"account_id":`) }},
		{"data is not UTF-8", func(r *eventlog.Record) {
			r.Data = []byte(`{"account_id":"` + account.String() + `","phone_hint":"***123","enrolled_at":"2026-03-02T09:00:00Z","x":"` + "\xff" + `"}`)
		}},
		{"a full phone number", func(r *eventlog.Record) {
			r.Data = []byte(`{"account_id":"` + account.String() + `","phone_hint":"+447700900123","enrolled_at":"2026-03-02T09:00:00Z"}`)
		}},
		{"an extra field (a secret, say)", func(r *eventlog.Record) {
			r.Data = []byte(`{"account_id":"` + account.String() + `","phone_hint":"***123","enrolled_at":"2026-03-02T09:00:00Z","phone":"+447700900123"}`)
		}},
		{"an unknown event type", func(r *eventlog.Record) { r.Type = "phone.number_changed.v1" }},
		{"a NUL in the reason", func(r *eventlog.Record) { r.Meta.Reason = "a\x00b" }},
		{"an actor not in UTF-8", func(r *eventlog.Record) { r.Meta.ActorID = "\xc3" }},
		{"a position beyond BIGINT", func(r *eventlog.Record) { r.Position = eventlog.Position{Commit: 1 << 63, Prepare: 1} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := good
			bad.ID = uuid.MustParse("00000000-0000-4000-8000-000000000002")
			bad.Position = eventlog.At(2)
			tt.change(&bad)
			p := New()
			_, err := p.Load(ctx, db, tables, eventlog.Start)
			require.NoError(t, err)
			err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				return p.Apply(ctx, tx, tables, []eventlog.Record{good, bad})
			})
			require.ErrorIs(t, err, ErrRejected)
			require.Empty(t, readRows(t, db, tables.Name(Table)))
			require.ErrorIs(t, p.Replay([]eventlog.Record{good, bad}), ErrRejected)
		})
	}
}

// TestSubjectsCoverTheCatalogue checks that every event type of the
// catalogue names the child and account it concerns.
func TestSubjectsCoverTheCatalogue(t *testing.T) {
	c, a, p := uuid.New(), uuid.New(), uuid.New()
	samples := []struct {
		event          domain.Event
		child, account uuid.UUID
	}{
		{&domain.ChildRegistered{ChildID: c}, c, uuid.Nil},
		{&domain.WorkerAllocated{ChildID: c}, c, uuid.Nil},
		{&domain.PlacementStarted{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.PlacementEnded{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.GraceEndedEarly{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.GraceExpired{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.AccessGranted{ChildID: c, AccountID: a}, c, a},
		{&domain.AccessRevoked{ChildID: c, AccountID: a}, c, a},
		{&domain.AccountInvited{AccountID: a}, uuid.Nil, a},
		{&domain.InvitationExpired{AccountID: a}, uuid.Nil, a},
		{&domain.AccountActivated{AccountID: a}, uuid.Nil, a},
		{&domain.AccountClosed{AccountID: a}, uuid.Nil, a},
		{&domain.PhoneResetRequested{AccountID: a}, uuid.Nil, a},
		{&domain.PhoneCleared{AccountID: a}, uuid.Nil, a},
		{&domain.PhoneEnrolled{AccountID: a}, uuid.Nil, a},
		{&domain.IdentityLinked{AccountID: a}, uuid.Nil, a},
		{&domain.AccountErased{AccountID: a}, uuid.Nil, a},
		{&domain.PolicySet{}, uuid.Nil, uuid.Nil},
		{&domain.ChildErased{ChildID: c}, c, uuid.Nil},
		{&domain.ChildRetentionSet{ChildID: c}, c, uuid.Nil},
		{&domain.PlacementCancelled{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.PlacementStartReached{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.PlacementEndReached{ChildID: c, PlacementID: p, CarerAccountID: a}, c, a},
		{&domain.GrantReviewed{ChildID: c, AccountID: a}, c, a},
		{&domain.GrantExpired{ChildID: c, AccountID: a}, c, a},
		{&domain.AccountReopened{AccountID: a, ClosedAt: time.Unix(1, 0), ReopenedAt: time.Unix(2, 0)}, uuid.Nil, a},
		{&domain.EmailChangeRequested{AccountID: a}, uuid.Nil, a},
		{&domain.EmailChanged{AccountID: a}, uuid.Nil, a},
		{&domain.EmailClaimed{AccountID: a}, uuid.Nil, a},
		{&domain.EmailReleased{AccountID: a}, uuid.Nil, a},
	}
	var types []string
	for _, s := range samples {
		types = append(types, s.event.EventType())
		child, account, err := subjects(s.event)
		require.NoError(t, err, s.event.EventType())
		require.Equal(t, s.child, child, s.event.EventType())
		require.Equal(t, s.account, account, s.event.EventType())
	}
	require.ElementsMatch(t, domain.EventTypes(), types, "a sample for every event type of the catalogue")
}

// TestNoPhoneNumberInTrail (R11): a history that enrols full phone numbers
// through the domain leaves only the masked hints in the trail.
func TestNoPhoneNumberInTrail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		recs := history(t, newStore(t, db), 3)
		tables := createGeneration(t, db, 1)
		project(t, db, tables, recs, 5, false)
		rows := readRows(t, db, tables.Name(Table))

		// Every stored cell, as text.
		type cell struct {
			seq         int64
			column, val string
		}
		var cells []cell
		for _, r := range rows {
			for col, v := range map[string]string{"event_id": r.EventID, "type": r.Type, "stream": r.Stream,
				"child_id": r.ChildID.String, "account_id": r.AccountID.String, "actor": r.Actor,
				"actor_role": r.ActorRole, "reason": r.Reason, "data": r.Data, "prev_hash": r.PrevHash, "hash": r.Hash,
				"leaf_index": fmt.Sprint(r.LeafIndex), "leaf_hash": r.LeafHash,
				"seq": fmt.Sprint(r.Seq), "position_commit": fmt.Sprint(r.PositionCommit),
				"position_prepare": fmt.Sprint(r.PositionPrepare), "effective_at": fmt.Sprint(r.EffectiveAt),
				"recorded_at": fmt.Sprint(r.RecordedAt)} {
				cells = append(cells, cell{r.Seq, col, v})
			}
		}
		// Ids and hashes are hexadecimal and may hold any run of digits by
		// chance: they are left out of the search for the last digits.
		hexRuns := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}`)
		nonDigit := regexp.MustCompile(`\D`)
		hints := 0
		for r := range 3 {
			first, second := phones(r)
			for _, phone := range []string{first, second} {
				digits := nonDigit.ReplaceAllString(phone, "")
				last4 := digits[len(digits)-4:]
				hint, err := domain.MaskPhone(phone)
				require.NoError(t, err)
				for _, c := range cells {
					if strings.Contains(c.val, `"phone_hint":"`+hint+`"`) {
						hints++
					}
					scrubbed := hexRuns.ReplaceAllString(c.val, "#")
					require.False(t, strings.Contains(c.val, phone) || strings.Contains(nonDigit.ReplaceAllString(c.val, ""), digits),
						"entry %d, %s holds the full number %s", c.seq, c.column, phone)
					require.False(t, strings.Contains(scrubbed, last4),
						"entry %d, %s holds more than the hint %s of %s: %q", c.seq, c.column, hint, phone, c.val)
				}
			}
		}
		require.Equal(t, 6, hints, "the six enrolments are in the trail, masked")
	})
}

// openMemory opens an in-memory SQLite database for tests that need no
// other backend.
func openMemory(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), "sqlite::memory:")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// syntheticRecords returns n records of registered children at positions
// 1..n, built through the domain's encoder, for tests that need volume
// rather than a story.
func syntheticRecords(t testing.TB, n int) []eventlog.Record {
	t.Helper()
	recs := make([]eventlog.Record, n)
	for i := range recs {
		id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "synthetic-%d", i))
		at := t0.Add(time.Duration(i) * time.Second)
		e := &domain.ChildRegistered{ChildID: id, Reference: fmt.Sprintf("C-%06d", i), WorkerID: worker.ID, RegisteredAt: at}
		d, err := domain.Cause{Actor: worker, RecordedAt: at}.EventData(id, e)
		require.NoError(t, err)
		recs[i] = eventlog.Record{ID: d.ID, Stream: domain.ChildStream(id), Version: 1,
			Position: eventlog.At(uint64(i + 1)), Type: d.Type, Data: d.Data, Meta: d.Meta}
	}
	return recs
}

// TestLargeBatch applies more records in one Apply than one INSERT takes,
// verifies across several default-sized pages and lists past MaxLimit.
func TestLargeBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := syntheticRecords(t, 2*DefaultPageSize+3)
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		project(t, db, tables, recs, 0, false)

		res, err := Verify(ctx, db, VerifyOptions{})
		require.NoError(t, err)
		require.True(t, res.OK)
		require.Equal(t, int64(len(recs)), res.Entries)

		entries, next, err := List(ctx, db, Filter{Limit: 10 * MaxLimit})
		require.NoError(t, err)
		require.Len(t, entries, MaxLimit)
		require.Equal(t, int64(MaxLimit), next)
		entries, next, err = List(ctx, db, Filter{After: next})
		require.NoError(t, err)
		require.Len(t, entries, DefaultLimit)
		require.Equal(t, int64(MaxLimit+1), entries[0].Seq)
		require.Equal(t, int64(MaxLimit+DefaultLimit), next)
	})
}

// TestInsertColumns checks that the columns Apply inserts are the entry's
// columns, in the order values gives them.
func TestInsertColumns(t *testing.T) {
	names := make([]string, 0, len(columns))
	for _, c := range columns {
		names = append(names, c.Name)
	}
	require.Equal(t, projtest.BunColumns(entryRow{}), names)
	var r entryRow
	require.Len(t, r.values(nil), len(columns))
}
