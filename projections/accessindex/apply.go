package accessindex

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// update is one pair's new state, prepared outside the lock.
type update struct {
	pair    accessmodel.Pair
	facts   pairFacts
	isNew   bool // the pair was not in the index
	changed bool // the facts differ from the index's
	change  Change
}

// Apply folds records, which must follow every record applied so far in
// global order, into the index. Each record becomes visible to readers
// atomically with its position. Waiters (WaitFor, Changes) are woken once,
// after the last record.
//
// Apply is meant to be called by one goroutine (Run's, or a test's); calls
// from several goroutines are serialized but must still bring records in
// order. When a record cannot be applied (accessmodel.ErrApply: the log
// contradicts itself, or a record is out of order) the records before it
// stay applied and the index stops: this and every later Apply return the
// error, and the index keeps answering at the position it reached. Start a
// new Index to recover.
func (ix *Index) Apply(recs ...eventlog.Record) error {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	if ix.err != nil {
		return fmt.Errorf("accessindex: stopped by an earlier failure: %w", ix.err)
	}
	n := 0
	defer func() {
		if n > 0 {
			ix.wake()
		}
	}()
	for _, rec := range recs {
		if err := ix.apply(rec); err != nil {
			ix.err = err
			return err
		}
		n++
	}
	return nil
}

// apply folds one record: the model and the new facts outside the lock, then
// the index's maps, the change buffer and the position under it.
func (ix *Index) apply(rec eventlog.Record) error {
	res, err := ix.model.Apply(rec)
	if err != nil {
		return fmt.Errorf("accessindex: %w", err)
	}
	at := res.Envelope.RecordedAt
	// A time mark (a grace expiry, a planned start or end come) changes no
	// fact (the time was one already), but it is when followers of the
	// change feed learn that the access changed: it is published when the
	// access just before the mark's time differs from the access at it.
	mark, isMark := timeMark(res.Envelope)
	grant, grantChanged := ix.grantNote(res.Envelope.Event)
	// A closure ends every grant of the account (R13), and a reopening
	// does not bring them back (R18): they leave the reviews list.
	var closedGrants []uuid.UUID
	if e, ok := res.Envelope.Event.(*domain.AccountClosed); ok {
		closedGrants = slices.Clone(ix.model.ChildrenOf(e.AccountID))
	}
	ups := ix.scratch[:0]
	for _, p := range res.Pairs {
		old, existed := ix.pairs[p] // only this goroutine writes pairs
		nf := ix.model.Facts(p)
		u := update{pair: p, isNew: !existed, changed: !existed || !sameFacts(&old, &nf)}
		switch {
		case u.changed:
			u.facts = pairFacts{account: nf.Account, placements: nf.Placements, grants: nf.Grants}
		case isMark && changesAt(&old, mark):
			u.facts = old
		default:
			continue
		}
		u.change = Change{Account: p.Account, Child: p.Child, Access: u.facts.at(at), At: at, Position: rec.Position}
		ups = append(ups, u)
	}
	var (
		acctFacts domain.AccountFacts
		acctKnown bool
	)
	if res.Account != nil {
		if a, ok := ix.model.Account(*res.Account); ok {
			acctFacts, acctKnown = a.Facts(), true
		}
	}

	ix.mu.Lock()
	for i := range ups {
		u := &ups[i]
		if u.changed {
			ix.pairs[u.pair] = u.facts
		}
		if u.isNew {
			ix.link(u.pair)
		}
		ix.changes.push(u.change)
	}
	if res.Account != nil && acctKnown {
		ac := ix.account(*res.Account)
		if !ac.known {
			ac.known = true
			ix.known++
		}
		ac.facts = acctFacts
	}
	ix.noteChild(res.Envelope.Event)
	for _, child := range closedGrants {
		ix.noteGrant(grantNote{child: child, account: *res.Account, gone: true})
	}
	if grantChanged {
		ix.noteGrant(grant)
	}
	ix.last = lastRecord{Prev: ix.pos, ID: rec.ID, Stream: rec.Stream, Version: rec.Version, Type: rec.Type}
	if erasesPersonalData(res.Envelope.Event) {
		ix.erasures++
	}
	ix.pos = rec.Position
	ix.applied++
	if ix.targetSet && !ix.isReady && !ix.pos.Before(ix.target) {
		ix.isReady = true
		close(ix.ready)
	}
	ix.mu.Unlock()

	clear(ups)
	ix.scratch = ups[:0]
	return nil
}

// timeMark returns the time a time mark record marks (the grace deadline,
// the planned start or end), and whether env is one.
func timeMark(env domain.Envelope) (time.Time, bool) {
	switch e := env.Event.(type) {
	case *domain.GraceExpired:
		return e.ExpiredAt, true
	case *domain.PlacementStartReached:
		return e.ReachedAt, true
	case *domain.PlacementEndReached:
		return e.ReachedAt, true
	case *domain.GrantExpired:
		return e.ExpiredAt, true
	}
	return time.Time{}, false
}

// changesAt reports whether f's answer changes at t: the permissions or
// the reason just before t differ from those at t.
func changesAt(f *pairFacts, t time.Time) bool {
	before, after := f.at(t.Add(-time.Microsecond)), f.at(t)
	return before.Permissions != after.Permissions || before.Reason != after.Reason
}

// account returns the entry of id, creating it. Callers hold mu for writing.
func (ix *Index) account(id uuid.UUID) *account {
	ac := ix.accounts[id]
	if ac == nil {
		ac = &account{}
		ix.accounts[id] = ac
	}
	return ac
}

// link records a new pair in both reverse maps. Callers hold mu for writing.
func (ix *Index) link(p accessmodel.Pair) {
	ac := ix.account(p.Account)
	ac.children = insertSorted(ac.children, p.Child)
	ix.viewers[p.Child] = insertSorted(ix.viewers[p.Child], p.Account)
}

func insertSorted(ids []uuid.UUID, id uuid.UUID) []uuid.UUID {
	i, found := slices.BinarySearchFunc(ids, id, compareIDs)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

// wake closes the notify channel and replaces it.
func (ix *Index) wake() {
	ix.mu.Lock()
	close(ix.notify)
	ix.notify = make(chan struct{})
	ix.mu.Unlock()
}

func sameFacts(a *pairFacts, b *accessmodel.Facts) bool {
	return a.account.Kind == b.Account.Kind &&
		a.account.ActivatedAt.Equal(b.Account.ActivatedAt) &&
		a.account.ClosedAt.Equal(b.Account.ClosedAt) &&
		slices.EqualFunc(a.placements, b.Placements, func(x, y domain.PlacementFacts) bool {
			return x.Start.Equal(y.Start) && x.End.Equal(y.End) && x.GraceEnd.Equal(y.GraceEnd)
		}) &&
		slices.EqualFunc(a.grants, b.Grants, func(x, y domain.GrantFacts) bool {
			return x.From.Equal(y.From) && x.To.Equal(y.To) && x.Permissions == y.Permissions && x.ExpiresAt.Equal(y.ExpiresAt)
		})
}
