package viewlog_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/domain"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func open(t testing.TB, url string) *sqldb.DB {
	t.Helper()
	db := sqltest.Open(t, url)
	pg, lite := securitylog.Migrations()
	require.NoError(t, sqldb.Migrate(context.Background(), db, securitylog.Component, pg, lite))
	pg, lite = viewlog.Migrations()
	require.NoError(t, sqldb.Migrate(context.Background(), db, viewlog.Component, pg, lite))
	return db
}

func forEachBackend(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f(t, open(t, b.URL(t)))
		})
	}
}

func newID(t testing.TB) uuid.UUID {
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id
}

func view(t testing.TB, acct, child uuid.UUID, at time.Time, allowed bool) viewlog.View {
	reason := domain.ReasonPlacement
	if !allowed {
		reason = domain.ReasonNoRelationship
	}
	return viewlog.View{ID: newID(t), AccountID: acct, ChildID: child, Permission: domain.View, ViewedAt: at,
		RecordedAt: t0.Add(time.Hour), Allowed: allowed, Reason: reason, Position: "7", ActorID: "portal"}
}

// all reads every page of f, checking the order.
func all(t *testing.T, l *viewlog.Log, f viewlog.Filter) []viewlog.View {
	t.Helper()
	var out []viewlog.View
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		page, next, err := l.ListViews(t.Context(), f)
		require.NoError(t, err)
		for _, v := range page {
			if n := len(out); n > 0 {
				prev := out[n-1]
				require.True(t, prev.ViewedAt.Before(v.ViewedAt) ||
					prev.ViewedAt.Equal(v.ViewedAt) && prev.ID.String() < v.ID.String(), "oldest first")
			}
			out = append(out, v)
		}
		if next.IsZero() {
			return out
		}
		require.Len(t, page, f.Limit)
		f.After = next
	}
}

func TestRecordAndList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		l := viewlog.New(db)
		a1, a2, c1, c2 := uuid.New(), uuid.New(), uuid.New(), uuid.New()
		var b viewlog.Batch
		for i := range 25 {
			at := t0.Add(time.Duration(i%10) * time.Minute) // ties on viewed_at
			acct, child := a1, c1
			if i%2 == 1 {
				acct = a2
			}
			if i%5 == 0 {
				child = c2
			}
			b.Views = append(b.Views, view(t, acct, child, at, i%3 != 0))
		}
		denied := b.Views[0]
		b.Alerts = []viewlog.Alert{{ID: newID(t), Kind: viewlog.KindViewWithoutAccess, AccountID: denied.AccountID,
			ChildID: denied.ChildID, At: denied.ViewedAt, RaisedAt: t0.Add(time.Hour), Detail: "d", ViewID: denied.ID}}
		b.Security = []securitylog.Entry{{At: t0.Add(time.Hour), ActorID: "portal", ActorRole: "service", Command: "view",
			Target: "child/" + denied.ChildID.String() + "/view/" + denied.AccountID.String(), Code: viewlog.KindViewWithoutAccess}}
		require.NoError(t, l.Record(t.Context(), b))

		got := all(t, l, viewlog.Filter{Limit: 4})
		require.Len(t, got, 25)
		want := map[uuid.UUID]viewlog.View{}
		for _, v := range b.Views {
			want[v.ID] = v
		}
		for _, v := range got {
			require.Equal(t, want[v.ID], v, "stored as given")
		}
		for _, f := range []struct {
			name string
			f    viewlog.Filter
			keep func(viewlog.View) bool
		}{
			{"child", viewlog.Filter{Child: &c1, Limit: 3}, func(v viewlog.View) bool { return v.ChildID == c1 }},
			{"account", viewlog.Filter{Account: &a2, Limit: 2}, func(v viewlog.View) bool { return v.AccountID == a2 }},
			{"from-to", viewlog.Filter{From: t0.Add(2 * time.Minute), To: t0.Add(5 * time.Minute)}, func(v viewlog.View) bool {
				return !v.ViewedAt.Before(t0.Add(2*time.Minute)) && v.ViewedAt.Before(t0.Add(5*time.Minute))
			}},
		} {
			var n int
			for _, v := range b.Views {
				if f.keep(v) {
					n++
				}
			}
			page := all(t, l, f.f)
			require.Len(t, page, n, f.name)
			for _, v := range page {
				require.True(t, f.keep(v), f.name)
			}
		}

		alerts, next, err := l.ListAlerts(t.Context(), viewlog.Filter{Account: &denied.AccountID})
		require.NoError(t, err)
		require.True(t, next.IsZero())
		require.Equal(t, b.Alerts, alerts)
		raised, err := l.AlertsRaisedAfter(t.Context(), viewlog.Cursor{At: t0.Add(time.Hour)}, 10)
		require.NoError(t, err)
		require.Equal(t, b.Alerts, raised)
		raised, err = l.AlertsRaisedAfter(t.Context(), viewlog.Cursor{At: t0.Add(time.Hour + time.Microsecond)}, 10)
		require.NoError(t, err)
		require.Empty(t, raised)
		raised, err = l.AlertsRaisedAfter(t.Context(), viewlog.Cursor{At: t0.Add(time.Hour), ID: b.Alerts[0].ID}, 10)
		require.NoError(t, err)
		require.Empty(t, raised, "after the last one read")
		sec, _, err := securitylog.New(db).List(t.Context(), securitylog.Filter{Account: &denied.AccountID})
		require.NoError(t, err)
		require.Len(t, sec, 1, "the alert is in the security log, found by its account")
		sec, _, err = securitylog.New(db).List(t.Context(), securitylog.Filter{Child: &denied.ChildID})
		require.NoError(t, err)
		require.Len(t, sec, 1, "and by its child")
	})
}

func TestRecordIsAllOrNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		l := viewlog.New(db)
		a, c := uuid.New(), uuid.New()
		tooMany := viewlog.Batch{}
		for range viewlog.MaxBatch + 1 {
			tooMany.Views = append(tooMany.Views, view(t, a, c, t0, true))
		}
		badSecurity := viewlog.Batch{Views: []viewlog.View{view(t, a, c, t0, false)},
			Alerts:   []viewlog.Alert{{ID: newID(t), Kind: viewlog.KindViewWithoutAccess, AccountID: a, ChildID: c, At: t0, RaisedAt: t0}},
			Security: []securitylog.Entry{{At: t0, ActorID: "", ActorRole: "service", Command: "view", Code: "x"}}}
		noAccount := viewlog.Batch{Views: []viewlog.View{view(t, uuid.Nil, c, t0, true)}}
		badTime := viewlog.Batch{Views: []viewlog.View{view(t, a, c, time.Time{}, true)}}
		badPerm := view(t, a, c, t0, true)
		badPerm.Permission = 0
		dup := view(t, a, c, t0, true)
		duplicate := viewlog.Batch{Views: []viewlog.View{dup, dup}}
		for name, b := range map[string]viewlog.Batch{"too many": tooMany, "bad security entry": badSecurity,
			"no account": noAccount, "bad time": badTime, "bad permission": {Views: []viewlog.View{badPerm}}, "duplicate id": duplicate} {
			err := l.Record(t.Context(), b)
			require.Error(t, err, name)
			if name != "duplicate id" {
				require.ErrorIs(t, err, domain.ErrInvalid, name)
			}
			views, _, err := l.ListViews(t.Context(), viewlog.Filter{})
			require.NoError(t, err)
			require.Empty(t, views, name)
			alerts, _, err := l.ListAlerts(t.Context(), viewlog.Filter{})
			require.NoError(t, err)
			require.Empty(t, alerts, name)
		}
	})
}

func TestFilterAndCursor(t *testing.T) {
	for _, f := range []viewlog.Filter{{Limit: -1}, {Limit: viewlog.MaxLimit + 1}, {From: t0, To: t0}} {
		_, _, err := viewlog.New(nil).ListViews(t.Context(), f)
		require.ErrorIs(t, err, domain.ErrInvalid)
	}
	c := viewlog.Cursor{At: t0.Add(time.Microsecond), ID: uuid.New()}
	got, err := viewlog.ParseCursor(c.String())
	require.NoError(t, err)
	require.Equal(t, c, got)
	require.Empty(t, viewlog.Cursor{}.String())
	for _, bad := range []string{"", "1", "x_" + c.ID.String(), "-1_" + c.ID.String(), "1_" + uuid.Nil.String(), "1_nope",
		"99999999999999999999_" + c.ID.String()} {
		_, err := viewlog.ParseCursor(bad)
		require.ErrorIs(t, err, domain.ErrInvalid, bad)
	}
}

func TestPrune(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		l := viewlog.New(db)
		a, c := uuid.New(), uuid.New()
		old, recent := view(t, a, c, t0, false), view(t, a, c, t0, true)
		old.RecordedAt, recent.RecordedAt = t0, t0.Add(48*time.Hour)
		alert := func(v viewlog.View) viewlog.Alert {
			return viewlog.Alert{ID: newID(t), Kind: viewlog.KindViewWithoutAccess, AccountID: a, ChildID: c, At: v.ViewedAt,
				RaisedAt: v.RecordedAt, ViewID: v.ID}
		}
		require.NoError(t, l.Record(t.Context(), viewlog.Batch{Views: []viewlog.View{old, recent},
			Alerts: []viewlog.Alert{alert(old), alert(recent)}}))
		views, alerts, err := l.Prune(t.Context(), t0.Add(24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, [2]int64{1, 1}, [2]int64{views, alerts})
		left := all(t, l, viewlog.Filter{})
		require.Len(t, left, 1)
		require.Equal(t, recent.ID, left[0].ID)
	})
}

// BenchmarkRecord measures the ingestion of batches of views (one
// multi-row INSERT per batch), allowed, on each backend. ns/op is one
// batch; views/s is reported.
func BenchmarkRecord(b *testing.B) {
	for _, be := range sqltest.Backends() {
		for _, size := range []int{100, 1000} {
			b.Run(be.Name+"/batch="+strconv.Itoa(size), func(b *testing.B) {
				l := viewlog.New(open(b, be.URL(b)))
				acct, child := uuid.New(), uuid.New()
				b.ReportAllocs()
				for b.Loop() {
					batch := viewlog.Batch{Views: make([]viewlog.View, size)}
					for i := range batch.Views {
						batch.Views[i] = view(b, acct, child, t0, true)
					}
					if err := l.Record(b.Context(), batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "views/s")
			})
		}
	}
}

func TestPruneEvery(t *testing.T) {
	db := open(t, sqltest.SQLiteMemory(t))
	l := viewlog.New(db)
	a, c := uuid.New(), uuid.New()
	old := view(t, a, c, t0, true)
	old.RecordedAt = t0
	require.NoError(t, l.Record(t.Context(), viewlog.Batch{Views: []viewlog.View{old}}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- l.PruneEvery(ctx, 24*time.Hour, time.Millisecond, func() time.Time { return t0.Add(25 * time.Hour) }, slog.New(slog.DiscardHandler))
	}()
	require.Eventually(t, func() bool {
		views, _, err := l.ListViews(t.Context(), viewlog.Filter{})
		require.NoError(t, err)
		return len(views) == 0
	}, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
