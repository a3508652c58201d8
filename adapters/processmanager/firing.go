// Firing deadlines: the scheduler, the expiry commands it sends, and how
// their outcomes are recorded.

package processmanager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// schedule fires due deadlines and sleeps until the next one, until ctx is
// done or stop is closed.
func (pm *ProcessManager) schedule(ctx context.Context, stop <-chan struct{}) {
	for {
		// A deadline recorded from now on is in the table fireDue reads,
		// or noted in recorded before the next wake is set below, or
		// recorded after it and compared with it (scheduled).
		pm.mu.Lock()
		pm.recorded = time.Time{}
		pm.mu.Unlock()
		next, err := pm.fireDue(ctx)
		if ctx.Err() != nil {
			return
		}
		now := pm.cfg.Clock.Now()
		wait := pm.cfg.PollInterval
		switch {
		case err != nil:
			pm.log.Error("processmanager: reading the deadlines", "error", err)
			pm.noteError(err, now)
			wait = min(wait, pm.cfg.Backoff)
		case !next.IsZero():
			wait = min(wait, next.Sub(now))
		}
		pm.mu.Lock()
		if r := pm.recorded; !r.IsZero() {
			wait = min(wait, r.Sub(now))
		}
		if wait <= 0 {
			pm.mu.Unlock()
			continue
		}
		wakeAt := now.Add(wait)
		pm.nextWake = wakeAt
		pm.mu.Unlock()
		timer := pm.cfg.Clock.At(wakeAt)
		if pm.idle != nil {
			pm.idle(wakeAt)
		}
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-pm.poke:
		case <-timer:
		}
	}
}

// fireDue claims and fires every due deadline, then returns the earliest
// time a pending one can be claimed (zero when none is pending).
func (pm *ProcessManager) fireDue(ctx context.Context) (time.Time, error) {
	for {
		now := pm.cfg.Clock.Now()
		rows, err := pm.table.claim(ctx, pm.cfg.InstanceID, now, pm.cfg.Lease, pm.cfg.BatchSize)
		if err != nil {
			return time.Time{}, err
		}
		var batch []firing
		var cmds []commands.DeadlineCommand
		for _, r := range rows {
			f, cmd, err := pm.command(r)
			switch {
			case err != nil:
				pm.settleOrLog(ctx, f, err)
			case batched(f.kind):
				batch = append(batch, f)
				cmds = append(cmds, commands.DeadlineCommand{Meta: f.meta(), Command: cmd})
			default:
				pm.fire(ctx, f, cmd)
			}
		}
		if len(batch) > 0 {
			pm.fireBatch(ctx, batch, cmds)
		}
		if len(rows) < pm.cfg.BatchSize {
			break
		}
	}
	next, ok, err := pm.table.next(ctx)
	if err != nil || !ok {
		return time.Time{}, err
	}
	return next, nil
}

// firing is a claimed deadline on its way through the command bus, carried
// in the command message's metadata.
type firing struct {
	id          string
	kind        Kind
	due         time.Time
	claimedBy   string
	attempt     int
	causation   uuid.UUID
	correlation uuid.UUID
}

func (f firing) write(m message.Metadata) {
	m.Set(metaDeadline, f.id)
	m.Set(metaDue, strconv.FormatInt(micros(f.due), 10))
	m.Set(metaClaimedBy, f.claimedBy)
	m.Set(metaAttempt, strconv.Itoa(f.attempt))
	m.Set(metaCausation, idText(f.causation))
	m.Set(metaCorrelation, idText(f.correlation))
}

func readFiring(msg *message.Message, kind Kind) (firing, error) {
	if msg == nil {
		return firing{}, errors.New("no message in the context")
	}
	m := msg.Metadata
	due, err := strconv.ParseInt(m.Get(metaDue), 10, 64)
	if err != nil || due <= 0 {
		return firing{}, fmt.Errorf("metadata %s %q", metaDue, m.Get(metaDue))
	}
	attempt, _ := strconv.Atoi(m.Get(metaAttempt))
	f := firing{id: m.Get(metaDeadline), kind: kind, due: time.UnixMicro(due).UTC(), claimedBy: m.Get(metaClaimedBy),
		attempt: max(attempt, 1), causation: parseID(m.Get(metaCausation)), correlation: parseID(m.Get(metaCorrelation))}
	if f.id == "" {
		return firing{}, fmt.Errorf("metadata %s missing", metaDeadline)
	}
	return f, nil
}

