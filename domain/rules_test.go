package domain_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// The tests in this file are the domain's rules (domain-rules.md), one test
// per rule, each written as: given events (the aggregate's history), when a
// command, then new events or an error. Time is always an argument.

var (
	t0        = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday
	day       = 24 * time.Hour
	policy    = domain.DefaultPolicy
	childID   = uuid.MustParse("11111111-1111-4111-8111-111111111111")
	placement = uuid.MustParse("22222222-2222-4222-8222-222222222222")
	worker    = domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}
	other     = domain.Actor{ID: "worker-bob", Role: domain.RoleWorker}
	manager   = domain.Actor{ID: "manager-meg", Role: domain.RoleManager}
	portals   = domain.Actor{ID: "portals-pat", Role: domain.RolePortalsTeam}
	service   = domain.Actor{ID: "portal-backend", Role: domain.RoleService}
	auditor   = domain.Actor{ID: "auditor-al", Role: domain.RoleAuditor}

	carerEmail  = "carer@example.org"
	carerID     = domain.AccountIDForEmail(carerEmail)
	parentEmail = "parent@example.org"
	parentID    = domain.AccountIDForEmail(parentEmail)
)

// ---- given ----

func givenChild(t *testing.T, history ...domain.Event) *domain.Child {
	t.Helper()
	c := domain.NewChild(childID)
	for _, e := range history {
		require.NoError(t, c.Apply(e))
	}
	require.Equal(t, uint64(len(history)), c.Version())
	return c
}

func givenAccount(t *testing.T, id uuid.UUID, history ...domain.Event) *domain.Account {
	t.Helper()
	a := domain.NewAccount(id)
	for _, e := range history {
		require.NoError(t, a.Apply(e))
	}
	return a
}

func registered() domain.Event {
	return &domain.ChildRegistered{ChildID: childID, Reference: "C-0001", WorkerID: worker.ID, RegisteredAt: t0}
}

func invited(id uuid.UUID, email string, kind domain.AccountKind, at time.Time) domain.Event {
	return &domain.AccountInvited{AccountID: id, Email: email, Kind: kind, InvitedAt: at, ExpiresAt: at.Add(policy.InvitationTTL)}
}

func activated(id uuid.UUID, subject string, at time.Time) domain.Event {
	return &domain.AccountActivated{AccountID: id, IdentitySubject: subject, ActivatedAt: at}
}

// activeCarer is an active foster carer's account, activated at t0.
func activeCarer(t *testing.T, more ...domain.Event) *domain.Account {
	return givenAccount(t, carerID, append([]domain.Event{
		invited(carerID, carerEmail, domain.KindFosterCarer, t0.Add(-time.Hour)),
		activated(carerID, "idp|carer", t0),
	}, more...)...)
}

func activeParent(t *testing.T, more ...domain.Event) *domain.Account {
	return givenAccount(t, parentID, append([]domain.Event{
		invited(parentID, parentEmail, domain.KindParent, t0.Add(-time.Hour)),
		activated(parentID, "idp|parent", t0),
	}, more...)...)
}

func started(id uuid.UUID, carer uuid.UUID, at time.Time) domain.Event {
	return &domain.PlacementStarted{ChildID: childID, PlacementID: id, CarerAccountID: carer, StartedAt: at}
}

func ended(id uuid.UUID, carer uuid.UUID, at time.Time) domain.Event {
	return &domain.PlacementEnded{ChildID: childID, PlacementID: id, CarerAccountID: carer, EndedAt: at, GraceUntil: at.Add(policy.GracePeriod)}
}

func expired(id uuid.UUID, carer uuid.UUID, at time.Time) domain.Event {
	return &domain.GraceExpired{ChildID: childID, PlacementID: id, CarerAccountID: carer, ExpiredAt: at}
}

func granted(account uuid.UUID, perms []string, at time.Time) domain.Event {
	return &domain.AccessGranted{ChildID: childID, AccountID: account, Relationship: domain.RelParent, Permissions: perms, GrantedAt: at,
		ReviewBy: at.Add(domain.DefaultReviewPeriod)}
}

// ---- then ----

func thenEvents(t *testing.T, got []domain.Event, err error, want ...domain.Event) {
	t.Helper()
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func thenError(t *testing.T, got []domain.Event, err error, target error) {
	t.Helper()
	require.ErrorIs(t, err, target)
	require.Empty(t, got, "a refused command decides no events")
}

func thenAccess(t *testing.T, got domain.Access, perms domain.PermissionSet, reason domain.Reason, until time.Time) {
	t.Helper()
	require.Equal(t, domain.Access{Permissions: perms, Reason: reason, Until: until}, got)
}

// ---- the rules ----

func TestRule_R1_CarerSeesOwnCarerRecord(t *testing.T) {
	carer := activeCarer(t)
	thenAccess(t, domain.CarerRecordAccess(true, carer.Facts(), t0.Add(time.Minute)), domain.All, domain.ReasonOwnRecord, time.Time{})
	// Not before the account is active, not someone else's record, not a
	// parent's account.
	thenAccess(t, domain.CarerRecordAccess(true, carer.Facts(), t0.Add(-time.Minute)), 0, domain.ReasonAccountNotActive, time.Time{})
	thenAccess(t, domain.CarerRecordAccess(false, carer.Facts(), t0.Add(time.Minute)), 0, domain.ReasonNoRelationship, time.Time{})
	thenAccess(t, domain.CarerRecordAccess(true, activeParent(t).Facts(), t0.Add(time.Minute)), 0, domain.ReasonNoRelationship, time.Time{})
	invitedOnly := givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0))
	thenAccess(t, domain.CarerRecordAccess(true, invitedOnly.Facts(), t0.Add(time.Minute)), 0, domain.ReasonAccountNotActive, time.Time{})
}

