package domain_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestRule_R18_APlannedPlacementIsCancelledBeforeItStarts: the child's
// worker cancels a planned placement, with a reason, until it starts; a
// cancelled placement never gives access, ends nothing and blocks nothing.
func TestRule_R18_APlannedPlacementIsCancelledBeforeItStarts(t *testing.T) {
	carer := activeCarer(t)
	planned := started(placement, carerID, t0.Add(10*day))
	cancelled := &domain.PlacementCancelled{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, CancelledAt: t0.Add(day)}

	t.Run("the worker cancels it before it starts", func(t *testing.T) {
		c := givenChild(t, registered(), planned)
		got, err := c.CancelPlacement(worker, placement, "carer withdrew", t0.Add(day))
		thenEvents(t, got, err, cancelled)
	})
	refusals := []struct {
		name    string
		history []domain.Event
		by      domain.Actor
		reason  string
		now     time.Time
		want    error
	}{
		{"once it started", []domain.Event{registered(), planned}, worker, "too late", t0.Add(10 * day), domain.ErrPlacementStarted},
		{"twice", []domain.Event{registered(), planned, cancelled}, worker, "again", t0.Add(2 * day), domain.ErrPlacementCancelled},
		{"by another worker", []domain.Event{registered(), planned}, other, "not mine", t0.Add(day), domain.ErrNotAllocated},
		{"by a manager", []domain.Event{registered(), planned}, manager, "not mine", t0.Add(day), domain.ErrRoleNotAllowed},
		{"without a reason", []domain.Event{registered(), planned}, worker, "", t0.Add(day), domain.ErrInvalid},
		{"an unknown placement", []domain.Event{registered()}, worker, "none", t0.Add(day), domain.ErrPlacementNotFound},
	}
	for _, tc := range refusals {
		t.Run("refused "+tc.name, func(t *testing.T) {
			got, err := givenChild(t, tc.history...).CancelPlacement(tc.by, placement, tc.reason, tc.now)
			thenError(t, got, err, tc.want)
		})
	}

	c := givenChild(t, registered(), planned, cancelled)
	t.Run("it never gives access", func(t *testing.T) {
		for _, at := range []time.Time{t0.Add(10 * day), t0.Add(20 * day)} {
			require.Equal(t, domain.ReasonNoRelationship, c.Access(carer, at).Reason)
		}
		require.Empty(t, c.PlacementFacts(carerID))
		v, ok := c.Placement(placement)
		require.True(t, ok)
		require.Equal(t, t0.Add(day), v.CancelledAt)
	})
	t.Run("it cannot be ended or its grace ended", func(t *testing.T) {
		got, err := c.EndPlacement(worker, placement, t0.Add(11*day), t0.Add(2*day), policy)
		thenError(t, got, err, domain.ErrPlacementCancelled)
		got, err = c.EndGraceEarly(worker, placement, "concern", t0.Add(12*day))
		thenError(t, got, err, domain.ErrPlacementCancelled)
	})
	t.Run("its deadline, if it had one, records nothing", func(t *testing.T) {
		withEnd := givenChild(t, registered(), planned, ended(placement, carerID, t0.Add(12*day)),
			&domain.PlacementCancelled{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, CancelledAt: t0.Add(day)})
		got, err := withEnd.ExpireCarerAccess(placement, t0.Add(30*day))
		thenEvents(t, got, err)
	})
	t.Run("the carer may be placed again at the same time", func(t *testing.T) {
		again := uuid.MustParse("33333333-3333-4333-8333-333333333333")
		got, err := c.StartPlacement(worker, again, carer, t0.Add(10*day), t0.Add(2*day))
		thenEvents(t, got, err, started(again, carerID, t0.Add(10*day)))
	})
}

