package domain

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// The policy as events (R25): the policy (grace period, invitation
// lifetime, retention period, session timeouts, review period) is set by a command and
// recorded as a PolicySet event on the one stream PolicyStream, so that
// every replica decides with the same policy and the history shows which
// policy applied when. The first event is the initial policy (the engine
// writes it from its start-up flags when the stream is empty); a manager
// changes it later. A policy change is never backdated: it is in force from
// the time it was recorded.

// PolicyStream is the one stream of the policy.
const PolicyStream = "policy"

// PolicySet: the whole policy in force from SetAt on (R25), durations in
// whole seconds (as GET /v1/policy gives them). SetAt is the time the
// change was recorded: never backdated, and never before the previous
// PolicySet's.
type PolicySet struct {
	GracePeriod            int64 `json:"grace_period"`
	InvitationTTL          int64 `json:"invitation_ttl"`
	SessionIdleTimeout     int64 `json:"session_idle_timeout"`
	SessionWarningAfter    int64 `json:"session_warning_after"`
	ClosedAccountRetention int64 `json:"closed_account_retention"`
	// ReviewPeriod (R19) is absent from the events recorded before it
	// existed: they decode with DefaultReviewPeriod.
	ReviewPeriod int64     `json:"review_period,omitzero"`
	SetAt        time.Time `json:"set_at"`
}

func (*PolicySet) EventType() string        { return TypePolicySet }
func (e *PolicySet) EffectiveAt() time.Time { return e.SetAt }
func (e *PolicySet) validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"grace_period", e.GracePeriod}, {"invitation_ttl", e.InvitationTTL}, {"session_idle_timeout", e.SessionIdleTimeout},
		{"session_warning_after", e.SessionWarningAfter}, {"closed_account_retention", e.ClosedAccountRetention}} {
		if f.v <= 0 {
			return invalid(f.name, "must be positive")
		}
		if f.v > int64(MaxPolicyPeriod/time.Second) {
			return invalid(f.name, "out of range")
		}
	}
	if e.ReviewPeriod < 0 || e.ReviewPeriod > int64(MaxPolicyPeriod/time.Second) {
		return invalid("review_period", "out of range")
	}
	return firstErr(e.Policy().Validate(), checkEventTime("set_at", e.SetAt))
}

// Policy is the policy the event sets.
func (e *PolicySet) Policy() Policy {
	return Policy{
		GracePeriod:            time.Duration(e.GracePeriod) * time.Second,
		InvitationTTL:          time.Duration(e.InvitationTTL) * time.Second,
		SessionIdleTimeout:     time.Duration(e.SessionIdleTimeout) * time.Second,
		SessionWarningAfter:    time.Duration(e.SessionWarningAfter) * time.Second,
		ClosedAccountRetention: time.Duration(e.ClosedAccountRetention) * time.Second,
		ReviewPeriod:           time.Duration(e.ReviewPeriod) * time.Second,
	}.WithDefaults()
}

// policySetOf is the event that sets p (defaults applied) from at.
func policySetOf(p Policy, at time.Time) *PolicySet {
	p = p.WithDefaults()
	s := func(d time.Duration) int64 { return int64(d / time.Second) }
	return &PolicySet{GracePeriod: s(p.GracePeriod), InvitationTTL: s(p.InvitationTTL), SessionIdleTimeout: s(p.SessionIdleTimeout),
		SessionWarningAfter: s(p.SessionWarningAfter), ClosedAccountRetention: s(p.ClosedAccountRetention),
		ReviewPeriod: s(p.ReviewPeriod), SetAt: normTime(at)}
}

// CheckWholeSeconds checks every duration of p is a whole number of
// seconds: the unit the policy is recorded and published in (R25).
func (p Policy) CheckWholeSeconds() error {
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"grace_period", p.GracePeriod}, {"invitation_ttl", p.InvitationTTL}, {"session_idle_timeout", p.SessionIdleTimeout},
		{"session_warning_after", p.SessionWarningAfter}, {"closed_account_retention", p.ClosedAccountRetention},
		{"review_period", p.ReviewPeriod}} {
		if d.v%time.Second != 0 {
			return invalid(d.field, "must be a whole number of seconds")
		}
	}
	return nil
}

// PolicyChange is a change of some of the policy's settings: nil fields
// keep the policy's value.
type PolicyChange struct {
	GracePeriod            *time.Duration
	InvitationTTL          *time.Duration
	SessionIdleTimeout     *time.Duration
	SessionWarningAfter    *time.Duration
	ClosedAccountRetention *time.Duration
	ReviewPeriod           *time.Duration
}

// Apply returns p with the change's settings.
func (c PolicyChange) Apply(p Policy) Policy {
	set := func(dst *time.Duration, v *time.Duration) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.GracePeriod, c.GracePeriod)
	set(&p.InvitationTTL, c.InvitationTTL)
	set(&p.SessionIdleTimeout, c.SessionIdleTimeout)
	set(&p.SessionWarningAfter, c.SessionWarningAfter)
	set(&p.ClosedAccountRetention, c.ClosedAccountRetention)
	set(&p.ReviewPeriod, c.ReviewPeriod)
	return p
}

// checkChange checks the values a change gives: present ones must be
// positive whole seconds (a zero would mean "the default" elsewhere, which
// a recorded policy never says).
func (c PolicyChange) check() error {
	for _, f := range []struct {
		name string
		v    *time.Duration
	}{{"grace_period", c.GracePeriod}, {"invitation_ttl", c.InvitationTTL}, {"session_idle_timeout", c.SessionIdleTimeout},
		{"session_warning_after", c.SessionWarningAfter}, {"closed_account_retention", c.ClosedAccountRetention},
		{"review_period", c.ReviewPeriod}} {
		switch {
		case f.v == nil:
		case *f.v <= 0:
			return invalid(f.name, "must be positive")
		case *f.v%time.Second != 0:
			return invalid(f.name, "must be a whole number of seconds")
		}
	}
	return nil
}

