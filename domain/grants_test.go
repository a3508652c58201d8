package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// grantedUntil is a time-limited grant of view made at at, ending at until.
func grantedUntil(at, until time.Time) *domain.AccessGranted {
	return &domain.AccessGranted{ChildID: childID, AccountID: parentID, Relationship: domain.RelParent,
		Permissions: []string{domain.PermView}, GrantedAt: at, ExpiresAt: until}
}

// TestRule_R19_AGrantHasAnEndOrAReviewDate: a grant with expires_at ends
// by itself; one without has a review date the policy's review period after
// it was made; a replacing grant has its own.
func TestRule_R19_AGrantHasAnEndOrAReviewDate(t *testing.T) {
	parent := activeParent(t)
	short := domain.DefaultPolicy
	short.ReviewPeriod = 30 * day
	for _, tc := range []struct {
		name    string
		history []domain.Event
		terms   domain.GrantTerms
		policy  domain.Policy
		want    *domain.AccessGranted
		err     error
	}{
		{name: "open-ended: reviewed after the default 12 months", terms: domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "contact"},
			policy: domain.DefaultPolicy, want: &domain.AccessGranted{ChildID: childID, AccountID: parentID, Relationship: domain.RelParent,
				Permissions: []string{"view"}, GrantedAt: t0.Add(day), ReviewBy: t0.Add(day + 365*day)}},
		{name: "open-ended under a 30-day review period", terms: domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "contact"},
			policy: short, want: &domain.AccessGranted{ChildID: childID, AccountID: parentID, Relationship: domain.RelParent,
				Permissions: []string{"view"}, GrantedAt: t0.Add(day), ReviewBy: t0.Add(31 * day)}},
		{name: "time-limited: no review date", terms: domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "contact", ExpiresAt: t0.Add(10 * day)},
			policy: domain.DefaultPolicy, want: grantedUntil(t0.Add(day), t0.Add(10*day))},
		{name: "replacing an open-ended grant with a time-limited one", history: []domain.Event{granted(parentID, []string{"view"}, t0)},
			terms:  domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "until the hearing", ExpiresAt: t0.Add(10 * day)},
			policy: domain.DefaultPolicy, want: grantedUntil(t0.Add(day), t0.Add(10*day))},
		{name: "the same time-limited grant again", history: []domain.Event{grantedUntil(t0, t0.Add(10*day))},
			terms:  domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "again", ExpiresAt: t0.Add(10 * day)},
			policy: domain.DefaultPolicy, err: domain.ErrAlreadyGranted},
		{name: "expires_at in the past", terms: domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "contact", ExpiresAt: t0},
			policy: domain.DefaultPolicy, err: domain.ErrInvalid},
		{name: "expires_at now", terms: domain.GrantTerms{Relationship: "parent", Permissions: []string{"view"}, Reason: "contact", ExpiresAt: t0.Add(day)},
			policy: domain.DefaultPolicy, err: domain.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := givenChild(t, append([]domain.Event{registered()}, tc.history...)...)
			got, err := c.GrantWith(worker, parent, tc.terms, t0.Add(day), tc.policy)
			if tc.err != nil {
				thenError(t, got, err, tc.err)
				return
			}
			thenEvents(t, got, err, tc.want)
		})
	}
}

