package domain

import (
	"strings"
	"time"
)

// Permission is one thing an account may do on a record.
type Permission uint8

// The permissions, as bits of a PermissionSet.
const (
	View                Permission = 1 << iota // read the record
	Record                                     // add new recordings, forms or messages
	CompleteOutstanding                        // finish work started before a placement ended
)

// Names of the permissions in the API and in events.
const (
	PermView                = "view"
	PermRecord              = "record"
	PermCompleteOutstanding = "complete_outstanding"
)

// String is the permission's API name.
func (p Permission) String() string {
	switch p {
	case View:
		return PermView
	case Record:
		return PermRecord
	case CompleteOutstanding:
		return PermCompleteOutstanding
	}
	return "unknown"
}

// ParsePermission parses one API permission name.
func ParsePermission(s string) (Permission, error) {
	switch s {
	case PermView:
		return View, nil
	case PermRecord:
		return Record, nil
	case PermCompleteOutstanding:
		return CompleteOutstanding, nil
	}
	return 0, invalid("permission", "unknown permission %q", s)
}

// PermissionSet is a set of permissions. The zero value is empty.
type PermissionSet uint8

// All is every permission: a carer's access to a current placement and to
// their own record.
const All = PermissionSet(View | Record | CompleteOutstanding)

// Has reports whether s holds p.
func (s PermissionSet) Has(p Permission) bool { return s&PermissionSet(p) != 0 }

// Names lists the permissions of s in a fixed order.
func (s PermissionSet) Names() []string {
	names := make([]string, 0, 3)
	for _, p := range []Permission{View, Record, CompleteOutstanding} {
		if s.Has(p) {
			names = append(names, p.String())
		}
	}
	return names
}

func (s PermissionSet) String() string { return strings.Join(s.Names(), ",") }

// ParsePermissionSet parses a list of permission names; duplicates are
// refused.
func ParsePermissionSet(names []string) (PermissionSet, error) {
	var s PermissionSet
	for _, n := range names {
		p, err := ParsePermission(n)
		if err != nil {
			return 0, err
		}
		if s.Has(p) {
			return 0, invalid("permissions", "%q listed twice", n)
		}
		s |= PermissionSet(p)
	}
	return s, nil
}

// Reason names why an access answer is what it is.
type Reason string

// Reasons that allow, and reasons that deny.
const (
	ReasonOwnRecord   Reason = "own_record"
	ReasonPlacement   Reason = "placement"
	ReasonGracePeriod Reason = "grace_period"
	ReasonGrant       Reason = "grant"

	ReasonNoRelationship   Reason = "no_relationship"
	ReasonGraceExpired     Reason = "grace_expired"
	ReasonGrantExpired     Reason = "grant_expired"
	ReasonRevoked          Reason = "revoked"
	ReasonAccountClosed    Reason = "account_closed"
	ReasonAccountNotActive Reason = "account_not_active"
)

// Access is an answer of the policy: the permissions an account has on a
// record at the decision time, the reason, and Until, the time at which this
// answer stops holding (zero: nothing scheduled ends it).
//
// ExpiresAt is, when Reason is grant, the end of the time-limited grant
// that gives the access (R19); zero otherwise.
type Access struct {
	Permissions PermissionSet
	Reason      Reason
	Until       time.Time
	ExpiresAt   time.Time
}

// Allows reports whether the answer grants p.
func (a Access) Allows(p Permission) bool { return a.Permissions.Has(p) }

// AccountFacts is what the policy needs to know about an account. Times are
// effective times; zero means "never". ClosedAt is the current closure;
// Lapses are the closures the account was reopened from (R18).
type AccountFacts struct {
	Kind        AccountKind
	ActivatedAt time.Time
	ClosedAt    time.Time
	Lapses      []Lapse
}

// Lapse is one closure of an account that was reopened later (R18): closed
// in [ClosedAt, ReopenedAt).
type Lapse struct {
	ClosedAt   time.Time
	ReopenedAt time.Time
}

