// The event handlers: each event that starts, moves or ends a deadline.

package processmanager

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain"
)

// source returns the id and correlation id of the event being handled.
func source(ctx context.Context) (eventID, correlationID uuid.UUID) {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil {
		return uuid.Nil, uuid.Nil
	}
	return parseID(msg.UUID), parseID(msg.Metadata.Get(bus.MetaCorrelationID))
}

// setDue and resolve write the deadlines the events being handled set or
// settle. They catch up with the log, as the read models do, so on SQLite
// their writes yield to the commands' at the file's write gate
// (sqldb.Yielding): an append waits for the write in progress, not for the
// deadlines of the events before it as well.
func (pm *ProcessManager) setDue(ctx context.Context, s subject, due time.Time) error {
	id, corr := source(ctx)
	changed, err := pm.table.setDue(sqldb.Yielding(ctx), s, due, id, corr, pm.cfg.Clock.Now())
	if err != nil {
		return err
	}
	if changed {
		pm.log.Debug("processmanager: deadline recorded", "deadline", s.id, "due_at", due, "event", id)
	}
	pm.scheduled(due)
	return nil
}

// scheduled tells the scheduler of a deadline recorded (by this instance or,
// first, by another: every instance that sees the event schedules it) due
// at due: it wakes the scheduler when due is before its next wake, and
// notes due for a scheduler reading the table meanwhile (schedule). A
// deadline due later than the next wake needs no wake: the scheduler reads
// the table again then. (It woke at every deadline recorded before: under
// the county's command mix, its reads were a fifth of the engine's CPU.)
func (pm *ProcessManager) scheduled(due time.Time) {
	pm.mu.Lock()
	if pm.recorded.IsZero() || due.Before(pm.recorded) {
		pm.recorded = due
	}
	sooner := pm.nextWake.IsZero() || due.Before(pm.nextWake)
	pm.mu.Unlock()
	if sooner {
		pm.wake()
	}
}

func (pm *ProcessManager) resolve(ctx context.Context, s subject, through int64) error {
	id, _ := source(ctx)
	changed, err := pm.table.resolve(sqldb.Yielding(ctx), s, through, id, pm.cfg.Clock.Now())
	if err != nil {
		return err
	}
	if changed {
		pm.log.Debug("processmanager: deadline resolved", "deadline", s.id, "event", id)
	}
	return nil
}

func (pm *ProcessManager) onPlacementEnded(ctx context.Context, e *domain.PlacementEnded) error {
	if ahead(ctx, e.EndedAt) {
		if err := pm.setDue(ctx, placementEndSubject(e.ChildID, e.PlacementID, e.CarerAccountID), e.EndedAt); err != nil {
			return err
		}
	}
	if !ahead(ctx, e.GraceUntil) {
		// Recorded after its grace period: the end's own command wrote the
		// expiry with it (R4), so there is nothing to fire.
		return nil
	}
	return pm.setDue(ctx, graceSubject(e.ChildID, e.PlacementID, e.CarerAccountID), e.GraceUntil)
}

// onPlacementStarted schedules the time mark of a placement recorded ahead
// of its start.
func (pm *ProcessManager) onPlacementStarted(ctx context.Context, e *domain.PlacementStarted) error {
	if !ahead(ctx, e.StartedAt) {
		return nil
	}
	return pm.setDue(ctx, placementStartSubject(e.ChildID, e.PlacementID, e.CarerAccountID), e.StartedAt)
}

func (pm *ProcessManager) onPlacementStartReached(ctx context.Context, e *domain.PlacementStartReached) error {
	return pm.resolve(ctx, placementStartSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever)
}

func (pm *ProcessManager) onPlacementEndReached(ctx context.Context, e *domain.PlacementEndReached) error {
	return pm.resolve(ctx, placementEndSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever)
}

// ahead reports whether t is after the recorded time of the event being
// handled: a time the event gave that has not come when it was recorded.
// An event whose recorded time cannot be read counts as ahead (a time
// mark for a time that had come records nothing new the index publishes).
func ahead(ctx context.Context, t time.Time) bool {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil {
		return true
	}
	env, err := bus.DecodeEvent(msg)
	if err != nil || env.RecordedAt.IsZero() {
		return true
	}
	return t.After(env.RecordedAt)
}

func (pm *ProcessManager) onGraceExpired(ctx context.Context, e *domain.GraceExpired) error {
	return pm.resolve(ctx, graceSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever)
}

func (pm *ProcessManager) onGraceEndedEarly(ctx context.Context, e *domain.GraceEndedEarly) error {
	return pm.resolve(ctx, graceSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever)
}

func (pm *ProcessManager) onAccountInvited(ctx context.Context, e *domain.AccountInvited) error {
	return pm.setDue(ctx, invitationSubject(e.AccountID), e.ExpiresAt)
}

