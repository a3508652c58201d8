package accesshistory

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/projections/projtest"
)

// TestInsertColumns checks that the columns Apply inserts are the row's
// columns, in the order values gives them, and that the columns a
// supersede sets are among them.
func TestInsertColumns(t *testing.T) {
	names := make([]string, 0, len(columns))
	for _, c := range columns {
		names = append(names, c.Name)
	}
	require.Equal(t, projtest.BunColumns(row{}), names)
	require.Len(t, (&row{}).values(nil), len(columns))
	for _, c := range supersededColumns {
		require.Contains(t, columns, c)
	}
}
