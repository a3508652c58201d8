package domain

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Child is the aggregate of one child's record: its allocated worker, its
// placements with foster carers and their grace periods, and the grants that
// let network members see it. Its state is unexported and changes only
// through Apply; decision methods return new events or an error and leave the
// state as it was. A Child is not safe for concurrent use.
type Child struct {
	id         uuid.UUID
	version    uint64
	registered bool
	reference  string
	worker     string
	placements []*placement
	grants     map[uuid.UUID]*grant
	erasedAt   time.Time
	// retainUntil is when the record may be erased (R22); zero: not set.
	retainUntil time.Time
}

type placement struct {
	id         uuid.UUID
	carer      uuid.UUID
	startedAt  time.Time
	ended      bool
	endedAt    time.Time
	graceUntil time.Time
	graceEnded time.Time // non-zero when the worker ended the grace early (R6)
	expired    bool      // a GraceExpired event was recorded
	// cancelledAt is when the worker cancelled the placement before it
	// started (R18); zero when it was not.
	cancelledAt time.Time
	// since is the carer account's last reopening when the placement was
	// recorded (R18).
	since time.Time
	// startMarked and endMarked: the process manager recorded that the
	// start, the end, planned ahead, came (PlacementStartReached,
	// PlacementEndReached).
	startMarked, endMarked bool
}

// cancelled reports whether the placement was cancelled before it started:
// it never gave access.
func (p *placement) cancelled() bool { return !p.cancelledAt.IsZero() }

// graceEnd is when the carer's limited access ends.
func (p *placement) graceEnd() time.Time {
	if !p.graceEnded.IsZero() && p.graceEnded.Before(p.graceUntil) {
		return p.graceEnded
	}
	return p.graceUntil
}

type grant struct {
	relationship Relationship
	intervals    []GrantFacts
	info         []grantInfo // one per interval
}

// NewChild returns the empty aggregate of child id, to which the stream's
// history is applied.
func NewChild(id uuid.UUID) *Child {
	return &Child{id: id, grants: map[uuid.UUID]*grant{}}
}

// ID returns the child's id.
func (c *Child) ID() uuid.UUID { return c.id }

// Version is the number of events applied: the stream version a command
// appends after.
func (c *Child) Version() uint64 { return c.version }

// Registered reports whether the child exists.
func (c *Child) Registered() bool { return c.registered }

// Reference returns the council's reference for the child.
// Once the child is erased it is ErasedText, whatever the log held (R22).
func (c *Child) Reference() string {
	if !c.erasedAt.IsZero() {
		return ErasedText
	}
	return c.reference
}

// Worker returns the allocated worker's id, or "" when none is allocated.
func (c *Child) Worker() string { return c.worker }

// PlacementView is a read-only copy of one placement.
type PlacementView struct {
	ID              uuid.UUID
	CarerAccountID  uuid.UUID
	StartedAt       time.Time
	Ended           bool
	EndedAt         time.Time
	GraceUntil      time.Time
	GraceEndedEarly time.Time
	ExpiryRecorded  bool
	// CancelledAt is when the placement was cancelled before it started
	// (R18); zero when it was not.
	CancelledAt time.Time
}

// Placement returns placement id, if the child has it.
func (c *Child) Placement(id uuid.UUID) (PlacementView, bool) {
	p := c.placement(id)
	if p == nil {
		return PlacementView{}, false
	}
	return PlacementView{ID: p.id, CarerAccountID: p.carer, StartedAt: p.startedAt, Ended: p.ended,
		EndedAt: p.endedAt, GraceUntil: p.graceUntil, GraceEndedEarly: p.graceEnded, ExpiryRecorded: p.expired,
		CancelledAt: p.cancelledAt}, true
}

// Placements returns a read-only copy of every placement of the child, in
// the order they were recorded.
func (c *Child) Placements() []PlacementView {
	out := make([]PlacementView, 0, len(c.placements))
	for _, p := range c.placements {
		v, _ := c.Placement(p.id)
		out = append(out, v)
	}
	return out
}

// GrantView is a read-only copy of the grants to one account: its
// relationship and every interval, in the order they were recorded (the
// last one open, To zero, while the grant stands).
type GrantView struct {
	AccountID    uuid.UUID
	Relationship Relationship
	Intervals    []GrantFacts
}

