package accessindex

import (
	"bytes"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// GrantDue is one standing grant as the reviews list shows it (R19): the
// grant to Account on Child made at GrantedAt, and either its review date
// (open-ended) or its end (time-limited).
type GrantDue struct {
	Child        uuid.UUID
	Account      uuid.UUID
	Relationship domain.Relationship
	GrantedAt    time.Time
	ReviewBy     time.Time
	ExpiresAt    time.Time
	// Worker is the child's allocated worker ("" when none), filled in
	// by GrantsDue.
	Worker string
}

// Due is when the grant needs the worker: its review date, or its end.
func (g GrantDue) Due() time.Time {
	if !g.ExpiresAt.IsZero() {
		return g.ExpiresAt
	}
	return g.ReviewBy
}

// DueKey is the place of a grant in the reviews list's order: by due
// time, then child id, then account id. The zero key is before every
// grant.
type DueKey struct {
	Due     time.Time
	Child   uuid.UUID
	Account uuid.UUID
}

// Key is g's place in the reviews list's order.
func (g GrantDue) Key() DueKey { return DueKey{Due: g.Due(), Child: g.Child, Account: g.Account} }

func compareKeys(a, b DueKey) int {
	if c := a.Due.Compare(b.Due); c != 0 {
		return c
	}
	if c := bytes.Compare(a.Child[:], b.Child[:]); c != 0 {
		return c
	}
	return bytes.Compare(a.Account[:], b.Account[:])
}

// grantNote is what a grant event changes of the reviews list: the entry
// to keep (gone: to remove).
type grantNote struct {
	child, account uuid.UUID
	entry          GrantDue
	gone           bool
	// grantedAt, for a removal or a review, names the grant it concerns:
	// an event about an earlier grant than the one kept changes nothing.
	grantedAt time.Time
}

// grantNote returns what e, a grant event, changes of the reviews list.
func (ix *Index) grantNote(e domain.Event) grantNote {
	switch e := e.(type) {
	case *domain.AccessGranted:
		review := e.ReviewBy
		if e.ExpiresAt.IsZero() && review.IsZero() { // recorded before R19: the default review date
			review = e.GrantedAt.Add(domain.DefaultReviewPeriod)
		}
		return grantNote{child: e.ChildID, account: e.AccountID, grantedAt: e.GrantedAt, entry: GrantDue{Child: e.ChildID,
			Account: e.AccountID, Relationship: e.Relationship, GrantedAt: e.GrantedAt, ReviewBy: review, ExpiresAt: e.ExpiresAt}}
	case *domain.GrantReviewed:
		return grantNote{child: e.ChildID, account: e.AccountID, grantedAt: e.GrantedAt, entry: GrantDue{ReviewBy: e.ReviewBy}}
	case *domain.AccessRevoked:
		return grantNote{child: e.ChildID, account: e.AccountID, gone: true}
	case *domain.GrantExpired:
		return grantNote{child: e.ChildID, account: e.AccountID, gone: true, grantedAt: e.GrantedAt}
	}
	return grantNote{}
}

// dueEntry is one standing grant of a child in the reviews list, kept
// compactly (see GrantDue).
type dueEntry struct {
	account                        uuid.UUID
	relationship                   domain.Relationship
	grantedAt, reviewBy, expiresAt utime
}

func (d *dueEntry) grantDue(child uuid.UUID) GrantDue {
	return GrantDue{Child: child, Account: d.account, Relationship: d.relationship, GrantedAt: d.grantedAt.time(),
		ReviewBy: d.reviewBy.time(), ExpiresAt: d.expiresAt.time()}
}

// relationship returns r, the one copy the index keeps of its value.
func (ix *Index) relationship(r domain.Relationship) domain.Relationship {
	if c, ok := ix.rels[r]; ok {
		return c
	}
	ix.rels[r] = r
	return r
}

// noteGrant applies n. Callers hold mu for writing.
func (ix *Index) noteGrant(n grantNote) {
	list := ix.grants[n.child]
	i := slices.IndexFunc(list, func(d dueEntry) bool { return d.account == n.account })
	switch {
	case n.gone:
		if i >= 0 && (n.grantedAt.IsZero() || list[i].grantedAt == ut(n.grantedAt)) {
			list = slices.Delete(list, i, i+1)
			if len(list) == 0 {
				delete(ix.grants, n.child)
			} else {
				ix.grants[n.child] = list
			}
		}
	case n.entry.Child == uuid.Nil: // a review
		if i >= 0 && list[i].grantedAt == ut(n.grantedAt) {
			list[i].reviewBy = ut(n.entry.ReviewBy)
		}
	default:
		d := dueEntry{account: n.account, relationship: ix.relationship(n.entry.Relationship), grantedAt: ut(n.entry.GrantedAt),
			reviewBy: ut(n.entry.ReviewBy), expiresAt: ut(n.entry.ExpiresAt)}
		if i >= 0 {
			list[i] = d
		} else {
			ix.grants[n.child] = append(list, d)
		}
	}
}

// GrantsDue returns up to limit grants in force at now (neither revoked,
// replaced nor past their end) that are due before dueBefore, of the
// children allocated to worker (every child when worker is ""), after the
// key after in the list's order (GrantDue.Key), whether more follow, and
// the position the answer reflects (R19).
func (ix *Index) GrantsDue(worker string, dueBefore, now time.Time, after DueKey, limit int) ([]GrantDue, bool, eventlog.Position) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []GrantDue
	visit := func(child uuid.UUID) {
		for i := range ix.grants[child] {
			g := ix.grants[child][i].grantDue(child)
			if !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt) {
				continue // ran out, the expiry not recorded yet
			}
			if !g.Due().Before(dueBefore) || compareKeys(g.Key(), after) <= 0 {
				continue
			}
			if info := ix.children[child]; info != nil {
				g.Worker = info.Worker
			}
			out = append(out, g)
		}
	}
	if worker != "" {
		for child := range ix.byWorker[worker] {
			visit(child)
		}
	} else {
		for child := range ix.grants {
			visit(child)
		}
	}
	slices.SortFunc(out, func(a, b GrantDue) int { return compareKeys(a.Key(), b.Key()) })
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, ix.pos
}