// idempotencyKey is the key of the firing's command: one per deadline and
// due, so a repeated firing appends nothing and a renewed invitation's
// expiry is a new request.
func (f firing) idempotencyKey() string {
	return "deadline/" + f.id + "/" + strconv.FormatInt(micros(f.due), 10)
}

func (f firing) meta() commands.Meta {
	return commands.Meta{
		Actor:          domain.System,
		RequestID:      f.id,
		CorrelationID:  f.correlation,
		CausationID:    f.causation,
		IdempotencyKey: f.idempotencyKey(),
	}
}

// command returns the firing of a claimed row and its command (a value of
// one of the commands' types).
func (pm *ProcessManager) command(r row) (firing, any, error) {
	f := firing{id: r.ID, kind: Kind(r.Kind), due: fromMicros(r.DueAt), claimedBy: pm.cfg.InstanceID,
		attempt: r.Attempts, causation: parseID(r.SourceEventID), correlation: parseID(r.CorrelationID)}
	switch f.kind {
	case KindGrace:
		return f, commands.ExpireCarerAccess{ChildID: parseID(r.ChildID), PlacementID: parseID(r.PlacementID)}, nil
	case KindInvitation:
		return f, commands.ExpireInvitation{AccountID: parseID(r.AccountID)}, nil
	case KindAccountRetention:
		return f, commands.EraseAccountAtRetention{AccountID: parseID(r.AccountID)}, nil
	case KindChildRetention:
		return f, commands.EraseChildAtRetention{ChildID: parseID(r.ChildID), Due: f.due}, nil
	case KindPlacementStart:
		return f, commands.MarkPlacementStart{ChildID: parseID(r.ChildID), PlacementID: parseID(r.PlacementID)}, nil
	case KindPlacementEnd:
		return f, commands.MarkPlacementEnd{ChildID: parseID(r.ChildID), PlacementID: parseID(r.PlacementID)}, nil
	case KindGrantExpiry:
		grantedAt, err := grantedAtOf(r.ID)
		if err != nil {
			return f, nil, err
		}
		return f, commands.ExpireGrant{ChildID: parseID(r.ChildID), AccountID: parseID(r.AccountID), GrantedAt: grantedAt}, nil
	}
	return f, nil, fmt.Errorf("unknown deadline kind %q", r.Kind)
}

// batched reports whether deadlines of kind are fired in batches
// (Commands.FireDeadlines): the expiries and the time marks. The
// erasures at retention go through the command bus one at a time.
func batched(kind Kind) bool {
	switch kind {
	case KindGrace, KindInvitation, KindGrantExpiry, KindPlacementStart, KindPlacementEnd:
		return true
	}
	return false
}

