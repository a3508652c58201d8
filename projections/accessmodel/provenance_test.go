package accessmodel_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/projections/accessmodel"
	"github.com/accessledger/accessledger/projections/projtest"
)

func TestWithoutProvenanceKeepsFactsAndDropsSources(t *testing.T) {
	w := projtest.New(t.Fatalf)
	child := w.RegisterChild()
	carer := w.Carer()
	start := w.Now
	w.Place(child, carer, start)

	with, without := accessmodel.New(), accessmodel.New(accessmodel.WithoutProvenance())
	for _, rec := range w.Records {
		a, err := with.Apply(rec)
		require.NoError(t, err)
		b, err := without.Apply(rec)
		require.NoError(t, err)
		require.Equal(t, a.Pairs, b.Pairs)
	}
	pair := accessmodel.Pair{Account: carer, Child: child}
	require.Equal(t, with.Facts(pair), without.Facts(pair))
	_, ok := with.Source(pair, start)
	require.True(t, ok)
	_, ok = without.Source(pair, start)
	require.False(t, ok)
}
