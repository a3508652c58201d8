package commands

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestStateCacheDropIsForGood: after drop (an erasure appended), a load
// that began before it cannot put the earlier state back.
func TestStateCacheDropIsForGood(t *testing.T) {
	cc := newAccountCache()
	id, other := uuid.New(), uuid.New()
	l := func(v uint64) loaded { return loaded{stream: domain.AccountStream(id), version: v} }
	cc.put(id, domain.NewAccount(id), l(3))
	cc.put(other, domain.NewAccount(other), l(1))
	_, got, ok := cc.get(id, nil)
	require.True(t, ok)
	require.Equal(t, uint64(3), got.version)

	cc.drop(id)
	_, _, ok = cc.get(id, nil)
	require.False(t, ok)
	cc.put(id, domain.NewAccount(id), l(2)) // a load from before the erasure
	cc.put(id, domain.NewAccount(id), l(9))
	_, _, ok = cc.get(id, nil)
	require.False(t, ok, "never kept again")
	_, _, ok = cc.get(other, nil)
	require.True(t, ok, "the others stay")
}
