package accesshistory_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/projtest"
)

const day = 24 * time.Hour

// tables are the physical tables of the tests: the logical names, so that
// the queries (which read the logical name) see them without a view.
var tables = projections.Tables{"access_history": "access_history"}

// harness drives the projection the way the runner does, on one database.
type harness struct {
	t  *testing.T
	db *sqldb.DB
	p  *accesshistory.Projection
	at int // records applied
}

func newHarness(t *testing.T, url string) *harness {
	db := sqltest.Open(t, url)
	p := accesshistory.New()
	ctx := context.Background()
	for _, tb := range p.Tables() {
		for _, stmt := range tb.Create(db.Dialect().Name(), tables.Name(tb.Name)) {
			_, err := db.ExecContext(ctx, stmt)
			require.NoError(t, err, stmt)
		}
	}
	warm, err := p.Load(ctx, db, tables, eventlog.Start)
	require.NoError(t, err)
	require.True(t, warm)
	return &harness{t: t, db: db, p: p}
}

// sync applies the world's new records in batches of n.
func (h *harness) sync(w *projtest.World, n int) {
	ctx := context.Background()
	for h.at < len(w.Records) {
		end := min(h.at+n, len(w.Records))
		batch := w.Records[h.at:end]
		require.NoError(h.t, h.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return h.p.Apply(ctx, tx, tables, batch)
		}))
		h.at = end
	}
}

func forEachBackend(t *testing.T, f func(t *testing.T, url string)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b.URL(t)) })
	}
}

func TestRule_R15_WhoCouldSeeAtTAndWhy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		h := newHarness(t, url)
		w := projtest.New(t.Fatalf)
		child := w.RegisterChild()
		carer, member := w.Carer(), w.Member()
		w.Advance(time.Hour)
		pl := w.Place(child, carer, w.Now)
		w.Grant(child, member, domain.PermView)
		grantAt := w.Now
		w.Advance(10 * day)
		endAt := w.Now
		w.End(child, pl, endAt)
		h.sync(w, 100)

		ctx := context.Background()
		got, err := accesshistory.WhoCouldSee(ctx, h.db, child, grantAt.Add(day), accesshistory.Current)
		require.NoError(t, err)
		require.Len(t, got, 2)
		byAcct := map[uuid.UUID]accesshistory.Interval{}
		for _, iv := range got {
			byAcct[iv.AccountID] = iv
		}
		c := byAcct[carer]
		require.Equal(t, domain.All, c.Permissions)
		require.Equal(t, domain.ReasonPlacement, c.Reason)
		require.True(t, c.From.Equal(grantAt) && c.To.Equal(endAt))
		require.Equal(t, domain.TypePlacementStarted, c.OpenedBy.Type)
		require.Equal(t, projtest.Worker.ID, c.OpenedBy.ActorID)
		require.Equal(t, domain.TypePlacementEnded, c.ClosedBy.Type, "the history names who ended the placement")
		m := byAcct[member]
		require.Equal(t, domain.PermissionSet(domain.View), m.Permissions)
		require.Equal(t, domain.ReasonGrant, m.Reason)
		require.Equal(t, domain.TypeAccessGranted, m.OpenedBy.Type)
		require.Nil(t, m.ClosedBy)
		require.True(t, m.To.IsZero())

		// During the grace period: the carer views and completes, no more.
		got, err = accesshistory.WhoCouldSee(ctx, h.db, child, endAt.Add(day), accesshistory.Current)
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, iv := range got {
			if iv.AccountID == carer {
				require.Equal(t, domain.ReasonGracePeriod, iv.Reason)
				require.Equal(t, domain.PermissionSet(domain.View|domain.CompleteOutstanding), iv.Permissions)
				require.True(t, iv.To.Equal(endAt.Add(w.Policy.GracePeriod)))
				require.Equal(t, domain.TypePlacementEnded, iv.OpenedBy.Type)
			}
		}
		// After it: only the member.
		got, err = accesshistory.WhoCouldSee(ctx, h.db, child, endAt.Add(8*day), accesshistory.Current)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, member, got[0].AccountID)

		// And what could the carer see.
		what, err := accesshistory.WhatCouldSee(ctx, h.db, carer, grantAt.Add(day), accesshistory.Current)
		require.NoError(t, err)
		require.Len(t, what, 1)
		require.Equal(t, child, what[0].ChildID)
	})
}

func TestRule_R4_BackdatedEndAsKnownBeforeAndAfter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		h := newHarness(t, url)
		w := projtest.New(t.Fatalf)
		child := w.RegisterChild()
		carer := w.Carer()
		start := w.Now
		pl := w.Place(child, carer, start)
		w.Advance(20 * day)
		before := w.Head() // what was known before the end was recorded
		// Recorded today, effective ten days ago: the grace period is over.
		w.End(child, pl, start.Add(10*day))
		h.sync(w, 1)

		ctx := context.Background()
		probe := start.Add(18 * day)
		then, err := accesshistory.WhoCouldSee(ctx, h.db, child, probe, accesshistory.AsOf(before))
		require.NoError(t, err)
		require.Len(t, then, 1, "as known before the backdated end, the carer could see the child on day 18")
		require.Equal(t, domain.ReasonPlacement, then[0].Reason)
		require.True(t, then[0].To.IsZero())
		require.NotNil(t, then[0].SupersededAt)

		now, err := accesshistory.WhoCouldSee(ctx, h.db, child, probe, accesshistory.Current)
		require.NoError(t, err)
		require.Empty(t, now, "as known now, the placement ended on day 10 and its grace on day 17")
	})
}

