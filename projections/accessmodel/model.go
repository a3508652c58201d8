// Package accessmodel folds the event log into the facts the access policy
// needs, per (account, child) pair, and reports which pairs each event
// changes. The access index and the access history are both built on it, so
// they answer from the same facts that the domain's aggregates decide with.
//
// A Model holds every Child and Account aggregate of the log in memory,
// changed only by applying events in global order (the aggregates' own
// Apply), plus, per pair, which event set each time that bounds its access
// (provenance, for R15's "naming the events that gave and ended each access").
//
// A Model is not safe for concurrent use.
package accessmodel

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Pair names one account's relationship with one child.
type Pair struct {
	Account uuid.UUID
	Child   uuid.UUID
}

// Facts is what the policy needs to answer for one pair.
type Facts struct {
	Account    domain.AccountFacts
	Placements []domain.PlacementFacts
	Grants     []domain.GrantFacts
}

// At answers the permissions table for the pair at decision time t.
func (f *Facts) At(t time.Time) domain.Access {
	return domain.ChildAccess(f.Account, f.Placements, f.Grants, t)
}

// EventRef names the event that set a time bounding an access: who did it,
// in which role, and where it sits in the log.
type EventRef struct {
	ID        uuid.UUID
	Position  eventlog.Position
	Type      string
	ActorID   string
	ActorRole string
}

// Result is what applying one record changed.
type Result struct {
	// Envelope is the decoded record.
	Envelope domain.Envelope
	// Pairs lists the pairs whose facts may have changed, in a stable order.
	Pairs []Pair
	// Account is set (non-nil) when the record is an account event: the
	// account's own facts (kind, activation, closure) may have changed.
	Account *uuid.UUID
}

// ErrApply is returned (wrapped) when a record cannot be applied to its
// aggregate: the log contradicts itself, or records are out of order.
var ErrApply = errors.New("accessmodel: cannot apply record")

// Model is the fold. The zero value is not usable; call New.
type Model struct {
	children map[uuid.UUID]*domain.Child
	accounts map[uuid.UUID]*domain.Account
	// pairsOf lists, per account, the children it has a relationship with
	// (a placement or a grant, ever), in first-seen order.
	pairsOf map[uuid.UUID][]uuid.UUID
	// prov holds, per pair, the event that set each bounding time of the
	// pair's facts; acctProv the same for an account's activation and
	// closure. The events are refs' (each once, in the order applied),
	// their texts strs' (each once).
	prov     map[Pair]provTimes
	acctProv map[uuid.UUID]provTimes
	refs     []storedRef
	strs     []string
	strIndex map[string]uint32
	position eventlog.Position
	applied  uint64
	noProv   bool
	// policies is the fold of the policy stream (R25) so far; graces
	// holds, per placement end event, the grace period it gave and the
	// policy event that set it (with provenance only).
	policies *domain.PolicyHistory
	graces   map[uuid.UUID]Grace
}

// Grace is the grace period a placement end gave (R3) and the policy event
// that set that grace period (R25): the recorded policy in force at the
// end, as the log stood when the end was recorded. Policy is nil when no
// policy was recorded then, or when the one in force had another grace
// period (a policy changed while the end was decided).
type Grace struct {
	Period time.Duration
	Policy *EventRef
}

// Option configures a Model.
type Option func(*Model)

// WithoutProvenance makes the Model skip provenance: Source then always
// reports false. It roughly halves the memory per pair, for users that
// never name the events behind an answer (the access index).
func WithoutProvenance() Option { return func(m *Model) { m.noProv = true } }

