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

// # The fold (issue 18)
//
// The index folds the log itself, keeping only what the policy needs and
// what later events need to be folded: per account its policy facts
// (domain.AccountFacts, shared by all of its pairs), and per (account,
// child) pair the pair's sources, compactly: each placement of the child
// with the carer (its id, start, end, grace deadline, early grace end,
// the account life it was recorded in, cancelled or not) and each interval
// of the grants to the account (from, to, expires_at, the account life,
// the permissions), times as Unix microseconds (utime). No aggregate, no
// provenance, no per-pair copy of the account's facts.
//
// A check turns the pair's sources into domain.PlacementFacts and
// domain.GrantFacts in buffers on its stack and calls domain.ChildAccess:
// the facts are exactly those the aggregates (domain.Child.PlacementFacts,
// GrantFacts, domain.Account.Facts) would give, in the same order, so the
// answers are too (TestIndexMatchesModel compares them on every pair).
//
// Event times are whole microseconds in UTC (the domain refuses others
// when it decodes an event), so utime holds them without loss and gives
// them back equal (==) to the decoded ones.

// utime is a time of the facts: Unix microseconds less those of the zero
// time.Time, so that the zero value is the zero time ("never"). Every
// event time (years 1900 to 9999, whole microseconds, UTC) round-trips
// exactly through it; order is kept.
type utime int64

// zeroMicros is the zero time.Time's Unix microseconds.
var zeroMicros = time.Time{}.UnixMicro()

func ut(t time.Time) utime {
	if t.IsZero() {
		return 0
	}
	return utime(t.UnixMicro() - zeroMicros)
}

func (u utime) time() time.Time {
	if u == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(u) + zeroMicros).UTC()
}

// source is one placement of the pair's child with the pair's account as
// carer, or one interval of the grants to the pair's account (srcGrant).
//
// A placement: id, from = started at, to = ended at (with srcEnded),
// until = grace deadline, early = the worker's early end of the grace
// period (zero: none), since = the carer account's life it was recorded
// in; srcCancelled when it was cancelled before it started (it then gives
// nothing). A grant interval: from = granted at, to = revoked, replaced or
// recorded as run out (zero: standing), until = expires_at (zero:
// open-ended), since, perms.
type source struct {
	id                            uuid.UUID
	from, to, until, early, since utime
	perms                         domain.PermissionSet
	flags                         uint8
}

const (
	srcGrant uint8 = 1 << iota
	srcEnded
	srcCancelled
	srcFlags = srcGrant | srcEnded | srcCancelled
)

func (s *source) isGrant() bool { return s.flags&srcGrant != 0 }

// graceEnd is when the carer's limited access ends (domain's placement
// graceEnd): the early end when it comes before the deadline.
func (s *source) graceEnd() utime {
	if s.early != 0 && s.early < s.until {
		return s.early
	}
	return s.until
}

func (s *source) placementFacts() domain.PlacementFacts {
	f := domain.PlacementFacts{Start: s.from.time(), Since: s.since.time()}
	if s.flags&srcEnded != 0 {
		f.End, f.GraceEnd = s.to.time(), s.graceEnd().time()
	}
	return f
}

func (s *source) grantFacts() domain.GrantFacts {
	return domain.GrantFacts{From: s.from.time(), To: s.to.time(), Permissions: s.perms, ExpiresAt: s.until.time(), Since: s.since.time()}
}

// sameFacts reports whether a and b, two states of one source, give the
// same facts.
func sameFacts(a, b *source) bool {
	ca, cb := a.flags&srcCancelled != 0, b.flags&srcCancelled != 0
	switch {
	case ca != cb:
		return false
	case ca:
		return true // neither gives anything
	case a.isGrant():
		return a.from == b.from && a.to == b.to && a.until == b.until && a.perms == b.perms && a.since == b.since
	}
	ea, eb := a.flags&srcEnded != 0, b.flags&srcEnded != 0
	return a.from == b.from && a.since == b.since && ea == eb && (!ea || (a.to == b.to && a.graceEnd() == b.graceEnd()))
}

// pairState is what the index keeps of one (account, child) pair.
type pairState struct {
	child uuid.UUID
	// srcs are the pair's placements and grant intervals, each kind in
	// the order recorded.
	srcs []source
}

// factsBuffer is how many placements (and grant intervals) a check turns
// into facts on its stack; a pair with more costs the check an
// allocation.
const factsBuffer = 8

