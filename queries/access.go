package queries

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// Index is the in-memory access index: *accessindex.Index implements it.
// It answers checks, the children and viewers lists, and the change feed
// of the watch stream.
type Index interface {
	Check(acct, child uuid.UUID, perm domain.Permission, t time.Time) accessindex.Answer
	CheckCarer(acct, carer uuid.UUID, perm domain.Permission, t time.Time) accessindex.Answer
	// CheckMany answers every item at t under one read lock, at the one
	// position it returns, appending to dst[:0].
	CheckMany(items []accessindex.CheckItem, t time.Time, dst []accessindex.ItemAnswer) ([]accessindex.ItemAnswer, eventlog.Position)
	ChildrenOf(acct uuid.UUID, t time.Time) ([]accessindex.Entry, eventlog.Position)
	ViewersOf(child uuid.UUID, t time.Time) ([]accessindex.Entry, eventlog.Position)
	WaitFor(ctx context.Context, min eventlog.Position, timeout time.Duration) (eventlog.Position, error)
	Changes(after eventlog.Position) ([]accessindex.Change, eventlog.Position, <-chan struct{}, error)
	Position() eventlog.Position
	// KnowsAccount and KnowsChild report whether the index has seen the
	// account invited, the child registered.
	KnowsAccount(acct uuid.UUID) bool
	KnowsChild(child uuid.UUID) bool
	// ChildByReference and ChildrenAllocatedTo find registered children
	// by reference (whatever their id) and by allocated worker (R17).
	ChildByReference(reference string) (accessindex.ChildInfo, bool, eventlog.Position)
	ChildrenAllocatedTo(worker string, after uuid.UUID, limit int) ([]accessindex.ChildInfo, bool, eventlog.Position)
	// GrantsDue lists the standing grants due for review or ending before
	// dueBefore (R19).
	GrantsDue(worker string, dueBefore, now time.Time, after accessindex.DueKey, limit int) ([]accessindex.GrantDue, bool, eventlog.Position)
}

// knownAccount fails with an error wrapping domain.ErrAccountNotFound (404)
// for an account the index has never seen invited.
func (s *Service) knownAccount(id uuid.UUID) error {
	if !s.cfg.Index.KnowsAccount(id) {
		return fmt.Errorf("account %s: %w", id, domain.ErrAccountNotFound)
	}
	return nil
}

// knownChild fails with an error wrapping domain.ErrChildNotFound (404) for
// a child the index has never seen registered.
func (s *Service) knownChild(id uuid.UUID) error {
	if !s.cfg.Index.KnowsChild(id) {
		return fmt.Errorf("child %s: %w", id, domain.ErrChildNotFound)
	}
	return nil
}

// permissions is p as the wire lists it.
func permissions(p domain.PermissionSet) api.Permissions {
	names := p.Names()
	out := make(api.Permissions, len(names))
	for i, n := range names {
		out[i] = api.Permission(n)
	}
	return out
}

// CheckParams are the parameters of Check. Exactly one of Child and Carer
// is set (not uuid.Nil); At is the decision time (zero for now).
type CheckParams struct {
	Account, Child, Carer uuid.UUID
	Permission            domain.Permission
	At                    time.Time
	Consistency
}

// Check answers whether the account may do Permission on the child's
// record (or, with Carer, on the foster carer's own record) at At.
func (s *Service) Check(ctx context.Context, c Caller, p CheckParams) (api.CheckAnswer, error) {
	if err := s.Authorize(ctx, QueryCheck, c); err != nil {
		return api.CheckAnswer{}, err
	}
	at := s.at(p.At)
	if err := s.waitIndex(ctx, p.Consistency); err != nil {
		return api.CheckAnswer{}, err
	}
	if err := s.knownAccount(p.Account); err != nil {
		return api.CheckAnswer{}, err
	}
	if p.Carer != uuid.Nil {
		if err := s.knownAccount(p.Carer); err != nil {
			return api.CheckAnswer{}, err
		}
	} else if err := s.knownChild(p.Child); err != nil {
		return api.CheckAnswer{}, err
	}
	var a accessindex.Answer
	if p.Carer != uuid.Nil {
		a = s.cfg.Index.CheckCarer(p.Account, p.Carer, p.Permission, at)
	} else {
		a = s.cfg.Index.Check(p.Account, p.Child, p.Permission, at)
	}
	return api.CheckAnswer{Allowed: a.Allowed, Permissions: permissions(a.Permissions), Reason: api.Reason(a.Reason),
		Until: optTime(a.Until), ExpiresAt: optTime(a.ExpiresAt), At: at, Position: a.Position.String(), PlacementEndedAt: optTime(a.PlacementEndedAt)}, nil
}

