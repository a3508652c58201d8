package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

var dpoActor = domain.Actor{ID: "dpo-1", Role: domain.RoleDPO}

// TestRule_R22_ARetentionDateIsSetAtRegistrationOrLater: at registration
// or later, by the child's worker, a manager or the dpo, always in the
// future; the same date again records nothing; not on an erased child.
func TestRule_R22_ARetentionDateIsSetAtRegistrationOrLater(t *testing.T) {
	until := t0.AddDate(20, 0, 0)
	c := domain.NewChild(childID)
	got, err := c.Register(worker, "C-0001", until, t0)
	thenEvents(t, got, err, &domain.ChildRegistered{ChildID: childID, Reference: "C-0001", WorkerID: worker.ID, RegisteredAt: t0, RetainUntil: until})
	got, err = c.Register(worker, "C-0001", t0.Add(-day), t0)
	thenError(t, got, err, domain.ErrInvalid)

	evs, err := domain.NewChild(childID).Register(worker, "C-0001", until, t0)
	require.NoError(t, err)
	withDate := givenChild(t, evs...)
	require.Equal(t, until, withDate.RetainUntil())
	later := until.AddDate(5, 0, 0)
	for _, tc := range []struct {
		name  string
		by    domain.Actor
		until time.Time
		want  error
	}{
		{"the child's worker", worker, later, nil},
		{"a manager", manager, later, nil},
		{"the dpo", dpoActor, later, nil},
		{"another worker", other, later, domain.ErrNotAllocated},
		{"an auditor", auditor, later, domain.ErrRoleNotAllowed},
		{"the portals team", portals, later, domain.ErrRoleNotAllowed},
		{"a date in the past", manager, t0.Add(-time.Second), domain.ErrInvalid},
		{"now", manager, t0.Add(day), domain.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withDate.SetRetention(tc.by, tc.until, "court order", t0.Add(day))
			if tc.want != nil {
				thenError(t, got, err, tc.want)
				return
			}
			thenEvents(t, got, err, &domain.ChildRetentionSet{ChildID: childID, RetainUntil: later, SetAt: t0.Add(day)})
		})
	}
	got, err = withDate.SetRetention(manager, until, "again", t0.Add(day))
	thenEvents(t, got, err)
	got, err = withDate.SetRetention(manager, later, "", t0.Add(day))
	thenError(t, got, err, domain.ErrInvalid)
	erased := givenChild(t, registered(), &domain.ChildErased{ChildID: childID, ErasedAt: t0})
	got, err = erased.SetRetention(manager, later, "court order", t0.Add(day))
	thenError(t, got, err, domain.ErrErased)
}

// TestRule_R22_RetentionErasesWhenItsDateComes: the engine alone erases a
// child at its retention date and a closed account once the policy's
// period has passed; before, ErrNotDue; an outdated date, an account not
// closed, or a subject already erased record nothing.
func TestRule_R22_RetentionErasesWhenItsDateComes(t *testing.T) {
	until := t0.AddDate(1, 0, 0)
	c := givenChild(t, &domain.ChildRegistered{ChildID: childID, Reference: "C-0001", WorkerID: worker.ID, RegisteredAt: t0, RetainUntil: until})
	got, err := c.EraseAtRetention(domain.System, until, until.Add(-time.Microsecond))
	thenError(t, got, err, domain.ErrNotDue)
	got, err = c.EraseAtRetention(dpoActor, until, until)
	thenError(t, got, err, domain.ErrRoleNotAllowed)
	got, err = c.EraseAtRetention(domain.System, until, until)
	thenEvents(t, got, err, &domain.ChildErased{ChildID: childID, ErasedAt: until})
	got, err = c.EraseAtRetention(domain.System, until.Add(-day), until)
	thenEvents(t, got, err) // a date that is not (or no longer) the child's

	moved := givenChild(t, registered(), &domain.ChildRetentionSet{ChildID: childID, RetainUntil: until, SetAt: t0},
		&domain.ChildRetentionSet{ChildID: childID, RetainUntil: until.AddDate(1, 0, 0), SetAt: t0})
	got, err = moved.EraseAtRetention(domain.System, until, until.Add(day))
	thenEvents(t, got, err)
	got, err = givenChild(t, registered()).EraseAtRetention(domain.System, until, until)
	thenEvents(t, got, err)

	retention := domain.DefaultClosedAccountRetention
	closed := activeCarer(t, &domain.AccountClosed{AccountID: carerID, ClosedAt: t0})
	require.Equal(t, t0.Add(retention), closed.RetentionEnds(retention))
	require.GreaterOrEqual(t, t0.Add(retention), t0.AddDate(6, 0, 0), "never shorter than six calendar years")
	got, err = closed.EraseAtRetention(domain.System, retention, t0.Add(retention-time.Microsecond))
	thenError(t, got, err, domain.ErrNotDue)
	got, err = closed.EraseAtRetention(domain.System, retention, t0.Add(retention))
	thenEvents(t, got, err, &domain.AccountErased{AccountID: carerID, ErasedAt: t0.Add(retention)})
	got, err = closed.EraseAtRetention(manager, retention, t0.Add(retention))
	thenError(t, got, err, domain.ErrRoleNotAllowed)
	got, err = activeCarer(t).EraseAtRetention(domain.System, retention, t0.Add(2*retention))
	thenEvents(t, got, err)
	erased := activeCarer(t, &domain.AccountClosed{AccountID: carerID, ClosedAt: t0}, &domain.AccountErased{AccountID: carerID, ErasedAt: t0})
	got, err = erased.EraseAtRetention(domain.System, retention, t0.Add(retention))
	thenEvents(t, got, err)
}
