package sqlstore

import (
	"sync"
	"sync/atomic"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// The log's tail in memory: every subscriber of a busy engine (the read
// models, the access index, the process manager, the relays) used to read
// the same few new events from the database after each append, one query
// each, and on SQLite each query after a write also re-read pages another
// connection had changed. The appender already holds those events: after a
// commit it keeps them here (the last tailMaxRecords of them), and
// Subscribe takes from here what it can.
//
// The tail holds committed events only, in position order and without
// gaps, so it answers a read after P exactly as the database would, up to
// the last event it holds: it is added to after the commit and before the
// subscribers are woken, and positions are dense and commit in order (see
// "Global order"). Events appended by another process (or another Store on
// PostgreSQL) are not in it: an append that does not follow on from the
// tail's last event starts the tail afresh, and a read the tail cannot
// start answering goes to the database. The stored log never changes, so
// what the tail holds never goes stale. Only Subscribe reads it; ReadAll,
// and so every verification of the stored log, reads the database.

const (
	// tailMaxRecords bounds the events kept, tailMaxBytes their size.
	tailMaxRecords = 4096
	tailMaxBytes   = 8 << 20
)

// tail is the last events committed through the Stores of a shared state.
type tail struct {
	mu    sync.Mutex
	recs  []eventlog.Record // recs[i].Position.Commit == recs[0].Position.Commit + i
	bytes int
	// hits counts the reads the tail answered (tests read it).
	hits atomic.Int64
}

// add keeps rows, the events a transaction has just committed, whose
// positions run on from prev (the position before the first of them). It
// copies what it keeps.
func (t *tail) add(prev int64, rows []eventRow) {
	if len(rows) == 0 {
		return
	}
	if len(rows) > tailMaxRecords {
		prev += int64(len(rows) - tailMaxRecords)
		rows = rows[len(rows)-tailMaxRecords:]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.recs); n == 0 || int64(t.recs[n-1].Position.Commit) != prev {
		t.recs, t.bytes = t.recs[:0], 0 // another writer's events lie between: start afresh
	}
	for i := range rows {
		r := &rows[i]
		if r.Position != prev+1+int64(i) {
			// Not dense as promised: keep nothing rather than a gap.
			t.recs, t.bytes = t.recs[:0], 0
			return
		}
		t.recs = append(t.recs, eventlog.Record{
			ID:       r.EventID,
			Stream:   r.Stream,
			Version:  uint64(r.StreamVersion),
			Position: eventlog.At(uint64(r.Position)),
			Type:     r.Type,
			Data:     append([]byte(nil), r.Data...),
			Meta: eventlog.Meta{
				ActorID:       r.ActorID,
				ActorRole:     r.ActorRole,
				Reason:        r.Reason,
				EffectiveAt:   r.EffectiveAt.UTC(),
				RecordedAt:    r.RecordedAt.UTC(),
				CorrelationID: r.CorrelationID,
				CausationID:   r.CausationID,
			},
		})
		t.bytes += r.size()
	}
	drop := max(len(t.recs)-tailMaxRecords, 0)
	for i := range drop {
		t.bytes -= recordSize(&t.recs[i])
	}
	for drop < len(t.recs)-1 && t.bytes > tailMaxBytes {
		t.bytes -= recordSize(&t.recs[drop])
		drop++
	}
	if drop > 0 {
		kept := t.recs[drop:]
		if drop >= len(kept) {
			// Move the rest to a new array once the dropped part is as
			// long as the kept one, so that the old events are let go.
			kept = append(make([]eventlog.Record, 0, 2*len(kept)), kept...)
		}
		t.recs = kept
	}
}

// read returns up to limit (at least one) of the events after position
// after, and true, when the tail holds the first of them; otherwise false.
// The records are the caller's own (their Data copied).
func (t *tail) read(after uint64, limit int) ([]eventlog.Record, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.recs)
	if n == 0 {
		return nil, false
	}
	first := t.recs[0].Position.Commit
	if after+1 < first || after >= first+uint64(n)-1 {
		return nil, false
	}
	from := int(after + 1 - first)
	to := n
	if limit > 0 {
		to = min(n, from+limit)
	}
	out := make([]eventlog.Record, to-from)
	copy(out, t.recs[from:to])
	for i := range out {
		out[i].Data = append([]byte(nil), out[i].Data...)
	}
	t.hits.Add(1)
	return out, true
}

// recordSize is eventRow.size of the row rec was made from.
func recordSize(rec *eventlog.Record) int {
	return len(rec.Data) + len(rec.Stream) + len(rec.Type) + len(rec.Meta.ActorID) + len(rec.Meta.ActorRole) + len(rec.Meta.Reason) + 256
}
