package sqlstore

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// rowsAt returns n rows at positions from, from+1, ... with data of size
// bytes each.
func rowsAt(from int64, n, size int) []eventRow {
	rows := make([]eventRow, n)
	for i := range rows {
		rows[i] = eventRow{Position: from + int64(i), EventID: uuid.New(), Stream: "s", StreamVersion: int64(i + 1),
			Type: "t", Data: json.RawMessage(`"` + strings.Repeat("x", max(size-2, 0)) + `"`)}
	}
	return rows
}

func positions(t *testing.T, tl *tail, after uint64, limit int) []uint64 {
	t.Helper()
	recs, ok := tl.read(after, limit)
	if !ok {
		return nil
	}
	require.NotEmpty(t, recs)
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Position.Commit
	}
	return out
}

func TestTailReadsOnlyWhatItHoldsWithoutAGap(t *testing.T) {
	type add struct {
		prev int64
		n    int
	}
	tests := []struct {
		name  string
		adds  []add
		after uint64
		limit int
		want  []uint64 // nil: the tail does not answer
	}{
		{"empty", nil, 0, 10, nil},
		{"from the start", []add{{0, 3}}, 0, 10, []uint64{1, 2, 3}},
		{"from the middle", []add{{0, 3}}, 1, 10, []uint64{2, 3}},
		{"limit", []add{{0, 5}}, 1, 2, []uint64{2, 3}},
		{"caught up: the database may hold more", []add{{0, 3}}, 3, 10, nil},
		{"ahead of it", []add{{0, 3}}, 7, 10, nil},
		{"before it", []add{{10, 3}}, 9, 10, nil},
		{"right before its first", []add{{10, 3}}, 10, 10, []uint64{11, 12, 13}},
		{"appends that follow on", []add{{0, 2}, {2, 2}}, 1, 10, []uint64{2, 3, 4}},
		{"another writer's events between: starts afresh", []add{{0, 2}, {5, 2}}, 1, 10, nil},
		{"after the gap", []add{{0, 2}, {5, 2}}, 5, 10, []uint64{6, 7}},
		{"a batch larger than the tail keeps its end", []add{{0, tailMaxRecords + 5}}, 5, 1, []uint64{6}},
		{"and not its start", []add{{0, tailMaxRecords + 5}}, 4, 1, nil},
		{"the oldest dropped", []add{{0, tailMaxRecords}, {tailMaxRecords, 3}}, 2, 1, nil},
		{"the rest kept", []add{{0, tailMaxRecords}, {tailMaxRecords, 3}}, 3, 2, []uint64{4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tl tail
			for _, a := range tt.adds {
				tl.add(a.prev, rowsAt(a.prev+1, a.n, 10))
			}
			require.Equal(t, tt.want, positions(t, &tl, tt.after, tt.limit))
			require.LessOrEqual(t, len(tl.recs), tailMaxRecords)
		})
	}
}

func TestTailKeepsItsSizeBounded(t *testing.T) {
	var tl tail
	const size = 1 << 20 // 1 MiB an event: the bytes bound, not the count, trims
	for i := range 20 {
		tl.add(int64(i), rowsAt(int64(i+1), 1, size))
	}
	require.LessOrEqual(t, tl.bytes, tailMaxBytes)
	require.Less(t, len(tl.recs), 20)
	require.Equal(t, uint64(20), tl.recs[len(tl.recs)-1].Position.Commit, "the newest is kept")
	sum := 0
	for i := range tl.recs {
		sum += recordSize(&tl.recs[i])
	}
	require.Equal(t, sum, tl.bytes)

	// One event larger than the bound is still kept: the newest always is.
	tl.add(20, rowsAt(21, 1, 2*tailMaxBytes))
	require.Len(t, tl.recs, 1)
	require.Equal(t, []uint64{21}, positions(t, &tl, 20, 5))
}

func TestTailReadsAreTheCallersOwn(t *testing.T) {
	var tl tail
	rows := rowsAt(1, 2, 10)
	tl.add(0, rows)
	rows[0].Data[1] = 'y' // the appender's buffer changes after the add
	a, ok := tl.read(0, 0)
	require.True(t, ok)
	require.Equal(t, byte('x'), a[0].Data[1])
	a[0].Data[1] = 'z' // one reader changes what it got
	b, ok := tl.read(0, 0)
	require.True(t, ok)
	require.Equal(t, byte('x'), b[0].Data[1])
	require.Len(t, b, 2)
}