func TestRule_R2_CarerSeesAndRecordsCurrentPlacement(t *testing.T) {
	carer := activeCarer(t)
	c := givenChild(t, registered())

	got, err := c.StartPlacement(worker, placement, carer, t0.Add(day), t0.Add(day))
	thenEvents(t, got, err, started(placement, carerID, t0.Add(day)))

	c = givenChild(t, registered(), started(placement, carerID, t0.Add(day)))
	thenAccess(t, c.Access(carer, t0.Add(2*day)), domain.All, domain.ReasonPlacement, time.Time{})
	for _, p := range []domain.Permission{domain.View, domain.Record, domain.CompleteOutstanding} {
		require.True(t, c.Access(carer, t0.Add(2*day)).Allows(p), p.String())
	}
	// Before the placement starts the carer has no relationship.
	thenAccess(t, c.Access(carer, t0.Add(day-time.Second)), 0, domain.ReasonNoRelationship, time.Time{})

	// Only a foster carer's open account can be placed with.
	got, err = givenChild(t, registered()).StartPlacement(worker, placement, activeParent(t), t0, t0)
	thenError(t, got, err, domain.ErrNotFosterCarer)
	got, err = givenChild(t, registered()).StartPlacement(worker, placement, domain.NewAccount(carerID), t0, t0)
	thenError(t, got, err, domain.ErrAccountNotFound)
	closed := activeCarer(t, &domain.AccountClosed{AccountID: carerID, ClosedAt: t0})
	got, err = givenChild(t, registered()).StartPlacement(worker, placement, closed, t0, t0)
	thenError(t, got, err, domain.ErrAccountClosed)
	// A carer cannot have two placements of the same child at once.
	got, err = c.StartPlacement(worker, uuid.New(), carer, t0.Add(3*day), t0.Add(3*day))
	thenError(t, got, err, domain.ErrPlacementOverlap)
}

func TestRule_R3_GraceAllowsOnlyOutstandingWork(t *testing.T) {
	carer := activeCarer(t)
	end := t0.Add(10 * day)
	c := givenChild(t, registered(), started(placement, carerID, t0))

	got, err := c.EndPlacement(worker, placement, end, end, policy)
	thenEvents(t, got, err, ended(placement, carerID, end))

	c = givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end))
	deadline := end.Add(7 * day)

	// During grace: view and complete_outstanding, not record.
	during := c.Access(carer, end.Add(3*day))
	thenAccess(t, during, domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod, deadline)
	require.True(t, during.Allows(domain.View))
	require.True(t, during.Allows(domain.CompleteOutstanding))
	require.False(t, during.Allows(domain.Record))

	// At the deadline access ends, although no expiry event has been
	// written: the decision compares the deadline with its own time.
	thenAccess(t, c.Access(carer, deadline), 0, domain.ReasonGraceExpired, time.Time{})
	thenAccess(t, c.Access(carer, deadline.Add(-time.Microsecond)), domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod, deadline)

	// The process manager records the expiry at the deadline, not before,
	// and only once.
	got, err = c.ExpireCarerAccess(placement, deadline.Add(-time.Second))
	thenError(t, got, err, domain.ErrNotDue)
	got, err = c.ExpireCarerAccess(placement, deadline.Add(time.Hour)) // a late job
	thenEvents(t, got, err, expired(placement, carerID, deadline))
	c = givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end), expired(placement, carerID, deadline))
	got, err = c.ExpireCarerAccess(placement, deadline.Add(2*time.Hour))
	thenEvents(t, got, err)
	thenAccess(t, c.Access(carer, deadline.Add(time.Hour)), 0, domain.ReasonGraceExpired, time.Time{})

	// Ending an ended placement is refused.
	got, err = c.EndPlacement(worker, placement, end, end, policy)
	thenError(t, got, err, domain.ErrPlacementEnded)
}

func TestRule_R4_BackdatedAndPlannedEnds(t *testing.T) {
	carer := activeCarer(t)
	tests := []struct {
		name    string
		endedAt time.Time
		now     time.Time
		want    []domain.Event
	}{
		{"backdated within grace: grace counts from the effective end", t0.Add(10 * day), t0.Add(12 * day),
			[]domain.Event{ended(placement, carerID, t0.Add(10*day))}},
		{"backdated past grace: access ends at once and the expiry is written at once", t0.Add(10 * day), t0.Add(30 * day),
			[]domain.Event{ended(placement, carerID, t0.Add(10*day)), expired(placement, carerID, t0.Add(17*day))}},
		{"recorded exactly at the deadline", t0.Add(10 * day), t0.Add(17 * day),
			[]domain.Event{ended(placement, carerID, t0.Add(10*day)), expired(placement, carerID, t0.Add(17*day))}},
		{"planned move in the future", t0.Add(40 * day), t0.Add(20 * day),
			[]domain.Event{ended(placement, carerID, t0.Add(40*day))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := givenChild(t, registered(), started(placement, carerID, t0))
			got, err := c.EndPlacement(worker, placement, tt.endedAt, tt.now, policy)
			thenEvents(t, got, err, tt.want...)
		})
	}

	t.Run("a planned end keeps full access until the end, then grace", func(t *testing.T) {
		end := t0.Add(40 * day)
		c := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end))
		thenAccess(t, c.Access(carer, t0.Add(20*day)), domain.All, domain.ReasonPlacement, end)
		thenAccess(t, c.Access(carer, end), domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod, end.Add(7*day))
	})

	t.Run("a start may be backdated to before the child and the account were registered", func(t *testing.T) {
		c := givenChild(t, registered())
		startedAt := t0.AddDate(-3, 0, 0)
		got, err := c.StartPlacement(worker, placement, carer, startedAt, t0)
		thenEvents(t, got, err, started(placement, carerID, startedAt))
	})

	t.Run("an end before its start is refused", func(t *testing.T) {
		c := givenChild(t, registered(), started(placement, carerID, t0))
		got, err := c.EndPlacement(worker, placement, t0.Add(-time.Second), t0, policy)
		thenError(t, got, err, domain.ErrEndBeforeStart)
		got, err = c.EndPlacement(worker, placement, t0, t0, policy)
		thenError(t, got, err, domain.ErrEndBeforeStart) // ends as it starts: no care given
		got, err = c.EndPlacement(worker, placement, t0.Add(time.Microsecond), t0, policy)
		require.NoError(t, err)
		require.Len(t, got, 1)
	})
}