// New returns an empty Model.
func New(opts ...Option) *Model {
	m := &Model{
		children: map[uuid.UUID]*domain.Child{},
		accounts: map[uuid.UUID]*domain.Account{},
		pairsOf:  map[uuid.UUID][]uuid.UUID{},
		prov:     map[Pair]provTimes{},
		acctProv: map[uuid.UUID]provTimes{},
		strIndex: map[string]uint32{},
		policies: domain.NewPolicyHistory(domain.Policy{}),
		graces:   map[uuid.UUID]Grace{},
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Position is the position of the last record applied (eventlog.Start for
// none).
func (m *Model) Position() eventlog.Position { return m.position }

// Applied is the number of records applied.
func (m *Model) Applied() uint64 { return m.applied }

// Apply folds one record, which must come after every record applied so
// far. Records of unknown streams (none today) change nothing. An error
// leaves the model unusable: the caller must start again from an empty one.
func (m *Model) Apply(rec eventlog.Record) (Result, error) {
	if m.applied > 0 && !m.position.Before(rec.Position) {
		return Result{}, fmt.Errorf("%w: position %s after %s", ErrApply, rec.Position, m.position)
	}
	env, err := domain.DecodeRecord(rec)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrApply, err)
	}
	ref := EventRef{ID: rec.ID, Position: rec.Position, Type: rec.Type, ActorID: rec.Meta.ActorID, ActorRole: rec.Meta.ActorRole}
	res := Result{Envelope: env}
	switch e := env.Event.(type) {
	case *domain.ChildRegistered:
		err = m.child(e.ChildID).Apply(e)
	case *domain.WorkerAllocated:
		err = m.child(e.ChildID).Apply(e)
	case *domain.PlacementStarted:
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref, e.StartedAt)
	case *domain.PlacementEnded:
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref, e.EndedAt, e.GraceUntil)
		if err == nil && !m.noProv {
			m.graces[rec.ID] = m.graceOf(e)
		}
	case *domain.GraceEndedEarly:
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref, e.EndedAt)
	case *domain.GraceExpired:
		// The deadline was already a fact; the expiry is its record, and
		// from now on what names the end of the grace period.
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref, e.ExpiredAt)
	case *domain.AccessGranted:
		// A time-limited grant's end is a fact from the grant on, named by
		// the grant until its expiry is recorded (R19).
		times := []time.Time{e.GrantedAt}
		if !e.ExpiresAt.IsZero() {
			times = append(times, e.ExpiresAt)
		}
		res.Pairs, err = m.childPair(e, e.ChildID, e.AccountID, ref, times...)
	case *domain.AccessRevoked:
		res.Pairs, err = m.childPair(e, e.ChildID, e.AccountID, ref, e.RevokedAt)
	case *domain.GrantReviewed:
		// A review changes no access (R19), only the grant's review date.
		err = m.child(e.ChildID).Apply(e)
	case *domain.GrantExpired:
		// As GraceExpired: the end was a fact already; the expiry is its
		// record, and from now on what names the end of the grant.
		res.Pairs, err = m.childPair(e, e.ChildID, e.AccountID, ref, e.ExpiredAt)
	case *domain.AccountActivated:
		res.Pairs, err = m.accountEvent(e, e.AccountID, ref, e.ActivatedAt)
		res.Account = &e.AccountID
	case *domain.AccountClosed:
		res.Pairs, err = m.accountEvent(e, e.AccountID, ref, e.ClosedAt)
		res.Account = &e.AccountID
	case *domain.AccountInvited:
		res.Pairs, err = m.accountEvent(e, e.AccountID, ref)
		res.Account = &e.AccountID
	case *domain.InvitationExpired:
		res.Pairs, err = m.accountEvent(e, e.AccountID, ref)
		res.Account = &e.AccountID
	case *domain.PhoneResetRequested:
		err = m.account(e.AccountID).Apply(e)
	case *domain.PhoneCleared:
		err = m.account(e.AccountID).Apply(e)
	case *domain.PhoneEnrolled:
		err = m.account(e.AccountID).Apply(e)
	case *domain.IdentityLinked:
		// Identity links do not change access.
	case *domain.AccountErased:
		// Erasure removes personal data, not access (R22).
		err = m.account(e.AccountID).Apply(e)
	case *domain.ChildErased:
		err = m.child(e.ChildID).Apply(e)
	case *domain.ChildRetentionSet:
		// A retention date changes no access (R22).
		err = m.child(e.ChildID).Apply(e)
	case *domain.PlacementStartReached:
		// A time mark: the start was a fact already; the history keeps
		// naming the placement that set it.
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref)
	case *domain.PlacementEndReached:
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref)
	case *domain.PlacementCancelled:
		// The placement's times are no longer facts of the pair (R18).
		res.Pairs, err = m.childPair(e, e.ChildID, e.CarerAccountID, ref)
	case *domain.AccountReopened:
		res.Pairs, err = m.accountEvent(e, e.AccountID, ref, e.ReopenedAt)
		res.Account = &e.AccountID
	case *domain.EmailChangeRequested:
		err = m.account(e.AccountID).Apply(e)
	case *domain.EmailChanged:
		err = m.account(e.AccountID).Apply(e)
	case *domain.EmailClaimed, *domain.EmailReleased:
		// Email claims do not change access.
	case *domain.PolicySet:
		// A policy changes no recorded access (R25): the decisions after it
		// use it; the history names it beside the grace periods it gave.
		err = m.policies.Apply(env)
	default:
		err = fmt.Errorf("event type %s not handled", rec.Type)
	}
	if err != nil {
		return Result{}, fmt.Errorf("%w %s at %s: %w", ErrApply, rec.ID, rec.Position, err)
	}
	m.position = rec.Position
	m.applied++
	return res, nil
}