// TestRule_R19_AccessEndsAtExpiresAtWhetherOrNotTheExpiryIsRecorded: the
// decision compares expires_at with the decision time itself (as R3): the
// answer is grant, with expires_at, until then, and grant_expired after,
// before and after GrantExpired is recorded.
func TestRule_R19_AccessEndsAtExpiresAtWhetherOrNotTheExpiryIsRecorded(t *testing.T) {
	parent := activeParent(t)
	end := t0.Add(10 * day)
	limited := grantedUntil(t0.Add(day), end)
	expiry := &domain.GrantExpired{ChildID: childID, AccountID: parentID, GrantedAt: t0.Add(day), ExpiredAt: end}
	for _, tc := range []struct {
		name    string
		history []domain.Event
		at      time.Time
		want    domain.Access
	}{
		{"before", []domain.Event{limited}, t0.Add(2 * day),
			domain.Access{Permissions: domain.PermissionSet(domain.View), Reason: domain.ReasonGrant, Until: end, ExpiresAt: end}},
		{"at expires_at, not recorded", []domain.Event{limited}, end, domain.Access{Reason: domain.ReasonGrantExpired}},
		{"after, not recorded", []domain.Event{limited}, end.Add(day), domain.Access{Reason: domain.ReasonGrantExpired}},
		{"after, recorded", []domain.Event{limited, expiry}, end.Add(day), domain.Access{Reason: domain.ReasonGrantExpired}},
		{"before, recorded", []domain.Event{limited, expiry}, t0.Add(2 * day),
			domain.Access{Permissions: domain.PermissionSet(domain.View), Reason: domain.ReasonGrant, Until: end, ExpiresAt: end}},
		{"revoked before it ran out", []domain.Event{limited, &domain.AccessRevoked{ChildID: childID, AccountID: parentID,
			RevokedAt: t0.Add(5 * day), GrantedAt: t0.Add(day)}}, end.Add(day), domain.Access{Reason: domain.ReasonRevoked}},
		{"replaced by an open-ended grant before it ran out", []domain.Event{limited, granted(parentID, []string{"view"}, t0.Add(5*day))},
			end.Add(day), domain.Access{Permissions: domain.PermissionSet(domain.View), Reason: domain.ReasonGrant}},
		{"granted again after it ran out", []domain.Event{limited, granted(parentID, []string{"view"}, end.Add(2*day))},
			end.Add(day), domain.Access{Reason: domain.ReasonGrantExpired, Until: time.Time{}}},
		{"an open-ended grant carries no expires_at", []domain.Event{granted(parentID, []string{"view"}, t0.Add(day))}, end.Add(day),
			domain.Access{Permissions: domain.PermissionSet(domain.View), Reason: domain.ReasonGrant}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := givenChild(t, append([]domain.Event{registered()}, tc.history...)...)
			require.Equal(t, tc.want, c.Access(parent, tc.at))
		})
	}
}

