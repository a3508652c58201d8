package queries

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// viewIndex knows one account and one child; the account may view the
// child's record until cutoff.
type viewIndex struct {
	fakeIndex
	acct, child uuid.UUID
	cutoff      time.Time
}

func (v viewIndex) KnowsAccount(id uuid.UUID) bool { return id == v.acct }
func (v viewIndex) KnowsChild(id uuid.UUID) bool   { return id == v.child }
func (v viewIndex) Check(acct, child uuid.UUID, perm domain.Permission, t time.Time) accessindex.Answer {
	if t.Before(v.cutoff) && perm == domain.View {
		return accessindex.Answer{Allowed: true, Reason: domain.ReasonPlacement, Position: v.pos}
	}
	return accessindex.Answer{Reason: domain.ReasonGraceExpired, Position: v.pos}
}

// batches keeps the batches it is given.
type batches struct {
	Views
	got []viewlog.Batch
}

func (b *batches) Record(_ context.Context, x viewlog.Batch) error {
	b.got = append(b.got, x)
	return nil
}

// TestRule_R20_RecordViewsDecidesAtViewedAt: each view is kept with the
// index's decision at its viewed_at; a view without access (denied, or of
// an account or child the engine does not know) raises an alert and a
// security log entry in the same batch; bad input keeps nothing.
func TestRule_R20_RecordViewsDecidesAtViewedAt(t *testing.T) {
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	ix := viewIndex{fakeIndex: fakeIndex{pos: eventlog.At(42)}, acct: uuid.New(), child: uuid.New(), cutoff: now.Add(-time.Hour)}
	store := &batches{}
	s := newService(t, &recorder{}, ix, nil)
	s.cfg.Views = store
	portal := Caller{Actor: domain.Actor{ID: "portal", Role: domain.RoleService}, RequestID: "req-9"}
	in := []ViewInput{
		{Account: ix.acct, Child: ix.child, Permission: domain.View, ViewedAt: now.Add(-2 * time.Hour)}, // allowed
		{Account: ix.acct, Child: ix.child, Permission: domain.View, ViewedAt: now.Add(-time.Minute)},   // after the cutoff
		{Account: uuid.New(), Child: ix.child, Permission: domain.View, ViewedAt: now},                  // unknown account
		{Account: ix.acct, Child: uuid.New(), Permission: domain.Record, ViewedAt: now},                 // unknown child
	}
	a, err := s.RecordViews(t.Context(), portal, in, Consistency{})
	require.NoError(t, err)
	require.Equal(t, "42", a.Position)
	require.Len(t, a.Views, 4)
	require.Equal(t, []bool{true, false, false, false}, []bool{a.Views[0].Allowed, a.Views[1].Allowed, a.Views[2].Allowed, a.Views[3].Allowed})
	require.Equal(t, "grace_expired", string(a.Views[1].Reason))
	require.Equal(t, "no_relationship", string(a.Views[2].Reason))
	require.Len(t, store.got, 1, "one batch")
	b := store.got[0]
	require.Len(t, b.Views, 4)
	require.Len(t, b.Alerts, 3)
	require.Len(t, b.Security, 3)
	for i, v := range b.Views {
		require.Equal(t, a.Views[i].ViewID, v.ID)
		require.Equal(t, "portal", v.ActorID)
		require.Equal(t, "42", v.Position)
		require.Equal(t, now, v.RecordedAt)
	}
	for i, al := range b.Alerts {
		v := b.Views[i+1]
		require.Equal(t, viewlog.KindViewWithoutAccess, al.Kind)
		require.Equal(t, v.ID, al.ViewID)
		require.Equal(t, v.ViewedAt, al.At)
		require.Equal(t, "child/"+v.ChildID.String()+"/view/"+v.AccountID.String(), b.Security[i].Target)
		require.Equal(t, "view", b.Security[i].Command)
		require.Equal(t, "req-9", b.Security[i].RequestID)
	}
	require.Contains(t, b.Alerts[1].Detail, "the account is not known")
	require.Contains(t, b.Alerts[2].Detail, "the child is not known")

	for name, bad := range map[string][]ViewInput{
		"none":           nil,
		"too many":       make([]ViewInput, MaxViews+1),
		"nil account":    {{Child: ix.child, Permission: domain.View, ViewedAt: now}},
		"nil child":      {{Account: ix.acct, Permission: domain.View, ViewedAt: now}},
		"bad permission": {{Account: ix.acct, Child: ix.child, ViewedAt: now}},
		"future":         {{Account: ix.acct, Child: ix.child, Permission: domain.View, ViewedAt: now.Add(ViewClockSkew + time.Second)}},
		"too old":        {{Account: ix.acct, Child: ix.child, Permission: domain.View, ViewedAt: now.Add(-MaxViewAge - time.Second)}},
	} {
		_, err := s.RecordViews(t.Context(), portal, bad, Consistency{})
		require.ErrorIs(t, err, domain.ErrInvalid, name)
		require.Len(t, store.got, 1, "%s: nothing kept", name)
	}
	_, err = s.RecordViews(t.Context(), portal, in[:1], After(eventlog.At(43)))
	require.ErrorIs(t, err, ErrStale, "waits for the index")
	_, err = s.RecordViews(t.Context(), Caller{Actor: domain.Actor{ID: "w", Role: domain.RoleWorker}}, in[:1], Consistency{})
	require.ErrorIs(t, err, ErrForbidden)
	require.Len(t, store.got, 1)
}