// facts appends the pair's placement facts to pl and grant facts to gr,
// as the aggregates give them (cancelled placements left out).
func (p *pairState) facts(pl []domain.PlacementFacts, gr []domain.GrantFacts) ([]domain.PlacementFacts, []domain.GrantFacts) {
	for i := range p.srcs {
		s := &p.srcs[i]
		switch {
		case s.isGrant():
			gr = append(gr, s.grantFacts())
		case s.flags&srcCancelled == 0:
			pl = append(pl, s.placementFacts())
		}
	}
	return pl, gr
}

// access is domain.ChildAccess on the pair's facts with acct's facts at
// t, and, in a grace period, when the placement ended (GraceFrom).
func (p *pairState) access(acct *domain.AccountFacts, t time.Time) (domain.Access, time.Time) {
	var (
		pbuf [factsBuffer]domain.PlacementFacts
		gbuf [factsBuffer]domain.GrantFacts
	)
	pl, gr := p.facts(pbuf[:0], gbuf[:0])
	a := domain.ChildAccess(*acct, pl, gr, t)
	if a.Reason == domain.ReasonGracePeriod {
		return a, domain.GraceFrom(pl, t)
	}
	return a, time.Time{}
}

// placement returns the pair's placement id (the first recorded with it),
// or nil.
func (p *pairState) placement(id uuid.UUID) *source {
	for i := range p.srcs {
		if s := &p.srcs[i]; !s.isGrant() && s.id == id {
			return s
		}
	}
	return nil
}

// lastGrant returns the pair's last grant interval, or nil.
func (p *pairState) lastGrant() *source {
	for i := len(p.srcs) - 1; i >= 0; i-- {
		if s := &p.srcs[i]; s.isGrant() {
			return s
		}
	}
	return nil
}

// grantAt returns the pair's last grant interval made at from, or nil.
func (p *pairState) grantAt(from utime) *source {
	for i := len(p.srcs) - 1; i >= 0; i-- {
		if s := &p.srcs[i]; s.isGrant() && s.from == from {
			return s
		}
	}
	return nil
}

// account is what the index keeps per account.
type account struct {
	id uuid.UUID
	// known is true once the account was invited: its facts are then the
	// account's, and a check of a child it has no pair with answers by
	// them (account_not_active, account_closed or no_relationship).
	known bool
	// facts are the account's facts as its events set them, also before
	// it was invited (policyFacts gives what the policy sees).
	facts domain.AccountFacts
	// pairs are the account's pairs, sorted by child id.
	pairs []pairState
}

var noAccountFacts domain.AccountFacts

// policyFacts is the account's facts as the policy sees them: none until
// the account was invited.
func (a *account) policyFacts() *domain.AccountFacts {
	if a.known {
		return &a.facts
	}
	return &noAccountFacts
}

// pair returns the account's pair with child, or nil.
func (a *account) pair(child uuid.UUID) *pairState {
	i, ok := slices.BinarySearchFunc(a.pairs, child, func(p pairState, c uuid.UUID) int { return compareIDs(p.child, c) })
	if !ok {
		return nil
	}
	return &a.pairs[i]
}

// sameAccountFacts reports whether a and b are the same facts.
func sameAccountFacts(a, b *domain.AccountFacts) bool {
	return a.Kind == b.Kind && a.ActivatedAt.Equal(b.ActivatedAt) && a.ClosedAt.Equal(b.ClosedAt) && slices.Equal(a.Lapses, b.Lapses)
}

// errApply wraps accessmodel.ErrApply for a record the fold refuses.
func errApply(rec eventlog.Record, format string, a ...any) error {
	return fmt.Errorf("accessindex: %w %s at %s: %s", accessmodel.ErrApply, rec.ID, rec.Position, fmt.Sprintf(format, a...))
}

// pairOf returns acct's entry and its pair with child, creating both as
// needed, and whether the pair is new. Callers hold mu for writing.
func (ix *Index) pairOf(acct, child uuid.UUID) (*account, *pairState, bool) {
	ac := ix.account(acct)
	i, ok := slices.BinarySearchFunc(ac.pairs, child, func(p pairState, c uuid.UUID) int { return compareIDs(p.child, c) })
	if ok {
		return ac, &ac.pairs[i], false
	}
	ac.pairs = slices.Insert(ac.pairs, i, pairState{child: child})
	v := ix.viewers[child]
	j, _ := slices.BinarySearchFunc(v, acct, func(a *account, id uuid.UUID) int { return compareIDs(a.id, id) })
	ix.viewers[child] = slices.Insert(v, j, ac)
	ix.npairs++
	return ac, &ac.pairs[i], true
}

