package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain"
)

// listAll follows List's cursor to the end and returns every entry.
func listAll(t *testing.T, db bun.IDB, f Filter) []Entry {
	t.Helper()
	var all []Entry
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "the cursor must move")
		entries, next, err := List(context.Background(), db, f)
		require.NoError(t, err)
		limit := f.Limit
		if limit == 0 {
			limit = DefaultLimit
		}
		require.LessOrEqual(t, len(entries), limit)
		all = append(all, entries...)
		if next == 0 {
			return all
		}
		require.Len(t, entries, limit, "a next cursor only after a full page")
		require.Equal(t, entries[len(entries)-1].Seq, next)
		f.After = next
	}
}

func seqs(entries []Entry) []int64 {
	out := []int64{}
	for _, e := range entries {
		out = append(out, e.Seq)
	}
	return out
}

func TestList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 3)
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		project(t, db, tables, recs, 20, false)

		// What each filter should return, worked out from the records.
		type facts struct {
			child, account uuid.UUID
			actor          string
			recorded       time.Time
		}
		var all []facts
		for _, rec := range recs {
			env, err := domain.DecodeRecord(rec)
			require.NoError(t, err)
			c, a, err := subjects(env.Event)
			require.NoError(t, err)
			all = append(all, facts{c, a, rec.Meta.ActorID, rec.Meta.RecordedAt})
		}
		want := func(keep func(f facts) bool) []int64 {
			out := []int64{}
			for i, f := range all {
				if keep(f) {
					out = append(out, int64(i+1))
				}
			}
			return out
		}
		// The subjects of the second round.
		env, err := domain.DecodeRecord(recs[len(recs)/3+5])
		require.NoError(t, err)
		child, carer, err := subjects(env.Event)
		require.NoError(t, err)
		require.NotEqual(t, uuid.Nil, child)
		require.NotEqual(t, uuid.Nil, carer)
		from, to := recs[10].Meta.RecordedAt, recs[30].Meta.RecordedAt

		tests := []struct {
			name   string
			filter Filter
			want   []int64
		}{
			{"everything", Filter{}, want(func(facts) bool { return true })},
			{"child", Filter{ChildID: &child}, want(func(f facts) bool { return f.child == child })},
			{"account", Filter{AccountID: &carer}, want(func(f facts) bool { return f.account == carer })},
			{"child and account", Filter{ChildID: &child, AccountID: &carer},
				want(func(f facts) bool { return f.child == child && f.account == carer })},
			{"actor", Filter{Actor: "portals-pat"}, want(func(f facts) bool { return f.actor == "portals-pat" })},
			{"system actor", Filter{Actor: domain.System.ID}, want(func(f facts) bool { return f.actor == domain.System.ID })},
			{"unknown actor", Filter{Actor: "nobody"}, []int64{}},
			{"from, inclusive", Filter{From: from}, want(func(f facts) bool { return !f.recorded.Before(from) })},
			{"to, exclusive", Filter{To: to}, want(func(f facts) bool { return f.recorded.Before(to) })},
			{"from and to", Filter{From: from, To: to},
				want(func(f facts) bool { return !f.recorded.Before(from) && f.recorded.Before(to) })},
			{"from a nanosecond later", Filter{From: from.Add(time.Nanosecond)},
				want(func(f facts) bool { return f.recorded.After(from) })},
			{"to a nanosecond later", Filter{To: to.Add(time.Nanosecond)},
				want(func(f facts) bool { return !f.recorded.After(to) })},
			{"from in another zone", Filter{From: from.In(time.FixedZone("x", 3600))},
				want(func(f facts) bool { return !f.recorded.Before(from) })},
			{"empty range", Filter{From: from, To: from}, []int64{}},
			{"account and actor", Filter{AccountID: &carer, Actor: "portal-backend"},
				want(func(f facts) bool { return f.account == carer && f.actor == "portal-backend" })},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, limit := range []int{0, 1, 3, MaxLimit + 1} {
					f := tt.filter
					f.Limit = limit
					require.Equal(t, tt.want, seqs(listAll(t, db, f)), "limit %d", limit)
				}
				// A cursor in the middle.
				if len(tt.want) > 2 {
					f := tt.filter
					f.After = tt.want[1]
					require.Equal(t, tt.want[2:], seqs(listAll(t, db, f)))
				}
			})
		}

		// Entries carry what the log holds.
		entries, next, err := List(ctx, db, Filter{Limit: len(recs)})
		require.NoError(t, err)
		require.Zero(t, next)
		require.Len(t, entries, len(recs))
		rows := readRows(t, db, tables.Name(Table))
		for i, e := range entries {
			rec := recs[i]
			require.Equal(t, int64(i+1), e.Seq)
			require.Equal(t, rec.Position, e.Position)
			require.Equal(t, rec.ID, e.EventID)
			require.Equal(t, rec.Type, e.Type)
			require.Equal(t, rec.Stream, e.Stream)
			require.Equal(t, rec.Meta.ActorID, e.Actor)
			require.Equal(t, rec.Meta.ActorRole, e.ActorRole)
			require.Equal(t, rec.Meta.Reason, e.Reason)
			require.Equal(t, rec.Meta.EffectiveAt, e.EffectiveAt)
			require.Equal(t, rec.Meta.RecordedAt, e.RecordedAt)
			require.Equal(t, string(rec.Data), string(e.Data))
			require.Equal(t, int64(i), e.LeafIndex)
			require.Equal(t, rows[i].LeafHash, e.LeafHash)
			require.Equal(t, leafHash(rec), e.LeafHash)
			require.Equal(t, rows[i].PrevHash, e.PrevHash)
			require.Equal(t, rows[i].Hash, e.Hash)
			require.Equal(t, all[i].child == uuid.Nil, e.ChildID == nil)
			require.Equal(t, all[i].account == uuid.Nil, e.AccountID == nil)
			if e.ChildID != nil {
				require.Equal(t, all[i].child, *e.ChildID)
			}
			if e.AccountID != nil {
				require.Equal(t, all[i].account, *e.AccountID)
			}
		}

		// The API's field names.
		b, err := json.Marshal(entries[0])
		require.NoError(t, err)
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(b, &fields))
		for _, f := range []string{"seq", "event_id", "type", "stream", "actor", "actor_role", "reason",
			"effective_at", "recorded_at", "data", "leaf_index", "leaf_hash", "prev_hash", "hash"} {
			require.Contains(t, fields, f)
		}
		require.JSONEq(t, string(recs[0].Data), string(fields["data"]), "data is embedded as JSON, not as a string")

		// A stored id that does not parse is an error, not a zero id.
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		_, err = tx.ExecContext(ctx, "UPDATE "+tables.Name(Table)+" SET child_id = 'x' WHERE seq = 1")
		require.NoError(t, err)
		_, _, err = List(ctx, tx, Filter{})
		require.ErrorContains(t, err, "child_id")
	})
}