// TestRule_R18_AReopenedAccountGetsNoAccessBack: the portals team reopens a
// closed account with a reason; its identity stays, the access it had
// before the closure does not come back, and a worker can give it again.
func TestRule_R18_AReopenedAccountGetsNoAccessBack(t *testing.T) {
	closedAt, reopenedAt := t0.Add(5*day), t0.Add(8*day)
	closed := &domain.AccountClosed{AccountID: parentID, ClosedAt: closedAt}
	reopened := &domain.AccountReopened{AccountID: parentID, ClosedAt: closedAt, ReopenedAt: reopenedAt}

	t.Run("the portals team reopens a closed account", func(t *testing.T) {
		a := activeParent(t, closed)
		got, err := a.Reopen(portals, "closed by mistake", reopenedAt)
		thenEvents(t, got, err, reopened)
	})
	refusals := []struct {
		name   string
		acct   *domain.Account
		by     domain.Actor
		reason string
		want   error
	}{
		{"an open account", activeParent(t), portals, "why", domain.ErrAccountNotClosed},
		{"by a worker", activeParent(t, closed), worker, "why", domain.ErrRoleNotAllowed},
		{"without a reason", activeParent(t, closed), portals, "", domain.ErrInvalid},
		{"an unknown account", domain.NewAccount(parentID), portals, "why", domain.ErrAccountNotFound},
		{"an erased account", activeParent(t, closed, &domain.AccountErased{AccountID: parentID, ErasedAt: t0.Add(6 * day)}),
			portals, "why", domain.ErrErased},
	}
	for _, tc := range refusals {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			got, err := tc.acct.Reopen(tc.by, tc.reason, reopenedAt)
			thenError(t, got, err, tc.want)
		})
	}

	a := activeParent(t, closed, reopened)
	require.Equal(t, domain.StatusActive, a.StatusAt(reopenedAt))
	require.Equal(t, "idp|parent", a.IdentitySubject(), "the identity link stays")
	require.Equal(t, reopenedAt, a.ReopenedAt())

	carer := activeCarer(t, &domain.AccountClosed{AccountID: carerID, ClosedAt: closedAt},
		&domain.AccountReopened{AccountID: carerID, ClosedAt: closedAt, ReopenedAt: reopenedAt})
	c := givenChild(t, registered(), started(placement, carerID, t0), granted(parentID, []string{domain.PermView}, t0))
	t.Run("access before the closure is as it was", func(t *testing.T) {
		thenAccess(t, c.Access(a, t0.Add(day)), domain.PermissionSet(domain.View), domain.ReasonGrant, closedAt)
		thenAccess(t, c.Access(carer, t0.Add(day)), domain.All, domain.ReasonPlacement, closedAt)
	})
	t.Run("closed in between", func(t *testing.T) {
		require.Equal(t, domain.ReasonAccountClosed, c.Access(a, t0.Add(6*day)).Reason)
		require.Equal(t, domain.ReasonAccountClosed, c.Access(carer, t0.Add(6*day)).Reason)
	})
	t.Run("no access comes back by itself", func(t *testing.T) {
		for _, at := range []time.Time{reopenedAt, t0.Add(30 * day)} {
			thenAccess(t, c.Access(a, at), 0, domain.ReasonNoRelationship, time.Time{})
			thenAccess(t, c.Access(carer, at), 0, domain.ReasonNoRelationship, time.Time{})
		}
	})
	t.Run("the worker grants again, and the same grant is a new one", func(t *testing.T) {
		got, err := c.Grant(worker, a, "parent", []string{domain.PermView}, "contact restored", t0.Add(9*day))
		regrant := granted(parentID, []string{domain.PermView}, t0.Add(9*day)).(*domain.AccessGranted)
		regrant.AccountSince, regrant.ReviewBy = reopenedAt, t0.Add(9*day).Add(policy.ReviewPeriod)
		thenEvents(t, got, err, regrant)
		require.NoError(t, c.Apply(got[0]))
		thenAccess(t, c.Access(a, t0.Add(10*day)), domain.PermissionSet(domain.View), domain.ReasonGrant, time.Time{})
		got, err = c.Grant(worker, a, "parent", []string{domain.PermView}, "again", t0.Add(10*day))
		thenError(t, got, err, domain.ErrAlreadyGranted)
	})
	t.Run("the worker places the carer again beside the placement from before", func(t *testing.T) {
		again := uuid.MustParse("33333333-3333-4333-8333-333333333333")
		got, err := c.StartPlacement(worker, again, carer, t0.Add(9*day), t0.Add(9*day))
		placed := started(again, carerID, t0.Add(9*day)).(*domain.PlacementStarted)
		placed.AccountSince = reopenedAt
		thenEvents(t, got, err, placed)
		require.NoError(t, c.Apply(got[0]))
		thenAccess(t, c.Access(carer, t0.Add(10*day)), domain.All, domain.ReasonPlacement, time.Time{})
	})
	t.Run("a placement planned before the closure for after the reopening gives nothing", func(t *testing.T) {
		planned := uuid.MustParse("44444444-4444-4444-8444-444444444444")
		ch := givenChild(t, registered(), started(planned, carerID, t0.Add(20*day))) // recorded before the closure
		thenAccess(t, ch.Access(carer, t0.Add(21*day)), 0, domain.ReasonNoRelationship, time.Time{})
		// and the carer may be placed for those dates in the new life
		got, err := ch.StartPlacement(worker, placement, carer, t0.Add(20*day), t0.Add(9*day))
		require.NoError(t, err)
		require.Len(t, got, 1)
	})
	t.Run("a placement backdated to before the reopening counts from it", func(t *testing.T) {
		ch := givenChild(t, registered())
		got, err := ch.StartPlacement(worker, placement, carer, reopenedAt.Add(-time.Hour), reopenedAt.Add(time.Hour))
		require.NoError(t, err)
		require.NoError(t, ch.Apply(got[0]))
		thenAccess(t, ch.Access(carer, reopenedAt.Add(-time.Minute)), 0, domain.ReasonAccountClosed, time.Time{})
		thenAccess(t, ch.Access(carer, reopenedAt), domain.All, domain.ReasonPlacement, time.Time{})
	})
	t.Run("an answer before the closure ends at the closure", func(t *testing.T) {
		got := domain.ChildAccess(a.Facts(), nil, []domain.GrantFacts{{From: t0, Permissions: domain.PermissionSet(domain.View)}}, t0)
		thenAccess(t, got, domain.PermissionSet(domain.View), domain.ReasonGrant, closedAt)
	})
}

