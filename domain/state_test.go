package domain_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestStateRoundTrip: an aggregate restored from its state has the same
// state and facts, leaves out the personal fields, shares nothing with the
// state, and goes on exactly as the original under the same events.
func TestStateRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	child, carer, member, pl := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	childEvents := []domain.Event{
		&domain.ChildRegistered{ChildID: child, Reference: "C-000001", WorkerID: "worker-ann"},
		&domain.PlacementStarted{ChildID: child, PlacementID: pl, CarerAccountID: carer, StartedAt: t0},
		&domain.AccessGranted{ChildID: child, AccountID: member, Relationship: domain.RelNetworkMember,
			Permissions: []string{"view"}, GrantedAt: t0.Add(time.Hour), ReviewBy: t0.AddDate(1, 0, 0)},
	}
	childLater := []domain.Event{
		&domain.PlacementEnded{ChildID: child, PlacementID: pl, CarerAccountID: carer, EndedAt: t0.AddDate(0, 1, 0),
			GraceUntil: t0.AddDate(0, 1, 7)},
		&domain.AccessRevoked{ChildID: child, AccountID: member, RevokedAt: t0.AddDate(0, 2, 0)},
	}
	acctEvents := []domain.Event{
		&domain.AccountInvited{AccountID: carer, Email: "carer@example.org", Kind: domain.KindFosterCarer,
			InvitedAt: t0, ExpiresAt: t0.AddDate(0, 0, 14)},
		&domain.AccountActivated{AccountID: carer, IdentitySubject: "subject-1", ActivatedAt: t0.Add(time.Hour)},
		&domain.AccountClosed{AccountID: carer, ClosedAt: t0.AddDate(0, 1, 0)},
		&domain.AccountReopened{AccountID: carer, ClosedAt: t0.AddDate(0, 1, 0), ReopenedAt: t0.AddDate(0, 2, 0)},
	}
	acctLater := []domain.Event{&domain.AccountClosed{AccountID: carer, ClosedAt: t0.AddDate(0, 3, 0)}}

	tests := []struct {
		name         string
		events       []domain.Event
		later        []domain.Event
		newAggregate func() interface{ Apply(domain.Event) error }
		state        func(a any) any
		restore      func(s any) interface{ Apply(domain.Event) error }
	}{
		{"child", childEvents, childLater,
			func() interface{ Apply(domain.Event) error } { return domain.NewChild(child) },
			func(a any) any { return a.(*domain.Child).State() },
			func(s any) interface{ Apply(domain.Event) error } { return domain.RestoreChild(s.(domain.ChildState)) }},
		{"account", acctEvents, acctLater,
			func() interface{ Apply(domain.Event) error } { return domain.NewAccount(carer) },
			func(a any) any { return a.(*domain.Account).State() },
			func(s any) interface{ Apply(domain.Event) error } {
				return domain.RestoreAccount(s.(domain.AccountState))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.newAggregate()
			for _, e := range tt.events {
				require.NoError(t, orig.Apply(e))
			}
			st := tt.state(orig)
			restored := tt.restore(st)
			require.Equal(t, st, tt.state(restored))
			for _, e := range tt.later {
				require.NoError(t, orig.Apply(e))
				require.NoError(t, restored.Apply(e))
			}
			require.Equal(t, tt.state(orig), tt.state(restored))
			require.Equal(t, st, tt.state(tt.restore(st)), "restoring shares nothing with the state")
			switch r := restored.(type) {
			case *domain.Child:
				o := orig.(*domain.Child)
				require.Equal(t, o.PlacementFacts(carer), r.PlacementFacts(carer))
				require.Equal(t, o.GrantFacts(member), r.GrantFacts(member))
				require.Empty(t, r.Reference(), "no personal field")
			case *domain.Account:
				require.Equal(t, orig.(*domain.Account).Facts(), r.Facts())
				require.Empty(t, r.Email(), "no personal field")
			}
		})
	}
}