func TestListRefuses(t *testing.T) {
	db := openMemory(t)
	pointView(t, db, createGeneration(t, db, 1))
	for _, f := range []Filter{
		{Limit: -1},
		{After: -1},
		{From: time.Now(), To: time.Now().Add(-time.Second)},
	} {
		_, _, err := List(context.Background(), db, f)
		require.ErrorIs(t, err, ErrInvalidFilter, "%+v", f)
	}
}

// TestListUsesIndexes checks the query plans: each filter is answered from
// its index, not by reading the whole table. PostgreSQL is asked with
// sequential scans disabled, since on a small table it rightly prefers one.
func TestListUsesIndexes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		id := uuid.New()
		physical := tables.Name(Table)
		for name, f := range map[string]Filter{
			physical + "_child":    {ChildID: &id},
			physical + "_account":  {AccountID: &id},
			physical + "_actor":    {Actor: "worker-ann"},
			physical + "_recorded": {From: time.Now(), To: time.Now().Add(time.Hour)},
		} {
			var rows []entryRow
			query := listQuery(db, &rows, f, DefaultLimit+1).String()
			plan := explain(t, db, query)
			require.Contains(t, plan, name, "%s\n%s", query, plan)
		}
		// The cursor alone runs on the primary key.
		var rows []entryRow
		plan := explain(t, db, listQuery(db, &rows, Filter{After: 10}, DefaultLimit+1).String())
		if db.IsPostgres() {
			require.Contains(t, plan, physical+"_pkey", plan)
		} else {
			require.Contains(t, plan, "INTEGER PRIMARY KEY", plan)
		}
	})
}

// explain returns the query plan of query, one line per step.
func explain(t *testing.T, db *sqldb.DB, query string) string {
	t.Helper()
	ctx := context.Background()
	var lines []string
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		prefix := "EXPLAIN QUERY PLAN "
		if db.IsPostgres() {
			prefix = "EXPLAIN "
			if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, prefix+query)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			return err
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					vals[i] = string(b)
				}
			}
			lines = append(lines, fmt.Sprint(vals...))
		}
		return rows.Err()
	})
	require.NoError(t, err)
	return strings.Join(lines, "\n") + "\n"
}

// TestKnownBy: "as known at" cuts the log just before the first entry
// recorded after the time, also when recorded times do not rise with the
// log's order (commands stamp them before they append).
func TestKnownBy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 1)[:3]
		nine := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
		for i, m := range []int{0, 10, 5} { // recorded 09:00, 09:10, 09:05
			recs[i].Meta.RecordedAt = nine.Add(time.Duration(m) * time.Minute)
		}
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		project(t, db, tables, recs, 0, false)
		tests := []struct {
			at   time.Time
			want int // index into recs, -1 for none
		}{
			{nine.Add(-time.Minute), -1},
			{nine, 0},
			{nine.Add(7 * time.Minute), 0}, // not recs[2]: recs[1], before it, was recorded after 09:07
			{nine.Add(10 * time.Minute), 2},
			{nine.Add(time.Hour), 2},
		}
		for _, tt := range tests {
			pos, ok, err := KnownBy(ctx, db, tt.at)
			require.NoError(t, err)
			if tt.want < 0 {
				require.False(t, ok, tt.at)
				continue
			}
			require.True(t, ok, tt.at)
			require.Equal(t, recs[tt.want].Position, pos, tt.at)
		}
	})
}