// TestRule_R18_AnEmailIsChangedByRequestAndApplication: a worker files the
// request with a reason, the portals team applies it with the same email;
// the account id stays.
func TestRule_R18_AnEmailIsChangedByRequestAndApplication(t *testing.T) {
	const newEmail = "Parent.New@Example.org"
	requested := &domain.EmailChangeRequested{AccountID: parentID, Email: "parent.new@example.org", RequestedAt: t0.Add(day)}
	changed := &domain.EmailChanged{AccountID: parentID, Email: "parent.new@example.org", ChangedAt: t0.Add(2 * day)}

	t.Run("a worker files the request", func(t *testing.T) {
		got, err := activeParent(t).RequestEmailChange(worker, newEmail, "typo in the address", t0.Add(day))
		thenEvents(t, got, err, requested)
	})
	t.Run("the portals team applies it", func(t *testing.T) {
		a := activeParent(t, requested)
		require.Equal(t, "parent.new@example.org", a.PendingEmail())
		got, err := a.ChangeEmail(portals, newEmail, t0.Add(2*day))
		thenEvents(t, got, err, changed)
		require.NoError(t, a.Apply(changed))
		require.Equal(t, "parent.new@example.org", a.Email())
		require.Empty(t, a.PendingEmail())
		require.Equal(t, parentID, a.ID())
	})
	requests := []struct {
		name   string
		acct   *domain.Account
		by     domain.Actor
		email  string
		reason string
		want   error
	}{
		{"by the portals team", activeParent(t), portals, newEmail, "why", domain.ErrRoleNotAllowed},
		{"without a reason", activeParent(t), worker, newEmail, "", domain.ErrInvalid},
		{"to a malformed address", activeParent(t), worker, "not-an-email", "why", domain.ErrInvalid},
		{"to the same address", activeParent(t), worker, " PARENT@example.org", "why", domain.ErrInvalid},
		{"twice", activeParent(t, requested), worker, newEmail, "why", domain.ErrEmailChangePending},
		{"of a closed account", activeParent(t, &domain.AccountClosed{AccountID: parentID, ClosedAt: t0}), worker, newEmail, "why",
			domain.ErrAccountClosed},
		{"for the worker's own account", activeParent(t), domain.Actor{ID: "idp|parent", Role: domain.RoleWorker}, newEmail, "why",
			domain.ErrSelfAccess},
	}
	for _, tc := range requests {
		t.Run("request refused: "+tc.name, func(t *testing.T) {
			got, err := tc.acct.RequestEmailChange(tc.by, tc.email, tc.reason, t0.Add(day))
			thenError(t, got, err, tc.want)
		})
	}
	applications := []struct {
		name  string
		acct  *domain.Account
		by    domain.Actor
		email string
		want  error
	}{
		{"without a request", activeParent(t), portals, newEmail, domain.ErrNoEmailChangeRequest},
		{"with another email", activeParent(t, requested), portals, "other@example.org", domain.ErrEmailChangeMismatch},
		{"by a worker", activeParent(t, requested), worker, newEmail, domain.ErrRoleNotAllowed},
		{"twice", activeParent(t, requested, changed), portals, newEmail, domain.ErrNoEmailChangeRequest},
	}
	for _, tc := range applications {
		t.Run("application refused: "+tc.name, func(t *testing.T) {
			got, err := tc.acct.ChangeEmail(tc.by, tc.email, t0.Add(2*day))
			thenError(t, got, err, tc.want)
		})
	}
}

