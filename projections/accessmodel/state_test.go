package accessmodel_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// TestStateRefusals: a model with provenance is neither saved nor
// restored from a state; a state naming an aggregate twice is refused.
func TestStateRefusals(t *testing.T) {
	_, err := accessmodel.New().State()
	require.ErrorIs(t, err, accessmodel.ErrProvenance)

	st, err := accessmodel.New(accessmodel.WithoutProvenance()).State()
	require.NoError(t, err)
	m, err := accessmodel.Restore(st)
	require.NoError(t, err)
	require.Zero(t, m.Applied())

	id := uuid.New()
	tests := []struct {
		name  string
		state accessmodel.State
	}{
		{"a child twice", accessmodel.State{Children: []domain.ChildState{{ID: id}, {ID: id}}}},
		{"an account twice", accessmodel.State{Accounts: []domain.AccountState{{ID: id}, {ID: id}}}},
		{"an account's children twice", accessmodel.State{PairsOf: []accessmodel.AccountChildren{{Account: id}, {Account: id}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := accessmodel.Restore(tt.state)
			require.ErrorIs(t, err, accessmodel.ErrApply)
		})
	}
}