// TestRule_R19_TheProcessManagersExpiryIsRecordedOnce: ExpireGrant is
// refused before expires_at, records the expiry once after it, and records
// nothing for a grant revoked or replaced before it ran out, or with no end.
func TestRule_R19_TheProcessManagersExpiryIsRecordedOnce(t *testing.T) {
	end := t0.Add(10 * day)
	limited := grantedUntil(t0.Add(day), end)
	expiry := &domain.GrantExpired{ChildID: childID, AccountID: parentID, GrantedAt: t0.Add(day), ExpiredAt: end}
	for _, tc := range []struct {
		name      string
		history   []domain.Event
		grantedAt time.Time
		now       time.Time
		want      []domain.Event
		err       error
	}{
		{"before expires_at", []domain.Event{limited}, t0.Add(day), end.Add(-time.Microsecond), nil, domain.ErrNotDue},
		{"at expires_at", []domain.Event{limited}, t0.Add(day), end, []domain.Event{expiry}, nil},
		{"late", []domain.Event{limited}, t0.Add(day), end.Add(3 * day), []domain.Event{expiry}, nil},
		{"already recorded", []domain.Event{limited, expiry}, t0.Add(day), end.Add(3 * day), nil, nil},
		{"revoked before", []domain.Event{limited, &domain.AccessRevoked{ChildID: childID, AccountID: parentID,
			RevokedAt: t0.Add(5 * day), GrantedAt: t0.Add(day)}}, t0.Add(day), end, nil, nil},
		{"replaced before", []domain.Event{limited, grantedUntil(t0.Add(5*day), end.Add(day))}, t0.Add(day), end, nil, nil},
		{"replaced after it ran out, expiry not recorded yet", []domain.Event{limited, granted(parentID, []string{"view"}, end.Add(day))},
			t0.Add(day), end.Add(2 * day), []domain.Event{expiry}, nil},
		{"open-ended", []domain.Event{granted(parentID, []string{"view"}, t0.Add(day))}, t0.Add(day), end, nil, nil},
		{"no such grant", []domain.Event{limited}, t0.Add(2 * day), end, nil, domain.ErrGrantNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := givenChild(t, append([]domain.Event{registered()}, tc.history...)...)
			got, err := c.ExpireGrant(parentID, tc.grantedAt, tc.now)
			if tc.err != nil {
				thenError(t, got, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestRule_R19_TheChildsWorkerConfirmsOrRevokesAGrantDueForReview: only the
// child's worker reviews, with a reason, an active open-ended grant: the
// new review date is now plus the review period in force; a revoked, run
// out or time-limited grant is refused, and so is revoking one that ran out.
func TestRule_R19_TheChildsWorkerConfirmsOrRevokesAGrantDueForReview(t *testing.T) {
	end := t0.Add(10 * day)
	now := t0.Add(400 * day)
	short := domain.DefaultPolicy
	short.ReviewPeriod = 90 * day
	open := granted(parentID, []string{"view"}, t0)
	for _, tc := range []struct {
		name    string
		by      domain.Actor
		history []domain.Event
		reason  string
		policy  domain.Policy
		want    []domain.Event
		err     error
	}{
		{"overdue grant confirmed", worker, []domain.Event{open}, "contact still agreed", domain.DefaultPolicy,
			[]domain.Event{&domain.GrantReviewed{ChildID: childID, AccountID: parentID, GrantedAt: t0, ReviewedAt: now, ReviewBy: now.Add(365 * day)}}, nil},
		{"under the policy in force", worker, []domain.Event{open}, "contact still agreed", short,
			[]domain.Event{&domain.GrantReviewed{ChildID: childID, AccountID: parentID, GrantedAt: t0, ReviewedAt: now, ReviewBy: now.Add(90 * day)}}, nil},
		{"no reason", worker, []domain.Event{open}, "", domain.DefaultPolicy, nil, domain.ErrInvalid},
		{"another worker", other, []domain.Event{open}, "r", domain.DefaultPolicy, nil, domain.ErrNotAllocated},
		{"a manager", manager, []domain.Event{open}, "r", domain.DefaultPolicy, nil, domain.ErrRoleNotAllowed},
		{"revoked", worker, []domain.Event{open, &domain.AccessRevoked{ChildID: childID, AccountID: parentID, RevokedAt: t0.Add(day), GrantedAt: t0}},
			"r", domain.DefaultPolicy, nil, domain.ErrGrantNotFound},
		{"never granted", worker, nil, "r", domain.DefaultPolicy, nil, domain.ErrGrantNotFound},
		{"ran out", worker, []domain.Event{grantedUntil(t0, end)}, "r", domain.DefaultPolicy, nil, domain.ErrGrantExpired},
		{"time-limited", worker, []domain.Event{grantedUntil(t0, now.Add(day))}, "r", domain.DefaultPolicy, nil, domain.ErrGrantTimeLimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := givenChild(t, append([]domain.Event{registered()}, tc.history...)...)
			got, err := c.ReviewGrant(tc.by, parentID, tc.reason, now, tc.policy)
			if tc.err != nil {
				thenError(t, got, err, tc.err)
				return
			}
			thenEvents(t, got, err, tc.want...)
			require.NoError(t, c.Apply(got[0]))
			rv := c.ActiveGrants(now)
			require.Len(t, rv, 1)
			require.Equal(t, got[0].(*domain.GrantReviewed).ReviewBy, rv[0].ReviewBy)
		})
	}

	c := givenChild(t, registered(), grantedUntil(t0, end))
	got, err := c.Revoke(worker, parentID, "too late", end)
	thenError(t, got, err, domain.ErrGrantExpired)
	got, err = c.Revoke(worker, parentID, "in time", end.Add(-time.Microsecond))
	thenEvents(t, got, err, &domain.AccessRevoked{ChildID: childID, AccountID: parentID, RevokedAt: end.Add(-time.Microsecond), GrantedAt: t0})

	// A grant recorded before R19 is due a year after it was made.
	c = givenChild(t, registered(), &domain.AccessGranted{ChildID: childID, AccountID: parentID, Relationship: domain.RelParent,
		Permissions: []string{"view"}, GrantedAt: t0})
	require.Equal(t, []domain.GrantReview{{AccountID: parentID, Relationship: domain.RelParent, GrantedAt: t0, ReviewBy: t0.Add(365 * day)}},
		c.ActiveGrants(t0.Add(day)))
}

// TestRule_R19_TheReviewPeriodIsPolicy: the policy event carries the review
// period; one recorded before R19 (without it) decodes with the default.
func TestRule_R19_TheReviewPeriodIsPolicy(t *testing.T) {
	old := []byte(`{"grace_period":604800,"invitation_ttl":1209600,"session_idle_timeout":900,"session_warning_after":600,` +
		`"closed_account_retention":189388800,"set_at":"2026-03-02T09:00:00Z"}`)
	e, err := domain.Decode(domain.TypePolicySet, old)
	require.NoError(t, err)
	require.Equal(t, domain.DefaultReviewPeriod, e.(*domain.PolicySet).Policy().ReviewPeriod)

	h := givenPolicies(t, policySet(7*day, t0))
	got, err := h.SetPolicy(manager, domain.PolicyChange{ReviewPeriod: dur(180 * day)}, "six-monthly reviews", t0.Add(day))
	require.NoError(t, err)
	require.Equal(t, int64(180*24*3600), got[0].(*domain.PolicySet).ReviewPeriod)
	for _, bad := range []time.Duration{-day, 0, time.Second / 2} {
		_, err := h.SetPolicy(manager, domain.PolicyChange{ReviewPeriod: dur(bad)}, "", t0.Add(day))
		require.ErrorIs(t, err, domain.ErrInvalid, "%s", bad)
	}
}