// TestRule_R18_AnEmailClaimHasOneHolder: an email's claim stream gives the
// email to one account; another account is refused while the holder holds
// it, and a released email is free again.
func TestRule_R18_AnEmailClaimHasOneHolder(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	claimed := &domain.EmailClaimed{AccountID: a, ClaimedAt: t0}
	tests := []struct {
		name        string
		history     []domain.Event
		account     uuid.UUID
		holderHolds bool
		want        []domain.Event
		wantErr     error
	}{
		{"a free email", nil, a, false, []domain.Event{claimed}, nil},
		{"claimed again by its holder", []domain.Event{claimed}, a, true, nil, nil},
		{"held by another", []domain.Event{claimed}, b, true, nil, domain.ErrAlreadyRegistered},
		{"claimed by another that no longer holds it", []domain.Event{claimed}, b, false,
			[]domain.Event{&domain.EmailClaimed{AccountID: b, ClaimedAt: t0}}, nil},
		{"released", []domain.Event{claimed, &domain.EmailReleased{AccountID: a, ReleasedAt: t0}}, b, true,
			[]domain.Event{&domain.EmailClaimed{AccountID: b, ClaimedAt: t0}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := domain.NewEmailClaim()
			for _, e := range tc.history {
				require.NoError(t, c.Apply(e))
			}
			got, err := c.Claim(tc.account, tc.holderHolds, t0)
			if tc.wantErr != nil {
				thenError(t, got, err, tc.wantErr)
				return
			}
			thenEvents(t, got, err, tc.want...)
		})
	}
	c := domain.NewEmailClaim()
	require.NoError(t, c.Apply(claimed))
	require.Empty(t, c.Release(b, t0), "only the holder releases")
	require.Equal(t, []domain.Event{&domain.EmailReleased{AccountID: a, ReleasedAt: t0}}, c.Release(a, t0))
}
