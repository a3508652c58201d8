// The event handlers: each event that starts, moves or ends a deadline.

package processmanager

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/bus"
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

func (pm *ProcessManager) setDue(ctx context.Context, s subject, due time.Time) error {
	id, corr := source(ctx)
	changed, err := pm.table.setDue(ctx, s, due, id, corr, pm.cfg.Clock.Now())
	if err != nil {
		return err
	}
	if changed {
		pm.log.Debug("processmanager: deadline recorded", "deadline", s.id, "due_at", due, "event", id)
	}
	// Also when another instance recorded it first: every instance that
	// sees the event schedules the deadline, not only the first.
	pm.mu.Lock()
	sooner := changed || pm.nextWake.IsZero() || due.Before(pm.nextWake)
	pm.mu.Unlock()
	if sooner {
		pm.wake()
	}
	return nil
}

func (pm *ProcessManager) resolve(ctx context.Context, s subject, through int64) error {
	id, _ := source(ctx)
	changed, err := pm.table.resolve(ctx, s, through, id, pm.cfg.Clock.Now())
	if err != nil {
		return err
	}
	if changed {
		pm.log.Debug("processmanager: deadline resolved", "deadline", s.id, "event", id)
	}
	return nil
}

func (pm *ProcessManager) onPlacementEnded(ctx context.Context, e *domain.PlacementEnded) error {
	return pm.setDue(ctx, graceSubject(e.ChildID, e.PlacementID, e.CarerAccountID), e.GraceUntil)
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
	return pm.resolve(ctx, invitationSubject(e.AccountID), forever)
}