// MaxChecks is the most checks one Checks call answers.
const MaxChecks = 1_000

// itemAnswers recycles CheckMany's answers between Checks calls (a 1,000
// check batch's are about 80 KB).
var itemAnswers = sync.Pool{New: func() any { return new([]accessindex.ItemAnswer) }}

// CheckItem is one check of Checks: may Account do Permission on Child's
// record, or, with Carer set (not uuid.Nil), on Carer's own record?
type CheckItem = accessindex.CheckItem

// ChecksParams are the parameters of Checks: 1 to MaxChecks items, the
// decision time of all of them (zero for now).
type ChecksParams struct {
	Items []CheckItem
	At    time.Time
	Consistency
}

// Checks answers every item as Check would, in order, all at one decision
// time and from one state of the index: the answer's Position is the one
// position every result reflects (decision 6). Where Check fails with
// ErrAccountNotFound or ErrChildNotFound (404), Checks answers the item
// denied with reason api.CheckResultReasonNotFound and answers the others
// (see POST /v1/checks in docs/openapi.yaml). It fails with *Invalid for
// no item or more than MaxChecks.
func (s *Service) Checks(ctx context.Context, c Caller, p ChecksParams) (api.ChecksAnswer, error) {
	if err := s.Authorize(ctx, QueryChecks, c); err != nil {
		return api.ChecksAnswer{}, err
	}
	if n := len(p.Items); n == 0 || n > MaxChecks {
		return api.ChecksAnswer{}, &Invalid{Detail: fmt.Sprintf("checks: give 1 to %d checks, not %d", MaxChecks, n)}
	}
	at := s.at(p.At)
	if err := s.waitIndex(ctx, p.Consistency); err != nil {
		return api.ChecksAnswer{}, err
	}
	buf := itemAnswers.Get().(*[]accessindex.ItemAnswer)
	defer itemAnswers.Put(buf)
	answers, pos := s.cfg.Index.CheckMany(p.Items, at, (*buf)[:0])
	*buf = answers
	// Eight permission sets at most: each one's list is made once and
	// shared by the results (they are only encoded).
	var lists [domain.All + 1]api.Permissions
	out := api.ChecksAnswer{Results: make([]api.CheckResult, len(answers)), Position: pos.String(), At: at}
	for i, a := range answers {
		if a.Unknown {
			out.Results[i] = api.CheckResult{Reason: api.CheckResultReasonNotFound, Permissions: api.Permissions{}}
			continue
		}
		if lists[a.Permissions] == nil {
			lists[a.Permissions] = permissions(a.Permissions)
		}
		out.Results[i] = api.CheckResult{Allowed: a.Allowed, Permissions: lists[a.Permissions],
			Reason: api.CheckResultReason(a.Reason), Until: optTime(a.Until), PlacementEndedAt: optTime(a.PlacementEndedAt),
			ExpiresAt: optTime(a.ExpiresAt)}
	}
	return out, nil
}

// at is the decision time t, or now when t is zero.
func (s *Service) at(t time.Time) time.Time {
	if t.IsZero() {
		return s.Now()
	}
	return t.UTC()
}

// AccountChildren answers the children account may see at at (zero for
// now), and why.
func (s *Service) AccountChildren(ctx context.Context, c Caller, account uuid.UUID, at time.Time, w Consistency) (api.ChildrenAnswer, error) {
	if err := s.Authorize(ctx, QueryAccountChildren, c); err != nil {
		return api.ChildrenAnswer{}, err
	}
	at = s.at(at)
	if err := s.waitIndex(ctx, w); err != nil {
		return api.ChildrenAnswer{}, err
	}
	if err := s.knownAccount(account); err != nil {
		return api.ChildrenAnswer{}, err
	}
	entries, pos := s.cfg.Index.ChildrenOf(account, at)
	out := api.ChildrenAnswer{AccountID: account, At: at, Children: make([]api.ChildAccess, 0, len(entries)), Position: pos.String()}
	for _, e := range entries {
		out.Children = append(out.Children, api.ChildAccess{ChildID: e.Child, Permissions: permissions(e.Permissions),
			Reason: api.Reason(e.Reason), Until: optTime(e.Until)})
	}
	return out, nil
}