// existingPair returns acct's pair with child, or nil when there is none.
func (ix *Index) existingPair(acct, child uuid.UUID) (*account, *pairState) {
	ac := ix.accounts[acct]
	if ac == nil {
		return nil, nil
	}
	return ac, ac.pair(child)
}

// account returns the entry of id, creating it. Callers hold mu for writing.
func (ix *Index) account(id uuid.UUID) *account {
	ac := ix.accounts[id]
	if ac == nil {
		ac = &account{id: id}
		ix.accounts[id] = ac
	}
	return ac
}

// fold applies env, the record rec, to the index's state and publishes
// its changes. It checks the record against the state before it changes
// anything: a record the state contradicts (an event of a placement or a
// grant the pair does not have, an event type not handled) changes nothing
// and fails with accessmodel.ErrApply. Callers hold mu for writing.
func (ix *Index) fold(rec eventlog.Record, env domain.Envelope) error {
	at := env.RecordedAt
	switch e := env.Event.(type) {
	case *domain.ChildRegistered, *domain.WorkerAllocated, *domain.ChildErased:
		ix.noteChild(e)
	case *domain.ChildRetentionSet, *domain.PhoneResetRequested, *domain.PhoneCleared, *domain.PhoneEnrolled,
		*domain.IdentityLinked, *domain.AccountErased, *domain.EmailChangeRequested, *domain.EmailChanged,
		*domain.EmailClaimed, *domain.EmailReleased, *domain.PolicySet:
		// No access fact (R22, R25; identity, email and phone events).

	case *domain.PlacementStarted:
		ac, p, _ := ix.pairOf(e.CarerAccountID, e.ChildID)
		p.srcs = append(p.srcs, source{id: e.PlacementID, from: ut(e.StartedAt), since: ut(e.AccountSince)})
		ix.publish(rec, at, ac, p, true, time.Time{})
	case *domain.PlacementEnded:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, time.Time{}, func(s *source) {
			s.flags |= srcEnded
			s.to, s.until = ut(e.EndedAt), ut(e.GraceUntil)
		})
	case *domain.GraceEndedEarly:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, time.Time{}, func(s *source) { s.early = ut(e.EndedAt) })
	case *domain.PlacementCancelled:
		// The placement's times are no longer facts of the pair (R18).
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, time.Time{}, func(s *source) { s.flags |= srcCancelled })
	case *domain.GraceExpired:
		// Time marks: the time was a fact already.
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, e.ExpiredAt, nil)
	case *domain.PlacementStartReached:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, e.ReachedAt, nil)
	case *domain.PlacementEndReached:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, e.ReachedAt, nil)

	case *domain.AccessGranted:
		ac, p, _ := ix.pairOf(e.AccountID, e.ChildID)
		if g := p.lastGrant(); g != nil && g.to == 0 {
			g.to = ut(e.GrantedAt)
		}
		p.srcs = append(p.srcs, source{flags: srcGrant, from: ut(e.GrantedAt), until: ut(e.ExpiresAt), since: ut(e.AccountSince),
			perms: e.PermissionSet()})
		ix.publish(rec, at, ac, p, true, time.Time{})
		ix.noteGrant(ix.grantNote(e))
	case *domain.AccessRevoked:
		ac, p, isNew := ix.pairOf(e.AccountID, e.ChildID)
		changed := isNew
		if g := p.lastGrant(); g != nil && g.to == 0 {
			g.to, changed = ut(e.RevokedAt), true
		}
		ix.publish(rec, at, ac, p, changed, time.Time{})
		ix.noteGrant(ix.grantNote(e))
	case *domain.GrantReviewed:
		// A review changes no access (R19), only the grant's review date.
		_, p := ix.existingPair(e.AccountID, e.ChildID)
		if p == nil || p.grantAt(ut(e.GrantedAt)) == nil {
			return errApply(rec, "child %s: review of an unknown grant to %s made at %s", e.ChildID, e.AccountID, e.GrantedAt)
		}
		ix.noteGrant(ix.grantNote(e))
	case *domain.GrantExpired:
		ac, p := ix.existingPair(e.AccountID, e.ChildID)
		var g *source
		if p != nil {
			g = p.grantAt(ut(e.GrantedAt))
		}
		if g == nil {
			return errApply(rec, "child %s: expiry of an unknown grant to %s made at %s", e.ChildID, e.AccountID, e.GrantedAt)
		}
		changed := g.to == 0
		if changed {
			g.to = ut(e.ExpiredAt)
		}
		ix.publish(rec, at, ac, p, changed, e.ExpiredAt)
		ix.noteGrant(ix.grantNote(e))

	case *domain.AccountInvited:
		ix.foldAccount(rec, at, e.AccountID, true, func(f *domain.AccountFacts) { f.Kind = e.Kind })
	case *domain.InvitationExpired:
		ix.foldAccount(rec, at, e.AccountID, false, nil)
	case *domain.AccountActivated:
		ix.foldAccount(rec, at, e.AccountID, false, func(f *domain.AccountFacts) { f.ActivatedAt = e.ActivatedAt })
	case *domain.AccountClosed:
		ix.foldAccount(rec, at, e.AccountID, false, func(f *domain.AccountFacts) { f.ClosedAt = e.ClosedAt })
		// A closure ends every grant of the account (R13), and a
		// reopening does not bring them back (R18): they leave the
		// reviews list.
		for i := range ix.accounts[e.AccountID].pairs {
			ix.noteGrant(grantNote{child: ix.accounts[e.AccountID].pairs[i].child, account: e.AccountID, gone: true})
		}
	case *domain.AccountReopened:
		ix.foldAccount(rec, at, e.AccountID, false, func(f *domain.AccountFacts) {
			// A new slice: the facts handed to checks before stay as they were.
			f.Lapses = append(slices.Clip(f.Lapses), domain.Lapse{ClosedAt: e.ClosedAt, ReopenedAt: e.ReopenedAt})
			f.ClosedAt = time.Time{}
		})
	default:
		return errApply(rec, "event type %s not handled", rec.Type)
	}
	return nil
}