// Grants returns the grants of the child, one per account, in account id
// order.
func (c *Child) Grants() []GrantView {
	out := make([]GrantView, 0, len(c.grants))
	for id, g := range c.grants {
		out = append(out, GrantView{AccountID: id, Relationship: g.relationship,
			Intervals: append([]GrantFacts(nil), g.intervals...)})
	}
	slices.SortFunc(out, func(a, b GrantView) int { return bytes.Compare(a.AccountID[:], b.AccountID[:]) })
	return out
}

// PlacementFacts returns the policy's view of every placement of the child
// with carer, in the order they were recorded; a cancelled placement gave no
// access and is left out.
func (c *Child) PlacementFacts(carer uuid.UUID) []PlacementFacts {
	return c.AppendPlacementFacts(nil, carer)
}

// AppendPlacementFacts appends PlacementFacts(carer) to dst and returns
// the extended slice (dst itself, unchanged, when there are none).
func (c *Child) AppendPlacementFacts(dst []PlacementFacts, carer uuid.UUID) []PlacementFacts {
	for _, p := range c.placements {
		if p.carer != carer || p.cancelled() {
			continue
		}
		f := PlacementFacts{Start: p.startedAt, Since: p.since}
		if p.ended {
			f.End, f.GraceEnd = p.endedAt, p.graceEnd()
		}
		dst = append(dst, f)
	}
	return dst
}

// GrantFacts returns every interval of the grants to account.
func (c *Child) GrantFacts(account uuid.UUID) []GrantFacts {
	return c.AppendGrantFacts(nil, account)
}

// AppendGrantFacts appends GrantFacts(account) to dst and returns the
// extended slice (dst itself, unchanged, when there are none).
func (c *Child) AppendGrantFacts(dst []GrantFacts, account uuid.UUID) []GrantFacts {
	g := c.grants[account]
	if g == nil {
		return dst
	}
	return append(dst, g.intervals...)
}

// Access answers the permissions table for account on this child at t.
func (c *Child) Access(account *Account, t time.Time) Access {
	if account == nil || !account.Exists() {
		return Access{Reason: ReasonNoRelationship}
	}
	return ChildAccess(account.Facts(), c.PlacementFacts(account.ID()), c.GrantFacts(account.ID()), t)
}

// Apply changes the state by one event of the child's stream. It refuses an
// event of another aggregate or another child.
func (c *Child) Apply(e Event) error {
	switch e := e.(type) {
	case *ChildRegistered:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		c.registered, c.reference, c.worker, c.retainUntil = true, e.Reference, e.WorkerID, e.RetainUntil
	case *WorkerAllocated:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		c.worker = e.WorkerID
	case *PlacementStarted:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		c.placements = append(c.placements, &placement{id: e.PlacementID, carer: e.CarerAccountID, startedAt: e.StartedAt, since: e.AccountSince})
	case *PlacementEnded:
		p, err := c.applied(e.ChildID, e.PlacementID)
		if err != nil {
			return err
		}
		p.ended, p.endedAt, p.graceUntil = true, e.EndedAt, e.GraceUntil
	case *GraceEndedEarly:
		p, err := c.applied(e.ChildID, e.PlacementID)
		if err != nil {
			return err
		}
		p.graceEnded = e.EndedAt
	case *GraceExpired:
		p, err := c.applied(e.ChildID, e.PlacementID)
		if err != nil {
			return err
		}
		p.expired = true
	case *PlacementCancelled:
		p, err := c.applied(e.ChildID, e.PlacementID)
		if err != nil {
			return err
		}
		p.cancelledAt = e.CancelledAt
	case *PlacementStartReached:
		p, err := c.applied(e.ChildID, e.PlacementID)
		if err != nil {
			return err
		}
		p.startMarked = true
	case *PlacementEndReached:
		p, err := c.applied(e.ChildID, e.PlacementID)
		if err != nil {
			return err
		}
		p.endMarked = true
	case *AccessGranted:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		c.applyGranted(e)
	case *AccessRevoked:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		if g := c.grants[e.AccountID]; g != nil {
			if n := len(g.intervals); n > 0 && g.intervals[n-1].To.IsZero() {
				g.intervals[n-1].To = e.RevokedAt
			}
		}
	case *GrantReviewed:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		if err := c.applyGrantEvent(e.AccountID, e.GrantedAt, func(_ *GrantFacts, info *grantInfo) { info.reviewBy = e.ReviewBy }); err != nil {
			return err
		}
	case *GrantExpired:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		if err := c.applyGrantEvent(e.AccountID, e.GrantedAt, func(iv *GrantFacts, info *grantInfo) {
			info.expired = true
			if iv.To.IsZero() {
				iv.To = e.ExpiredAt
			}
		}); err != nil {
			return err
		}
	case *ChildErased:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		c.erasedAt = e.ErasedAt
	case *ChildRetentionSet:
		if err := c.same(e.ChildID); err != nil {
			return err
		}
		c.retainUntil = e.RetainUntil
	default:
		return fmt.Errorf("child %s: cannot apply %T: %w", c.id, e, ErrMalformedEvent)
	}
	c.version++
	return nil
}