func TestRule_R5_ReplacementWithinGraceContinuesAccess(t *testing.T) {
	carer := activeCarer(t)
	end := t0.Add(10 * day)
	second := uuid.MustParse("33333333-3333-4333-8333-333333333333")
	c := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end))

	got, err := c.StartPlacement(worker, second, carer, end.Add(3*day), end.Add(3*day))
	thenEvents(t, got, err, started(second, carerID, end.Add(3*day)))

	c = givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end), started(second, carerID, end.Add(3*day)))
	// No gap: grace until the new placement starts, then the placement.
	for at := end; at.Before(end.Add(30 * day)); at = at.Add(6 * time.Hour) {
		require.True(t, c.Access(carer, at).Allows(domain.View), "no gap at %s", at)
	}
	thenAccess(t, c.Access(carer, end.Add(8*day)), domain.All, domain.ReasonPlacement, time.Time{})
	// During the overlap of the new placement and the old grace, the answer
	// is the placement's, and the old grace deadline is not its until.
	thenAccess(t, c.Access(carer, end.Add(4*day)), domain.All, domain.ReasonPlacement, time.Time{})
	// During the grace before the new placement, the answer holds until the
	// new placement starts.
	thenAccess(t, c.Access(carer, end.Add(day)), domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod, end.Add(3*day))
	// The old deadline changes nothing when it fires.
	got, err = c.ExpireCarerAccess(placement, end.Add(8*day))
	thenEvents(t, got, err)

	t.Run("placements with different carers may overlap", func(t *testing.T) {
		respiteEmail := "respite@example.org"
		respiteID := domain.AccountIDForEmail(respiteEmail)
		respite := givenAccount(t, respiteID, invited(respiteID, respiteEmail, domain.KindFosterCarer, t0), activated(respiteID, "idp|respite", t0))
		respitePlacement := uuid.MustParse("44444444-4444-4444-8444-444444444444")
		c := givenChild(t, registered(), started(placement, carerID, t0))
		got, err := c.StartPlacement(worker, respitePlacement, respite, t0.Add(day), t0.Add(day))
		thenEvents(t, got, err, started(respitePlacement, respiteID, t0.Add(day)))

		c = givenChild(t, registered(), started(placement, carerID, t0), started(respitePlacement, respiteID, t0.Add(day)),
			ended(respitePlacement, respiteID, t0.Add(3*day)))
		// Each carer's access follows their own placements.
		thenAccess(t, c.Access(carer, t0.Add(4*day)), domain.All, domain.ReasonPlacement, time.Time{})
		thenAccess(t, c.Access(respite, t0.Add(4*day)), domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod, t0.Add(10*day))
		thenAccess(t, c.Access(respite, t0.Add(10*day)), 0, domain.ReasonGraceExpired, time.Time{})
	})

	t.Run("a re-placement after the grace period leaves a gap and the old deadline still fires", func(t *testing.T) {
		c := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end), started(second, carerID, end.Add(9*day)))
		thenAccess(t, c.Access(carer, end.Add(8*day)), 0, domain.ReasonGraceExpired, time.Time{})
		got, err := c.ExpireCarerAccess(placement, end.Add(9*day))
		thenEvents(t, got, err, expired(placement, carerID, end.Add(7*day)))
	})
}

func TestRule_R6_WorkerEndsGraceEarly(t *testing.T) {
	carer := activeCarer(t)
	end := t0.Add(10 * day)
	now := end.Add(2 * day)
	c := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end))

	got, err := c.EndGraceEarly(worker, placement, "", now)
	thenError(t, got, err, domain.ErrInvalid) // a reason is required
	got, err = c.EndGraceEarly(other, placement, "safeguarding concern", now)
	thenError(t, got, err, domain.ErrNotAllocated)

	got, err = c.EndGraceEarly(worker, placement, "safeguarding concern", now)
	early := &domain.GraceEndedEarly{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, EndedAt: now}
	thenEvents(t, got, err, early)

	c = givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end), early)
	thenAccess(t, c.Access(carer, now.Add(-time.Second)), domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod, now)
	thenAccess(t, c.Access(carer, now), 0, domain.ReasonGraceExpired, time.Time{})
	// The deadline then changes nothing, and the grace cannot end twice.
	got, err = c.ExpireCarerAccess(placement, end.Add(8*day))
	thenEvents(t, got, err)
	got, err = c.EndGraceEarly(worker, placement, "again", now.Add(time.Hour))
	thenError(t, got, err, domain.ErrGraceExpired)

	t.Run("a planned placement of the same carer does not end the grace before it starts", func(t *testing.T) {
		p3 := uuid.MustParse("33333333-3333-4333-8333-333333333333")
		later := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end),
			started(p3, carerID, end.Add(5*day)))
		// Until P3 starts the carer is in P2's grace period...
		thenAccess(t, later.Access(carer, now), domain.PermissionSet(domain.View|domain.CompleteOutstanding), domain.ReasonGracePeriod,
			end.Add(5*day))
		// ...so the worker may end it early then (issue 15: it was refused).
		got, err := later.EndGraceEarly(worker, placement, "safeguarding concern", now)
		thenEvents(t, got, err, &domain.GraceEndedEarly{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, EndedAt: now})
		// Once P3 has started, P2's grace is over.
		got, err = later.EndGraceEarly(worker, placement, "too late", end.Add(5*day))
		thenError(t, got, err, domain.ErrGraceExpired)
	})

	t.Run("not before the placement has ended, not after the grace ran out", func(t *testing.T) {
		open := givenChild(t, registered(), started(placement, carerID, t0))
		got, err := open.EndGraceEarly(worker, placement, "reason", now)
		thenError(t, got, err, domain.ErrPlacementNotEnded)
		planned := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, now.Add(day)))
		got, err = planned.EndGraceEarly(worker, placement, "reason", now)
		thenError(t, got, err, domain.ErrPlacementNotEnded)
		over := givenChild(t, registered(), started(placement, carerID, t0), ended(placement, carerID, end))
		got, err = over.EndGraceEarly(worker, placement, "reason", end.Add(7*day))
		thenError(t, got, err, domain.ErrGraceExpired)
	})
}

