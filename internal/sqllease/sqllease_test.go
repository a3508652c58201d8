package sqllease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/sqllease"
)

var leases = sqllease.Table{Name: "test_leases", Key: "name", Owner: "lease_owner", Until: "lease_until"}

func open(t *testing.T, url string) bun.IDB {
	t.Helper()
	db := sqltest.Open(t, url)
	_, err := db.ExecContext(context.Background(),
		"CREATE TABLE test_leases (name TEXT PRIMARY KEY, lease_owner TEXT NOT NULL DEFAULT '', lease_until BIGINT NOT NULL DEFAULT 0)")
	require.NoError(t, err)
	return db.DB
}

func insert(t *testing.T, db bun.IDB, name, owner string, until time.Time) {
	t.Helper()
	var micros int64
	if !until.IsZero() {
		micros = until.UnixMicro()
	}
	_, err := db.ExecContext(context.Background(), "INSERT INTO test_leases (name, lease_owner, lease_until) VALUES (?, ?, ?)", name, owner, micros)
	require.NoError(t, err)
}

// TestOperations runs each operation of owner "a" on each state of the row
// and checks the result and the row after it.
func TestOperations(t *testing.T) {
	now := time.UnixMicro(1_700_000_000_000_000)
	until := now.Add(time.Minute)
	type row struct {
		exists bool
		owner  string
		until  time.Time
	}
	states := []struct {
		name string
		row  row
	}{
		{"no row", row{}},
		{"free", row{exists: true}},
		{"own live", row{exists: true, owner: "a", until: now.Add(time.Second)}},
		{"own expired", row{exists: true, owner: "a", until: now.Add(-time.Second)}},
		{"other's live", row{exists: true, owner: "b", until: now.Add(time.Second)}},
		{"other's until now holds", row{exists: true, owner: "b", until: now}},
		{"other's expired", row{exists: true, owner: "b", until: now.Add(-time.Microsecond)}},
	}
	ops := []struct {
		name string
		do   func(ctx context.Context, db bun.IDB) (bool, error)
		ok   func(r row) bool
		want row
	}{
		{"Acquire", func(ctx context.Context, db bun.IDB) (bool, error) {
			return leases.Acquire(ctx, db, "k", "a", now, until)
		}, func(r row) bool { return r.exists && (r.owner == "" || r.owner == "a" || r.until.Before(now)) },
			row{exists: true, owner: "a", until: until}},
		{"Renew", func(ctx context.Context, db bun.IDB) (bool, error) {
			return true, leases.Renew(ctx, db, "k", "a", until)
		}, func(r row) bool { return r.owner == "a" }, row{exists: true, owner: "a", until: until}},
		{"Release", func(ctx context.Context, db bun.IDB) (bool, error) {
			return true, leases.Release(ctx, db, "k", "a")
		}, func(r row) bool { return r.owner == "a" }, row{exists: true}},
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := open(t, b.URL(t))
			for _, op := range ops {
				for _, s := range states {
					t.Run(op.name+"/"+s.name, func(t *testing.T) {
						_, err := db.ExecContext(ctx, "DELETE FROM test_leases")
						require.NoError(t, err)
						if s.row.exists {
							insert(t, db, "k", s.row.owner, s.row.until)
						}
						insert(t, db, "other", "a", now.Add(time.Hour)) // never touched
						ok, err := op.do(ctx, db)
						want := s.row
						switch {
						case op.ok(s.row):
							require.NoError(t, err)
							require.True(t, ok)
							want = op.want
						case op.name == "Acquire":
							require.NoError(t, err)
							require.False(t, ok)
						default:
							require.ErrorIs(t, err, sqllease.ErrNotHeld)
						}
						h, found, err := leases.Holder(ctx, db, "k")
						require.NoError(t, err)
						require.Equal(t, want.exists, found)
						require.Equal(t, want.owner, h.Owner)
						require.True(t, want.until.Equal(h.Until), "until %s, want %s", h.Until, want.until)
						h, _, err = leases.Holder(ctx, db, "other")
						require.NoError(t, err)
						require.Equal(t, sqllease.Holder{Owner: "a", Until: time.UnixMicro(now.Add(time.Hour).UnixMicro())}, h)
					})
				}
			}
			t.Run("empty owner", func(t *testing.T) {
				_, err := leases.Acquire(ctx, db, "k", "", now, until)
				require.ErrorIs(t, err, sqllease.ErrEmptyOwner)
				require.ErrorIs(t, leases.Renew(ctx, db, "k", "", until), sqllease.ErrEmptyOwner)
				require.ErrorIs(t, leases.Release(ctx, db, "k", ""), sqllease.ErrEmptyOwner)
			})
		})
	}
}

