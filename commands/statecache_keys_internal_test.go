package commands

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// The kept ids are keys of 8 bytes: a watched id that shares its key with
// an id of the stream misses (the whole stream is read, never a wrong
// answer); other ids hit; what a load appends to the ids it got does not
// change the kept ones; an erased child is dropped.
func TestChildCacheIDKeys(t *testing.T) {
	child := uuid.New()
	inStream := uuid.MustParse("11111111-2222-4333-8444-555555555555")
	sameKey := uuid.MustParse("11111111-2222-4333-8999-999999999999")
	other := uuid.MustParse("21111111-2222-4333-8444-555555555555") // not in the stream
	cc := newChildCache(DefaultKeptChildren)
	l := loaded{stream: domain.ChildStream(child), version: 3, collect: true,
		ids: []uint64{idKey(uuid.New()), idKey(inStream), idKey(uuid.New())}}
	cc.put(child, domain.NewChild(child), l)

	for _, tt := range []struct {
		name  string
		watch map[uuid.UUID]bool
		hit   bool
	}{
		{"no watch", nil, true},
		{"an id not in the stream", map[uuid.UUID]bool{other: true}, true},
		{"an id of the stream", map[uuid.UUID]bool{inStream: true}, false},
		{"another id with the same key", map[uuid.UUID]bool{sameKey: true, other: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, got, ok := cc.get(child, tt.watch)
			require.Equal(t, tt.hit, ok)
			if !ok {
				return
			}
			require.Equal(t, uint64(3), got.version)
			require.True(t, got.collect)
			require.Len(t, got.ids, 3)
			got.ids = append(got.ids, idKey(other))
			c2, again, ok := cc.get(child, map[uuid.UUID]bool{other: true})
			require.True(t, ok, "the kept ids did not change")
			require.Len(t, again.ids, 3)
			require.NotSame(t, c, c2, "each get a clone")
		})
	}

	erased := domain.NewChild(child)
	require.NoError(t, erased.Apply(&domain.ChildErased{ChildID: child, ErasedAt: time.Now()}))
	cc.put(child, erased, loaded{stream: l.stream, version: 9, collect: true})
	_, _, ok := cc.get(child, nil)
	require.False(t, ok, "an erased child is not kept")
}

// The cache keeps at most its size of children, the oldest out first.
func TestChildCacheKeepsItsSize(t *testing.T) {
	cc := newChildCache(2)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	for i, id := range ids {
		cc.put(id, domain.NewChild(id), loaded{stream: domain.ChildStream(id), version: uint64(i + 1), collect: true})
	}
	for i, id := range ids {
		_, l, ok := cc.get(id, nil)
		require.Equal(t, i > 0, ok, "child %d", i)
		if ok {
			require.Equal(t, uint64(i+1), l.version)
		}
	}
	require.Len(t, cc.entries, 2)
}
