package reseal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

var (
	// ErrNotResumable: the destination's log is not empty and is not the
	// beginning of this copy (another log, another source, or more events
	// than the source holds). Nothing is appended to it.
	ErrNotResumable = errors.New("reseal: the destination's event log is not empty and is not an interrupted copy of this source")
	// ErrMismatch: the destination's log, opened, differs from the source's.
	ErrMismatch = errors.New("reseal: the destination differs from the source")
)

// Source is the log copied from. Nothing is appended to it.
type Source struct {
	// Log is the source log through its personal-data layer: sealed values
	// opened, an erased subject's as domain.ErasedText.
	Log eventlog.Store
	// Stored is the same log as stored (the layer's inner store).
	Stored eventlog.Store
}

// Keys is what the copy needs of the destination's key store.
type Keys interface {
	// Find returns the subject's key: keystore.ErrNoKey when it has none,
	// keystore.ErrErased once erased.
	Find(ctx context.Context, s keystore.Subject) ([]byte, error)
}

// Destination is the log copied into.
type Destination struct {
	// Log is the destination's personal-data layer: it seals what the copy
	// appends under the destination's subject keys; Log.Inner() is the log
	// as stored.
	Log *personaldata.Store
	// Keys is the key store under Log.
	Keys Keys
	// IDs names identity streams in the destination (its master key's).
	IDs *domain.KeyedIDs
}

// Defaults of CopyOptions.
const (
	DefaultPageSize  = 1000
	DefaultBatchSize = 500
)

// CopyOptions tune Copy; the zero value is the defaults.
type CopyOptions struct {
	// PageSize is how many records one read returns.
	PageSize int
	// BatchSize bounds the events of one write: of one append, or of one
	// transaction of the SQL store's AppendBatch.
	BatchSize int
	// OneStreamPerWrite appends each run of one stream on its own
	// (eventlog.Store.Append), even to a store that can write runs of many
	// streams in one transaction (sqlstore.Store.AppendBatch).
	OneStreamPerWrite bool
	// Progress, when set, is called after each append with the events
	// done (verified or copied) and the source's total.
	Progress func(done, total uint64)
}

func (o CopyOptions) withDefaults() CopyOptions {
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	return o
}

// CopyResult is what Copy did.
type CopyResult struct {
	// Total is the source's events; Verified how many the destination held
	// already (an interrupted copy, checked event by event) and Copied
	// how many this run appended. Writes counts the appends (or the
	// transactions, when runs of many streams are written in one).
	Total, Verified, Copied, Writes int64
	// Elapsed is the copy's time (the reading of the source included).
	Elapsed time.Duration
	Stats
}

// scan reads the stored source once: its events and the subjects its
// erasures erase.
func scan(ctx context.Context, stored eventlog.Store, page int) (map[keystore.Subject]bool, int64, error) {
	erased := map[keystore.Subject]bool{}
	var n int64
	c := newCursor(stored, page)
	for {
		r, ok, err := c.next(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("reseal: read the source: %w", err)
		}
		if !ok {
			return erased, n, nil
		}
		n++
		if !isErasure(r.Type) {
			continue
		}
		subj, err := personaldata.SubjectOf(r.Stream, r.Data)
		if err != nil {
			return nil, 0, fmt.Errorf("reseal: erasure %s at %s: %w", r.ID, r.Position, err)
		}
		erased[subj] = true
	}
}

