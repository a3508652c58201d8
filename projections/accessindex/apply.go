package accessindex

import (
	"fmt"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/snapshotfile"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// Apply folds records, which must follow every record applied so far in
// global order, into the index. Each record becomes visible to readers
// atomically with its position. Waiters (WaitFor, Changes) are woken once,
// after the last record.
//
// Apply is meant to be called by one goroutine (Run's, or a test's); calls
// from several goroutines are serialized but must still bring records in
// order. When a record cannot be applied (accessmodel.ErrApply: the log
// contradicts itself, or a record is out of order) the records before it
// stay applied and the index stops: this and every later Apply return the
// error, and the index keeps answering at the position it reached. Start a
// new Index to recover.
func (ix *Index) Apply(recs ...eventlog.Record) error {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	if ix.err != nil {
		return fmt.Errorf("accessindex: stopped by an earlier failure: %w", ix.err)
	}
	n := 0
	defer func() {
		if n > 0 {
			ix.wake()
		}
	}()
	for _, rec := range recs {
		if err := ix.apply(rec); err != nil {
			ix.err = err
			return err
		}
		n++
	}
	return nil
}

// apply folds one record: decoding outside the lock, then the fold (the
// state, the change buffer, the notes) and the position under it, so that
// readers see the record whole with its position.
func (ix *Index) apply(rec eventlog.Record) error {
	if ix.applied > 0 && !ix.pos.Before(rec.Position) { // only this goroutine writes pos
		return fmt.Errorf("accessindex: %w: position %s after %s", accessmodel.ErrApply, rec.Position, ix.pos)
	}
	env, err := domain.DecodeRecord(rec)
	if err != nil {
		return fmt.Errorf("accessindex: %w: %w", accessmodel.ErrApply, err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if err := ix.fold(rec, env); err != nil {
		return err
	}
	ix.last = snapshotfile.RecordOf(&rec, ix.pos)
	if erasesPersonalData(env.Event) {
		ix.erasures++
	}
	ix.pos = rec.Position
	ix.applied++
	if ix.targetSet && !ix.isReady && !ix.pos.Before(ix.target) {
		if !ix.packed || ix.applied-ix.packedAt > uint64(ix.npairs)/8 {
			ix.compact() // the replay's state, packed once
		}
		ix.isReady = true
		close(ix.ready)
	}
	return nil
}

// wake closes the notify channel and replaces it.
func (ix *Index) wake() {
	ix.mu.Lock()
	close(ix.notify)
	ix.notify = make(chan struct{})
	ix.mu.Unlock()
}
