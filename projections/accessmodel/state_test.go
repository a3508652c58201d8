package accessmodel_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// TestStateRefusals: empty models round-trip, keeping whether they keep
// provenance; a state naming an aggregate, a pair's or an account's
// provenance or a grace period twice is refused.
func TestStateRefusals(t *testing.T) {
	for _, opts := range [][]accessmodel.Option{nil, {accessmodel.WithoutProvenance()}} {
		st, err := accessmodel.New(opts...).State()
		require.NoError(t, err)
		require.Equal(t, len(opts) == 0, st.Provenance)
		m, err := accessmodel.Restore(st)
		require.NoError(t, err)
		require.Zero(t, m.Applied())
		again, err := m.State()
		require.NoError(t, err)
		require.Equal(t, st.Provenance, again.Provenance)
	}
	pair := accessmodel.Pair{Account: uuid.New(), Child: uuid.New()}

	id := uuid.New()
	tests := []struct {
		name  string
		state accessmodel.State
	}{
		{"a child twice", accessmodel.State{Children: []domain.ChildState{{ID: id}, {ID: id}}}},
		{"an account twice", accessmodel.State{Accounts: []domain.AccountState{{ID: id}, {ID: id}}}},
		{"an account's children twice", accessmodel.State{PairsOf: []accessmodel.AccountChildren{{Account: id}, {Account: id}}}},
		{"a pair's provenance twice", accessmodel.State{Provenance: true, PairProv: []accessmodel.PairProvenance{{Pair: pair}, {Pair: pair}}}},
		{"an account's provenance twice", accessmodel.State{Provenance: true, AccountProv: []accessmodel.AccountProvenance{{Account: id}, {Account: id}}}},
		{"a grace period twice", accessmodel.State{Provenance: true, Graces: []accessmodel.EventGrace{{Event: id}, {Event: id}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := accessmodel.Restore(tt.state)
			require.ErrorIs(t, err, accessmodel.ErrApply)
		})
	}
}
