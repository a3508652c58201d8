package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The decisions of imports (R24): records moved over from an older system
// keep their real dates. An import writes the events the command path
// writes (AccountInvited, AccountActivated, PlacementStarted,
// AccessGranted, ...), with the effective times the older system knew, by
// an import actor (ImportActor): role system, id "import" or
// "import:OPERATOR". Its events are recorded at the time of the import
// (their recorded time), so each says that it was imported and when.
//
// Every import decision is idempotent: a record the aggregate holds
// already, with the same data, decides no events; one it holds with other
// data is refused with ErrImportConflict.

// ImportActorID is the actor id of imports, alone or followed by ":" and
// the operator's name.
const ImportActorID = "import"

// ImportActor is the actor of an import run by operator ("" for none):
// role system, id "import" or "import:OPERATOR". It fails when the id is
// not an actor id (CheckActorID).
func ImportActor(operator string) (Actor, error) {
	id := ImportActorID
	if operator != "" {
		id += ":" + operator
	}
	a := Actor{ID: id, Role: RoleSystem}
	if err := a.Validate(); err != nil {
		return Actor{}, err
	}
	return a, nil
}

// IsImport reports whether an event's actor (id and role) is an import's
// (R24): the events that say they were imported.
func IsImport(actorID string, role Role) bool {
	return role == RoleSystem && (actorID == ImportActorID || strings.HasPrefix(actorID, ImportActorID+":"))
}

// requireImport refuses every actor but an import's.
func requireImport(by Actor, what string) error {
	if err := by.Validate(); err != nil {
		return err
	}
	if !IsImport(by.ID, by.Role) {
		return fmt.Errorf("%s: actor %q, role %q: only an import (accessd import) records past dates this way: %w",
			what, by.ID, by.Role, ErrRoleNotAllowed)
	}
	return nil
}

// checkPast checks a date of an import: a time the engine keeps, not after
// now (the older system recorded what had happened).
func checkPast(field string, t, now time.Time) error {
	if err := CheckCommandTime(field, t); err != nil {
		return err
	}
	if t.After(now) {
		return invalid(field, "in the future: an import records what happened")
	}
	return nil
}

// ImportRegistration registers a child moved over from an older system
// (R24): its reference, its allocated worker (may be empty), when it was
// registered there (zero: now) and the retention date (zero: none; else in
// the future). A child registered already with the same reference and
// worker decides nothing; with another worker or retention date it is
// ErrImportConflict.
func (c *Child) ImportRegistration(by Actor, reference, workerID string, registeredAt, retainUntil, now time.Time) ([]Event, error) {
	const what = "import child"
	if err := requireImport(by, what); err != nil {
		return nil, err
	}
	if c.id == uuid.Nil {
		return nil, invalid("child_id", "required")
	}
	if err := checkIdentifier("reference", reference, 200); err != nil {
		return nil, err
	}
	if workerID != "" {
		if err := checkActorID("worker_id", workerID); err != nil {
			return nil, err
		}
	}
	now = normTime(now)
	if registeredAt.IsZero() {
		registeredAt = now
	}
	if err := checkPast("registered_at", registeredAt, now); err != nil {
		return nil, err
	}
	if !retainUntil.IsZero() {
		if err := checkRetainUntil(retainUntil, now); err != nil {
			return nil, err
		}
		retainUntil = normTime(retainUntil)
	}
	if c.registered {
		if c.Erased() {
			return nil, fmt.Errorf("%s %s: %w", what, c.id, ErrErased)
		}
		if c.worker != workerID || (!retainUntil.IsZero() && !c.retainUntil.Equal(retainUntil)) {
			return nil, fmt.Errorf("%s %s: registered already with another worker or retention date: %w", what, c.id, ErrImportConflict)
		}
		return nil, nil
	}
	return []Event{&ChildRegistered{ChildID: c.id, Reference: reference, WorkerID: workerID,
		RegisteredAt: normTime(registeredAt), RetainUntil: retainUntil}}, nil
}

// ImportedAccount is an account as an older system knew it (R24).
type ImportedAccount struct {
	Email string
	Kind  string
	// InvitedAt is when the invitation was sent (required).
	InvitedAt time.Time
	// ActivatedAt is when the invitee first signed in (zero: never), with
	// the identity provider's subject (required with ActivatedAt).
	ActivatedAt     time.Time
	IdentitySubject string
	// ClosedAt is when the account was closed (zero: open).
	ClosedAt time.Time
}