// graceOf is the grace period e gave and the policy that set it.
func (m *Model) graceOf(e *domain.PlacementEnded) Grace {
	g := Grace{Period: e.GraceUntil.Sub(e.EndedAt)}
	if p := m.policies.PolicyAt(e.EndedAt); p.Recorded() && p.Policy.GracePeriod == g.Period {
		g.Policy = &EventRef{ID: p.EventID, Position: p.Position, Type: domain.TypePolicySet, ActorID: p.ActorID, ActorRole: string(p.ActorRole)}
	}
	return g
}

// GraceOf returns the grace period the placement end event id gave and
// the policy event that set it (R25); false for another event, or without
// provenance.
func (m *Model) GraceOf(id uuid.UUID) (Grace, bool) {
	g, ok := m.graces[id]
	return g, ok
}

func (m *Model) child(id uuid.UUID) *domain.Child {
	c := m.children[id]
	if c == nil {
		c = domain.NewChild(id)
		m.children[id] = c
	}
	return c
}

func (m *Model) account(id uuid.UUID) *domain.Account {
	a := m.accounts[id]
	if a == nil {
		a = domain.NewAccount(id)
		m.accounts[id] = a
	}
	return a
}

func (m *Model) childPair(e domain.Event, child, account uuid.UUID, ref EventRef, times ...time.Time) ([]Pair, error) {
	if err := m.child(child).Apply(e); err != nil {
		return nil, err
	}
	p := Pair{Account: account, Child: child}
	if !slices.Contains(m.pairsOf[account], child) {
		m.pairsOf[account] = append(m.pairsOf[account], child)
	}
	if m.noProv || len(times) == 0 {
		return []Pair{p}, nil
	}
	i := m.addRef(ref)
	pr := m.prov[p]
	for _, t := range times {
		pr = pr.set(t.UnixMicro(), i)
	}
	m.prov[p] = pr
	return []Pair{p}, nil
}

func (m *Model) accountEvent(e domain.Event, account uuid.UUID, ref EventRef, times ...time.Time) ([]Pair, error) {
	if err := m.account(account).Apply(e); err != nil {
		return nil, err
	}
	if len(times) > 0 && !m.noProv {
		i := m.addRef(ref)
		pr := m.acctProv[account]
		for _, t := range times {
			pr = pr.set(t.UnixMicro(), i)
		}
		m.acctProv[account] = pr
	}
	children := m.pairsOf[account]
	pairs := make([]Pair, len(children))
	for i, c := range children {
		pairs[i] = Pair{Account: account, Child: c}
	}
	return pairs, nil
}

