package accessindex

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Change is one entry of the change feed: a record changed the facts of the
// pair (Account, Child), and Access is the policy's answer for the pair at
// At, the moment the record was recorded (its Meta.RecordedAt). Position is
// the record's position; one record may change several pairs (closing an
// account changes all of its pairs), so several changes can share a
// position.
//
// Changes are published when a record changes a pair's facts, and also for
// the pair of a time mark (placement.grace_expired.v1,
// placement.start_reached.v1, placement.end_reached.v1, which the process
// manager records when the time a fact gave comes) when the pair's access
// changes at the marked time: such a record changes no fact (checks
// already answer by the time), but it is when a follower learns of the
// change time made, at the moment it takes effect, exactly once (the log
// holds each mark once, and the feed follows the log). An access that
// begins later by its facts (a planned placement) shows in its first
// change as the answer at At (no_relationship), and in its time mark's
// change when it begins.
type Change struct {
	Account  uuid.UUID
	Child    uuid.UUID
	Access   domain.Access
	At       time.Time
	Position eventlog.Position
}

// ErrTooOld is returned (wrapped) by Changes when changes after the position
// asked for have already left the bounded change buffer: the caller must
// start again from a full answer (ChildrenOf, ViewersOf) and follow from its
// position.
var ErrTooOld = errors.New("accessindex: position too old for the change buffer")

// Changes returns the changes after position `after`, in order, the
// position they reach (the index's position: every change up to it is in
// the list), and a channel closed when the index applies more records, so a
// follower loops: changes, pos, wait := Changes(pos); handle; <-wait.
//
// It fails with ErrTooOld when changes after `after` have left the buffer
// (it holds the last WithChangeBuffer changes, DefaultChangeBuffer by
// default). The slice is the caller's.
func (ix *Index) Changes(after eventlog.Position) ([]Change, eventlog.Position, <-chan struct{}, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if after.Before(ix.changes.dropped) {
		return nil, ix.pos, ix.notify, fmt.Errorf("%w: changes up to %s are gone, asked after %s", ErrTooOld, ix.changes.dropped, after)
	}
	return ix.changes.after(after), ix.pos, ix.notify, nil
}

// ring is a bounded buffer of the latest changes, in position order, kept
// compactly (changeEntry). Its buffer grows as changes come, up to size
// (an index with few changes keeps a small one).
type ring struct {
	buf   []changeEntry
	size  int
	start int // index of the oldest change; 0 until the buffer is full
	n     int
	// dropped is the position of the newest change pushed out of the
	// buffer (Start while none was).
	dropped eventlog.Position
}

// changeEntry is a Change as the ring keeps it: the access's times (the
// facts' times) as utime; At, the record's recording time from its
// metadata, as it is.
type changeEntry struct {
	account, child uuid.UUID
	position       eventlog.Position
	reason         domain.Reason
	at             time.Time
	until, expires utime
	perms          domain.PermissionSet
}

func newRing(size int) ring { return ring{size: size} }

func (r *ring) len() int { return r.n }

func (r *ring) entry(i int) *changeEntry { return &r.buf[(r.start+i)%len(r.buf)] }

func (r *ring) at(i int) Change {
	e := r.entry(i)
	return Change{Account: e.account, Child: e.child, Position: e.position, At: e.at,
		Access: domain.Access{Permissions: e.perms, Reason: e.reason, Until: e.until.time(), ExpiresAt: e.expires.time()}}
}

func (r *ring) push(c Change) {
	e := changeEntry{account: c.Account, child: c.Child, position: c.Position, reason: c.Access.Reason, at: c.At,
		until: ut(c.Access.Until), expires: ut(c.Access.ExpiresAt), perms: c.Access.Permissions}
	if r.n == len(r.buf) && r.n < r.size { // start is 0: nothing was dropped yet
		buf := make([]changeEntry, min(max(2*r.n, 64), r.size)) // exactly: no slack past size
		copy(buf, r.buf)
		r.buf = buf
	}
	if r.n == len(r.buf) {
		r.dropped = r.buf[r.start].position
		r.buf[r.start] = e
		r.start = (r.start + 1) % len(r.buf)
		return
	}
	r.buf[(r.start+r.n)%len(r.buf)] = e
	r.n++
}

// after copies the changes with a position after p.
func (r *ring) after(p eventlog.Position) []Change {
	i := sort.Search(r.n, func(i int) bool { return p.Before(r.entry(i).position) })
	if i == r.n {
		return nil
	}
	out := make([]Change, 0, r.n-i)
	for ; i < r.n; i++ {
		out = append(out, r.at(i))
	}
	return out
}