// PolicyRecord is one recorded policy: the policy, from when it is in
// force, and the event that set it. A zero Position means the policy is
// not recorded (the initial policy before its event is written).
type PolicyRecord struct {
	Policy    Policy
	SetAt     time.Time
	Position  eventlog.Position
	EventID   uuid.UUID
	ActorID   string
	ActorRole Role
	Reason    string
}

// Recorded reports whether the policy was set by an event.
func (r PolicyRecord) Recorded() bool { return r.EventID != uuid.Nil }

// PolicyHistory is the fold of the policy stream: every policy recorded,
// in order. Before any is recorded it answers the initial policy it was
// made with (unrecorded). Not safe for concurrent use.
type PolicyHistory struct {
	initial Policy
	records []PolicyRecord
	version uint64
}

// NewPolicyHistory returns the history of an empty policy stream, answering
// initial (defaults applied) until a policy is recorded.
func NewPolicyHistory(initial Policy) *PolicyHistory {
	return &PolicyHistory{initial: initial.WithDefaults()}
}

// Clone returns a copy of h that Apply can extend without changing h.
func (h *PolicyHistory) Clone() *PolicyHistory {
	return &PolicyHistory{initial: h.initial, records: append([]PolicyRecord(nil), h.records...), version: h.version}
}

// RestorePolicyHistory returns the history of a policy stream folded up
// to version whose recorded policies are records (oldest first, as
// Records returns them), answering initial (defaults applied) before the
// first. It shares nothing with records. It is for snapshots: a history
// saved through Records and Version and restored answers PolicyAt,
// Current and Records as the saved one did (with whatever Reason the
// records were given).
func RestorePolicyHistory(initial Policy, records []PolicyRecord, version uint64) *PolicyHistory {
	return &PolicyHistory{initial: initial.WithDefaults(), records: slices.Clone(records), version: version}
}

// Apply folds the next event of the policy stream. Only PolicySet events
// belong to it.
func (h *PolicyHistory) Apply(env Envelope) error {
	e, ok := env.Event.(*PolicySet)
	if !ok {
		return fmt.Errorf("policy stream: %s: %w", env.Type, ErrUnknownEventType)
	}
	h.records = append(h.records, PolicyRecord{Policy: e.Policy(), SetAt: e.SetAt, Position: env.Position, EventID: env.EventID,
		ActorID: env.ActorID, ActorRole: env.ActorRole, Reason: env.Reason})
	h.version = env.StreamVersion
	return nil
}

// Version is the stream version folded so far (0: none).
func (h *PolicyHistory) Version() uint64 { return h.version }

// Records returns every recorded policy, oldest first.
func (h *PolicyHistory) Records() []PolicyRecord { return append([]PolicyRecord(nil), h.records...) }

// Current is the newest policy: the last recorded one, or the initial
// policy when none is recorded.
func (h *PolicyHistory) Current() PolicyRecord {
	if len(h.records) == 0 {
		return PolicyRecord{Policy: h.initial}
	}
	return h.records[len(h.records)-1]
}

// PolicyAt is the policy in force at t: the last one recorded whose SetAt
// is not after t. Before the first recorded policy the first one answers
// (the initial policy applied from the start); with none recorded, the
// initial policy.
func (h *PolicyHistory) PolicyAt(t time.Time) PolicyRecord {
	if len(h.records) == 0 {
		return PolicyRecord{Policy: h.initial}
	}
	// SetAt never decreases along the stream (SetPolicy sees to it).
	i := sort.Search(len(h.records), func(i int) bool { return h.records[i].SetAt.After(t) })
	if i == 0 {
		return h.records[0]
	}
	return h.records[i-1]
}

// SetPolicy decides a change of the policy at now (R25), with an optional
// reason: a manager only, or the engine (RoleSystem) for the initial
// policy, while none is recorded. The new policy is the current one with
// the change applied; it must pass Policy.Validate. A change that changes
// nothing records nothing, except the engine's initial policy, which is
// always recorded. The event's SetAt is now (never before the current
// policy's).
func (h *PolicyHistory) SetPolicy(by Actor, change PolicyChange, reason string, now time.Time) ([]Event, error) {
	const what = "set policy"
	if by.Role == RoleSystem {
		if len(h.records) > 0 {
			return nil, fmt.Errorf("%s: the initial policy is recorded already: %w", what, ErrRoleNotAllowed)
		}
	} else if err := allowRoles(by, RoleManager); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if reason != "" {
		if err := checkReason(reason); err != nil {
			return nil, err
		}
	}
	if err := change.check(); err != nil {
		return nil, err
	}
	cur := h.Current()
	next := change.Apply(cur.Policy).WithDefaults()
	if err := next.Validate(); err != nil {
		return nil, err
	}
	if err := next.CheckWholeSeconds(); err != nil {
		return nil, err
	}
	if cur.Recorded() && next == cur.Policy {
		return nil, nil
	}
	at := normTime(now)
	if at.Before(cur.SetAt) {
		at = cur.SetAt // another replica's clock ran ahead: never out of order
	}
	if err := CheckCommandTime("set_at", at); err != nil {
		return nil, err
	}
	return []Event{policySetOf(next, at)}, nil
}