// Facts returns the pair's facts now. The slices are fresh copies the caller
// may keep.
func (m *Model) Facts(p Pair) Facts {
	var f Facts
	m.FactsInto(p, &f)
	return f
}

// FactsInto sets *f to the pair's facts now, as Facts returns them but
// reusing the room of f's Placements and Grants (so an empty one is nil
// only when f had no room): for a caller that asks for many pairs' facts
// one after the other and keeps none of them. f.Account's Lapses are the
// account's own, as with Facts (the caller must not change them).
func (m *Model) FactsInto(p Pair, f *Facts) {
	f.Account = domain.AccountFacts{}
	placements, grants := f.Placements[:0], f.Grants[:0]
	if a := m.accounts[p.Account]; a != nil && a.Exists() {
		f.Account = a.Facts()
	}
	if c := m.children[p.Child]; c != nil {
		placements = c.AppendPlacementFacts(placements, p.Account)
		grants = c.AppendGrantFacts(grants, p.Account)
	}
	f.Placements, f.Grants = placements, grants
}

// Account returns the account aggregate, if any event of it was applied.
// The caller must not change it.
func (m *Model) Account(id uuid.UUID) (*domain.Account, bool) {
	a, ok := m.accounts[id]
	return a, ok && a.Exists()
}

// Child returns the child aggregate, if any event of it was applied. The
// caller must not change it.
func (m *Model) Child(id uuid.UUID) (*domain.Child, bool) {
	c, ok := m.children[id]
	return c, ok
}

// ChildrenOf lists the children account has ever had a placement or grant
// with, in first-seen order. The caller must not change the slice.
func (m *Model) ChildrenOf(account uuid.UUID) []uuid.UUID { return m.pairsOf[account] }

// Opener returns the event that opened segment s of pair p, whose facts
// are f: the later recorded of the event that set s.From (Source) and the
// event that started the source of s's access (the placement's start, the
// grant). So an access that begins at an activation recorded before a
// backdated placement names the placement, whose recording opened it, and
// one that begins at an activation recorded after the placement names the
// activation.
func (m *Model) Opener(p Pair, f *Facts, s Segment) (EventRef, bool) {
	r, ok := m.SourcesOf(p).Opener(f, s)
	return m.EventRef(r), ok
}

// Source returns the event that set time t in the pair's facts, preferring
// the later of a pair event and an account event that set the same time.
func (m *Model) Source(p Pair, t time.Time) (EventRef, bool) {
	r, ok := m.SourcesOf(p).Source(t)
	return m.EventRef(r), ok
}

// Ref names one of the events a model's provenance holds, without copying
// it (EventRef and RefID read it): valid for the model that returned it,
// for as long as the model lives. The zero Ref names no event.
type Ref uint32

// EventRef returns the event r names; the zero EventRef for the zero Ref.
func (m *Model) EventRef(r Ref) EventRef {
	if r == 0 {
		return EventRef{}
	}
	return m.eventRef(uint32(r - 1))
}

// RefID returns the id of the event r names; uuid.Nil for the zero Ref.
func (m *Model) RefID(r Ref) uuid.UUID {
	if r == 0 {
		return uuid.Nil
	}
	return m.refs[r-1].id
}

// Sources is one pair's provenance, looked up once (SourcesOf): what
// Model.Source and Model.Opener answer, as Refs. It is valid until the
// model applies another record.
type Sources struct {
	m          *Model
	pair, acct provTimes
}

// SourcesOf returns pair p's provenance, for answering several Source and
// Opener questions about it with one look-up of the pair and its account.
func (m *Model) SourcesOf(p Pair) Sources {
	return Sources{m: m, pair: m.prov[p], acct: m.acctProv[p.Account]}
}

