package domain

import (
	"bytes"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Aggregate state for snapshots (issue 18). A read-side fold that keeps
// aggregates in memory (projections/accessmodel) saves their state with
// State and restores it with RestoreChild and RestoreAccount, so that a
// restart replays only the events after the snapshot. Applying the same
// events to a restored aggregate gives the same facts, and the same
// errors, as applying them to the aggregate folded from its whole stream.
//
// The state holds no personal field (R22): a child's reference, an
// account's email, pending email, identity subject and phone hint are left
// out, so a snapshot never keeps personal data that crypto-shredding could
// not erase. A restored aggregate answers "" for them: it is meant for
// folds that never read them (the access policy's facts), never for
// deciding commands.

// PlacementState is one placement of a ChildState.
type PlacementState struct {
	ID          uuid.UUID
	Carer       uuid.UUID
	StartedAt   time.Time
	Ended       bool
	EndedAt     time.Time
	GraceUntil  time.Time
	GraceEnded  time.Time
	Expired     bool
	CancelledAt time.Time
	Since       time.Time
	StartMarked bool
	EndMarked   bool
}

// GrantIntervalState is one interval of a GrantState, with its review date
// and whether its expiry was recorded.
type GrantIntervalState struct {
	Facts    GrantFacts
	ReviewBy time.Time
	Expired  bool
}

// GrantState is the grant of a ChildState to one account.
type GrantState struct {
	Account      uuid.UUID
	Relationship Relationship
	Intervals    []GrantIntervalState
}

// ChildState is a Child's state without its personal fields (see above).
// Grants are sorted by account id.
type ChildState struct {
	ID          uuid.UUID
	Version     uint64
	Registered  bool
	Worker      string
	Placements  []PlacementState
	Grants      []GrantState
	ErasedAt    time.Time
	RetainUntil time.Time
}

// State returns c's state, without its personal fields. It shares nothing
// with c.
func (c *Child) State() ChildState {
	s := ChildState{ID: c.id, Version: c.version, Registered: c.registered, Worker: c.worker,
		ErasedAt: c.erasedAt, RetainUntil: c.retainUntil}
	if len(c.placements) > 0 {
		s.Placements = make([]PlacementState, len(c.placements))
		for i, p := range c.placements {
			s.Placements[i] = PlacementState{ID: p.id, Carer: p.carer, StartedAt: p.startedAt, Ended: p.ended,
				EndedAt: p.endedAt, GraceUntil: p.graceUntil, GraceEnded: p.graceEnded, Expired: p.expired,
				CancelledAt: p.cancelledAt, Since: p.since, StartMarked: p.startMarked, EndMarked: p.endMarked}
		}
	}
	if len(c.grants) > 0 {
		s.Grants = make([]GrantState, 0, len(c.grants))
		for acct, g := range c.grants {
			gs := GrantState{Account: acct, Relationship: g.relationship, Intervals: make([]GrantIntervalState, len(g.intervals))}
			for i, iv := range g.intervals {
				gs.Intervals[i].Facts = iv
				if i < len(g.info) {
					gs.Intervals[i].ReviewBy, gs.Intervals[i].Expired = g.info[i].reviewBy, g.info[i].expired
				}
			}
			s.Grants = append(s.Grants, gs)
		}
		slices.SortFunc(s.Grants, func(a, b GrantState) int { return bytes.Compare(a.Account[:], b.Account[:]) })
	}
	return s
}

// RestoreChild returns the aggregate whose state is s (see State). It
// shares nothing with s.
func RestoreChild(s ChildState) *Child {
	c := NewChild(s.ID)
	c.version, c.registered, c.worker, c.erasedAt, c.retainUntil = s.Version, s.Registered, s.Worker, s.ErasedAt, s.RetainUntil
	if len(s.Placements) > 0 {
		c.placements = make([]*placement, len(s.Placements))
		for i, p := range s.Placements {
			c.placements[i] = &placement{id: p.ID, carer: p.Carer, startedAt: p.StartedAt, ended: p.Ended,
				endedAt: p.EndedAt, graceUntil: p.GraceUntil, graceEnded: p.GraceEnded, expired: p.Expired,
				cancelledAt: p.CancelledAt, since: p.Since, startMarked: p.StartMarked, endMarked: p.EndMarked}
		}
	}
	for _, gs := range s.Grants {
		g := &grant{relationship: gs.Relationship, intervals: make([]GrantFacts, len(gs.Intervals)), info: make([]grantInfo, len(gs.Intervals))}
		for i, iv := range gs.Intervals {
			g.intervals[i] = iv.Facts
			g.info[i] = grantInfo{reviewBy: iv.ReviewBy, expired: iv.Expired}
		}
		c.grants[gs.Account] = g
	}
	return c
}

// AccountState is an Account's state without its personal fields (see
// above).
type AccountState struct {
	ID             uuid.UUID
	Version        uint64
	Exists         bool
	Kind           AccountKind
	InvitedAt      time.Time
	ExpiresAt      time.Time
	ExpiryRecorded bool
	ActivatedAt    time.Time
	ClosedAt       time.Time
	Lapses         []Lapse
	ResetRequested bool
	ErasedAt       time.Time
}

// State returns a's state, without its personal fields. It shares nothing
// with a.
func (a *Account) State() AccountState {
	return AccountState{ID: a.id, Version: a.version, Exists: a.exists, Kind: a.kind, InvitedAt: a.invitedAt,
		ExpiresAt: a.expiresAt, ExpiryRecorded: a.expiryRec, ActivatedAt: a.activatedAt, ClosedAt: a.closedAt,
		Lapses: slices.Clone(a.lapses), ResetRequested: a.resetRequested, ErasedAt: a.erasedAt}
}

// RestoreAccount returns the aggregate whose state is s (see State). It
// shares nothing with s.
func RestoreAccount(s AccountState) *Account {
	return &Account{id: s.ID, version: s.Version, exists: s.Exists, kind: s.Kind, invitedAt: s.InvitedAt,
		expiresAt: s.ExpiresAt, expiryRec: s.ExpiryRecorded, activatedAt: s.ActivatedAt, closedAt: s.ClosedAt,
		lapses: slices.Clone(s.Lapses), resetRequested: s.ResetRequested, erasedAt: s.ErasedAt}
}

// Whole state, for the command side's kept-state snapshot.
//
// The command service (commands) keeps each child's and account's state
// between commands and saves it to a snapshot file so that a restart
// does not read every stream whole again. Its decisions read the personal
// fields (a child's reference, an account's email, identity subject,
// pending email and phone hint), so its form of the state holds them:
// WholeState and RestoreWholeChild / RestoreWholeAccount. With State and
// RestoreChild / RestoreAccount they are the only ways, besides Apply,
// that an aggregate's state is set: the one exception to "state changes
// only by applying events", and they restore exactly what applying the
// stream gave (an aggregate restored from its WholeState decides every
// command as the original does). The caller keeps what they return as
// personal data: a file of it is mode 0600 and goes as soon as one of its
// aggregates is erased (commands, "Kept-state snapshot").

// ChildWholeState is a Child's whole state: its State and its reference.
type ChildWholeState struct {
	ChildState
	Reference string
}

// WholeState returns c's whole state, personal fields included. It
// shares nothing with c.
func (c *Child) WholeState() ChildWholeState {
	return ChildWholeState{ChildState: c.State(), Reference: c.reference}
}

// RestoreWholeChild returns the aggregate whose whole state is s (see
// WholeState). It shares nothing with s.
func RestoreWholeChild(s ChildWholeState) *Child {
	c := RestoreChild(s.ChildState)
	c.reference = s.Reference
	return c
}

// AccountWholeState is an Account's whole state: its State and its
// personal fields.
type AccountWholeState struct {
	AccountState
	Email, PendingEmail, IdentitySubject, PhoneHint string
}

// WholeState returns a's whole state, personal fields included. It
// shares nothing with a.
func (a *Account) WholeState() AccountWholeState {
	return AccountWholeState{AccountState: a.State(), Email: a.email, PendingEmail: a.pendingEmail,
		IdentitySubject: a.identity, PhoneHint: a.phoneHint}
}

// RestoreWholeAccount returns the aggregate whose whole state is s (see
// WholeState). It shares nothing with s.
func RestoreWholeAccount(s AccountWholeState) *Account {
	a := RestoreAccount(s.AccountState)
	a.email, a.pendingEmail, a.identity, a.phoneHint = s.Email, s.PendingEmail, s.IdentitySubject, s.PhoneHint
	return a
}
