package accessindex

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

func TestUtimeRoundTrip(t *testing.T) {
	for _, tt := range []time.Time{
		{},
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), // Unix 0 is a time, not "never"
		time.Date(2026, 3, 2, 9, 0, 0, 123456000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
	} {
		u := ut(tt)
		require.Equal(t, tt.IsZero(), u == 0, "%s", tt)
		require.Equal(t, tt, u.time(), "%s: equal as ==, not only Equal", tt)
		require.True(t, tt == u.time())
	}
	require.Less(t, ut(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)), ut(time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC)))
}

func TestDeltaRoundTrip(t *testing.T) {
	for _, d := range []int64{0, 1, -1, 999_999, 1_000_000, -1_000_000, 3_600_000_000, 86_400_000_000, 28 * 86_400_000_000,
		-28 * 86_400_000_000, 86_400_000_001, 3 * 1e17, -3 * 1e17, 1 << 59, -(1 << 59)} {
		b := appendDelta(nil, d)
		got, n := readDelta(b)
		require.Equal(t, len(b), n, "%d", d)
		require.Equal(t, d, got, "%d", d)
	}
	require.Len(t, appendDelta(nil, 28*86_400_000_000), 2, "a grace period of 28 days is two bytes (seven in microseconds)")
	_, n := readDelta([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	require.Zero(t, n, "a difference out of range does not read")
	_, n = readDelta(nil)
	require.Zero(t, n)
}

// TestEncodeDecode: every field of every kind of source survives the
// pair's encoding, and a truncated encoding does not decode.
func TestEncodeDecode(t *testing.T) {
	at := func(days int) utime {
		return ut(time.Date(2024, 1, 1, 9, 30, 0, 0, time.UTC).AddDate(0, 0, days).Add(17 * time.Microsecond))
	}
	id := uuid.MustParse("6f1d3c1e-8f3a-4b7e-9d2c-1a2b3c4d5e6f")
	srcs := []source{
		{key: idKey(id), from: at(0)},
		{key: 42, from: at(3), to: at(10), until: at(38), flags: srcEnded},
		{id: id, key: idKey(id), from: at(-5), to: at(2), until: at(30), early: at(4), since: at(-9), flags: srcEnded | srcFullID},
		{key: 7, from: at(100), flags: srcCancelled},
		{from: at(1), to: at(2), perms: domain.PermissionSet(domain.View), flags: srcGrant},
		{from: at(2), until: at(90), since: at(-1), perms: domain.All, flags: srcGrant},
	}
	child := uuid.MustParse("0b0b0b0b-0000-4000-8000-000000000001")
	p := newPair(child)
	p.enc = encode(p.enc, srcs)
	require.Equal(t, child, p.child())
	np, ng := p.counts()
	require.Equal(t, 4, np)
	require.Equal(t, 2, ng)
	got, err := p.decode(nil)
	require.NoError(t, err)
	require.Equal(t, srcs, got)
	for n := len(child); n < len(p.enc); n++ {
		short := pairState{enc: p.enc[:n]}
		if n == len(child) {
			continue // no sources: a pair with none
		}
		_, err := short.decode(nil)
		require.Error(t, err, "cut at %d of %d", n, len(p.enc))
	}
	empty := newPair(child)
	got, err = empty.decode(nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestPlacementIn(t *testing.T) {
	a := uuid.MustParse("6f1d3c1e-8f3a-4b7e-9d2c-1a2b3c4d5e6f")
	b := a
	for i := range 8 { // the same key: both halves changed alike
		b[i] ^= 0x5a
		b[8+i] ^= 0x5a
	}
	require.Equal(t, idKey(a), idKey(b))
	var srcs []source
	sa := newPlacement(srcs, a)
	require.Zero(t, sa.flags&srcFullID, "a key of its own: the key only")
	srcs = append(srcs, sa)
	sb := newPlacement(srcs, b)
	require.NotZero(t, sb.flags&srcFullID, "a key the pair has: the whole id")
	srcs = append(srcs, sb)
	require.Equal(t, 0, placementIn(srcs, a))
	require.Equal(t, 1, placementIn(srcs, b))
	require.Equal(t, -1, placementIn(srcs, uuid.New()))
}

// TestRingGrows: the change buffer grows as changes come, up to its size,
// then drops the oldest; every change reads back as pushed.
func TestRingGrows(t *testing.T) {
	for _, tt := range []struct{ size, pushed int }{{100, 0}, {100, 1}, {100, 64}, {100, 65}, {100, 100}, {100, 250}, {3, 10}, {1000, 999}} {
		r := newRing(tt.size)
		var all []Change
		for i := range tt.pushed {
			c := Change{Account: uuid.UUID{byte(i)}, Child: uuid.UUID{1, byte(i >> 8)}, Position: eventlog.At(uint64(i + 1)),
				At:     time.Date(2026, 1, 1, 0, 0, i, 17, time.UTC), // not a whole microsecond: At is kept as it is
				Access: domain.Access{Permissions: domain.All, Reason: domain.ReasonPlacement, Until: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}}
			r.push(c)
			all = append(all, c)
		}
		want := all[max(0, len(all)-tt.size):]
		require.Equal(t, len(want), r.len(), "%+v", tt)
		require.LessOrEqual(t, len(r.buf), tt.size)
		for i := range want {
			require.Equal(t, want[i], r.at(i), "%+v #%d", tt, i)
		}
		if len(all) > tt.size {
			require.Equal(t, all[len(all)-tt.size-1].Position, r.dropped)
		} else {
			require.Equal(t, eventlog.Start, r.dropped)
		}
		if len(want) > 1 {
			require.Equal(t, want[1:], r.after(want[0].Position))
		}
	}
}

// TestRestoreFoldRefuses: a snapshot's fold that the index would not have
// written fails with ErrSnapshotCorrupt, whatever is wrong in it.
func TestRestoreFoldRefuses(t *testing.T) {
	child := uuid.MustParse("0b0b0b0b-0000-4000-8000-000000000001")
	acct := uuid.MustParse("0a0a0a0a-0000-4000-8000-000000000001")
	good := encode(nil, []source{{key: 1, from: ut(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))}})
	facts := domain.AccountFacts{Kind: domain.KindFosterCarer, ActivatedAt: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)}
	mk := func(mod func(*snapAccount)) []snapAccount {
		sa := snapAccount{ID: acct, Known: true, Facts: facts, Pairs: []snapPair{{Child: child, Sources: good}}}
		mod(&sa)
		return []snapAccount{sa}
	}
	_, _, n, known, err := restoreFold(mk(func(*snapAccount) {}))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, known)
	for name, sas := range map[string][]snapAccount{
		"an account twice":     append(mk(func(*snapAccount) {}), mk(func(*snapAccount) {})...),
		"pairs twice":          mk(func(sa *snapAccount) { sa.Pairs = append(sa.Pairs, sa.Pairs[0]) }),
		"sources cut short":    mk(func(sa *snapAccount) { sa.Pairs[0].Sources = good[:len(good)-1] }),
		"sources with garbage": mk(func(sa *snapAccount) { sa.Pairs[0].Sources = append(bytes.Clone(good), 0x01) }),
		"counts wrong":         mk(func(sa *snapAccount) { s := bytes.Clone(good); s[0] = 2; sa.Pairs[0].Sources = s }),
		"an unknown kind":      mk(func(sa *snapAccount) { sa.Facts.Kind = "wizard" }),
		"bad permissions": mk(func(sa *snapAccount) {
			sa.Pairs[0].Sources = encode(nil, []source{{flags: srcGrant, perms: 0x80, from: 5}})
		}),
	} {
		_, _, _, _, err := restoreFold(sas)
		require.ErrorIs(t, err, ErrSnapshotCorrupt, name)
	}
}

// TestFindPair: findPair orders children as bytes.Compare does, and finds
// each one, or where it goes.
func TestFindPair(t *testing.T) {
	ids := []uuid.UUID{
		{0x00, 1}, {0x00, 2}, {0x7f, 0xff, 0, 0, 0, 0, 0, 0, 9}, {0x80}, {0x80, 0, 0, 0, 0, 0, 0, 0, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	var pairs []pairState
	for _, id := range ids {
		pairs = append(pairs, newPair(id))
	}
	for i, id := range ids {
		j, ok := findPair(pairs, id)
		require.True(t, ok, "%s", id)
		require.Equal(t, i, j)
		require.Zero(t, bytes.Compare(pairs[j].enc[:16], id[:]))
	}
	for _, id := range []uuid.UUID{{}, {0x00, 1, 1}, {0x7f, 0xff, 0, 0, 0, 0, 0, 0, 10}, {0xff}} {
		j, ok := findPair(pairs, id)
		require.False(t, ok, "%s", id)
		want := 0
		for want < len(ids) && bytes.Compare(ids[want][:], id[:]) < 0 {
			want++
		}
		require.Equal(t, want, j, "%s", id)
	}
	j, ok := findPair(nil, ids[0])
	require.False(t, ok)
	require.Zero(t, j)
}