// TestContention races owners for one lease on a shared database: exactly
// one wins while it holds, another takes it over once it has expired, and
// the first can then neither renew nor release it.
func TestContention(t *testing.T) {
	for _, b := range sqltest.Backends() {
		if b.Name == "sqlite-memory" {
			continue // one handle per database: nothing to race
		}
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			url := b.URL(t)
			db := open(t, url)
			insert(t, db, "k", "", time.Time{})
			second := sqltest.Open(t, url) // another process's pool

			now := time.Now()
			const owners = 8
			var wg sync.WaitGroup
			won := make(chan string, owners)
			for i := range owners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					h := db
					if i%2 == 1 {
						h = second.DB
					}
					owner := fmt.Sprintf("owner-%d", i)
					ok, err := leases.Acquire(ctx, h, "k", owner, now, now.Add(time.Minute))
					if err != nil {
						t.Errorf("%s: %v", owner, err)
						return
					}
					if ok {
						won <- owner
					}
				}()
			}
			wg.Wait()
			close(won)
			var winners []string
			for w := range won {
				winners = append(winners, w)
			}
			require.Len(t, winners, 1, "exactly one owner holds the lease")
			first := winners[0]
			h, _, err := leases.Holder(ctx, second.DB, "k")
			require.NoError(t, err)
			require.Equal(t, first, h.Owner)

			ok, err := leases.Acquire(ctx, second.DB, "k", "late", now.Add(30*time.Second), now.Add(2*time.Minute))
			require.NoError(t, err)
			require.False(t, ok, "a live lease is not taken")

			later := now.Add(2 * time.Minute)
			ok, err = leases.Acquire(ctx, second.DB, "k", "late", later, later.Add(time.Minute))
			require.NoError(t, err)
			require.True(t, ok, "an expired lease is taken over")

			require.ErrorIs(t, leases.Renew(ctx, db, "k", first, later.Add(time.Hour)), sqllease.ErrNotHeld, "renew after loss")
			require.ErrorIs(t, leases.Release(ctx, db, "k", first), sqllease.ErrNotHeld, "release after loss")
			require.NoError(t, leases.Renew(ctx, db, "k", "late", later.Add(time.Hour)))
			require.NoError(t, leases.Release(ctx, db, "k", "late"))
			ok, err = leases.Acquire(ctx, db, "k", first, later, later.Add(time.Minute))
			require.NoError(t, err)
			require.True(t, ok, "a released lease is free at once")
		})
	}
}

// TestInTransaction: the operations run in the caller's transaction and
// roll back with it.
func TestInTransaction(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := open(t, b.URL(t))
			insert(t, db, "k", "", time.Time{})
			now := time.Now()
			err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				ok, err := leases.Acquire(ctx, tx, "k", "a", now, now.Add(time.Minute))
				require.NoError(t, err)
				require.True(t, ok)
				return fmt.Errorf("roll back")
			})
			require.Error(t, err)
			h, found, err := leases.Holder(ctx, db, "k")
			require.NoError(t, err)
			require.True(t, found)
			require.Empty(t, h.Owner)
		})
	}
}