// Source is Model.Source: the event that set time t in the pair's facts,
// the later of a pair event and an account event that set the same time.
func (s Sources) Source(t time.Time) (Ref, bool) {
	k := t.UnixMicro()
	a, aok := s.pair.find(k)
	b, bok := s.acct.find(k)
	switch {
	case aok && bok:
		if s.m.refs[a].pos.Before(s.m.refs[b].pos) {
			return Ref(b + 1), true
		}
		return Ref(a + 1), true
	case aok:
		return Ref(a + 1), true
	case bok:
		return Ref(b + 1), true
	}
	return 0, false
}

// ID is the id of the event r names (Model.RefID).
func (s Sources) ID(r Ref) uuid.UUID { return s.m.RefID(r) }

// Opener is Model.Opener: the event that opened segment seg of the pair,
// whose facts are f.
func (s Sources) Opener(f *Facts, seg Segment) (Ref, bool) {
	ref, ok := s.Source(seg.From)
	var start time.Time
	switch seg.Reason {
	case domain.ReasonPlacement:
		for _, pl := range f.Placements {
			if !seg.From.Before(pl.Start) && (pl.End.IsZero() || seg.From.Before(pl.End)) && pl.Start.After(start) {
				start = pl.Start
			}
		}
	case domain.ReasonGrant:
		for _, g := range f.Grants {
			if !seg.From.Before(g.From) && (g.To.IsZero() || seg.From.Before(g.To)) && g.From.After(start) {
				start = g.From
			}
		}
	}
	if start.IsZero() || start.Equal(seg.From) {
		return ref, ok
	}
	if src, found := s.Source(start); found && (!ok || s.m.refs[ref-1].pos.Before(s.m.refs[src-1].pos)) {
		return src, true
	}
	return ref, ok
}

// storedRef is an EventRef as the model keeps it: its texts are indexes
// in the model's strs.
type storedRef struct {
	id               uuid.UUID
	pos              eventlog.Position
	typ, actor, role uint32
}

// addRef adds ref to the model's events and returns its index. A record
// is applied once, so its event is added once.
func (m *Model) addRef(ref EventRef) uint32 {
	m.refs = append(m.refs, storedRef{id: ref.ID, pos: ref.Position,
		typ: m.str(ref.Type), actor: m.str(ref.ActorID), role: m.str(ref.ActorRole)})
	return uint32(len(m.refs) - 1)
}

// str returns the index of s in the model's texts, adding it once.
func (m *Model) str(s string) uint32 {
	if i, ok := m.strIndex[s]; ok {
		return i
	}
	i := uint32(len(m.strs))
	m.strIndex[s] = i
	m.strs = append(m.strs, s)
	return i
}

// eventRef is the model's event i.
func (m *Model) eventRef(i uint32) EventRef {
	r := &m.refs[i]
	return EventRef{ID: r.id, Position: r.pos, Type: m.strs[r.typ], ActorID: m.strs[r.actor], ActorRole: m.strs[r.role]}
}

// provTimes is a pair's or an account's provenance: for each bounding time
// (Unix microseconds), the index of the event that set it last; sorted by
// time, one entry a time.
type provTimes []provEntry

type provEntry struct {
	t   int64
	ref uint32
}

// find returns the event that set time t.
func (pt provTimes) find(t int64) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(pt, t, func(e provEntry, t int64) int { return cmp.Compare(e.t, t) })
	if !ok {
		return 0, false
	}
	return pt[i].ref, true
}

// set records that event ref set time t (replacing the event that set it
// before) and returns the provenance, grown in place when it has room.
func (pt provTimes) set(t int64, ref uint32) provTimes {
	i, ok := slices.BinarySearchFunc(pt, t, func(e provEntry, t int64) int { return cmp.Compare(e.t, t) })
	if ok {
		pt[i].ref = ref
		return pt
	}
	return slices.Insert(pt, i, provEntry{t: t, ref: ref})
}

