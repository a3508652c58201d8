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
	cc.put(id, domain.NewAccount(id), l(3), map[uuid.UUID]struct{}{})
	cc.put(other, domain.NewAccount(other), l(1), map[uuid.UUID]struct{}{})
	_, got, _, ok := cc.get(id, nil)
	require.True(t, ok)
	require.Equal(t, uint64(3), got.version)

	cc.drop(id)
	_, _, _, ok = cc.get(id, nil)
	require.False(t, ok)
	cc.put(id, domain.NewAccount(id), l(2), map[uuid.UUID]struct{}{}) // a load from before the erasure
	cc.put(id, domain.NewAccount(id), l(9), map[uuid.UUID]struct{}{})
	_, _, _, ok = cc.get(id, nil)
	require.False(t, ok, "never kept again")
	_, _, _, ok = cc.get(other, nil)
	require.True(t, ok, "the others stay")
}