func (pm *ProcessManager) onInvitationExpired(ctx context.Context, e *domain.InvitationExpired) error {
	return pm.resolve(ctx, invitationSubject(e.AccountID), micros(e.ExpiredAt))
}

func (pm *ProcessManager) onAccountActivated(ctx context.Context, e *domain.AccountActivated) error {
	return pm.resolve(ctx, invitationSubject(e.AccountID), forever)
}

func (pm *ProcessManager) onAccountClosed(ctx context.Context, e *domain.AccountClosed) error {
	if err := pm.resolve(ctx, invitationSubject(e.AccountID), forever); err != nil {
		return err
	}
	retention, err := pm.retentionAt(ctx, e.ClosedAt)
	if err != nil {
		return err
	}
	return pm.setDue(ctx, accountRetentionSubject(e.AccountID), e.ClosedAt.Add(retention))
}

// onPlacementCancelled settles a cancelled placement's grace deadline (a
// planned end recorded before the cancellation): it gives nothing to
// expire (R18).
func (pm *ProcessManager) onPlacementCancelled(ctx context.Context, e *domain.PlacementCancelled) error {
	for _, s := range []subject{graceSubject(e.ChildID, e.PlacementID, e.CarerAccountID),
		placementStartSubject(e.ChildID, e.PlacementID, e.CarerAccountID), placementEndSubject(e.ChildID, e.PlacementID, e.CarerAccountID)} {
		if err := pm.resolve(ctx, s, forever); err != nil {
			return err
		}
	}
	return nil
}

// onAccountReopened settles the retention deadline of the closure the
// account was reopened from (R18): any closure before the reopening is
// resolved; a later closure sets a later due, which makes it pending again.
func (pm *ProcessManager) onAccountReopened(ctx context.Context, e *domain.AccountReopened) error {
	retention, err := pm.retentionAt(ctx, e.ClosedAt)
	if err != nil {
		return err
	}
	return pm.resolve(ctx, accountRetentionSubject(e.AccountID), micros(e.ClosedAt.Add(retention)))
}

// retentionAt is the closed accounts' retention in force at t (R22, R25).
func (pm *ProcessManager) retentionAt(ctx context.Context, t time.Time) (time.Duration, error) {
	if pm.cfg.Policy == nil {
		return pm.cfg.ClosedAccountRetention, nil
	}
	p, err := pm.cfg.Policy.PolicyAt(ctx, t)
	if err != nil {
		return 0, fmt.Errorf("processmanager: the policy in force at %s: %w", t.Format(time.RFC3339), err)
	}
	return p.Policy.ClosedAccountRetention, nil
}

func (pm *ProcessManager) onAccountErased(ctx context.Context, e *domain.AccountErased) error {
	return pm.resolve(ctx, accountRetentionSubject(e.AccountID), forever)
}

// childRetention records the retention date set by the event being
// handled: a deadline of its own (see KindChildRetention).
func (pm *ProcessManager) childRetention(ctx context.Context, child uuid.UUID, until time.Time) error {
	event, _ := source(ctx)
	if event == uuid.Nil {
		event = uuid.NewSHA1(child, []byte(until.UTC().Format(time.RFC3339Nano)))
	}
	return pm.setDue(ctx, childRetentionSubject(child, event), until)
}

func (pm *ProcessManager) onChildRegistered(ctx context.Context, e *domain.ChildRegistered) error {
	if e.RetainUntil.IsZero() {
		return nil
	}
	return pm.childRetention(ctx, e.ChildID, e.RetainUntil)
}

func (pm *ProcessManager) onChildRetentionSet(ctx context.Context, e *domain.ChildRetentionSet) error {
	return pm.childRetention(ctx, e.ChildID, e.RetainUntil)
}

// onAccessGranted records the expiry deadline of a time-limited grant
// (R19). A grant that replaces it does not settle the replaced grant's
// deadline: that one fires and ExpireGrant records nothing.
func (pm *ProcessManager) onAccessGranted(ctx context.Context, e *domain.AccessGranted) error {
	if e.ExpiresAt.IsZero() {
		return nil
	}
	return pm.setDue(ctx, grantExpirySubject(e.ChildID, e.AccountID, e.GrantedAt), e.ExpiresAt)
}

// onAccessRevoked settles the expiry deadline of the grant revoked (R19);
// revocations recorded before R19 name no grant (theirs had no end).
func (pm *ProcessManager) onAccessRevoked(ctx context.Context, e *domain.AccessRevoked) error {
	if e.GrantedAt.IsZero() {
		return nil
	}
	return pm.resolve(ctx, grantExpirySubject(e.ChildID, e.AccountID, e.GrantedAt), forever)
}

func (pm *ProcessManager) onGrantExpired(ctx context.Context, e *domain.GrantExpired) error {
	return pm.resolve(ctx, grantExpirySubject(e.ChildID, e.AccountID, e.GrantedAt), forever)
}