// State is a Model's fold saved for a snapshot (see State): every
// aggregate's state (without personal fields, see domain.ChildState) and
// each account's children in first-seen order, at Position. For a model
// with provenance (Provenance true) it holds also the provenance of every
// pair and account, the grace periods placement ends gave, and the policy
// history without its reasons (free text, personal data: the fold never
// reads them). A model made WithoutProvenance saves none of these, as
// before: it never reads them.
type State struct {
	Position eventlog.Position
	Applied  uint64
	Children []domain.ChildState
	Accounts []domain.AccountState
	PairsOf  []AccountChildren

	// Provenance: the model keeps provenance; the fields below are set.
	Provenance bool
	// Refs are the events the provenance and the grace periods name, each
	// once (see Refs).
	Refs Refs
	// PairProv and AccountProv are the events that set each bounding time
	// of a pair's facts and of an account's.
	PairProv    []PairProvenance
	AccountProv []AccountProvenance
	// Graces are the grace periods placement end events gave (GraceOf).
	Graces []EventGrace
	// Policies are the recorded policies, oldest first, each without its
	// Reason; PolicyVersion is the policy stream's version folded.
	Policies      []domain.PolicyRecord
	PolicyVersion uint64
}

// AccountChildren is one account's children in a State, in first-seen
// order.
type AccountChildren struct {
	Account  uuid.UUID
	Children []uuid.UUID
}

// Refs is a table of EventRefs in columns (compact, and quick to encode
// and decode): ref i is the event IDs[16i:16i+16] at position
// (Commit[i], Prepare[i]), of type Strings[Type[i]], by Strings[Actor[i]]
// in role Strings[Role[i]].
type Refs struct {
	IDs               []byte
	Commit, Prepare   []uint64
	Type, Actor, Role []uint32
	Strings           []string
	index             map[uuid.UUID]uint32
	strIndex          map[string]uint32
}

// add returns the index of ref in the table, adding it once.
func (r *Refs) add(ref EventRef) uint32 {
	if i, ok := r.index[ref.ID]; ok {
		return i
	}
	i := uint32(len(r.Commit))
	r.index[ref.ID] = i
	r.IDs = append(r.IDs, ref.ID[:]...)
	r.Commit, r.Prepare = append(r.Commit, ref.Position.Commit), append(r.Prepare, ref.Position.Prepare)
	r.Type, r.Actor, r.Role = append(r.Type, r.str(ref.Type)), append(r.Actor, r.str(ref.ActorID)), append(r.Role, r.str(ref.ActorRole))
	return i
}

func (r *Refs) str(s string) uint32 {
	if i, ok := r.strIndex[s]; ok {
		return i
	}
	i := uint32(len(r.Strings))
	r.strIndex[s] = i
	r.Strings = append(r.Strings, s)
	return i
}

// refs expands the table; it fails when the columns disagree.
func (r *Refs) refs() ([]EventRef, error) {
	n := len(r.Commit)
	if len(r.IDs) != 16*n || len(r.Prepare) != n || len(r.Type) != n || len(r.Actor) != n || len(r.Role) != n {
		return nil, fmt.Errorf("%w: a saved state's event table has columns of different lengths", ErrApply)
	}
	out := make([]EventRef, n)
	for i := range out {
		t, a, ro := r.Type[i], r.Actor[i], r.Role[i]
		if int(t) >= len(r.Strings) || int(a) >= len(r.Strings) || int(ro) >= len(r.Strings) {
			return nil, fmt.Errorf("%w: a saved state's event %d names a text it does not hold", ErrApply, i)
		}
		copy(out[i].ID[:], r.IDs[16*i:])
		out[i].Position = eventlog.Position{Commit: r.Commit[i], Prepare: r.Prepare[i]}
		out[i].Type, out[i].ActorID, out[i].ActorRole = r.Strings[t], r.Strings[a], r.Strings[ro]
	}
	return out, nil
}

