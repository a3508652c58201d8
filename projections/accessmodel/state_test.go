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
		{"an event table's columns of different lengths", accessmodel.State{Provenance: true, Refs: accessmodel.Refs{Commit: []uint64{1}}}},
		{"an event naming a text it does not hold", accessmodel.State{Provenance: true, Refs: accessmodel.Refs{IDs: make([]byte, 16),
			Commit: []uint64{1}, Prepare: []uint64{1}, Type: []uint32{3}, Actor: []uint32{0}, Role: []uint32{0}}}},
		{"provenance naming a missing event", accessmodel.State{Provenance: true,
			PairProv: []accessmodel.PairProvenance{{Pair: pair, Times: []int64{1}, Refs: []uint32{0}}}}},
		{"provenance's columns of different lengths", accessmodel.State{Provenance: true,
			AccountProv: []accessmodel.AccountProvenance{{Account: id, Times: []int64{1}}}}},
		{"a grace period naming a missing policy event", accessmodel.State{Provenance: true,
			Graces: []accessmodel.EventGrace{{Event: id, Policy: 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := accessmodel.Restore(tt.state)
			require.ErrorIs(t, err, accessmodel.ErrApply)
		})
	}
}