func (c *Child) same(id uuid.UUID) error {
	if id != c.id {
		return fmt.Errorf("child %s: event of child %s: %w", c.id, id, ErrMalformedEvent)
	}
	return nil
}

func (c *Child) applied(child, placementID uuid.UUID) (*placement, error) {
	if err := c.same(child); err != nil {
		return nil, err
	}
	p := c.placement(placementID)
	if p == nil {
		return nil, fmt.Errorf("child %s: event of unknown placement %s: %w", c.id, placementID, ErrMalformedEvent)
	}
	return p, nil
}

func (c *Child) placement(id uuid.UUID) *placement {
	for _, p := range c.placements {
		if p.id == id {
			return p
		}
	}
	return nil
}

// superseded reports whether p's carer was placed with the child again
// before p's grace period ran out (R5): access then continues without a gap
// and p's deadline changes nothing.
func (c *Child) superseded(p *placement) bool {
	if !p.ended {
		return false
	}
	for _, q := range c.placements {
		if q != p && q.carer == p.carer && !q.cancelled() && !q.startedAt.Before(p.endedAt) && !q.startedAt.After(p.graceUntil) {
			return true
		}
	}
	return false
}

// supersededBy is superseded, counting only the placements that had
// started by now.
func (c *Child) supersededBy(p *placement, now time.Time) bool {
	if !p.ended {
		return false
	}
	for _, q := range c.placements {
		if q != p && q.carer == p.carer && !q.cancelled() && !q.startedAt.Before(p.endedAt) && !q.startedAt.After(p.graceUntil) &&
			!q.startedAt.After(now) {
			return true
		}
	}
	return false
}

// ---- decisions ----

// Register creates the child's record (a worker who registers becomes the
// allocated worker; a manager allocates one afterwards).
func (c *Child) Register(by Actor, reference string, retainUntil, now time.Time) ([]Event, error) {
	if err := allowRoles(by, RoleWorker, RoleManager); err != nil {
		return nil, fmt.Errorf("register child: %w", err)
	}
	if c.id == uuid.Nil {
		return nil, invalid("child_id", "required")
	}
	if err := checkIdentifier("reference", reference, 200); err != nil {
		return nil, err
	}
	if c.registered {
		return nil, &AlreadyRegistered{ChildID: c.id}
	}
	e := &ChildRegistered{ChildID: c.id, Reference: reference, RegisteredAt: normTime(now)}
	if !retainUntil.IsZero() {
		if err := checkRetainUntil(retainUntil, now); err != nil {
			return nil, err
		}
		e.RetainUntil = normTime(retainUntil)
	}
	if by.Role == RoleWorker {
		e.WorkerID = by.ID
	}
	return []Event{e}, nil
}

