package domain_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

func dur(d time.Duration) *time.Duration { return &d }

// givenPolicies folds events into a policy history as the policy stream's
// versions 1, 2, … at positions 10, 20, ….
func givenPolicies(t *testing.T, events ...domain.Event) *domain.PolicyHistory {
	t.Helper()
	h := domain.NewPolicyHistory(domain.DefaultPolicy)
	for i, e := range events {
		require.NoError(t, h.Apply(domain.Envelope{EventID: uuid.New(), Stream: domain.PolicyStream, StreamVersion: uint64(i + 1),
			Position: eventlog.Position{Commit: uint64(10 * (i + 1))}, Type: e.EventType(), ActorID: manager.ID,
			ActorRole: manager.Role, Reason: "review", Event: e}))
	}
	return h
}

// policySet is the event that sets DefaultPolicy with grace from at.
func policySet(grace time.Duration, at time.Time) *domain.PolicySet {
	d := domain.DefaultPolicy
	return &domain.PolicySet{GracePeriod: int64(grace / time.Second), InvitationTTL: int64(d.InvitationTTL / time.Second),
		SessionIdleTimeout: int64(d.SessionIdleTimeout / time.Second), SessionWarningAfter: int64(d.SessionWarningAfter / time.Second),
		ClosedAccountRetention: int64(d.ClosedAccountRetention / time.Second), ReviewPeriod: int64(d.ReviewPeriod / time.Second), SetAt: at}
}

// TestRule_R25_ThePolicyIsSetByACommandAndRecordedAsAnEvent: the engine
// records the initial policy once; then only a manager changes it, to a
// valid policy, from the time the change is recorded; a change that
// changes nothing records nothing.
func TestRule_R25_ThePolicyIsSetByACommandAndRecordedAsAnEvent(t *testing.T) {
	initial := domain.DefaultPolicy
	initial.GracePeriod = 3 * day
	got, err := domain.NewPolicyHistory(initial).SetPolicy(domain.System, domain.PolicyChange{}, "", t0)
	thenEvents(t, got, err, policySet(3*day, t0))

	recorded := givenPolicies(t, policySet(3*day, t0))
	got, err = recorded.SetPolicy(domain.System, domain.PolicyChange{GracePeriod: dur(day)}, "", t0.Add(day))
	thenError(t, got, err, domain.ErrRoleNotAllowed) // the engine only writes the initial one

	later := t0.Add(day)
	for _, tc := range []struct {
		name   string
		by     domain.Actor
		change domain.PolicyChange
		reason string
		now    time.Time
		want   []domain.Event
		err    error
	}{
		{"a manager changes the grace period", manager, domain.PolicyChange{GracePeriod: dur(2 * day)}, "review", later,
			[]domain.Event{policySet(2*day, later)}, nil},
		{"without a reason", manager, domain.PolicyChange{GracePeriod: dur(2 * day)}, "", later,
			[]domain.Event{policySet(2*day, later)}, nil},
		{"the same values record nothing", manager, domain.PolicyChange{GracePeriod: dur(3 * day)}, "", later, nil, nil},
		{"no values record nothing", manager, domain.PolicyChange{}, "", later, nil, nil},
		{"never before the policy in force (a clock behind)", manager, domain.PolicyChange{GracePeriod: dur(day)}, "", t0.Add(-time.Hour),
			[]domain.Event{policySet(day, t0)}, nil},
		{"a worker", worker, domain.PolicyChange{GracePeriod: dur(day)}, "", later, nil, domain.ErrRoleNotAllowed},
		{"an auditor", auditor, domain.PolicyChange{GracePeriod: dur(day)}, "", later, nil, domain.ErrRoleNotAllowed},
		{"the dpo", dpoActor, domain.PolicyChange{GracePeriod: dur(day)}, "", later, nil, domain.ErrRoleNotAllowed},
		{"the portals team", portals, domain.PolicyChange{GracePeriod: dur(day)}, "", later, nil, domain.ErrRoleNotAllowed},
		{"a zero grace period", manager, domain.PolicyChange{GracePeriod: dur(0)}, "", later, nil, domain.ErrInvalid},
		{"a negative invitation lifetime", manager, domain.PolicyChange{InvitationTTL: dur(-time.Hour)}, "", later, nil, domain.ErrInvalid},
		{"part of a second", manager, domain.PolicyChange{GracePeriod: dur(1500 * time.Millisecond)}, "", later, nil, domain.ErrInvalid},
		{"over the longest policy period", manager, domain.PolicyChange{ClosedAccountRetention: dur(domain.MaxPolicyPeriod + day)}, "", later, nil, domain.ErrInvalid},
		{"the warning after the idle timeout", manager, domain.PolicyChange{SessionWarningAfter: dur(20 * time.Minute)}, "", later, nil, domain.ErrInvalid},
		{"a reason with a control character", manager, domain.PolicyChange{GracePeriod: dur(day)}, "a\x07b", later, nil, domain.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := recorded.SetPolicy(tc.by, tc.change, tc.reason, tc.now)
			if tc.err != nil {
				thenError(t, got, err, tc.err)
				return
			}
			thenEvents(t, got, err, tc.want...)
		})
	}
}