// ChildViewers answers the accounts that may see child at at (zero for
// now), and why.
func (s *Service) ChildViewers(ctx context.Context, c Caller, child uuid.UUID, at time.Time, w Consistency) (api.ViewersAnswer, error) {
	if err := s.Authorize(ctx, QueryChildViewers, c); err != nil {
		return api.ViewersAnswer{}, err
	}
	at = s.at(at)
	if err := s.waitIndex(ctx, w); err != nil {
		return api.ViewersAnswer{}, err
	}
	if err := s.knownChild(child); err != nil {
		return api.ViewersAnswer{}, err
	}
	entries, pos := s.cfg.Index.ViewersOf(child, at)
	out := api.ViewersAnswer{ChildID: child, At: at, Viewers: make([]api.Viewer, 0, len(entries)), Position: pos.String()}
	for _, e := range entries {
		out.Viewers = append(out.Viewers, api.Viewer{AccountID: e.Account, Permissions: permissions(e.Permissions),
			Reason: api.Reason(e.Reason), Until: optTime(e.Until)})
	}
	return out, nil
}

// Feed is a watch's view of the index's change feed.
type Feed struct{ s *Service }

// Watch authorizes a watch of the access changes and returns the feed to
// read them from.
func (s *Service) Watch(ctx context.Context, c Caller) (Feed, error) {
	if err := s.Authorize(ctx, QueryWatch, c); err != nil {
		return Feed{}, err
	}
	return Feed{s: s}, nil
}

// Position is the index's position: where a watch without a position
// starts (new changes only).
func (f Feed) Position() eventlog.Position { return f.s.cfg.Index.Position() }

// Changes returns the changes after position after (in order, several may
// share a position), the position they bring the caller to, and a channel
// closed when more arrive. It fails with an error wrapping ErrTooOld when
// the feed no longer holds the changes after after.
func (f Feed) Changes(after eventlog.Position) ([]api.WatchEvent, eventlog.Position, <-chan struct{}, error) {
	changes, pos, wait, err := f.s.cfg.Index.Changes(after)
	if err != nil {
		return nil, pos, wait, err
	}
	out := make([]api.WatchEvent, len(changes))
	for i, ch := range changes {
		out[i] = api.WatchEvent{AccountID: ch.Account, ChildID: ch.Child, Permissions: permissions(ch.Access.Permissions),
			Reason: api.Reason(ch.Access.Reason), Until: optTime(ch.Access.Until), At: ch.At.UTC(), Position: ch.Position.String()}
	}
	return out, pos, wait, nil
}

// Policy answers the policy settings, in whole seconds (R16): the recorded
// policy in force at at (zero: now), with the event that set it (R25).
// Without Config.Policies, or while none is recorded, Config.Policy,
// without an event.
func (s *Service) Policy(ctx context.Context, c Caller, w Consistency, at time.Time) (api.Policy, error) {
	if err := s.Authorize(ctx, QueryPolicy, c); err != nil {
		return api.Policy{}, err
	}
	if err := s.waitIndex(ctx, w); err != nil {
		return api.Policy{}, err
	}
	rec := domain.PolicyRecord{Policy: s.cfg.Policy}
	if s.cfg.Policies != nil {
		if at.IsZero() {
			at = s.cfg.Clock()
		}
		var err error
		if rec, err = s.cfg.Policies.PolicyAt(ctx, at); err != nil {
			return api.Policy{}, fmt.Errorf("queries: policy: %w", err)
		}
	}
	p := rec.Policy.WithDefaults()
	a := api.Policy{GracePeriod: seconds(p.GracePeriod), InvitationTTL: seconds(p.InvitationTTL),
		SessionIdleTimeout: seconds(p.SessionIdleTimeout), SessionWarningAfter: seconds(p.SessionWarningAfter),
		ClosedAccountRetention: seconds(p.ClosedAccountRetention), ReviewPeriod: seconds(p.ReviewPeriod),
		Position: s.cfg.Index.Position().String()}
	if rec.Recorded() {
		setAt, by, role, reason, pos, id := rec.SetAt.UTC(), rec.ActorID, string(rec.ActorRole), rec.Reason, rec.Position.String(), rec.EventID
		a.SetAt, a.SetBy, a.SetByRole, a.Reason, a.SetPosition, a.EventID = &setAt, &by, &role, &reason, &pos, &id
		if s.cfg.Index.Position().Before(rec.Position) {
			a.Position = pos // read from the log, which may be ahead of the index
		}
	}
	return a, nil
}

func seconds(d time.Duration) int { return int(d / time.Second) }
