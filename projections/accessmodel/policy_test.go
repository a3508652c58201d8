package accessmodel_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessmodel"
	"github.com/accessledger/accessledger/projections/projtest"
)

// TestRule_R25_AGraceNamesThePolicyThatSetIt: a policy event changes no
// pair; each placement end records the grace period it gave and the policy
// event in force at its end that set it; none without a recorded policy,
// or without provenance.
func TestRule_R25_AGraceNamesThePolicyThatSetIt(t *testing.T) {
	w := projtest.New(t.Fatalf)
	child, carer := w.RegisterChild(), w.Carer()
	unrecorded := w.Place(child, carer, w.Now.Add(-time.Hour))
	w.End(child, unrecorded, w.Now)
	w.Advance(time.Hour)
	w.SetPolicy(domain.System, domain.PolicyChange{})
	initial := w.Records[len(w.Records)-1]
	w.Advance(time.Hour)
	before := w.Place(child, carer, w.Now)
	w.Advance(time.Hour)
	w.End(child, before, w.Now)
	w.Advance(time.Hour)
	shorter := 2 * 24 * time.Hour
	w.SetPolicy(projtest.Manager, domain.PolicyChange{GracePeriod: &shorter})
	changed := w.Records[len(w.Records)-1]
	w.Advance(time.Hour)
	after := w.Place(child, carer, w.Now)
	w.Advance(time.Hour)
	w.End(child, after, w.Now)

	ends := map[string]eventlog.Record{}
	m, bare := accessmodel.New(), accessmodel.New(accessmodel.WithoutProvenance())
	for _, r := range w.Records {
		res, err := m.Apply(r)
		require.NoError(t, err)
		_, err = bare.Apply(r)
		require.NoError(t, err)
		if r.Type == domain.TypePolicySet {
			require.Empty(t, res.Pairs, "a policy changes no pair")
		}
		if e, ok := res.Envelope.Event.(*domain.PlacementEnded); ok {
			ends[e.PlacementID.String()] = r
		}
	}
	for _, tc := range []struct {
		name      string
		placement string
		grace     time.Duration
		policy    *eventlog.Record
	}{
		{"ended before any policy was recorded", unrecorded.String(), domain.DefaultPolicy.GracePeriod, nil},
		{"ended under the initial policy", before.String(), domain.DefaultPolicy.GracePeriod, &initial},
		{"ended under the change", after.String(), shorter, &changed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end := ends[tc.placement]
			g, ok := m.GraceOf(end.ID)
			require.True(t, ok)
			require.Equal(t, tc.grace, g.Period)
			if tc.policy == nil {
				require.Nil(t, g.Policy)
			} else {
				require.NotNil(t, g.Policy)
				require.Equal(t, tc.policy.ID, g.Policy.ID)
				require.Equal(t, tc.policy.Position, g.Policy.Position)
				require.Equal(t, domain.TypePolicySet, g.Policy.Type)
			}
			_, ok = bare.GraceOf(end.ID)
			require.False(t, ok, "no provenance, no grace record")
		})
	}
}