func TestRule_R7_NetworkMembersSeeOnlyThroughGrants(t *testing.T) {
	parent := activeParent(t)
	c := givenChild(t, registered())
	thenAccess(t, c.Access(parent, t0.Add(day)), 0, domain.ReasonNoRelationship, time.Time{})

	got, err := c.Grant(worker, parent, "parent", []string{"view"}, "contact agreed at review", t0.Add(day))
	thenEvents(t, got, err, granted(parentID, []string{"view"}, t0.Add(day)))

	// A foster carer sees a child through a placement (R2), never a grant.
	got, err = c.Grant(worker, activeCarer(t), "parent", []string{"view"}, "wrong account", t0.Add(day))
	thenError(t, got, err, domain.ErrInvalid)

	c = givenChild(t, registered(), granted(parentID, []string{"view"}, t0.Add(day)))
	thenAccess(t, c.Access(parent, t0.Add(2*day)), domain.PermissionSet(domain.View), domain.ReasonGrant, time.Time{})
	require.False(t, c.Access(parent, t0.Add(2*day)).Allows(domain.Record))

	// The same grant again is refused; a wider one replaces it.
	got, err = c.Grant(worker, parent, "parent", []string{"view"}, "again", t0.Add(2*day))
	thenError(t, got, err, domain.ErrAlreadyGranted)
	got, err = c.Grant(worker, parent, "parent", []string{"view", "record"}, "may send messages", t0.Add(2*day))
	thenEvents(t, got, err, granted(parentID, []string{"view", "record"}, t0.Add(2*day)))
	c = givenChild(t, registered(), granted(parentID, []string{"view"}, t0.Add(day)), granted(parentID, []string{"view", "record"}, t0.Add(2*day)))
	thenAccess(t, c.Access(parent, t0.Add(3*day)), domain.PermissionSet(domain.View|domain.Record), domain.ReasonGrant, time.Time{})

	// Grants carry a relationship, permissions and a reason.
	for _, bad := range []struct {
		rel, reason string
		perms       []string
	}{
		{"friend", "r", []string{"view"}},
		{"parent", "", []string{"view"}},
		{"parent", "r", nil},
		{"parent", "r", []string{"record"}},
		{"parent", "r", []string{"view", "complete_outstanding"}},
		{"parent", "r", []string{"view", "view"}},
		{"parent", "r", []string{"admin"}},
	} {
		got, err := givenChild(t, registered()).Grant(worker, parent, bad.rel, bad.perms, bad.reason, t0)
		thenError(t, got, err, domain.ErrInvalid)
	}

	// Revoke, with a reason.
	got, err = c.Revoke(worker, parentID, "", t0.Add(4*day))
	thenError(t, got, err, domain.ErrInvalid)
	got, err = c.Revoke(worker, parentID, "contact suspended", t0.Add(4*day))
	revoked := &domain.AccessRevoked{ChildID: childID, AccountID: parentID, RevokedAt: t0.Add(4 * day), GrantedAt: t0.Add(2 * day)}
	thenEvents(t, got, err, revoked)
	c = givenChild(t, registered(), granted(parentID, []string{"view"}, t0.Add(day)), revoked)
	thenAccess(t, c.Access(parent, t0.Add(5*day)), 0, domain.ReasonRevoked, time.Time{})
	thenAccess(t, c.Access(parent, t0.Add(3*day)), domain.PermissionSet(domain.View), domain.ReasonGrant, t0.Add(4*day))
	got, err = c.Revoke(worker, parentID, "again", t0.Add(5*day))
	thenError(t, got, err, domain.ErrGrantNotFound)
}

