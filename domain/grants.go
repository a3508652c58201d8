package domain

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Grants that end, and reviews (R19): a grant is either time-limited (it
// ends by itself at its expires_at) or open-ended, and then due for review
// the policy's review period after it was made or last reviewed. The
// child's worker confirms a grant due for review (a new review date) or
// revokes it. The process manager records the expiry of a time-limited
// grant (GrantExpired) at its expires_at; as in R3 that event is the
// record, not the gate: the policy compares expires_at with the decision
// time itself.

// GrantReviewed: the child's worker reviewed a grant and confirmed it, with
// a reason in the event's metadata (R19): the grant made at GrantedAt is
// next due for review at ReviewBy.
type GrantReviewed struct {
	ChildID    uuid.UUID `json:"child_id"`
	AccountID  uuid.UUID `json:"account_id"`
	GrantedAt  time.Time `json:"granted_at"`
	ReviewedAt time.Time `json:"reviewed_at"`
	ReviewBy   time.Time `json:"review_by"`
}

func (*GrantReviewed) EventType() string        { return TypeGrantReviewed }
func (e *GrantReviewed) EffectiveAt() time.Time { return e.ReviewedAt }
func (e *GrantReviewed) validate() error {
	if err := firstErr(needID("child_id", e.ChildID), needID("account_id", e.AccountID),
		checkEventTime("granted_at", e.GrantedAt), checkEventTime("reviewed_at", e.ReviewedAt),
		checkEventTime("review_by", e.ReviewBy)); err != nil {
		return err
	}
	if e.ReviewedAt.Before(e.GrantedAt) {
		return invalid("reviewed_at", "before granted_at")
	}
	if !e.ReviewBy.After(e.ReviewedAt) {
		return invalid("review_by", "must be after reviewed_at")
	}
	return nil
}

// GrantExpired: the time-limited grant made at GrantedAt ran out at
// ExpiredAt, its expires_at (R19). It is the record of the expiry, not its
// gate: access already ended at expires_at whenever this event is written.
type GrantExpired struct {
	ChildID   uuid.UUID `json:"child_id"`
	AccountID uuid.UUID `json:"account_id"`
	GrantedAt time.Time `json:"granted_at"`
	ExpiredAt time.Time `json:"expired_at"`
}

func (*GrantExpired) EventType() string        { return TypeGrantExpired }
func (e *GrantExpired) EffectiveAt() time.Time { return e.ExpiredAt }
func (e *GrantExpired) validate() error {
	if err := firstErr(needID("child_id", e.ChildID), needID("account_id", e.AccountID),
		checkEventTime("granted_at", e.GrantedAt), checkEventTime("expired_at", e.ExpiredAt)); err != nil {
		return err
	}
	if !e.ExpiredAt.After(e.GrantedAt) {
		return invalid("expired_at", "must be after granted_at")
	}
	return nil
}

// grantInfo is what the aggregate keeps of one interval of a grant besides
// its policy facts.
type grantInfo struct {
	reviewBy time.Time // open-ended grants: when the grant is due for review
	expired  bool      // a GrantExpired was recorded
}

// activeAt returns the index of the grant's interval in force at now: the
// last one, while it was neither revoked nor replaced and has not run out
// (expires_at compared with now itself, R19). expired reports whether the
// last interval is open but past its expires_at.
func (g *grant) activeAt(now time.Time) (i int, ok, expired bool) {
	n := len(g.intervals)
	if n == 0 || !g.intervals[n-1].To.IsZero() {
		return 0, false, false
	}
	if e := g.intervals[n-1].ExpiresAt; !e.IsZero() && !now.Before(e) {
		return 0, false, true
	}
	return n - 1, true, false
}

// interval returns the index of the interval made at grantedAt, or -1.
func (g *grant) interval(grantedAt time.Time) int {
	for i := len(g.intervals) - 1; i >= 0; i-- {
		if g.intervals[i].From.Equal(grantedAt) {
			return i
		}
	}
	return -1
}

// GrantTerms are the terms of a new grant (R7, R19): the relationship, the
// permissions (view, and optionally record), the reason, and optionally
// ExpiresAt, when the grant ends by itself (zero: open-ended, due for
// review the policy's review period after it is made).
type GrantTerms struct {
	Relationship string
	Permissions  []string
	Reason       string
	ExpiresAt    time.Time
}

// ReviewGrant lets the child's worker confirm the grant to accountID after
// reviewing it, with a reason (R19): the grant is next due for review the
// policy's review period after now. Only an active, open-ended grant is
// reviewed: a grant revoked or never made is ErrGrantNotFound, one that ran
// out ErrGrantExpired, a time-limited one ErrGrantTimeLimited (it ends at
// its expires_at; a new grant extends it).
func (c *Child) ReviewGrant(by Actor, accountID uuid.UUID, reason string, now time.Time, policy Policy) ([]Event, error) {
	const what = "review grant"
	if err := c.requireWorker(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	policy = policy.WithDefaults()
	if err := policy.Validate(); err != nil {
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
	case !g.intervals[i].ExpiresAt.IsZero():
		return nil, fmt.Errorf("%s of %s: ends at %s: %w", what, accountID,
			g.intervals[i].ExpiresAt.Format(time.RFC3339), ErrGrantTimeLimited)
	}
	reviewBy := normTime(now.Add(policy.ReviewPeriod))
	if err := checkDerivedTime("review_by", reviewBy, "the next review date"); err != nil {
		return nil, err
	}
	return []Event{&GrantReviewed{ChildID: c.id, AccountID: accountID, GrantedAt: g.intervals[i].From,
		ReviewedAt: now, ReviewBy: reviewBy}}, nil
}

// ExpireGrant records that the time-limited grant made at grantedAt to
// accountID ran out (R19). It is what the process manager sends at the
// grant's expires_at, and it is safe to send any number of times: it
// returns no events when the expiry is already recorded, or the grant was
// revoked or replaced before it ran out, or has no end; ErrNotDue before
// expires_at; ErrGrantNotFound when no grant was made at grantedAt.
func (c *Child) ExpireGrant(accountID uuid.UUID, grantedAt, now time.Time) ([]Event, error) {
	const what = "expire grant"
	if !c.registered {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	g := c.grants[accountID]
	i := -1
	if g != nil {
		i = g.interval(normTime(grantedAt))
	}
	if i < 0 {
		return nil, fmt.Errorf("%s of %s made at %s: %w", what, accountID, grantedAt.Format(time.RFC3339Nano), ErrGrantNotFound)
	}
	iv := g.intervals[i]
	switch {
	case iv.ExpiresAt.IsZero(), g.info[i].expired, !iv.To.IsZero() && iv.To.Before(iv.ExpiresAt):
		return nil, nil
	case normTime(now).Before(iv.ExpiresAt):
		return nil, fmt.Errorf("%s of %s: due at %s: %w", what, accountID, iv.ExpiresAt.Format(time.RFC3339), ErrNotDue)
	}
	return []Event{&GrantExpired{ChildID: c.id, AccountID: accountID, GrantedAt: iv.From, ExpiredAt: iv.ExpiresAt}}, nil
}

// GrantReview is one active grant as the reviews list shows it (R19): the
// grant made at GrantedAt, its relationship, and either its review date
// (open-ended) or its end (time-limited).
type GrantReview struct {
	AccountID    uuid.UUID
	Relationship Relationship
	GrantedAt    time.Time
	ReviewBy     time.Time
	ExpiresAt    time.Time
}

// ActiveGrants returns the grants of the child in force at now (neither
// revoked, replaced nor run out), in account id order, with their review
// dates and ends.
func (c *Child) ActiveGrants(now time.Time) []GrantReview {
	var out []GrantReview
	for _, v := range c.Grants() {
		g := c.grants[v.AccountID]
		i, ok, _ := g.activeAt(now)
		if !ok {
			continue
		}
		out = append(out, GrantReview{AccountID: v.AccountID, Relationship: g.relationship, GrantedAt: g.intervals[i].From,
			ReviewBy: g.info[i].reviewBy, ExpiresAt: g.intervals[i].ExpiresAt})
	}
	return out
}

// ReviewOf returns the review date of the grant to account made at
// grantedAt (zero for a time-limited grant), if the child has it.
func (c *Child) ReviewOf(account uuid.UUID, grantedAt time.Time) (time.Time, bool) {
	g := c.grants[account]
	if g == nil {
		return time.Time{}, false
	}
	i := g.interval(grantedAt)
	if i < 0 {
		return time.Time{}, false
	}
	return g.info[i].reviewBy, true
}

// applyGranted folds an AccessGranted: it closes the open interval at
// GrantedAt and opens the new one.
func (c *Child) applyGranted(e *AccessGranted) {
	g := c.grants[e.AccountID]
	if g == nil {
		g = &grant{}
		c.grants[e.AccountID] = g
	}
	if n := len(g.intervals); n > 0 && g.intervals[n-1].To.IsZero() {
		g.intervals[n-1].To = e.GrantedAt
	}
	g.relationship = e.Relationship
	g.intervals = append(g.intervals, GrantFacts{From: e.GrantedAt, Permissions: e.PermissionSet(), ExpiresAt: e.ExpiresAt, Since: e.AccountSince})
	info := grantInfo{reviewBy: e.ReviewBy}
	if e.ExpiresAt.IsZero() && e.ReviewBy.IsZero() { // recorded before R19
		info.reviewBy = e.GrantedAt.Add(DefaultReviewPeriod)
	}
	g.info = append(g.info, info)
}

// applyGrantEvent folds a GrantReviewed or a GrantExpired.
func (c *Child) applyGrantEvent(account uuid.UUID, grantedAt time.Time, f func(iv *GrantFacts, info *grantInfo)) error {
	g := c.grants[account]
	i := -1
	if g != nil {
		i = g.interval(grantedAt)
	}
	if i < 0 {
		return fmt.Errorf("child %s: event of unknown grant to %s made at %s: %w", c.id, account,
			grantedAt.Format(time.RFC3339Nano), ErrMalformedEvent)
	}
	f(&g.intervals[i], &g.info[i])
	return nil
}