// fire sends the command of a claimed deadline through the command bus.
func (pm *ProcessManager) fire(ctx context.Context, f firing, cmd any) {
	pm.log.Info("processmanager: deadline due, sending the expiry command",
		"deadline", f.id, "due_at", f.due, "attempt", f.attempt)
	err := pm.send.SendWithModifiedMessage(ctx, pointerTo(cmd), func(msg *message.Message) error {
		f.write(msg.Metadata)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		pm.settleOrLog(ctx, f, fmt.Errorf("send the command: %w", err))
	}
}

// pointerTo returns a pointer to a copy of cmd, as the command bus sends
// commands.
func pointerTo(cmd any) any {
	switch c := cmd.(type) {
	case commands.ExpireCarerAccess:
		return &c
	case commands.ExpireInvitation:
		return &c
	case commands.EraseAccountAtRetention:
		return &c
	case commands.EraseChildAtRetention:
		return &c
	case commands.MarkPlacementStart:
		return &c
	case commands.MarkPlacementEnd:
		return &c
	case commands.ExpireGrant:
		return &c
	}
	return cmd
}

// expireCarerAccess is the command handler of ExpireCarerAccess.
func (pm *ProcessManager) expireCarerAccess(ctx context.Context, cmd *commands.ExpireCarerAccess) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindGrace)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandExpireCarerAccess, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.ExpireCarerAccess(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// expireInvitation is the command handler of ExpireInvitation.
func (pm *ProcessManager) expireInvitation(ctx context.Context, cmd *commands.ExpireInvitation) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindInvitation)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandExpireInvitation, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.ExpireInvitation(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// eraseAccountAtRetention is the command handler of
// EraseAccountAtRetention.
func (pm *ProcessManager) eraseAccountAtRetention(ctx context.Context, cmd *commands.EraseAccountAtRetention) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindAccountRetention)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandRetainAccount, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.EraseAccountAtRetention(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// eraseChildAtRetention is the command handler of EraseChildAtRetention.
func (pm *ProcessManager) eraseChildAtRetention(ctx context.Context, cmd *commands.EraseChildAtRetention) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindChildRetention)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandRetainChild, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.EraseChildAtRetention(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// markPlacementStart is the command handler of MarkPlacementStart.
func (pm *ProcessManager) markPlacementStart(ctx context.Context, cmd *commands.MarkPlacementStart) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindPlacementStart)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandMarkPlacementStart, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.MarkPlacementStart(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// markPlacementEnd is the command handler of MarkPlacementEnd.
func (pm *ProcessManager) markPlacementEnd(ctx context.Context, cmd *commands.MarkPlacementEnd) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindPlacementEnd)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandMarkPlacementEnd, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.MarkPlacementEnd(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// expireGrant is the command handler of ExpireGrant (R19).
func (pm *ProcessManager) expireGrant(ctx context.Context, cmd *commands.ExpireGrant) error {
	f, err := readFiring(cqrs.OriginalMessageFromCtx(ctx), KindGrantExpiry)
	if err != nil {
		pm.log.Error("processmanager: dropping a malformed command", "command", commands.CommandExpireGrant, "error", err)
		return nil
	}
	_, err = pm.cfg.Commands.ExpireGrant(ctx, f.meta(), *cmd)
	return pm.settle(ctx, f, err)
}

// settle records the outcome of a firing: fired on success, else a retry.
// It returns an error (the message is then redelivered) only when the
// outcome could not be recorded or ctx ended.
func (pm *ProcessManager) settle(ctx context.Context, f firing, outcome error) error {
	if outcome != nil && ctx.Err() != nil {
		return outcome // shutting down: the claim runs out with its lease
	}
	now := pm.cfg.Clock.Now()
	if outcome == nil {
		changed, err := pm.table.fired(ctx, f.id, f.due, now)
		if err != nil {
			return err
		}
		pm.fired.Add(1)
		pm.log.Info("processmanager: deadline fired", "deadline", f.id, "due_at", f.due, "recorded", changed)
		return nil
	}
	pm.failures.Add(1)
	pm.noteError(fmt.Errorf("%s: %w", f.id, outcome), now)
	at := now.Add(pm.backoff(f.attempt))
	if errors.Is(outcome, domain.ErrNotDue) {
		if f.due.After(at) {
			at = f.due
		}
		pm.log.Warn("processmanager: the command service says the deadline is not due yet (clock skew, or a later deadline not seen yet); retrying",
			"deadline", f.id, "due_at", f.due, "now", now, "retry_at", at, "error", outcome)
	} else {
		pm.log.Error("processmanager: firing a deadline failed; retrying",
			"deadline", f.id, "due_at", f.due, "attempt", f.attempt, "retry_at", at, "error", outcome)
	}
	if _, err := pm.table.retry(ctx, f.id, f.due, f.claimedBy, at, now, outcome.Error()); err != nil {
		return err
	}
	pm.wake()
	return nil
}

// settleOrLog is settle for a caller that cannot return its error: a
// failure to record the outcome is logged; the deadline's claim then runs
// out with its lease and the deadline is tried again.
func (pm *ProcessManager) settleOrLog(ctx context.Context, f firing, outcome error) {
	if err := pm.settle(ctx, f, outcome); err != nil && ctx.Err() == nil && !errors.Is(err, outcome) {
		pm.log.Error("processmanager: cannot record a deadline's outcome; it is tried again when its claim runs out",
			"deadline", f.id, "error", err)
	}
}

// backoff is the delay before the retry after attempt (1-based).
func (pm *ProcessManager) backoff(attempt int) time.Duration {
	d := pm.cfg.Backoff
	for i := 1; i < attempt && d < pm.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, pm.cfg.MaxBackoff)
}

func (pm *ProcessManager) noteError(err error, at time.Time) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.lastErr, pm.lastErrT = truncate(err.Error(), maxErrorBytes), at
}