// AllocateWorker lets a manager allocate the child to a worker (R8).
func (c *Child) AllocateWorker(by Actor, workerID string, now time.Time) ([]Event, error) {
	if err := allowRoles(by, RoleManager); err != nil {
		return nil, fmt.Errorf("allocate worker: %w", err)
	}
	if !c.registered {
		return nil, fmt.Errorf("allocate worker to child %s: %w", c.id, ErrChildNotFound)
	}
	if c.Erased() {
		return nil, fmt.Errorf("allocate worker to child %s: %w", c.id, ErrErased)
	}
	if err := checkActorID("worker_id", workerID); err != nil {
		return nil, err
	}
	if workerID == c.worker {
		return nil, fmt.Errorf("allocate worker %q to child %s: %w", workerID, c.id, ErrAlreadyAllocated)
	}
	return []Event{&WorkerAllocated{ChildID: c.id, WorkerID: workerID, PreviousWorkerID: c.worker, AllocatedAt: normTime(now)}}, nil
}

// requireWorker checks that by is the child's allocated worker (R8).
func (c *Child) requireWorker(by Actor, what string) error {
	if err := allowRoles(by, RoleWorker); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !c.registered {
		return fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	if c.worker == "" || by.ID != c.worker {
		return fmt.Errorf("%s: worker %q on child %s: %w", what, by.ID, c.id, ErrNotAllocated)
	}
	if c.Erased() {
		return fmt.Errorf("%s: child %s: %w", what, c.id, ErrErased)
	}
	return nil
}

// StartPlacement places the child with a foster carer from startedAt (R2),
// which may be backdated, even to before the child or the account was
// registered (R4). The carer must be a foster carer's account that is not
// closed, and must not already have a placement of this child at or after
// startedAt; other carers' placements may overlap (R5). Cancelled
// placements, and placements that started before the account was last
// reopened (they give no access since, R18), do not count.
func (c *Child) StartPlacement(by Actor, placementID uuid.UUID, carer *Account, startedAt, now time.Time) ([]Event, error) {
	const what = "start placement"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if placementID == uuid.Nil {
		return nil, invalid("placement_id", "required")
	}
	if c.placement(placementID) != nil {
		return nil, invalid("placement_id", "already used")
	}
	if err := CheckCommandTime("started_at", startedAt); err != nil {
		return nil, err
	}
	if carer == nil || !carer.Exists() {
		return nil, fmt.Errorf("%s: carer: %w", what, ErrAccountNotFound)
	}
	if carer.Kind() != KindFosterCarer {
		return nil, fmt.Errorf("%s: account %s: %w", what, carer.ID(), ErrNotFosterCarer)
	}
	if carer.Closed() {
		return nil, fmt.Errorf("%s: account %s: %w", what, carer.ID(), ErrAccountClosed)
	}
	if carer.isSelf(by) {
		return nil, fmt.Errorf("%s: %w", what, ErrSelfAccess)
	}
	startedAt = normTime(startedAt)
	reopened := carer.ReopenedAt()
	for _, p := range c.placements {
		if p.carer != carer.ID() || p.cancelled() || !p.since.Equal(reopened) { // another life of the account gives nothing now
			continue
		}
		if !p.ended || p.endedAt.After(startedAt) {
			return nil, fmt.Errorf("%s: carer %s, placement %s: %w", what, carer.ID(), p.id, ErrPlacementOverlap)
		}
	}
	return []Event{&PlacementStarted{ChildID: c.id, PlacementID: placementID, CarerAccountID: carer.ID(), StartedAt: startedAt,
		AccountSince: reopened}}, nil
}

// EndPlacement ends a placement at endedAt, which may be backdated or in the
// future (R4). The carer keeps limited access until endedAt + the grace
// period (R3). If that deadline has already passed at now, the expiry is
// recorded at once, in the same decision.
func (c *Child) EndPlacement(by Actor, placementID uuid.UUID, endedAt, now time.Time, policy Policy) ([]Event, error) {
	const what = "end placement"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	p := c.placement(placementID)
	if p == nil {
		return nil, fmt.Errorf("%s %s: %w", what, placementID, ErrPlacementNotFound)
	}
	switch {
	case p.cancelled():
		return nil, fmt.Errorf("%s %s: %w", what, placementID, ErrPlacementCancelled)
	case p.ended:
		return nil, fmt.Errorf("%s %s: %w", what, placementID, ErrPlacementEnded)
	}
	if err := CheckCommandTime("ended_at", endedAt); err != nil {
		return nil, err
	}
	endedAt = normTime(endedAt)
	if !endedAt.After(p.startedAt) { // a placement that ends as it starts gave no care
		return nil, fmt.Errorf("%s %s: ended_at %s before started_at %s: %w", what, placementID,
			endedAt.Format(time.RFC3339), p.startedAt.Format(time.RFC3339), ErrEndBeforeStart)
	}
	graceUntil := normTime(endedAt.Add(policy.GracePeriod))
	if err := checkDerivedTime("ended_at", graceUntil, "the end of its grace period"); err != nil {
		return nil, err
	}
	events := []Event{&PlacementEnded{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, EndedAt: endedAt, GraceUntil: graceUntil}}
	if !normTime(now).Before(graceUntil) {
		events = append(events, &GraceExpired{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, ExpiredAt: graceUntil})
	}
	return events, nil
}

// EndGraceEarly lets the child's worker end a running grace period before its
// deadline, with a reason (R6).
func (c *Child) EndGraceEarly(by Actor, placementID uuid.UUID, reason string, now time.Time) ([]Event, error) {
	const what = "end grace period"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	p := c.placement(placementID)
	if p == nil {
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementNotFound)
	}
	now = normTime(now)
	switch {
	case p.cancelled():
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementCancelled)
	case !p.ended || now.Before(p.endedAt):
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementNotEnded)
	case !p.graceEnded.IsZero() || p.expired || !now.Before(p.graceUntil):
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrGraceExpired)
	case c.supersededBy(p, now):
		return nil, fmt.Errorf("%s of %s: the carer was placed with the child again: %w", what, placementID, ErrGraceExpired)
	}
	// A placement of the same carer planned within the grace period but not
	// started yet leaves the grace period running until it starts (the
	// check answers grace_period): the worker may still end it early.
	return []Event{&GraceEndedEarly{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, EndedAt: now}}, nil
}