// TestRule_R25_HistoryAnswersThePolicyInForceAtAnyTime: each policy is in
// force from its set_at until the next one; before the first, the first
// (the initial policy applied from the start); with none recorded, the
// initial policy, unrecorded.
func TestRule_R25_HistoryAnswersThePolicyInForceAtAnyTime(t *testing.T) {
	require.False(t, domain.NewPolicyHistory(domain.Policy{}).PolicyAt(t0).Recorded())
	require.Equal(t, domain.DefaultPolicy, domain.NewPolicyHistory(domain.Policy{}).Current().Policy)

	h := givenPolicies(t, policySet(7*day, t0), policySet(3*day, t0.Add(10*day)), policySet(day, t0.Add(20*day)))
	require.Equal(t, uint64(3), h.Version())
	for _, tc := range []struct {
		name  string
		at    time.Time
		grace time.Duration
		pos   uint64
	}{
		{"before the first", t0.Add(-365 * day), 7 * day, 10},
		{"at the first", t0, 7 * day, 10},
		{"just before the second", t0.Add(10*day - time.Microsecond), 7 * day, 10},
		{"at the second", t0.Add(10 * day), 3 * day, 20},
		{"between", t0.Add(15 * day), 3 * day, 20},
		{"at the third", t0.Add(20 * day), day, 30},
		{"long after", t0.Add(1000 * day), day, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.PolicyAt(tc.at)
			require.True(t, r.Recorded())
			require.Equal(t, tc.grace, r.Policy.GracePeriod)
			require.Equal(t, tc.pos, r.Position.Commit)
			require.Equal(t, manager.ID, r.ActorID)
			require.Equal(t, "review", r.Reason)
		})
	}
	require.Equal(t, day, h.Current().Policy.GracePeriod)
	require.Len(t, h.Records(), 3)

	// Only policy events belong to the stream.
	err := h.Apply(domain.Envelope{StreamVersion: 4, Type: domain.TypeChildRegistered, Event: registered()})
	require.ErrorIs(t, err, domain.ErrUnknownEventType)
}

// TestRule_R25_AGracePeriodFollowsThePolicyInForceAtTheEnd: a placement
// ended under one policy keeps its grace_until; the end decided with the
// next policy gets the new grace period.
func TestRule_R25_AGracePeriodFollowsThePolicyInForceAtTheEnd(t *testing.T) {
	h := givenPolicies(t, policySet(7*day, t0), policySet(2*day, t0.Add(10*day)))
	for _, tc := range []struct {
		name  string
		end   time.Time
		grace time.Duration
	}{
		{"ended before the change (backdated)", t0.Add(5 * day), 7 * day},
		{"ended after the change", t0.Add(12 * day), 2 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := givenChild(t, registered(), started(placement, carerID, t0.Add(-30*day)))
			got, err := c.EndPlacement(worker, placement, tc.end, t0.Add(12*day), h.PolicyAt(tc.end).Policy)
			require.NoError(t, err)
			require.Equal(t, tc.end.Add(tc.grace), got[0].(*domain.PlacementEnded).GraceUntil)
		})
	}
}
