// Operations: the deadlines as stored, and the process manager's status.

package processmanager

import (
	"context"
	"time"
)

// Deadline returns the deadline id (GraceID, InvitationID), or false when
// the table has no such row.
func (pm *ProcessManager) Deadline(ctx context.Context, id string) (Deadline, bool, error) {
	return pm.table.get(ctx, id)
}

// Pending returns the deadlines not yet fired or resolved, earliest due
// first (overdue ones included).
func (pm *ProcessManager) Pending(ctx context.Context) ([]Deadline, error) {
	return pm.table.pending(ctx)
}

// Status is the process manager's state for operators.
type Status struct {
	InstanceID string
	// Running: Run is running and subscribed.
	Running bool
	// Pending counts the deadlines not yet fired or resolved; Overdue those
	// of them due at the time of the call (a few are normal for a moment;
	// many, or for long, mean firings fail or nothing runs); Failing those
	// whose last attempt failed.
	Pending, Overdue, Failing int
	// NextWake is when the scheduler wakes next at the latest.
	NextWake time.Time
	// Fired and Failures count this instance's firings since New.
	Fired, Failures int64
	// LastError is this instance's last failure ("" if none) and
	// LastErrorAt its time.
	LastError   string
	LastErrorAt time.Time
}

// Status reads the counts from the table and reports this instance's
// state.
func (pm *ProcessManager) Status(ctx context.Context) (Status, error) {
	pending, overdue, failing, err := pm.table.counts(ctx, pm.cfg.Clock.Now())
	if err != nil {
		return Status{}, err
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return Status{
		InstanceID: pm.cfg.InstanceID, Running: pm.running.Load(),
		Pending: pending, Overdue: overdue, Failing: failing, NextWake: pm.nextWake,
		Fired: pm.fired.Load(), Failures: pm.failures.Load(),
		LastError: pm.lastErr, LastErrorAt: pm.lastErrT,
	}, nil
}