// PairProvenance is one pair's provenance in a State: the event
// Refs[Refs[i]] set time Times[i] (Unix microseconds).
type PairProvenance struct {
	Pair  Pair
	Times []int64
	Refs  []uint32
}

// AccountProvenance is one account's provenance in a State, as
// PairProvenance.
type AccountProvenance struct {
	Account uuid.UUID
	Times   []int64
	Refs    []uint32
}

// EventGrace is the grace period placement end event Event gave, in a
// State, and the policy event that set it: the State's Refs[Policy-1], or
// none when Policy is 0.
type EventGrace struct {
	Event  uuid.UUID
	Period time.Duration
	Policy uint32
}

// stateTimes splits a provenance into a State's columns.
func (m *Model) stateTimes(refs *Refs, pt provTimes) ([]int64, []uint32) {
	ts, rs := make([]int64, 0, len(pt)), make([]uint32, 0, len(pt))
	for _, e := range pt {
		ts, rs = append(ts, e.t), append(rs, refs.add(m.eventRef(e.ref)))
	}
	return ts, rs
}

// restoreTimes joins a State's provenance columns, whose events are the
// model's refs (Restore adds a State's events in their order).
func (m *Model) restoreTimes(times []int64, idx []uint32) (provTimes, error) {
	if len(times) != len(idx) {
		return nil, fmt.Errorf("%w: a saved state's provenance has %d times and %d events", ErrApply, len(times), len(idx))
	}
	var pt provTimes
	for i, t := range times {
		if int(idx[i]) >= len(m.refs) {
			return nil, fmt.Errorf("%w: a saved state's provenance names event %d of %d", ErrApply, idx[i], len(m.refs))
		}
		if _, dup := pt.find(t); dup {
			return nil, fmt.Errorf("%w: a saved state's provenance names time %d twice", ErrApply, t)
		}
		pt = pt.set(t, idx[i])
	}
	return slices.Clip(pt), nil
}

// State returns the model's fold, sharing nothing with the model, for a
// snapshot; Restore makes a model that applies the records after
// State.Position exactly as m does, and answers Facts, Source, Opener and
// GraceOf as m does. The policy history's reasons are not saved (see
// State). Like every method, State must not run concurrently with Apply.
func (m *Model) State() (State, error) {
	s := State{Position: m.position, Applied: m.applied,
		Children: make([]domain.ChildState, 0, len(m.children)),
		Accounts: make([]domain.AccountState, 0, len(m.accounts)),
		PairsOf:  make([]AccountChildren, 0, len(m.pairsOf))}
	for _, c := range m.children {
		s.Children = append(s.Children, c.State())
	}
	for _, a := range m.accounts {
		s.Accounts = append(s.Accounts, a.State())
	}
	for acct, children := range m.pairsOf {
		s.PairsOf = append(s.PairsOf, AccountChildren{Account: acct, Children: slices.Clone(children)})
	}
	if m.noProv {
		return s, nil
	}
	s.Provenance = true
	s.Refs = Refs{index: map[uuid.UUID]uint32{}, strIndex: map[string]uint32{}}
	s.PairProv = make([]PairProvenance, 0, len(m.prov))
	for p, times := range m.prov {
		ts, rs := m.stateTimes(&s.Refs, times)
		s.PairProv = append(s.PairProv, PairProvenance{Pair: p, Times: ts, Refs: rs})
	}
	s.AccountProv = make([]AccountProvenance, 0, len(m.acctProv))
	for a, times := range m.acctProv {
		ts, rs := m.stateTimes(&s.Refs, times)
		s.AccountProv = append(s.AccountProv, AccountProvenance{Account: a, Times: ts, Refs: rs})
	}
	s.Graces = make([]EventGrace, 0, len(m.graces))
	for id, g := range m.graces {
		eg := EventGrace{Event: id, Period: g.Period}
		if g.Policy != nil {
			eg.Policy = s.Refs.add(*g.Policy) + 1
		}
		s.Graces = append(s.Graces, eg)
	}
	s.Refs.index, s.Refs.strIndex = nil, nil
	s.Policies = m.policies.Records()
	for i := range s.Policies {
		s.Policies[i].Reason = ""
	}
	s.PolicyVersion = m.policies.Version()
	return s, nil
}

