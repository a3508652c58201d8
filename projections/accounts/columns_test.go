package accounts

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/projections/projtest"
)

// TestUpsertColumns checks that the columns Apply writes are the row's
// columns, the key first, in the order values gives them.
func TestUpsertColumns(t *testing.T) {
	names := make([]string, 0, len(columns))
	for _, c := range columns {
		names = append(names, c.Name)
	}
	require.Equal(t, projtest.BunColumns(row{}), names)
	require.Len(t, (&row{}).values(nil), len(columns))
}