// foldPlacement applies change (nil for a time mark at mark) to the
// placement id of carer with child, and publishes the pair's change.
func (ix *Index) foldPlacement(rec eventlog.Record, at time.Time, carer, child, id uuid.UUID, mark time.Time, change func(*source)) error {
	ac, p := ix.existingPair(carer, child)
	var s *source
	if p != nil {
		s = p.placement(id)
	}
	if s == nil {
		return errApply(rec, "child %s: event of unknown placement %s of carer %s", child, id, carer)
	}
	changed := false
	if change != nil {
		before := *s
		change(s)
		changed = !sameFacts(&before, s)
	}
	ix.publish(rec, at, ac, p, changed, mark)
	return nil
}

// foldAccount applies change (nil: none) to the account's facts (invited:
// the event invites it), and publishes a change for each of its pairs
// when the facts the policy sees changed.
func (ix *Index) foldAccount(rec eventlog.Record, at time.Time, id uuid.UUID, invited bool, change func(*domain.AccountFacts)) {
	ac := ix.account(id)
	before := *ac.policyFacts()
	if invited && !ac.known {
		ac.known = true
		ix.known++
	}
	if change != nil {
		change(&ac.facts)
	}
	if sameAccountFacts(&before, ac.policyFacts()) {
		return
	}
	for i := range ac.pairs {
		ix.publish(rec, at, ac, &ac.pairs[i], true, time.Time{})
	}
}

// publish pushes the change of pair p of ac by rec (recorded at at) into
// the change buffer: when its facts changed, or when rec is a time mark
// (mark not zero) and the pair's access changes at the marked time (see
// Change). Callers hold mu for writing.
func (ix *Index) publish(rec eventlog.Record, at time.Time, ac *account, p *pairState, changed bool, mark time.Time) {
	f := ac.policyFacts()
	if !changed {
		if mark.IsZero() {
			return
		}
		before, _ := p.access(f, mark.Add(-time.Microsecond))
		after, _ := p.access(f, mark)
		if before.Permissions == after.Permissions && before.Reason == after.Reason {
			return
		}
	}
	a, _ := p.access(f, at)
	ix.changes.push(Change{Account: ac.id, Child: p.child, Access: a, At: at, Position: rec.Position})
}