// Restore returns a model whose fold is s (see State): with provenance
// when s has it, else WithoutProvenance. It shares nothing with s. A State
// that is not one State returned (two aggregates, pairs or grace periods
// with the same id) fails with ErrApply.
func Restore(s State) (*Model, error) {
	m := New()
	m.noProv = !s.Provenance
	m.position, m.applied = s.Position, s.Applied
	m.children = make(map[uuid.UUID]*domain.Child, len(s.Children))
	m.accounts = make(map[uuid.UUID]*domain.Account, len(s.Accounts))
	m.pairsOf = make(map[uuid.UUID][]uuid.UUID, len(s.PairsOf))
	for _, cs := range s.Children {
		if _, dup := m.children[cs.ID]; dup {
			return nil, fmt.Errorf("%w: child %s twice in a saved state", ErrApply, cs.ID)
		}
		m.children[cs.ID] = domain.RestoreChild(cs)
	}
	for _, as := range s.Accounts {
		if _, dup := m.accounts[as.ID]; dup {
			return nil, fmt.Errorf("%w: account %s twice in a saved state", ErrApply, as.ID)
		}
		m.accounts[as.ID] = domain.RestoreAccount(as)
	}
	for _, ac := range s.PairsOf {
		if _, dup := m.pairsOf[ac.Account]; dup {
			return nil, fmt.Errorf("%w: account %s's children twice in a saved state", ErrApply, ac.Account)
		}
		m.pairsOf[ac.Account] = slices.Clone(ac.Children)
	}
	if !s.Provenance {
		return m, nil
	}
	refs, err := s.Refs.refs()
	if err != nil {
		return nil, err
	}
	m.refs = make([]storedRef, 0, len(refs))
	for _, ref := range refs {
		m.addRef(ref)
	}
	m.prov = make(map[Pair]provTimes, len(s.PairProv))
	for _, pp := range s.PairProv {
		if _, dup := m.prov[pp.Pair]; dup {
			return nil, fmt.Errorf("%w: pair %s/%s's provenance twice in a saved state", ErrApply, pp.Pair.Account, pp.Pair.Child)
		}
		if m.prov[pp.Pair], err = m.restoreTimes(pp.Times, pp.Refs); err != nil {
			return nil, err
		}
	}
	m.acctProv = make(map[uuid.UUID]provTimes, len(s.AccountProv))
	for _, ap := range s.AccountProv {
		if _, dup := m.acctProv[ap.Account]; dup {
			return nil, fmt.Errorf("%w: account %s's provenance twice in a saved state", ErrApply, ap.Account)
		}
		if m.acctProv[ap.Account], err = m.restoreTimes(ap.Times, ap.Refs); err != nil {
			return nil, err
		}
	}
	m.graces = make(map[uuid.UUID]Grace, len(s.Graces))
	for _, eg := range s.Graces {
		if _, dup := m.graces[eg.Event]; dup {
			return nil, fmt.Errorf("%w: event %s's grace period twice in a saved state", ErrApply, eg.Event)
		}
		g := Grace{Period: eg.Period}
		if eg.Policy > 0 {
			if int(eg.Policy) > len(refs) {
				return nil, fmt.Errorf("%w: a saved grace period names event %d of %d", ErrApply, eg.Policy-1, len(refs))
			}
			ref := refs[eg.Policy-1]
			g.Policy = &ref
		}
		m.graces[eg.Event] = g
	}
	m.policies = domain.RestorePolicyHistory(domain.Policy{}, s.Policies, s.PolicyVersion)
	return m, nil
}