// activeAt reports whether the account can exercise access at t, and if not
// the reason.
func (a AccountFacts) activeAt(t time.Time) (bool, Reason) {
	switch {
	case !a.ClosedAt.IsZero() && !t.Before(a.ClosedAt):
		return false, ReasonAccountClosed
	case a.ActivatedAt.IsZero() || t.Before(a.ActivatedAt):
		return false, ReasonAccountNotActive
	}
	for _, l := range a.Lapses {
		if within(t, l.ClosedAt, l.ReopenedAt) {
			return false, ReasonAccountClosed
		}
	}
	return true, ""
}

// since is when the account's life that t falls in began: the last
// reopening at or before t (zero when none). Access sources count only in
// the life they were recorded in (their Since): those recorded before a
// closure end with it and do not come back after a reopening, even when
// planned to start later; one recorded after a reopening counts from it,
// even when backdated to before it (R18).
func (a AccountFacts) since(t time.Time) time.Time {
	var s time.Time
	for _, l := range a.Lapses {
		if !l.ReopenedAt.After(t) {
			s = l.ReopenedAt
		}
	}
	return s
}

// PlacementFacts is what the policy needs to know about one placement of a
// child with one carer. End is zero while the placement is open; GraceEnd is
// when the carer's access ends: End plus the grace period, or earlier if the
// worker ended the grace early (R6).
type PlacementFacts struct {
	Start    time.Time
	End      time.Time
	GraceEnd time.Time
	// Since is the carer account's last reopening when the placement was
	// recorded (zero: never reopened): the placement counts only in that
	// life of the account (R18).
	Since time.Time
}

// GrantFacts is one interval of a grant to a network member (R7). To is zero
// while the grant stands (neither revoked nor replaced); ExpiresAt, when
// set, is when a time-limited grant ends by itself (R19), compared with the
// decision time whether or not its expiry was recorded.
type GrantFacts struct {
	From        time.Time
	To          time.Time
	Permissions PermissionSet
	ExpiresAt   time.Time
	// Since is the account's last reopening when the grant was made (zero:
	// never reopened): the grant counts only in that life of the account
	// (R18).
	Since time.Time
}

// End is when the interval's access ends (zero: open) and why: its
// expires_at, when that comes first (grant_expired), else To (revoked).
func (g GrantFacts) End() (time.Time, Reason) {
	if !g.ExpiresAt.IsZero() && (g.To.IsZero() || !g.To.Before(g.ExpiresAt)) {
		return g.ExpiresAt, ReasonGrantExpired
	}
	return g.To, ReasonRevoked
}

// within reports whether t lies in [from, to), with a zero to meaning open.
func within(t, from, to time.Time) bool {
	return !t.Before(from) && (to.IsZero() || t.Before(to))
}

// CarerRecordAccess is R1: a foster carer's active account may see (and
// record against) its own carer record; nobody else's.
func CarerRecordAccess(accountIsCarer bool, acct AccountFacts, t time.Time) Access {
	if ok, why := acct.activeAt(t); !ok {
		return Access{Reason: why}
	}
	if !accountIsCarer || acct.Kind != KindFosterCarer {
		return Access{Reason: ReasonNoRelationship}
	}
	return Access{Permissions: All, Reason: ReasonOwnRecord, Until: acct.ClosedAt}
}

