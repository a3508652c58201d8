// Firing deadlines in batches: the expiries and time marks claimed
// together are carried out with one Commands.FireDeadlines call and
// settled with one statement.

package processmanager

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// settleTimeout bounds the recording of a batch's outcomes once its
// commands ran, also when the process manager is stopping (ctx ended): a
// success left unrecorded is fired again when its claim runs out, and
// appends nothing then.
const settleTimeout = 10 * time.Second

// fireBatch carries out the commands of the claimed deadlines batch (in
// the same order) with Commands.FireDeadlines, then records the outcomes:
// the successes with one statement (see table.settled), each failure as
// settle records it (a retry after a backoff, or at the due for
// domain.ErrNotDue).
func (pm *ProcessManager) fireBatch(ctx context.Context, batch []firing, cmds []commands.DeadlineCommand) {
	for _, f := range batch {
		pm.log.Debug("processmanager: deadline due, carrying out its command in a batch",
			"deadline", f.id, "due_at", f.due, "attempt", f.attempt)
	}
	start := time.Now()
	outs := pm.cfg.Commands.FireDeadlines(ctx, cmds)
	took := time.Since(start)
	if len(outs) != len(batch) {
		// A Commands that breaks its contract: every claim runs out with
		// its lease and is tried again.
		pm.log.Error("processmanager: the command service answered a batch with the wrong number of outcomes",
			"commands", len(batch), "outcomes", len(outs))
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var (
		ok     []settlement
		failed int
	)
	for i, f := range batch {
		o := outs[i]
		if o.Err != nil {
			if ctx.Err() != nil {
				continue // stopping: the claim runs out with its lease
			}
			failed++
			pm.settleOrLog(sctx, f, o.Err)
			continue
		}
		s := settlement{id: f.id, due: f.due}
		for _, env := range o.Events {
			if subj, through, settles := settledBy(env.Event); settles && subj.id == f.id {
				s.through, s.by = through, env.EventID
			}
		}
		ok = append(ok, s)
	}
	if len(ok) == 0 {
		return
	}
	now := pm.cfg.Clock.Now()
	changed, err := pm.table.settled(sctx, ok, now)
	if err != nil {
		pm.noteError(err, now)
		pm.log.Error("processmanager: cannot record the deadlines fired; they are tried again when their claims run out (their commands then append nothing)",
			"deadlines", len(ok), "error", err)
		return
	}
	pm.fired.Add(int64(len(ok)))
	for _, s := range ok {
		pm.log.Debug("processmanager: deadline fired", "deadline", s.id, "due_at", s.due, "recorded", changed[s.id])
	}
	pm.log.Info("processmanager: deadlines fired in a batch",
		"fired", len(ok), "recorded", len(changed), "failed", failed, "commands_ms", took.Milliseconds())
}

// settlement is a deadline whose command succeeded for due. When the
// command's events settle the deadline (its expiry or time mark), through
// and by are the resolution the event handler would record on seeing that
// event (resolve): the row is then resolved at once, and the handler finds
// nothing to write when the event comes back. through is 0 otherwise.
type settlement struct {
	id      string
	due     time.Time
	through int64
	by      uuid.UUID
}

// settledBy returns the deadline an event settles and how far (resolve's
// through), for the events a deadline's own command appends.
func settledBy(e domain.Event) (subject, int64, bool) {
	switch e := e.(type) {
	case *domain.GraceExpired:
		return graceSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever, true
	case *domain.GrantExpired:
		return grantExpirySubject(e.ChildID, e.AccountID, e.GrantedAt), forever, true
	case *domain.InvitationExpired:
		return invitationSubject(e.AccountID), micros(e.ExpiredAt), true
	case *domain.PlacementStartReached:
		return placementStartSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever, true
	case *domain.PlacementEndReached:
		return placementEndSubject(e.ChildID, e.PlacementID, e.CarerAccountID), forever, true
	}
	return subject{}, 0, false
}

// settledChunk bounds the rows of one settled statement.
const settledChunk = 500

// settled marks fired, with one statement per settledChunk rows, each
// deadline of ss still pending for its due (as fired does); one with a
// resolution covering its due (through >= due) is marked resolved by it
// instead, as resolve would. It returns the ids of the rows it changed.
func (t *table) settled(ctx context.Context, ss []settlement, now time.Time) (map[string]bool, error) {
	changed := make(map[string]bool, len(ss))
	for start := 0; start < len(ss); start += settledChunk {
		chunk := ss[start:min(start+settledChunk, len(ss))]
		q := []byte("WITH v(vid, vdue, vthrough, vby) AS (VALUES ")
		args := make([]any, 0, 4*len(chunk)+1)
		for i, s := range chunk {
			if i > 0 {
				q = append(q, ", "...)
			}
			q = append(q, "(?, ?, ?, ?)"...)
			args = append(args, s.id, micros(s.due), s.through, idText(s.by))
		}
		q = append(q, `)
UPDATE deadlines SET
	state = CASE WHEN v.vthrough >= deadlines.due_at THEN 'resolved' ELSE 'fired' END,
	resolved_through = CASE WHEN v.vthrough >= deadlines.due_at THEN v.vthrough ELSE deadlines.resolved_through END,
	resolved_by = CASE WHEN v.vthrough >= deadlines.due_at THEN v.vby ELSE deadlines.resolved_by END,
	claimed_by = '', claimed_until = 0, last_error = '', updated_at = ?
FROM v
WHERE deadlines.id = v.vid AND deadlines.due_at = v.vdue AND deadlines.state = 'pending'
RETURNING deadlines.id`...)
		args = append(args, micros(now))
		var ids []string
		if err := t.db.NewRaw(string(q), args...).Scan(ctx, &ids); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("processmanager: mark %d deadlines fired: %w", len(chunk), err)
		}
		for _, id := range ids {
			changed[id] = true
		}
	}
	// The rows this statement resolved hold their resolution for good.
	for _, s := range ss {
		if changed[s.id] && s.through > 0 && s.through >= micros(s.due) {
			t.seen.note(s.id, s.through, idText(s.by))
		}
	}
	return changed, nil
}
