package accesshistory

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/nationtest"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// TestNationScaleHistoryFold measures the access history's in-memory fold
// (the model with provenance, and each pair's current rows: what every
// replica running the projections holds) at nation scale without a store:
// the generator streams its appends straight into the fold, whose writes
// are dropped (nationtest). It reports the fold's heap per pair and its
// snapshot's size, write time and load time (decoding, the model's
// restore and the rows' map), the figures of docs/performance.md's nation
// section.
func TestNationScaleHistoryFold(t *testing.T) {
	sc, regions := nationtest.Scale(t)
	p := New()
	p.model, p.rows, p.nextID = accessmodel.New(), map[accessmodel.Pair][]keptRow{}, 1
	var inserts, supersedes int
	f := nationtest.Fold(t, sc, func(recs []eventlog.Record) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		w, err := p.fold(recs)
		inserts += len(w.inserts)
		supersedes += len(w.supersedes)
		return err
	}, nil)
	pairs := len(p.rows)
	t.Logf("nation history fold: regions=%d events=%d pairs=%d rows inserted=%d supersedes=%d elapsed=%s rate=%.0f events/s heap=%d MiB heap/pair=%d B",
		regions, f.Summary.Events, pairs, inserts, supersedes, f.Elapsed.Round(time.Millisecond), float64(f.Summary.Events)/f.Elapsed.Seconds(),
		f.Heap>>20, f.Heap/int64(max(pairs, 1)))
	require.EqualValues(t, f.Summary.Events, p.model.Applied())
	nationtest.WriteHeapProfile(t)

	dir := t.TempDir()
	p.Committed(p.model.Position())
	w, err := p.WriteSnapshot(context.Background(), dir)
	require.NoError(t, err)
	started := time.Now()
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	require.NoError(t, err)
	pl, err := decodeSnapshot(data)
	require.NoError(t, err)
	m, err := accessmodel.Restore(pl.Model)
	require.NoError(t, err)
	rows := pl.rows()
	load := time.Since(started)
	t.Logf("nation history snapshot: pairs=%d bytes=%d (%d B/pair) write=%s (fold held %s) load=%s",
		w.Pairs, w.Bytes, int64(w.Bytes)/int64(max(w.Pairs, 1)), w.Elapsed.Round(time.Millisecond), w.Capture.Round(time.Millisecond),
		load.Round(time.Millisecond))
	require.Len(t, rows, pairs)
	require.Equal(t, p.model.Applied(), m.Applied())
}