func TestRule_R5_RePlacementWithoutGap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		h := newHarness(t, url)
		w := projtest.New(t.Fatalf)
		child := w.RegisterChild()
		carer := w.Carer()
		start := w.Now
		pl := w.Place(child, carer, start)
		w.Advance(5 * day)
		w.End(child, pl, w.Now)
		w.Advance(2 * day)
		w.Place(child, carer, w.Now)
		h.sync(w, 3)

		hist, err := accesshistory.ChildHistory(context.Background(), h.db, child, accesshistory.Current)
		require.NoError(t, err)
		require.Len(t, hist, 3)
		for i := 1; i < len(hist); i++ {
			require.True(t, hist[i-1].To.Equal(hist[i].From), "no gap between %v and %v", hist[i-1], hist[i])
		}
		require.Equal(t, []domain.Reason{domain.ReasonPlacement, domain.ReasonGracePeriod, domain.ReasonPlacement},
			[]domain.Reason{hist[0].Reason, hist[1].Reason, hist[2].Reason})
	})
}

func TestRule_R13_ClosingEndsEveryInterval(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		h := newHarness(t, url)
		w := projtest.New(t.Fatalf)
		a, b := w.RegisterChild(), w.RegisterChild()
		carer := w.Carer()
		w.Place(a, carer, w.Now)
		w.Place(b, carer, w.Now)
		w.Advance(day)
		closedAt := w.Now
		w.Close(carer)
		h.sync(w, 2)

		hist, err := accesshistory.AccountHistory(context.Background(), h.db, carer, accesshistory.Current)
		require.NoError(t, err)
		require.Len(t, hist, 2)
		for _, iv := range hist {
			require.True(t, iv.To.Equal(closedAt))
			require.Equal(t, domain.TypeAccountClosed, iv.ClosedBy.Type)
			require.Equal(t, projtest.Portals.ID, iv.ClosedBy.ActorID)
		}
	})
}

// TestBatchingDoesNotChangeRows: the same history applied one record at a
// time and in one batch gives the same rows, superseded ones included.
func TestBatchingDoesNotChangeRows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		w := projtest.New(t.Fatalf)
		child := w.RegisterChild()
		carer, member := w.Carer(), w.Member()
		pl := w.Place(child, carer, w.Now)
		w.Grant(child, member, domain.PermView, domain.PermRecord)
		w.Advance(3 * day)
		w.End(child, pl, w.Now.Add(-day))
		w.Revoke(child, member)
		w.Advance(time.Hour)
		w.Grant(child, member, domain.PermView)
		w.Close(member)

		dump := func(n int) []accesshistory.Interval {
			h := newHarness(t, url)
			h.sync(w, n)
			var all []accesshistory.Interval
			for k := range w.Records {
				got, err := accesshistory.ChildHistory(context.Background(), h.db, child, accesshistory.AsOf(w.Records[k].Position))
				require.NoError(t, err)
				all = append(all, got...)
			}
			_, err := h.db.ExecContext(context.Background(), "DROP TABLE access_history")
			require.NoError(t, err)
			return all
		}
		require.Equal(t, dump(1), dump(len(w.Records)))
	})
}

// TestRule_R15_TheHistoryNamesTheEventBehindEachBound: an access that
// begins at an activation names the placement when the placement (started
// before the activation) was recorded after it, and the activation when it
// was recorded after the placement; a grace period's end is named by the
// placement end until the process manager records the expiry, and by the
// expiry from then on (as known before, it stays the end).
func TestRule_R15_TheHistoryNamesTheEventBehindEachBound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		h := newHarness(t, url)
		w := projtest.New(t.Fatalf)
		ctx := context.Background()
		child := w.RegisterChild()

		// Activated first, placed (backdated) later.
		early := w.Carer()
		activatedAt := w.Now
		w.Advance(day)
		w.Place(child, early, activatedAt.Add(-5*day))
		// Placed first, activated later.
		late := w.Invite(domain.KindFosterCarer)
		lateStart := w.Now
		pl := w.Place(child, late, lateStart)
		w.Advance(day)
		lateActivation := w.Now
		w.Activate(late)
		h.sync(w, 1)

		got, err := accesshistory.WhoCouldSee(ctx, h.db, child, w.Now, accesshistory.Current)
		require.NoError(t, err)
		by := map[uuid.UUID]accesshistory.Interval{}
		for _, iv := range got {
			by[iv.AccountID] = iv
		}
		require.True(t, by[early].From.Equal(activatedAt))
		require.Equal(t, domain.TypePlacementStarted, by[early].OpenedBy.Type, "the placement's recording opened the access")
		require.True(t, by[late].From.Equal(lateActivation))
		require.Equal(t, domain.TypeAccountActivated, by[late].OpenedBy.Type, "the activation's recording opened the access")

		// The grace period's end.
		w.Advance(day)
		endAt := w.Now
		w.End(child, pl, endAt)
		w.Advance(w.Policy.GracePeriod)
		beforeExpiry := w.Head()
		require.NoError(t, w.Expire(child, pl))
		h.sync(w, 1)
		grace := func(k accesshistory.Known) accesshistory.Interval {
			ivs, err := accesshistory.WhoCouldSee(ctx, h.db, child, endAt.Add(time.Hour), k)
			require.NoError(t, err)
			for _, iv := range ivs {
				if iv.AccountID == late {
					require.Equal(t, domain.ReasonGracePeriod, iv.Reason)
					return iv
				}
			}
			t.Fatalf("no grace interval")
			return accesshistory.Interval{}
		}
		require.Equal(t, domain.TypeGraceExpired, grace(accesshistory.Current).ClosedBy.Type)
		require.Equal(t, projtest.Worker.ID, grace(accesshistory.Current).OpenedBy.ActorID)
		require.Equal(t, domain.TypePlacementEnded, grace(accesshistory.AsOf(beforeExpiry)).ClosedBy.Type)
	})
}