// Copy copies the source log into the destination in global order: each
// event keeps its id, type, stream version, data and metadata; the sealing
// layer seals its personal values under the destination's keys. Runs of
// consecutive events of one stream go in one append, at the exact
// expected version; on the SQL store, runs of many streams go in one
// transaction (sqlstore.Store.AppendBatch, up to opts.BatchSize events),
// in order.
//
// Identity streams are renamed to the destination's keyed name of the
// subject they link (domain.KeyedIDs.IdentityStream), so that no stream
// name can be computed from a subject; one whose subject reads as erased
// keeps its name. Account and child ids, and so their streams, are kept.
//
// Subjects the source records erasures of stay erased: their keys are
// erased in the destination before anything is copied, and their events
// are appended as stored with stand-ins (domain.ErasedText) for every
// personal value and reason (erasures keep theirs), also for values the
// source still holds in plain text: no key is made for them.
//
// A destination that already holds events must hold the beginning of
// this copy (an interrupted run): each of its events is checked against
// the source's, then the copy goes on after them. Anything else fails with
// ErrNotResumable before anything is appended. Since each write is
// atomic, a run stopped at any point (a cancelled context, a killed
// process) leaves a beginning that the next run resumes from, losing and
// repeating nothing.
func Copy(ctx context.Context, src Source, dst Destination, opts CopyOptions) (CopyResult, error) {
	started := time.Now()
	opts = opts.withDefaults()
	erased, total, err := scan(ctx, src.Stored, opts.PageSize)
	if err != nil {
		return CopyResult{}, err
	}
	res := CopyResult{Total: total}
	p := newPlan(dst.IDs, erased)
	srcCur := newCursor(src.Log, opts.PageSize)
	dstCur := newCursor(dst.Log, opts.PageSize)
	resuming := true
	w := newWriter(dst.Log, opts)
	var b batch
	report := func() {
		if opts.Progress != nil {
			done := uint64(res.Verified + res.Copied)
			opts.Progress(done, max(uint64(res.Total), done))
		}
	}
	wrote := func(events, writes int) {
		res.Copied += int64(events)
		res.Writes += int64(writes)
		if writes > 0 {
			report()
		}
	}
	// flush hands the run b to the writer, which writes when it has
	// enough.
	flush := func(final bool) error {
		if len(b.events) > 0 {
			events, writes, err := w.add(ctx, b)
			wrote(events, writes)
			if err != nil {
				return err
			}
			b = batch{}
		}
		if !final {
			return nil
		}
		events, writes, err := w.flush(ctx)
		wrote(events, writes)
		return err
	}
	for {
		r, ok, err := srcCur.next(ctx)
		if err != nil {
			return res, fmt.Errorf("reseal: read the source: %w", err)
		}
		if !ok {
			break
		}
		st, err := p.step(r)
		if err != nil {
			return res, err
		}
		if resuming {
			got, ok, err := dstCur.next(ctx)
			if err != nil {
				return res, fmt.Errorf("reseal: read the destination: %w", err)
			}
			if ok {
				if err := st.check(got); err != nil {
					return res, fmt.Errorf("%w: its event %d differs from the source's: %w", ErrNotResumable, res.Verified+1, err)
				}
				res.Verified++
				if res.Verified%int64(opts.PageSize) == 0 {
					report()
				}
				continue
			}
			resuming = false
			// Erase the erased subjects' keys before anything of theirs
			// is copied (again, after an interrupted run: once is enough,
			// more is harmless).
			if err := eraseAll(ctx, dst.Log, erased); err != nil {
				return res, err
			}
			report()
		}
		if !b.takes(st, opts.BatchSize) {
			if err := flush(false); err != nil {
				return res, err
			}
		}
		b.add(st)
	}
	if err := flush(true); err != nil {
		return res, err
	}
	if resuming {
		if _, more, err := dstCur.next(ctx); err != nil {
			return res, fmt.Errorf("reseal: read the destination: %w", err)
		} else if more {
			return res, fmt.Errorf("%w: it holds more events than the source's %d", ErrNotResumable, res.Total)
		}
		if err := eraseAll(ctx, dst.Log, erased); err != nil {
			return res, err
		}
	}
	res.Stats = p.stats
	res.Elapsed = time.Since(started)
	report()
	return res, nil
}

// batch is a run of consecutive events of one destination stream, all
// sealed or all appended as stored.
type batch struct {
	stream  string
	erased  bool
	first   uint64 // the stream version of the first event
	events  []eventlog.EventData
	lastSrc eventlog.Record
}

func (b *batch) takes(st step, limit int) bool {
	return len(b.events) == 0 || (b.stream == st.stream && b.erased == st.erased && len(b.events) < limit &&
		st.version() == b.first+uint64(len(b.events)))
}