func TestRule_R8_NobodyObtainsAccessByAsking(t *testing.T) {
	carer := activeCarer(t)
	parent := activeParent(t)
	c := givenChild(t, registered(), started(placement, carerID, t0))
	// The account holders themselves, acting with any token role.
	parentSelf := domain.Actor{ID: "idp|parent", Role: domain.RoleWorker}
	parentByID := domain.Actor{ID: parentID.String(), Role: domain.RoleWorker}

	tests := []struct {
		name string
		when func() ([]domain.Event, error)
		want error
	}{
		{"a worker not allocated to the child cannot grant", func() ([]domain.Event, error) {
			return c.Grant(other, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrNotAllocated},
		{"a manager cannot grant", func() ([]domain.Event, error) {
			return c.Grant(manager, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrRoleNotAllowed},
		{"the service cannot grant", func() ([]domain.Event, error) {
			return c.Grant(service, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrRoleNotAllowed},
		{"an auditor cannot grant", func() ([]domain.Event, error) {
			return c.Grant(auditor, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrRoleNotAllowed},
		{"nobody can grant to their own identity", func() ([]domain.Event, error) {
			return givenChild(t, &domain.ChildRegistered{ChildID: childID, Reference: "C", WorkerID: parentSelf.ID, RegisteredAt: t0}).
				Grant(parentSelf, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrSelfAccess},
		{"nobody can grant to their own account id", func() ([]domain.Event, error) {
			return givenChild(t, &domain.ChildRegistered{ChildID: childID, Reference: "C", WorkerID: parentByID.ID, RegisteredAt: t0}).
				Grant(parentByID, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrSelfAccess},
		{"a worker not allocated cannot revoke", func() ([]domain.Event, error) {
			return givenChild(t, registered(), granted(parentID, []string{"view"}, t0)).Revoke(other, parentID, "r", t0)
		}, domain.ErrNotAllocated},
		{"a worker not allocated cannot place", func() ([]domain.Event, error) {
			return givenChild(t, registered()).StartPlacement(other, placement, carer, t0, t0)
		}, domain.ErrNotAllocated},
		{"a worker not allocated cannot end a placement", func() ([]domain.Event, error) {
			return c.EndPlacement(other, placement, t0.Add(day), t0.Add(day), policy)
		}, domain.ErrNotAllocated},
		{"a worker cannot allocate", func() ([]domain.Event, error) {
			return c.AllocateWorker(worker, other.ID, t0)
		}, domain.ErrRoleNotAllowed},
		{"only the portals team closes accounts", func() ([]domain.Event, error) {
			return parent.Close(worker, "r", t0)
		}, domain.ErrRoleNotAllowed},
		{"only the portals team clears phones", func() ([]domain.Event, error) {
			return parent.ClearPhone(worker, t0)
		}, domain.ErrRoleNotAllowed},
		{"only the service enrols phones", func() ([]domain.Event, error) {
			return parent.EnrolPhone(worker, "+44 7700 900123", t0)
		}, domain.ErrRoleNotAllowed},
		{"only the service activates", func() ([]domain.Event, error) {
			return parent.Activate(worker, "idp|x", parentEmail, t0)
		}, domain.ErrRoleNotAllowed},
		{"only workers invite", func() ([]domain.Event, error) {
			return domain.NewAccount(domain.AccountIDForEmail("x@example.org")).Invite(service, "x@example.org", "parent", t0, policy)
		}, domain.ErrRoleNotAllowed},
		{"an actor without id is refused", func() ([]domain.Event, error) {
			return c.Grant(domain.Actor{Role: domain.RoleWorker}, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrInvalid},
		{"an unknown role is refused", func() ([]domain.Event, error) {
			return c.Grant(domain.Actor{ID: worker.ID, Role: "admin"}, parent, "parent", []string{"view"}, "r", t0)
		}, domain.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.when()
			thenError(t, got, err, tt.want)
			if !errors.Is(tt.want, domain.ErrInvalid) {
				require.Equal(t, domain.KindForbidden, domain.KindOf(err), "refusals of R8 are forbidden, not invalid")
			}
		})
	}

	t.Run("a manager reallocates, and the new worker then decides", func(t *testing.T) {
		got, err := c.AllocateWorker(manager, other.ID, t0.Add(day))
		realloc := &domain.WorkerAllocated{ChildID: childID, WorkerID: other.ID, PreviousWorkerID: worker.ID, AllocatedAt: t0.Add(day)}
		thenEvents(t, got, err, realloc)
		c := givenChild(t, registered(), started(placement, carerID, t0), realloc)
		_, err = c.Grant(other, parent, "parent", []string{"view"}, "r", t0.Add(2*day))
		require.NoError(t, err)
		got, err = c.Grant(worker, parent, "parent", []string{"view"}, "r", t0.Add(2*day))
		thenError(t, got, err, domain.ErrNotAllocated)
	})
}

func TestRule_R9_AccountsExistOnlyByInvitation(t *testing.T) {
	a := domain.NewAccount(carerID)
	got, err := a.Invite(worker, carerEmail, "foster_carer", t0, policy)
	thenEvents(t, got, err, invited(carerID, carerEmail, domain.KindFosterCarer, t0))

	a = givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0))
	require.Equal(t, domain.StatusInvited, a.StatusAt(t0.Add(day)))
	// The invitation expires after the policy's TTL, by time alone.
	deadline := t0.Add(policy.InvitationTTL)
	require.Equal(t, domain.StatusExpired, a.StatusAt(deadline))
	got, err = a.Activate(service, "idp|carer", carerEmail, deadline)
	thenError(t, got, err, domain.ErrInvitationExpired)
	got, err = a.ExpireInvitation(deadline.Add(-time.Second))
	thenError(t, got, err, domain.ErrNotDue)
	got, err = a.ExpireInvitation(deadline.Add(time.Hour))
	thenEvents(t, got, err, &domain.InvitationExpired{AccountID: carerID, ExpiredAt: deadline})

	// Accepted by signing in with an identity account; the subject is linked.
	got, err = a.Activate(service, "idp|carer", "Carer@Example.org", t0.Add(day))
	thenEvents(t, got, err, activated(carerID, "idp|carer", t0.Add(day)))
	got, err = a.Activate(service, "idp|carer", "someone.else@example.org", t0.Add(day))
	thenError(t, got, err, domain.ErrEmailMismatch)
	got, err = domain.NewAccount(uuid.New()).Activate(service, "idp|x", "x@example.org", t0)
	thenError(t, got, err, domain.ErrAccountNotFound)

	active := givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0), activated(carerID, "idp|carer", t0.Add(day)))
	require.Equal(t, domain.StatusActive, active.StatusAt(deadline.Add(day)))
	got, err = active.ExpireInvitation(deadline.Add(day))
	thenEvents(t, got, err) // an accepted invitation never expires
	got, err = active.Activate(service, "idp|carer", carerEmail, t0.Add(2*day))
	thenEvents(t, got, err) // signing in again changes nothing

	t.Run("an expired invitation can be renewed", func(t *testing.T) {
		a := givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0), &domain.InvitationExpired{AccountID: carerID, ExpiredAt: deadline})
		require.Equal(t, domain.StatusExpired, a.StatusAt(deadline))
		got, err := a.Invite(worker, carerEmail, "foster_carer", deadline.Add(day), policy)
		thenEvents(t, got, err, invited(carerID, carerEmail, domain.KindFosterCarer, deadline.Add(day)))
	})

	t.Run("invitations need a plain email and a known kind", func(t *testing.T) {
		for _, tt := range []struct{ email, kind string }{
			{"not-an-email", "parent"}, {"a@b", "parent"}, {"a b@example.org", "parent"}, {"", "parent"},
			{"x@example.org", "admin"}, {"x@example.org", ""},
		} {
			got, err := domain.NewAccount(domain.AccountIDForEmail(tt.email)).Invite(worker, tt.email, tt.kind, t0, policy)
			thenError(t, got, err, domain.ErrInvalid)
		}
	})
}

func TestRule_R10_OneEmailOneAccount_OneIdentityOneAccount(t *testing.T) {
	// The account id is a function of the normalized email.
	require.Equal(t, carerID, domain.AccountIDForEmail("  CARER@example.ORG "))
	require.NotEqual(t, carerID, parentID)

	active := givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0), activated(carerID, "idp|carer", t0))
	got, err := active.Invite(worker, "Carer@Example.org", "parent", t0.Add(day), policy)
	thenError(t, got, err, domain.ErrAlreadyRegistered)
	require.Equal(t, "already registered: sign in with your existing account", domain.ErrAlreadyRegistered.Error())
	require.Equal(t, domain.KindAlreadyRegistered, domain.KindOf(err))

	pending := givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0))
	got, err = pending.Invite(worker, carerEmail, "foster_carer", t0.Add(day), policy)
	thenError(t, got, err, domain.ErrAlreadyInvited)

	// Ids keyed per deployment: one email, one id; not the name-based one
	// anybody can compute; another deployment's key gives another id.
	keyA, err := domain.NewKeyedIDs(bytes.Repeat([]byte{1}, domain.MinIDKeyBytes))
	require.NoError(t, err)
	keyB, err := domain.NewKeyedIDs(bytes.Repeat([]byte{2}, domain.MinIDKeyBytes))
	require.NoError(t, err)
	require.Equal(t, keyA.AccountID(carerEmail), keyA.AccountID("  CARER@example.ORG "))
	require.NotEqual(t, keyA.AccountID(carerEmail), keyA.AccountID(parentEmail))
	require.NotEqual(t, domain.AccountIDForEmail(carerEmail), keyA.AccountID(carerEmail))
	require.NotEqual(t, keyB.AccountID(carerEmail), keyA.AccountID(carerEmail))
	require.Equal(t, uuid.Version(8), keyA.AccountID(carerEmail).Version())
	require.Equal(t, uuid.RFC4122, keyA.AccountID(carerEmail).Variant())
	require.Equal(t, keyA.IdentityStream("idp|carer"), keyA.IdentityStream("idp|carer"))
	require.NotEqual(t, domain.IdentityStream("idp|carer"), keyA.IdentityStream("idp|carer"))
	require.True(t, strings.HasPrefix(keyA.IdentityStream("idp|carer"), domain.IdentityStreamPrefix))
	_, err = domain.NewKeyedIDs(make([]byte, domain.MinIDKeyBytes-1))
	require.Error(t, err)

	// Activating an active account with another identity is refused.
	got, err = active.Activate(service, "idp|someone-else", carerEmail, t0.Add(day))
	thenError(t, got, err, domain.ErrAlreadyRegistered)

	// One identity, one account.
	link := domain.NewIdentityLink("idp|carer")
	got, err = link.Link(carerID, t0)
	linkedEvent := &domain.IdentityLinked{Subject: "idp|carer", AccountID: carerID, LinkedAt: t0}
	thenEvents(t, got, err, linkedEvent)
	require.NoError(t, link.Apply(linkedEvent))
	got, err = link.Link(carerID, t0.Add(day))
	thenEvents(t, got, err) // the same account again changes nothing
	got, err = link.Link(parentID, t0.Add(day))
	thenError(t, got, err, domain.ErrAlreadyRegistered)
	// Once the account is erased its stream's subject reads as erased: the
	// identity stays taken (R22), a conflict, not a broken stream.
	erasedLink := domain.NewIdentityLink("idp|carer")
	require.NoError(t, erasedLink.Apply(&domain.IdentityLinked{Subject: domain.ErasedText, AccountID: carerID, LinkedAt: t0}))
	got, err = erasedLink.Link(parentID, t0.Add(day))
	thenError(t, got, err, domain.ErrAlreadyRegistered)
	require.Error(t, domain.NewIdentityLink("idp|carer").Apply(&domain.IdentityLinked{Subject: "idp|other", AccountID: carerID, LinkedAt: t0}))
	require.Equal(t, domain.IdentityStream("idp|carer"), domain.IdentityStream("idp|carer"))
	require.NotEqual(t, domain.IdentityStream("idp|carer"), domain.IdentityStream("idp|Carer"))
}

func TestRule_R11_PhoneChangesOnlyThroughResetWorkflow(t *testing.T) {
	a := activeCarer(t)
	require.True(t, a.NeedsPhoneEnrolment(), "a new account has no number yet")

	got, err := a.EnrolPhone(service, "+44 7700 900123", t0.Add(time.Hour))
	enrolled := &domain.PhoneEnrolled{AccountID: carerID, PhoneHint: "***123", EnrolledAt: t0.Add(time.Hour)}
	thenEvents(t, got, err, enrolled)

	a = activeCarer(t, enrolled)
	require.False(t, a.NeedsPhoneEnrolment())
	require.Equal(t, "***123", a.PhoneHint())
	// The user cannot change it; the portals team cannot clear it unasked.
	got, err = a.EnrolPhone(service, "+44 7700 900999", t0.Add(day))
	thenError(t, got, err, domain.ErrPhoneAlreadyEnrolled)
	got, err = a.ClearPhone(portals, t0.Add(day))
	thenError(t, got, err, domain.ErrNoPhoneResetRequest)
	got, err = a.RequestPhoneReset(worker, "", t0.Add(day))
	thenError(t, got, err, domain.ErrInvalid)

	// The worker files a request with a reason; then the portals team clears.
	got, err = a.RequestPhoneReset(worker, "carer changed phone", t0.Add(day))
	requested := &domain.PhoneResetRequested{AccountID: carerID, RequestedAt: t0.Add(day)}
	thenEvents(t, got, err, requested)
	a = activeCarer(t, enrolled, requested)
	got, err = a.RequestPhoneReset(worker, "again", t0.Add(day))
	thenError(t, got, err, domain.ErrPhoneResetPending)
	got, err = a.ClearPhone(portals, t0.Add(2*day))
	cleared := &domain.PhoneCleared{AccountID: carerID, ClearedAt: t0.Add(2 * day)}
	thenEvents(t, got, err, cleared)

	// Only then can a new number be enrolled, at the next sign-in.
	a = activeCarer(t, enrolled, requested, cleared)
	require.True(t, a.NeedsPhoneEnrolment())
	require.Empty(t, a.PhoneHint())
	got, err = a.EnrolPhone(service, "07700 900456", t0.Add(3*day))
	thenEvents(t, got, err, &domain.PhoneEnrolled{AccountID: carerID, PhoneHint: "***456", EnrolledAt: t0.Add(3 * day)})

	// Only the masked number is kept: the full number is in no event.
	data, err := domain.Encode(got[0])
	require.NoError(t, err)
	require.NotContains(t, string(data), "900456")
	require.NotContains(t, string(data), "07700")

	got, err = activeCarer(t).EnrolPhone(service, "12ab", t0)
	thenError(t, got, err, domain.ErrInvalid)
	got, err = givenAccount(t, carerID, invited(carerID, carerEmail, domain.KindFosterCarer, t0)).EnrolPhone(service, "+44 7700 900123", t0)
	thenError(t, got, err, domain.ErrAccountNotActive)
}

func TestRule_R13_ClosingAccountEndsAllAccess(t *testing.T) {
	carer := activeCarer(t)
	closeAt := t0.Add(5 * day)
	c := givenChild(t, registered(), started(placement, carerID, t0), granted(parentID, []string{"view", "record"}, t0))

	got, err := carer.Close(portals, "", closeAt)
	thenError(t, got, err, domain.ErrInvalid)
	got, err = carer.Close(portals, "left fostering", closeAt)
	closed := &domain.AccountClosed{AccountID: carerID, ClosedAt: closeAt}
	thenEvents(t, got, err, closed)

	carer = activeCarer(t, closed)
	parent := activeParent(t, &domain.AccountClosed{AccountID: parentID, ClosedAt: closeAt})
	// Before the closure the access stood, and said it would end then.
	thenAccess(t, c.Access(carer, closeAt.Add(-time.Hour)), domain.All, domain.ReasonPlacement, closeAt)
	thenAccess(t, c.Access(parent, closeAt.Add(-time.Hour)), domain.PermissionSet(domain.View|domain.Record), domain.ReasonGrant, closeAt)
	// From the closure on, nothing: not the placement, not the grant, not
	// the carer's own record.
	thenAccess(t, c.Access(carer, closeAt), 0, domain.ReasonAccountClosed, time.Time{})
	thenAccess(t, c.Access(parent, closeAt), 0, domain.ReasonAccountClosed, time.Time{})
	thenAccess(t, domain.CarerRecordAccess(true, carer.Facts(), closeAt), 0, domain.ReasonAccountClosed, time.Time{})
	require.Equal(t, domain.StatusClosed, carer.StatusAt(closeAt))

	// A closed account takes no new access and cannot be closed again.
	got, err = c.Grant(worker, parent, "parent", []string{"view"}, "r", closeAt.Add(day))
	thenError(t, got, err, domain.ErrAccountClosed)
	got, err = carer.Close(portals, "again", closeAt.Add(day))
	thenError(t, got, err, domain.ErrAccountClosed)
	got, err = carer.Invite(worker, carerEmail, "foster_carer", closeAt.Add(day), policy)
	thenError(t, got, err, domain.ErrAccountClosed)
}

func TestRule_R14_EventsCarryActorRoleReasonAndTimes(t *testing.T) {
	end := time.Date(2026, 3, 9, 17, 30, 0, 123456789, time.FixedZone("BST", 3600))
	recorded := time.Date(2026, 3, 11, 8, 0, 0, 0, time.UTC)
	c := givenChild(t, registered(), started(placement, carerID, t0))
	events, err := c.EndPlacement(worker, placement, end, recorded, policy)
	require.NoError(t, err)
	cause := domain.Cause{Actor: worker, Reason: "moved to kinship care", RecordedAt: recorded, CorrelationID: uuid.New(), CausationID: uuid.New()}
	data, err := cause.EventData(uuid.New(), events[0])
	require.NoError(t, err)
	require.Equal(t, domain.TypePlacementEnded, data.Type)
	require.Equal(t, worker.ID, data.Meta.ActorID)
	require.Equal(t, string(domain.RoleWorker), data.Meta.ActorRole)
	require.Equal(t, "moved to kinship care", data.Meta.Reason)
	require.Equal(t, end.UTC().Truncate(time.Microsecond), data.Meta.EffectiveAt, "effective time is the event's own, in UTC")
	require.Equal(t, recorded, data.Meta.RecordedAt)
	require.Equal(t, cause.CorrelationID, data.Meta.CorrelationID)
	require.Equal(t, cause.CausationID, data.Meta.CausationID)

	// Without an actor or a recorded time there is no event.
	_, err = domain.Cause{RecordedAt: recorded}.EventData(uuid.New(), events[0])
	require.ErrorIs(t, err, domain.ErrInvalid)
	_, err = domain.Cause{Actor: worker}.EventData(uuid.New(), events[0])
	require.ErrorIs(t, err, domain.ErrInvalid)
	_, err = cause.EventData(uuid.Nil, events[0])
	require.ErrorIs(t, err, domain.ErrInvalid)
}

func TestRule_R15_AccessAtAnyPastTimeFollowsFromTheFacts(t *testing.T) {
	carer := activeCarer(t)
	parent := activeParent(t)
	c := givenChild(t, registered(),
		started(placement, carerID, t0.Add(day)),
		granted(parentID, []string{"view"}, t0.Add(2*day)),
		ended(placement, carerID, t0.Add(20*day)),
		&domain.AccessRevoked{ChildID: childID, AccountID: parentID, RevokedAt: t0.Add(25 * day)},
	)
	tests := []struct {
		at     time.Time
		who    *domain.Account
		perms  domain.PermissionSet
		reason domain.Reason
	}{
		{t0, carer, 0, domain.ReasonNoRelationship},
		{t0.Add(3 * day), carer, domain.All, domain.ReasonPlacement},
		{t0.Add(3 * day), parent, domain.PermissionSet(domain.View), domain.ReasonGrant},
		{t0.Add(22 * day), carer, domain.PermissionSet(domain.View | domain.CompleteOutstanding), domain.ReasonGracePeriod},
		{t0.Add(26 * day), parent, 0, domain.ReasonRevoked},
		{t0.Add(30 * day), carer, 0, domain.ReasonGraceExpired},
	}
	for _, tt := range tests {
		got := c.Access(tt.who, tt.at)
		require.Equal(t, tt.perms, got.Permissions, "%s at %s", tt.who.Email(), tt.at)
		require.Equal(t, tt.reason, got.Reason, "%s at %s", tt.who.Email(), tt.at)
	}
}

func TestRule_R16_SessionPolicyIsAPolicySetting(t *testing.T) {
	require.Equal(t, 15*time.Minute, domain.DefaultPolicy.SessionIdleTimeout)
	require.Equal(t, 10*time.Minute, domain.DefaultPolicy.SessionWarningAfter)
	require.Equal(t, 7*24*time.Hour, domain.DefaultPolicy.GracePeriod)
	require.Equal(t, 14*24*time.Hour, domain.DefaultPolicy.InvitationTTL)
	require.NoError(t, domain.DefaultPolicy.Validate())
	require.Equal(t, domain.DefaultPolicy, domain.Policy{}.WithDefaults())
	bad := domain.DefaultPolicy
	bad.SessionWarningAfter = 20 * time.Minute
	require.ErrorIs(t, bad.Validate(), domain.ErrInvalid)
	bad = domain.DefaultPolicy
	bad.GracePeriod = 0
	require.ErrorIs(t, bad.Validate(), domain.ErrInvalid)
}

// TestRule_R18_AWorkerCancelsAnInvitationSentByMistake: the open invitation
// ends now, by a worker with a reason; the email may then be invited again
// (the same account, renewed); nothing else can be cancelled; re-inviting
// while it is open names the account and its expiry.
func TestRule_R18_AWorkerCancelsAnInvitationSentByMistake(t *testing.T) {
	inv := invited(parentID, parentEmail, domain.KindParent, t0)
	a := givenAccount(t, parentID, inv)
	got, err := a.Invite(worker, parentEmail, "parent", t0.Add(time.Hour), policy)
	thenError(t, got, err, domain.ErrAlreadyInvited)
	require.ErrorContains(t, err, parentID.String())
	require.ErrorContains(t, err, t0.Add(policy.InvitationTTL).Format(time.RFC3339))

	for _, tc := range []struct {
		name   string
		by     domain.Actor
		reason string
		want   error
	}{
		{"by the portals team", portals, "wrong address", domain.ErrRoleNotAllowed},
		{"by the service", service, "wrong address", domain.ErrRoleNotAllowed},
		{"without a reason", worker, "", domain.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.CancelInvitation(tc.by, tc.reason, t0.Add(time.Hour))
			thenError(t, got, err, tc.want)
		})
	}
	got, err = a.CancelInvitation(worker, "sent to the wrong address", t0.Add(time.Hour))
	cancelled := &domain.InvitationExpired{AccountID: parentID, ExpiredAt: t0.Add(time.Hour)}
	thenEvents(t, got, err, cancelled)

	a = givenAccount(t, parentID, inv, cancelled)
	require.Equal(t, domain.StatusExpired, a.StatusAt(t0.Add(2*time.Hour)))
	got, err = a.CancelInvitation(worker, "again", t0.Add(2*time.Hour))
	thenError(t, got, err, domain.ErrNoOpenInvitation)
	got, err = a.Activate(service, "idp|parent", parentEmail, t0.Add(2*time.Hour))
	thenError(t, got, err, domain.ErrInvitationExpired)
	got, err = a.Invite(worker, parentEmail, "parent", t0.Add(2*time.Hour), policy)
	require.NoError(t, err, "the email may be invited again")
	require.Len(t, got, 1)

	got, err = activeParent(t).CancelInvitation(worker, "too late", t0.Add(day))
	thenError(t, got, err, domain.ErrNoOpenInvitation)
	got, err = domain.NewAccount(parentID).CancelInvitation(worker, "none", t0)
	thenError(t, got, err, domain.ErrAccountNotFound)
}