// ImportAccount records an account moved over from an older system (R24)
// with its real dates: the invitation at InvitedAt (open for the policy's
// invitation TTL, or until the activation when that came later), the
// activation at ActivatedAt, the closure at ClosedAt. An invitation that ran
// out unaccepted before now is recorded as expired at its deadline. The
// identity link is IdentityLink.Link's decision (at ActivatedAt). An account
// that exists already with the same kind and dates decides nothing; with
// other data it is ErrImportConflict.
func (a *Account) ImportAccount(by Actor, in ImportedAccount, now time.Time, policy Policy) ([]Event, error) {
	const what = "import account"
	if err := requireImport(by, what); err != nil {
		return nil, err
	}
	if err := checkEmail(in.Email); err != nil {
		return nil, err
	}
	kind, err := ParseAccountKind(in.Kind)
	if err != nil {
		return nil, err
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	now = normTime(now)
	if err := checkPast("invited_at", in.InvitedAt, now); err != nil {
		return nil, err
	}
	invited := normTime(in.InvitedAt)
	var activated, closed time.Time
	switch {
	case in.ActivatedAt.IsZero() && in.IdentitySubject != "":
		return nil, invalid("identity_subject", "given without activated_at")
	case !in.ActivatedAt.IsZero():
		if err := checkIdentifier("identity_subject", in.IdentitySubject, 255); err != nil {
			return nil, err
		}
		if err := checkPast("activated_at", in.ActivatedAt, now); err != nil {
			return nil, err
		}
		if activated = normTime(in.ActivatedAt); activated.Before(invited) {
			return nil, invalid("activated_at", "before invited_at")
		}
	}
	if !in.ClosedAt.IsZero() {
		if err := checkPast("closed_at", in.ClosedAt, now); err != nil {
			return nil, err
		}
		if closed = normTime(in.ClosedAt); closed.Before(invited) || (!activated.IsZero() && closed.Before(activated)) {
			return nil, invalid("closed_at", "before invited_at or activated_at")
		}
	}
	if a.exists {
		if a.Erased() {
			return nil, fmt.Errorf("%s %s: %w", what, a.id, ErrErased)
		}
		if a.kind != kind || !a.invitedAt.Equal(invited) || !a.activatedAt.Equal(activated) ||
			a.identity != in.IdentitySubject || !a.closedAt.Equal(closed) {
			return nil, fmt.Errorf("%s %s: the account exists with another kind, dates or identity: %w", what, a.id, ErrImportConflict)
		}
		if a.email != NormalizeEmail(in.Email) {
			return nil, fmt.Errorf("%s %s: the account's email has changed since (R18): %w", what, a.id, ErrImportConflict)
		}
		return nil, nil
	}
	expires := normTime(invited.Add(policy.InvitationTTL))
	if !activated.IsZero() && !activated.Before(expires) {
		// The older system's invitation stayed open longer than this
		// policy's: it was open until it was accepted.
		expires = activated.Add(time.Microsecond)
	}
	if err := checkDerivedTime("invited_at", expires, "the invitation's expiry"); err != nil {
		return nil, err
	}
	events := []Event{&AccountInvited{AccountID: a.id, Email: NormalizeEmail(in.Email), Kind: kind, InvitedAt: invited, ExpiresAt: expires}}
	switch {
	case !activated.IsZero():
		events = append(events, &AccountActivated{AccountID: a.id, IdentitySubject: in.IdentitySubject, ActivatedAt: activated})
	case !closed.IsZero() && closed.Before(expires):
	case !now.Before(expires):
		events = append(events, &InvitationExpired{AccountID: a.id, ExpiredAt: expires})
	}
	if !closed.IsZero() {
		events = append(events, &AccountClosed{AccountID: a.id, ClosedAt: closed})
	}
	return events, nil
}

// ImportPlacement records a placement an older system knew (R24): the
// child with the foster carer's account from startedAt, ended at endedAt
// (zero: still open). A start may lie before the child or the account was
// registered (R4); the carer's access follows the account's activation as
// always. An end whose grace period is over at now is recorded with its
// expiry, as EndPlacement does. The carer may be closed since (a past
// placement), but must be a foster carer and must not have another
// placement of the child overlapping this one. A placement id the child has
// already, with the same carer and dates, decides nothing; with others it
// is ErrImportConflict.
func (c *Child) ImportPlacement(by Actor, placementID uuid.UUID, carer *Account, startedAt, endedAt, now time.Time, policy Policy) ([]Event, error) {
	const what = "import placement"
	if err := requireImport(by, what); err != nil {
		return nil, err
	}
	if !c.registered {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	if c.Erased() {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrErased)
	}
	if placementID == uuid.Nil {
		return nil, invalid("placement_id", "required")
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	now = normTime(now)
	if err := checkPast("started_at", startedAt, now); err != nil {
		return nil, err
	}
	startedAt = normTime(startedAt)
	if !endedAt.IsZero() {
		if err := CheckCommandTime("ended_at", endedAt); err != nil {
			return nil, err
		}
		if endedAt = normTime(endedAt); !endedAt.After(startedAt) {
			return nil, fmt.Errorf("%s: ended_at not after started_at: %w", what, ErrEndBeforeStart)
		}
	}
	if carer == nil || !carer.Exists() {
		return nil, fmt.Errorf("%s: carer: %w", what, ErrAccountNotFound)
	}
	if carer.Kind() != KindFosterCarer {
		return nil, fmt.Errorf("%s: account %s: %w", what, carer.ID(), ErrNotFosterCarer)
	}
	if p := c.placement(placementID); p != nil {
		if p.carer != carer.ID() || !p.startedAt.Equal(startedAt) || (!endedAt.IsZero() && !p.endedAt.Equal(endedAt)) {
			return nil, fmt.Errorf("%s %s: the child has it with another carer or dates: %w", what, placementID, ErrImportConflict)
		}
		return nil, nil
	}
	for _, p := range c.placements {
		if p.carer != carer.ID() {
			continue
		}
		endsAfterStart := !p.ended || p.endedAt.After(startedAt)
		startsBeforeEnd := endedAt.IsZero() || p.startedAt.Before(endedAt)
		if endsAfterStart && startsBeforeEnd {
			return nil, fmt.Errorf("%s: carer %s, placement %s: %w", what, carer.ID(), p.id, ErrPlacementOverlap)
		}
	}
	events := []Event{&PlacementStarted{ChildID: c.id, PlacementID: placementID, CarerAccountID: carer.ID(), StartedAt: startedAt}}
	if !endedAt.IsZero() {
		graceUntil := normTime(endedAt.Add(policy.GracePeriod))
		if err := checkDerivedTime("ended_at", graceUntil, "the end of its grace period"); err != nil {
			return nil, err
		}
		events = append(events, &PlacementEnded{ChildID: c.id, PlacementID: placementID, CarerAccountID: carer.ID(), EndedAt: endedAt, GraceUntil: graceUntil})
		if !now.Before(graceUntil) {
			events = append(events, &GraceExpired{ChildID: c.id, PlacementID: placementID, CarerAccountID: carer.ID(), ExpiredAt: graceUntil})
		}
	}
	return events, nil
}

// ImportGrant records a grant an older system knew (R24): a network
// member's account could see the child's record from grantedAt, until
// revokedAt (zero: it stands). Grants to one account must be imported in
// time order: one that starts before the account's latest grant on the
// child, or while a revoked one ran, is refused (ErrImportConflict); one
// that starts while the latest stands replaces it from grantedAt, as
// Grant does. A grant the child holds already from grantedAt, with the
// same relationship, permissions and end, decides nothing.
func (c *Child) ImportGrant(by Actor, grantee *Account, relationship string, permissions []string, grantedAt, revokedAt, now time.Time) ([]Event, error) {
	const what = "import grant"
	if err := requireImport(by, what); err != nil {
		return nil, err
	}
	if !c.registered {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrChildNotFound)
	}
	if c.Erased() {
		return nil, fmt.Errorf("%s: child %s: %w", what, c.id, ErrErased)
	}
	rel, err := ParseRelationship(relationship)
	if err != nil {
		return nil, err
	}
	perms, err := grantPermissions(permissions)
	if err != nil {
		return nil, err
	}
	now = normTime(now)
	if err := checkPast("granted_at", grantedAt, now); err != nil {
		return nil, err
	}
	grantedAt = normTime(grantedAt)
	if !revokedAt.IsZero() {
		if err := checkPast("revoked_at", revokedAt, now); err != nil {
			return nil, err
		}
		if revokedAt = normTime(revokedAt); !revokedAt.After(grantedAt) {
			return nil, invalid("revoked_at", "not after granted_at")
		}
	}
	if grantee == nil || !grantee.Exists() {
		return nil, fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	}
	if grantee.Kind() == KindFosterCarer {
		return nil, invalid("account", "account %s is a foster carer's: a carer sees a child's record through a placement (R2), not a grant", grantee.ID())
	}
	if g := c.grants[grantee.ID()]; g != nil {
		if i := slices.IndexFunc(g.intervals, func(f GrantFacts) bool { return f.From.Equal(grantedAt) }); i >= 0 {
			f := g.intervals[i]
			if f.Permissions != perms || g.relationship != rel || (!revokedAt.IsZero() && !f.To.Equal(revokedAt)) {
				return nil, fmt.Errorf("%s to %s: the child has a grant from that time with other data: %w", what, grantee.ID(), ErrImportConflict)
			}
			return nil, nil
		}
		if n := len(g.intervals); n > 0 {
			last := g.intervals[n-1]
			if !grantedAt.After(last.From) || (!last.To.IsZero() && last.To.After(grantedAt)) {
				return nil, fmt.Errorf("%s to %s: it starts before or within the account's latest grant on the child: %w",
					what, grantee.ID(), ErrImportConflict)
			}
		}
	}
	events := []Event{&AccessGranted{ChildID: c.id, AccountID: grantee.ID(), Relationship: rel, Permissions: perms.Names(), GrantedAt: grantedAt}}
	if !revokedAt.IsZero() {
		events = append(events, &AccessRevoked{ChildID: c.id, AccountID: grantee.ID(), RevokedAt: revokedAt})
	}
	return events, nil
}

// CheckReference checks a child's reference as field: the form Register
// accepts. Its error never quotes the value.
func CheckReference(field, reference string) error { return checkIdentifier(field, reference, 200) }

// CheckEmail checks an email address as field: the form Invite accepts.
// Its error never quotes the value.
func CheckEmail(field, email string) error {
	if err := checkEmail(email); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return &FieldError{Field: field, Problem: fe.Problem}
		}
		return err
	}
	return nil
}