// ExpireCarerAccess records that a placement's grace period ran out. It is
// what the process manager sends at the deadline, and it is safe to send any
// number of times: it returns no events when the expiry is already recorded,
// the grace was ended early (R6), the carer was placed again before the
// deadline (R5), or the placement was cancelled (R18); ErrNotDue before the
// deadline.
func (c *Child) ExpireCarerAccess(placementID uuid.UUID, now time.Time) ([]Event, error) {
	const what = "expire carer access"
	if !c.registered {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	p := c.placement(placementID)
	if p == nil {
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementNotFound)
	}
	switch {
	case p.cancelled():
		return nil, nil
	case !p.ended:
		return nil, fmt.Errorf("%s of %s: %w", what, placementID, ErrPlacementNotEnded)
	case p.expired || !p.graceEnded.IsZero() || c.superseded(p):
		return nil, nil
	case normTime(now).Before(p.graceUntil):
		return nil, fmt.Errorf("%s of %s: due at %s: %w", what, placementID, p.graceUntil.Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&GraceExpired{ChildID: c.id, PlacementID: p.id, CarerAccountID: p.carer, ExpiredAt: p.graceUntil}}, nil
}

// Grant lets a network member see the child's record (R7): only the child's
// allocated worker can grant, with a relationship, permissions (view, and
// optionally record) and a reason; nobody can grant to themselves (R8). It
// is GrantWith of an open-ended grant under DefaultPolicy.
func (c *Child) Grant(by Actor, grantee *Account, relationship string, permissions []string, reason string, now time.Time) ([]Event, error) {
	return c.GrantWith(by, grantee, GrantTerms{Relationship: relationship, Permissions: permissions, Reason: reason}, now, DefaultPolicy)
}

// GrantWith decides a grant on terms at now (R7, R8, R19). A time-limited
// grant (terms.ExpiresAt, after now) ends by itself then; an open-ended one
// is due for review policy.ReviewPeriod after now. A grant to an account
// that already has one replaces it, with its own end or review date; a
// grant identical to the one in force (relationship, permissions, end) is
// refused with ErrAlreadyGranted, unless it was made before the account was
// last reopened (it gives no access since, R18).
func (c *Child) GrantWith(by Actor, grantee *Account, terms GrantTerms, now time.Time, policy Policy) ([]Event, error) {
	const what = "grant access"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(terms.Reason); err != nil {
		return nil, err
	}
	rel, err := ParseRelationship(terms.Relationship)
	if err != nil {
		return nil, err
	}
	perms, err := grantPermissions(terms.Permissions)
	if err != nil {
		return nil, err
	}
	policy = policy.WithDefaults()
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	now = normTime(now)
	e := &AccessGranted{ChildID: c.id, Relationship: rel, Permissions: perms.Names(), GrantedAt: now}
	if terms.ExpiresAt.IsZero() {
		e.ReviewBy = normTime(now.Add(policy.ReviewPeriod))
		if err := checkDerivedTime("review_by", e.ReviewBy, "the review date"); err != nil {
			return nil, err
		}
	} else {
		if err := CheckCommandTime("expires_at", terms.ExpiresAt); err != nil {
			return nil, err
		}
		e.ExpiresAt = normTime(terms.ExpiresAt)
		if !e.ExpiresAt.After(now) {
			return nil, invalid("expires_at", "must be in the future")
		}
	}
	if grantee == nil || !grantee.Exists() {
		return nil, fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	}
	if grantee.Closed() {
		return nil, fmt.Errorf("%s: account %s: %w", what, grantee.ID(), ErrAccountClosed)
	}
	if grantee.isSelf(by) {
		return nil, fmt.Errorf("%s: %w", what, ErrSelfAccess)
	}
	if grantee.Kind() == KindFosterCarer {
		return nil, invalid("account_id", "account %s is a foster carer's: a carer sees a child's record through a placement (R2), not a grant", grantee.ID())
	}
	if g := c.grants[grantee.ID()]; g != nil {
		if i, ok, _ := g.activeAt(now); ok {
			cur := g.intervals[i]
			if cur.Permissions == perms && g.relationship == rel && cur.ExpiresAt.Equal(e.ExpiresAt) && cur.Since.Equal(grantee.ReopenedAt()) {
				return nil, fmt.Errorf("%s to %s: %w", what, grantee.ID(), ErrAlreadyGranted)
			}
		}
	}
	e.AccountID, e.AccountSince = grantee.ID(), grantee.ReopenedAt()
	return []Event{e}, nil
}

// Revoke ends a network member's grant, with a reason (R7). A grant that
// ran out (R19) is refused with ErrGrantExpired, one revoked or never made
// with ErrGrantNotFound.
func (c *Child) Revoke(by Actor, accountID uuid.UUID, reason string, now time.Time) ([]Event, error) {
	const what = "revoke access"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	now = normTime(now)
	g := c.grants[accountID]
	if g == nil {
		return nil, fmt.Errorf("%s of %s: %w", what, accountID, ErrGrantNotFound)
	}
	i, ok, expired := g.activeAt(now)
	switch {
	case expired:
		return nil, fmt.Errorf("%s of %s: %w", what, accountID, ErrGrantExpired)
	case !ok:
		return nil, fmt.Errorf("%s of %s: %w", what, accountID, ErrGrantNotFound)
	}
	return []Event{&AccessRevoked{ChildID: c.id, AccountID: accountID, RevokedAt: now, GrantedAt: g.intervals[i].From}}, nil
}

// allowRoles refuses an actor whose role is not one of roles, or who has no
// id (R8).
func allowRoles(by Actor, roles ...Role) error {
	if err := by.Validate(); err != nil {
		return err
	}
	for _, r := range roles {
		if by.Role == r {
			return nil
		}
	}
	return fmt.Errorf("role %q: %w", by.Role, ErrRoleNotAllowed)
}

// Clone returns a copy of c that applying events to (or deciding on)
// leaves c as it was: the command layer keeps a child's state at a
// version and carries on from a copy of it.
func (c *Child) Clone() *Child {
	out := *c
	out.placements = make([]*placement, len(c.placements))
	for i, p := range c.placements {
		cp := *p
		out.placements[i] = &cp
	}
	out.grants = make(map[uuid.UUID]*grant, len(c.grants))
	for k, g := range c.grants {
		out.grants[k] = &grant{relationship: g.relationship, intervals: slices.Clone(g.intervals), info: slices.Clone(g.info)}
	}
	return &out
}
