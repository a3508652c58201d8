package domain

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Retention (R22): a closed account's personal data is kept for the
// policy's ClosedAccountRetention, a child's record until its retention
// date; then the engine erases them, as the data protection officer would.
// The process manager records each due date as a deadline and, when it
// falls due, sends the erasure; these methods decide whether it is due.

// DefaultClosedAccountRetention is six years: 2,192 days, never shorter
// than six calendar years (at most two of them hold a 29 February).
const DefaultClosedAccountRetention = 2192 * 24 * time.Hour

// ChildRetentionSet: the date until which the child's record is kept was
// set (or moved) at SetAt (R22).
type ChildRetentionSet struct {
	ChildID     uuid.UUID `json:"child_id"`
	RetainUntil time.Time `json:"retain_until"`
	SetAt       time.Time `json:"set_at"`
}

func (*ChildRetentionSet) EventType() string        { return TypeChildRetentionSet }
func (e *ChildRetentionSet) EffectiveAt() time.Time { return e.SetAt }
func (e *ChildRetentionSet) validate() error {
	return firstErr(needID("child_id", e.ChildID), checkEventTime("retain_until", e.RetainUntil), checkEventTime("set_at", e.SetAt))
}

// RetainUntil is when the child's record may be erased (zero: no date set,
// kept until the data protection officer erases it).
func (c *Child) RetainUntil() time.Time { return c.retainUntil }

// checkRetainUntil checks a retention date given at now: after now (a date
// already past would erase the record at once: that is the dpo's erasure).
func checkRetainUntil(until, now time.Time) error {
	if err := CheckCommandTime("retain_until", until); err != nil {
		return err
	}
	if !until.After(now) {
		return invalid("retain_until", "must be in the future (to erase a record now, the dpo erases it)")
	}
	return nil
}

// SetRetention sets the date until which the child's record is kept (R22),
// or moves it, with a reason: by the child's allocated worker, a manager,
// or the data protection officer. The date must be in the future; the date
// the child already has records nothing.
func (c *Child) SetRetention(by Actor, until time.Time, reason string, now time.Time) ([]Event, error) {
	const what = "set retention"
	if by.Role == RoleWorker {
		if err := c.requireWorker(by, what); err != nil {
			return nil, err
		}
	} else if err := allowRoles(by, RoleManager, RoleDPO); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if !c.registered {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	if c.Erased() {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrErased)
	}
	if err := checkRetainUntil(until, now); err != nil {
		return nil, err
	}
	until = normTime(until)
	if until.Equal(c.retainUntil) {
		return nil, nil
	}
	return []Event{&ChildRetentionSet{ChildID: c.id, RetainUntil: until, SetAt: normTime(now)}}, nil
}

// EraseAtRetention erases the child's personal data when its retention
// date due has come (R22): by the engine (RoleSystem) only. A deadline
// whose due is no longer the child's date (the date was moved since) and a
// child already erased record nothing; before due it fails with ErrNotDue.
func (c *Child) EraseAtRetention(by Actor, due, now time.Time) ([]Event, error) {
	const what = "erase child at retention"
	if by.Role != RoleSystem {
		return nil, fmt.Errorf("%s: %w", what, ErrRoleNotAllowed)
	}
	if !c.registered {
		return nil, fmt.Errorf("%s %s: %w", what, c.id, ErrChildNotFound)
	}
	if c.Erased() || c.retainUntil.IsZero() || !c.retainUntil.Equal(due) {
		return nil, nil
	}
	if now.Before(due) {
		return nil, fmt.Errorf("%s %s: retained until %s: %w", what, c.id, due.UTC().Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&ChildErased{ChildID: c.id, ErasedAt: normTime(now)}}, nil
}

// RetentionEnds is when a closed account's retention ends under a policy
// that keeps closed accounts for retention (zero while the account is not
// closed).
func (a *Account) RetentionEnds(retention time.Duration) time.Time {
	if a.closedAt.IsZero() {
		return time.Time{}
	}
	return a.closedAt.Add(retention)
}

// EraseAtRetention erases a closed account's personal data once retention
// has passed since it was closed (R22): by the engine (RoleSystem) only.
// An account not closed, or already erased, records nothing; before its
// retention ends it fails with ErrNotDue.
func (a *Account) EraseAtRetention(by Actor, retention time.Duration, now time.Time) ([]Event, error) {
	const what = "erase account at retention"
	if by.Role != RoleSystem {
		return nil, fmt.Errorf("%s: %w", what, ErrRoleNotAllowed)
	}
	if !a.exists {
		return nil, fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	}
	ends := a.RetentionEnds(retention)
	if a.Erased() || ends.IsZero() {
		return nil, nil
	}
	if now.Before(ends) {
		return nil, fmt.Errorf("%s %s: retained until %s: %w", what, a.id, ends.UTC().Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&AccountErased{AccountID: a.id, ErasedAt: normTime(now)}}, nil
}