func (b *batch) add(st step) {
	if len(b.events) == 0 {
		b.stream, b.erased, b.first = st.stream, st.erased, st.version()
	}
	b.events = append(b.events, st.event)
	b.lastSrc = st.src
}

// batchAppender is a store that writes appends to many streams in one
// transaction (the SQL store).
type batchAppender interface {
	AppendBatch(ctx context.Context, batch []sqlstore.StreamAppend) ([]eventlog.AppendResult, error)
}

// writer writes the runs of a copy, each at its exact expected version:
// sealed through the layer, or as stored for an erased subject. With a
// store that has AppendBatch it gathers runs and writes them together,
// up to BatchSize events in one transaction; else one append per run.
type writer struct {
	log     *personaldata.Store
	bulk    batchAppender // nil: one append per run
	limit   int
	pending []sqlstore.StreamAppend
	runs    []batch
	events  int
}

func newWriter(log *personaldata.Store, opts CopyOptions) *writer {
	w := &writer{log: log, limit: opts.BatchSize}
	if b, ok := log.Inner().(batchAppender); ok && !opts.OneStreamPerWrite {
		w.bulk = b
	}
	return w
}

// add writes the run b, or keeps it for the next transaction; it returns
// the events written and the writes made.
func (w *writer) add(ctx context.Context, b batch) (int, int, error) {
	if w.bulk == nil {
		var to eventlog.Store = w.log
		if b.erased {
			to = w.log.Inner()
		}
		res, err := to.Append(ctx, b.stream, b.expected(), b.events)
		if err != nil {
			return 0, 0, b.failed(err)
		}
		if err := b.check(res); err != nil {
			return 0, 0, err
		}
		return len(b.events), 1, nil
	}
	events := b.events
	if !b.erased {
		var err error
		if events, err = w.log.Seal(ctx, b.stream, b.events); err != nil {
			return 0, 0, b.failed(err)
		}
	}
	w.pending = append(w.pending, sqlstore.StreamAppend{Stream: b.stream, Expected: b.expected(), Events: events})
	w.runs = append(w.runs, b)
	w.events += len(events)
	if w.events < w.limit {
		return 0, 0, nil
	}
	return w.flush(ctx)
}

// flush writes the runs kept, in one transaction.
func (w *writer) flush(ctx context.Context) (int, int, error) {
	if len(w.pending) == 0 {
		return 0, 0, nil
	}
	results, err := w.bulk.AppendBatch(ctx, w.pending)
	if err != nil {
		if be, ok := errors.AsType[*sqlstore.BatchError](err); ok && be.Index < len(w.runs) {
			return 0, 0, w.runs[be.Index].failed(err)
		}
		return 0, 0, fmt.Errorf("reseal: write %d event(s) of %d stream(s): %w", w.events, len(w.pending), err)
	}
	for i, res := range results {
		if err := w.runs[i].check(res); err != nil {
			return 0, 0, err
		}
	}
	n := w.events
	w.pending, w.runs, w.events = nil, nil, 0
	return n, 1, nil
}

func (b *batch) expected() eventlog.ExpectedVersion { return eventlog.Exactly(b.first - 1) }

func (b *batch) failed(err error) error {
	return fmt.Errorf("reseal: append %d event(s) to %s at version %d (source position %s): %w",
		len(b.events), b.stream, b.first, b.lastSrc.Position, err)
}

// check requires the stream to be where the run's last event puts it.
func (b *batch) check(res eventlog.AppendResult) error {
	if want := b.first + uint64(len(b.events)) - 1; res.Version != want {
		return fmt.Errorf("reseal: append to %s: the stream is at version %d, want %d (source position %s)",
			b.stream, res.Version, want, b.lastSrc.Position)
	}
	return nil
}

// eraseAll erases the keys of subjects in the destination.
func eraseAll(ctx context.Context, log *personaldata.Store, subjects map[keystore.Subject]bool) error {
	for s := range subjects {
		if err := erase(ctx, log, s); err != nil {
			return err
		}
	}
	return nil
}