// ChildAccess is the permissions table of domain-rules.md for one account and
// one child at decision time t: placements of the child with this account as
// carer (R2–R5), grants to this account (R7), and the account's own state
// (R9, R13). Deadlines are compared with t itself, so access never outlives a
// deadline because a background job was late (R3).
//
// When several sources apply their permissions are joined; the reason is the
// strongest source (placement, then grace period, then grant). A denial
// names the source that ended last (grace_expired, revoked or
// grant_expired), else no_relationship. A time-limited grant ends at its
// expires_at (R19).
//
// Until, for an allowed answer, is the first time after t at which the
// answer (permissions or reason) changes as far as the facts know, zero when
// nothing known changes it. A source ending while another still gives the
// same answer does not end it: a carer re-placed during the grace period
// (R5) keeps "placement" with no deadline from the old placement.
func ChildAccess(acct AccountFacts, placements []PlacementFacts, grants []GrantFacts, t time.Time) Access {
	out := childAccessAt(acct, placements, grants, t)
	if out.Permissions == 0 {
		return out
	}
	// The answer can only change at a fact time; take the earliest one
	// after t at which it differs.
	consider := func(c time.Time) {
		if c.IsZero() || !c.After(t) || (!out.Until.IsZero() && !c.Before(out.Until)) {
			return
		}
		if a := childAccessAt(acct, placements, grants, c); a.Permissions != out.Permissions || a.Reason != out.Reason {
			out.Until = c
		}
	}
	consider(acct.ActivatedAt)
	consider(acct.ClosedAt)
	for _, l := range acct.Lapses {
		consider(l.ClosedAt)
		consider(l.ReopenedAt)
	}
	for _, p := range placements {
		consider(p.Start)
		consider(p.End)
		consider(p.GraceEnd)
	}
	for _, g := range grants {
		consider(g.From)
		consider(g.To)
		consider(g.ExpiresAt)
	}
	return out
}

// GraceFrom returns, of the placements whose grace period runs at t, the
// latest end: when the placement the carer's limited access comes from
// ended, what "complete outstanding" counts from (R3). Zero when no grace
// period runs at t.
func GraceFrom(placements []PlacementFacts, t time.Time) time.Time {
	var end time.Time
	for _, p := range placements {
		if !p.End.IsZero() && within(t, p.End, p.GraceEnd) && p.End.Before(p.GraceEnd) && p.End.After(end) {
			end = p.End
		}
	}
	return end
}

// ChildAccessAt is ChildAccess without Until: the permissions and reason
// at t (and, for a denial, the source that ended last), Until always zero.
// It evaluates the facts once, where ChildAccess evaluates them again at
// every later fact time to find Until: for callers that walk the fact
// times themselves (accessmodel.Facts.Timeline).
func ChildAccessAt(acct AccountFacts, placements []PlacementFacts, grants []GrantFacts, t time.Time) Access {
	return childAccessAt(acct, placements, grants, t)
}

// childAccessAt is ChildAccess without Until: the permissions and reason at t.
func childAccessAt(acct AccountFacts, placements []PlacementFacts, grants []GrantFacts, t time.Time) Access {
	if ok, why := acct.activeAt(t); !ok {
		return Access{Reason: why}
	}
	var (
		out       Access
		rank      int // 3 placement, 2 grace, 1 grant
		lastEnd   time.Time
		endReason Reason
	)
	join := func(perms PermissionSet, r Reason, rk int) {
		out.Permissions |= perms
		if rk > rank {
			rank, out.Reason = rk, r
		}
	}
	ended := func(at time.Time, r Reason) {
		if !at.After(t) && !at.Before(lastEnd) {
			lastEnd, endReason = at, r
		}
	}
	since := acct.since(t)
	for _, p := range placements {
		if !p.Since.Equal(since) { // made in another life of the account (R18)
			continue
		}
		switch {
		case within(t, p.Start, p.End):
			join(All, ReasonPlacement, 3)
		case !p.End.IsZero() && within(t, p.End, p.GraceEnd) && p.End.Before(p.GraceEnd):
			join(PermissionSet(View|CompleteOutstanding), ReasonGracePeriod, 2)
		case !p.End.IsZero() && !t.Before(p.GraceEnd):
			ended(p.GraceEnd, ReasonGraceExpired)
		}
	}
	var expires time.Time
	for _, g := range grants {
		if !g.Since.Equal(since) {
			continue
		}
		end, why := g.End()
		switch {
		case within(t, g.From, end):
			join(g.Permissions, ReasonGrant, 1)
			expires = g.ExpiresAt
		case !end.IsZero() && !t.Before(end):
			ended(end, why)
		}
	}
	if rank == 0 {
		if endReason != "" {
			return Access{Reason: endReason}
		}
		return Access{Reason: ReasonNoRelationship}
	}
	if out.Reason == ReasonGrant {
		out.ExpiresAt = expires
	}
	return out
}