func erase(ctx context.Context, log *personaldata.Store, s keystore.Subject) error {
	kind, id, _ := strings.Cut(string(s), ":")
	u, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("reseal: erase %s: %w", s, keystore.ErrBadSubject)
	}
	switch kind {
	case "account":
		err = log.EraseAccount(ctx, u)
	case "child":
		err = log.EraseChild(ctx, u)
	default:
		err = keystore.ErrBadSubject
	}
	if err != nil {
		return fmt.Errorf("reseal: erase %s in the destination: %w", s, err)
	}
	return nil
}

// CompareResult is what Compare found.
type CompareResult struct {
	// Events is how many events both logs hold.
	Events int64
	// Erased lists the subjects the source records erasures of.
	Erased []keystore.Subject
}

// Compare reads both logs, opened, side by side and requires the
// destination to be what Copy makes of the source, event by event: the
// same ids, stream versions, types, metadata and data (as JSON values),
// identity streams under their keyed names, an erased subject's values
// as stand-ins; and the same number of events. A difference fails with
// an error wrapping ErrMismatch that names the first one.
func Compare(ctx context.Context, src Source, dst Destination, pageSize int) (CompareResult, error) {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	erased, _, err := scan(ctx, src.Stored, pageSize)
	if err != nil {
		return CompareResult{}, err
	}
	var res CompareResult
	for s := range erased {
		res.Erased = append(res.Erased, s)
	}
	p := newPlan(dst.IDs, erased)
	srcCur, dstCur := newCursor(src.Log, pageSize), newCursor(dst.Log, pageSize)
	for {
		r, ok, err := srcCur.next(ctx)
		if err != nil {
			return res, fmt.Errorf("reseal: read the source: %w", err)
		}
		got, more, err := dstCur.next(ctx)
		if err != nil {
			return res, fmt.Errorf("reseal: read the destination: %w", err)
		}
		switch {
		case !ok && !more:
			return res, nil
		case !ok:
			return res, fmt.Errorf("%w: the source ends after %d events, the destination goes on (event %s at %s)",
				ErrMismatch, res.Events, got.ID, got.Position)
		case !more:
			return res, fmt.Errorf("%w: the destination ends after %d events, the source goes on (event %s at %s)",
				ErrMismatch, res.Events, r.ID, r.Position)
		}
		st, err := p.step(r)
		if err != nil {
			return res, err
		}
		if err := st.check(got); err != nil {
			return res, err
		}
		res.Events++
	}
}

// VerifySealed counts the events of the destination, as stored, that hold
// personal data in plain text (personaldata.CountPlain: none, after a
// copy), and requires every subject in erased to have no key there.
func VerifySealed(ctx context.Context, dst Destination, erased []keystore.Subject) (plain, total int64, err error) {
	plain, total, err = personaldata.CountPlain(ctx, dst.Log.Inner())
	if err != nil {
		return 0, 0, fmt.Errorf("reseal: read the destination: %w", err)
	}
	for _, s := range erased {
		if _, err := dst.Keys.Find(ctx, s); !errors.Is(err, keystore.ErrErased) {
			if err == nil {
				return plain, total, fmt.Errorf("reseal: erased subject %s has a key in the destination", s)
			}
			return plain, total, fmt.Errorf("reseal: erased subject %s: want its key erased in the destination: %w", s, err)
		}
	}
	return plain, total, nil
}

// cursor reads a log in global order, a page at a time.
type cursor struct {
	log   eventlog.Store
	page  int
	after eventlog.Position
	buf   []eventlog.Record
	done  bool
}

func newCursor(log eventlog.Store, page int) *cursor { return &cursor{log: log, page: page} }

// next returns the next record; ok is false at the end of the log.
func (c *cursor) next(ctx context.Context) (eventlog.Record, bool, error) {
	if len(c.buf) == 0 && !c.done {
		recs, err := c.log.ReadAll(ctx, c.after, c.page)
		if err != nil {
			return eventlog.Record{}, false, err
		}
		c.buf, c.done = recs, len(recs) < c.page
		if len(recs) > 0 {
			c.after = recs[len(recs)-1].Position
		}
	}
	if len(c.buf) == 0 {
		return eventlog.Record{}, false, nil
	}
	r := c.buf[0]
	c.buf = c.buf[1:]
	return r, true, nil
}
