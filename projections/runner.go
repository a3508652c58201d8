package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/retry"
)

// Errors of the runner.
var (
	// ErrStale: the stored tables of a projection were built by another
	// version of it (or some are missing) and the runner may not rebuild
	// them now: it rebuilds only when it starts, so that replicas running
	// two versions side by side (a rolling deploy) do not rebuild in turn.
	// The projection stops applying events until the process restarts or
	// accessd rebuild runs.
	ErrStale = errors.New("projections: tables built by another version of the projection")
	// ErrAlreadyRunning is returned by a second call of Runner.Run.
	ErrAlreadyRunning = errors.New("projections: runner already running")
)

// errReload ends a session so that the projection loads afresh from its
// checkpoint row at once: another process rebuilt it or moved it back.
var errReload = errors.New("projections: checkpoint changed, reload")

// Runner keeps SQL projections up to date with the event log. Create it
// with NewRunner, start it with Run; Status and Ready are safe to call from
// any goroutine.
//
// Each projection runs in its own goroutine, so a slow or failing one does
// not hold the others back. For each, the runner:
//
//  1. makes sure its checkpoint row, tables and views exist; when the stored
//     tables were built by another Version (or are missing) it rebuilds the
//     projection first (see Rebuild; only at start, see ErrStale);
//  2. calls Load at the checkpoint and, when Load asks for it, replays the
//     log up to the checkpoint through Replay (from the projection's
//     WarmStart, when it is a WarmStarter restored from a snapshot; else
//     from the start of the log);
//  3. catches up with ReadAll pages of the batch size, then follows the log
//     with Subscribe, putting whatever events have arrived (up to the batch
//     size) into one transaction; with WithLinger, what arrives within the
//     linger after the first of them too.
//
// Every batch transaction locks the checkpoint row first (see the package
// documentation). If another runner moved the checkpoint meanwhile, the
// batch's events up to the stored position go to Replay instead of Apply
// (a batch staged before the transaction, on SQLite: the state is loaded
// again, see stageAhead);
// if the projection was rebuilt (the row's generation changed), the runner
// goes back to step 2 on the new tables. When Load, Replay, Apply, a read or
// the commit fails, the runner logs the error, waits (WithRetryBackoff) and
// goes back to step 2: the projection's state is discarded and no event is
// ever skipped.
type Runner struct {
	db      *bun.DB
	log     Log
	cfg     config
	workers []*worker

	running   atomic.Bool
	readyMu   sync.Mutex
	readyLeft int
	ready     chan struct{}
}

// NewRunner returns a Runner of projections ps on db, fed by log. db must
// hold the runner's table (Migrations); the projections' own tables are
// created by Run. Projection names must be distinct, as must their tables'
// logical names, which must be valid (see Table.Name) and must not look
// like physical names (ending in _g and digits).
func NewRunner(db *bun.DB, log Log, ps []Projection, opts ...Option) (*Runner, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := validate(db, log, ps); err != nil {
		return nil, err
	}
	r := &Runner{db: db, log: log, cfg: cfg, readyLeft: len(ps), ready: make(chan struct{})}
	for _, p := range ps {
		wlog := log
		if l, ok := cfg.logs[p.Name()]; ok {
			wlog = l
		}
		r.workers = append(r.workers, &worker{r: r, p: p, name: p.Name(), log: wlog})
	}
	if len(ps) == 0 {
		close(r.ready)
	}
	return r, nil
}

var projectionName = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,99}$`)

// validate checks the arguments common to NewRunner and Rebuild.
func validate(db *bun.DB, log Log, ps []Projection) error {
	var problems []error
	if db == nil {
		problems = append(problems, errors.New("db is nil"))
	}
	if log == nil {
		problems = append(problems, errors.New("log is nil"))
	}
	names := map[string]bool{}
	tables := map[string]string{}
	for i, p := range ps {
		if p == nil {
			problems = append(problems, fmt.Errorf("projection %d is nil", i))
			continue
		}
		name := p.Name()
		if !projectionName.MatchString(name) {
			problems = append(problems, fmt.Errorf("projection name %q is not ^[a-z][a-z0-9_.-]{0,99}$", name))
		}
		if names[name] {
			problems = append(problems, fmt.Errorf("projection %q appears twice", name))
		}
		names[name] = true
		for _, t := range p.Tables() {
			switch {
			case !validIdent(t.Name):
				problems = append(problems, fmt.Errorf("projection %s: table name %q is not a lower-case identifier of at most 40 characters", name, t.Name))
			case hasGenerationSuffix(t.Name):
				problems = append(problems, fmt.Errorf("projection %s: table name %q ends like a physical table (_g<N>)", name, t.Name))
			case tables[t.Name] != "":
				problems = append(problems, fmt.Errorf("projection %s: table %q is also declared by %s", name, t.Name, tables[t.Name]))
			case t.Create == nil:
				problems = append(problems, fmt.Errorf("projection %s: table %q has no Create", name, t.Name))
			}
			tables[t.Name] = name
		}
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	return nil
}

// Run runs every projection until ctx is done, then waits for their
// goroutines to stop and returns nil. Failures of a projection are logged,
// reported by Status and retried; they do not end Run. Run may be called
// once; a second call returns ErrAlreadyRunning.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(func() { w.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Status is the state of one projection.
type Status struct {
	Name string
	// Generation is the generation of the tables the projection writes.
	Generation int64
	// Position is the last event applied (or replayed, when another runner
	// applied it).
	Position eventlog.Position
	// Head is the last position of the log the runner knows of: read at
	// each (re)start and raised by every event it reads. Appends it has not
	// read yet are not in it.
	Head eventlog.Position
	// CaughtUp: the projection is loaded, healthy and has applied Head.
	CaughtUp bool
	// Lag is 0 when caught up, else how long ago the first event not yet
	// applied was recorded (Meta.RecordedAt), as far as the runner has read
	// it; 0 when it has not read it yet.
	Lag time.Duration
	// Rebuilding: the runner is rebuilding the projection (at start, for a
	// new version).
	Rebuilding bool
	// LastError is the error of the last failed attempt, nil once a batch
	// succeeds again or the projection has caught up after a restart;
	// LastErrorAt is when it happened.
	LastError   error
	LastErrorAt time.Time
}

// Status returns the state of every projection, in the order given to
// NewRunner.
func (r *Runner) Status() []Status {
	now := r.cfg.clock()
	out := make([]Status, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, w.status(now))
	}
	return out
}

// Ready returns a channel that is closed once every projection has caught
// up with the head of the log it read when it started (after any rebuild and
// warm-up). It stays closed afterwards, even if a projection falls behind
// or fails later: see Status for that.
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// WaitCaughtUp waits until Ready is closed or ctx is done (returning
// ctx.Err()).
func (r *Runner) WaitCaughtUp(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Runner) oneReady() {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	r.readyLeft--
	if r.readyLeft == 0 {
		close(r.ready)
	}
}

// worker runs one projection.
type worker struct {
	r    *Runner
	p    Projection
	name string
	// log is what the projection reads: the runner's, or the one
	// WithLogFor gave it.
	log Log

	// Owned by the worker's goroutine.
	initialized bool // the start-up check (and rebuild) has passed
	progressed  bool // a batch succeeded in this session
	gen         int64
	pos         eventlog.Position
	tables      Tables

	mu sync.Mutex
	st workerState
}

// workerState is what Status reports, guarded by worker.mu.
type workerState struct {
	gen          int64
	pos          eventlog.Position
	head         eventlog.Position
	loaded       bool
	rebuilding   bool
	pendingSince time.Time
	lastErr      error
	lastErrAt    time.Time
	startHead    eventlog.Position
	haveStart    bool
	ready        bool
}

func (w *worker) status(now time.Time) Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{
		Name:        w.name,
		Generation:  w.st.gen,
		Position:    w.st.pos,
		Head:        w.st.head,
		Rebuilding:  w.st.rebuilding,
		LastError:   w.st.lastErr,
		LastErrorAt: w.st.lastErrAt,
	}
	s.CaughtUp = w.st.loaded && !w.st.pos.Before(w.st.head)
	if !s.CaughtUp && !w.st.pendingSince.IsZero() {
		s.Lag = max(now.Sub(w.st.pendingSince), 0)
	}
	return s
}

// run runs sessions until ctx is done, backing off after failures.
func (w *worker) run(ctx context.Context) {
	cfg := &w.r.cfg
	waits := retry.Exponential(cfg.minBackoff, cfg.maxBackoff)
	for {
		w.progressed = false
		err := w.session(ctx)
		w.mu.Lock()
		w.st.loaded = false
		w.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReload) {
			cfg.logger.InfoContext(ctx, "projections: checkpoint changed by another process, reloading",
				slog.String("projection", w.name))
			continue
		}
		if w.progressed {
			waits.Reset()
		}
		wait := waits.Next()
		w.mu.Lock()
		w.st.lastErr, w.st.lastErrAt = err, cfg.clock()
		w.mu.Unlock()
		cfg.logger.ErrorContext(ctx, "projections: projection failed, retrying", slog.String("projection", w.name),
			slog.Any("error", err), slog.Duration("retry_in", wait))
		if retry.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// session prepares and loads the projection, catches up and follows the log
// until an error or ctx ends it.
func (w *worker) session(ctx context.Context) error {
	r := w.r
	cp, stale, err := ensure(ctx, r.db, w.p, r.cfg.clock())
	if err != nil {
		return err
	}
	loaded := false
	if stale {
		if w.initialized {
			return fmt.Errorf("%s: %w (stored version %d, this version %d, generation %d): restart the engine or run accessd rebuild",
				w.name, ErrStale, cp.Version, w.p.Version(), cp.Generation)
		}
		res, err := w.rebuild(ctx)
		if err != nil {
			return err
		}
		if res.done {
			w.gen, w.pos, loaded = res.gen, res.pos, true
		} else if cp, _, err = ensure(ctx, r.db, w.p, r.cfg.clock()); err != nil {
			return err
		}
	}
	w.initialized = true
	dropOld(ctx, r.db, w.p, max(cp.Generation, w.gen), r.cfg.swapLockTimeout, r.cfg.logger)

	head, err := w.log.Head(ctx)
	if err != nil {
		return fmt.Errorf("%s: read head: %w", w.name, err)
	}
	w.mu.Lock()
	if !w.st.haveStart {
		w.st.startHead, w.st.haveStart = head, true
	}
	if w.st.head.Before(head) {
		w.st.head = head
	}
	w.mu.Unlock()

	if !loaded {
		if err := w.load(ctx, cp); err != nil {
			return err
		}
	}
	w.tables = tablesFor(w.p, w.gen)
	w.mu.Lock()
	// A retry at the same position waits for the same first event as the
	// failed session did: its lag goes on (Status does not drop to 0
	// between retries).
	var waiting *eventlog.Record
	if w.st.gen == w.gen && w.st.pos == w.pos && !w.st.pendingSince.IsZero() {
		waiting = &eventlog.Record{Meta: eventlog.Meta{RecordedAt: w.st.pendingSince}}
	}
	w.st.gen, w.st.pos, w.st.loaded = w.gen, w.pos, true
	w.mu.Unlock()
	w.committed()
	w.settled(waiting)

	// Catch up page by page.
	for {
		recs, err := w.log.ReadAll(ctx, w.pos, r.cfg.batch)
		if err != nil {
			return fmt.Errorf("%s: read log after %s: %w", w.name, w.pos, err)
		}
		if len(recs) == 0 {
			break
		}
		w.seen(recs)
		if err := w.apply(ctx, recs); err != nil {
			return err
		}
		w.settled(nil)
		if len(recs) < r.cfg.batch {
			break
		}
	}
	// Caught up: whatever failed before is behind us.
	w.mu.Lock()
	w.st.lastErr = nil
	w.mu.Unlock()
	return w.follow(ctx)
}

// rebuild rebuilds the projection at start, reporting it in Status.
func (w *worker) rebuild(ctx context.Context) (rebuilt, error) {
	w.mu.Lock()
	w.st.rebuilding = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.st.rebuilding = false
		w.mu.Unlock()
	}()
	lastTenth := uint64(0)
	progress := func(done, total uint64) {
		if total == 0 {
			return
		}
		if tenth := done * 10 / total; tenth > lastTenth {
			lastTenth = tenth
			w.r.cfg.logger.InfoContext(ctx, "projections: rebuilding", slog.String("projection", w.name),
				slog.Uint64("done", done), slog.Uint64("total", total))
		}
	}
	return rebuild(ctx, w.r.db, w.log, w.p, progress, w.r.cfg, false)
}

// load resets the projection to checkpoint cp and warms it up if it asks.
func (w *worker) load(ctx context.Context, cp checkpoint) error {
	w.gen, w.pos = cp.Generation, cp.Position
	tables := tablesFor(w.p, w.gen)
	warm, err := w.p.Load(ctx, w.r.db, tables, w.pos)
	if err != nil {
		return fmt.Errorf("%s: load at %s: %w", w.name, w.pos, err)
	}
	if warm {
		from := eventlog.Start
		if ws, ok := w.p.(WarmStarter); ok {
			from = ws.WarmStart()
		}
		if w.pos.Before(from) {
			return fmt.Errorf("%s: load at %s: the state was restored at %s, after the checkpoint", w.name, w.pos, from)
		}
		if err := w.replayTo(ctx, from, w.pos); err != nil {
			return fmt.Errorf("%s: warm-up: %w", w.name, err)
		}
	}
	return nil
}

// replayTo passes the records in (from, to] through Replay, reading the
// next page while one is replayed.
func (w *worker) replayTo(ctx context.Context, from, to eventlog.Position) error {
	cur := from
	if !cur.Before(to) {
		return nil
	}
	pages := readPages(ctx, w.log, from, to, max(w.r.cfg.batch, replayPageSize))
	defer pages.stop()
	for cur.Before(to) {
		recs, err := pages.next()
		if err != nil {
			return fmt.Errorf("read log after %s: %w", cur, err)
		}
		if len(recs) == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("the log ends at %s, before %s", cur, to)
		}
		n := upTo(recs, to)
		if n > 0 {
			if err := w.p.Replay(recs[:n]); err != nil {
				return fmt.Errorf("replay events %s..%s: %w", recs[0].Position, recs[n-1].Position, err)
			}
		}
		if n < len(recs) {
			break
		}
		cur = recs[n-1].Position
	}
	return nil
}

// upTo returns how many of recs (in order) are at or before p.
func upTo(recs []eventlog.Record, p eventlog.Position) int {
	n := 0
	for n < len(recs) && !p.Before(recs[n].Position) {
		n++
	}
	return n
}

// apply applies recs, the records right after w.pos, in transactions that
// check the checkpoint row first. Records another runner has applied
// meanwhile go to Replay instead.
func (w *worker) apply(ctx context.Context, recs []eventlog.Record) error {
	r := w.r
	for len(recs) > 0 {
		var moved *checkpoint
		staged, err := w.stageAhead(ctx, recs)
		if err != nil {
			return fmt.Errorf("%s: events %s..%s: stage: %w", w.name, recs[0].Position, recs[len(recs)-1].Position, err)
		}
		err = inTx(ctx, r.db, func(tx bun.Tx) error {
			cp, found, err := readCheckpoint(ctx, tx, w.name, true)
			if err != nil {
				return err
			}
			if !found {
				return errors.New("checkpoint row vanished")
			}
			switch {
			case cp.Version != int64(w.p.Version()):
				return fmt.Errorf("%w (stored version %d, this version %d, generation %d)",
					ErrStale, cp.Version, w.p.Version(), cp.Generation)
			case cp.Generation != w.gen, cp.Position.Before(w.pos):
				return errReload
			case w.pos.Before(cp.Position):
				if staged != nil {
					// The state is past recs already: it cannot replay
					// them. Load it again from the tables.
					return errReload
				}
				moved = &cp
				return errMoved
			}
			if staged != nil {
				if err := staged.Write(ctx, tx, w.tables); err != nil {
					return fmt.Errorf("write: %w", err)
				}
			} else if err := w.p.Apply(ctx, tx, w.tables, recs); err != nil {
				return fmt.Errorf("apply: %w", err)
			}
			if r.cfg.afterApply != nil {
				if err := r.cfg.afterApply(w.name, recs); err != nil {
					return err
				}
			}
			return updatePosition(ctx, tx, w.name, w.gen, recs[len(recs)-1].Position, r.cfg.clock())
		})
		if errors.Is(err, errMoved) {
			// Another runner applied events this one has not: catch up in
			// memory (outside the transaction: an in-memory SQLite database
			// has one connection, which the log needs too).
			if recs, err = w.skipTo(ctx, recs, moved.Position); err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			continue
		}
		if errors.Is(err, errReload) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%s: events %s..%s: %w", w.name, recs[0].Position, recs[len(recs)-1].Position, err)
		}
		w.pos = recs[len(recs)-1].Position
		w.progressed = true
		w.committed()
		w.mu.Lock()
		w.st.pos = w.pos
		w.st.lastErr = nil
		w.mu.Unlock()
		recs = nil
	}
	return nil
}

// stageAhead computes the writes of recs before apply's transaction, when
// the projection is a Stager on SQLite and its checkpoint is where w
// expects it: the transaction then holds SQLite's single write lock (and
// the write gate, which the commands' appends queue at) only for the
// inserts, not for the fold or the hashing too. It returns nil, with the
// state unchanged, when it stages nothing: on PostgreSQL (no file-wide
// lock; replicas sharing a database find the checkpoint moved often, and
// replay what they staged only from an unstaged state), or when the
// checkpoint has moved or cannot be read (the transaction then finds out
// and says so). After it has staged, the state is past recs: if the
// transaction does not commit, the runner loads the state again.
func (w *worker) stageAhead(ctx context.Context, recs []eventlog.Record) (Staged, error) {
	st, ok := w.p.(Stager)
	if !ok || isPG(w.r.db) {
		return nil, nil
	}
	cp, found, err := readCheckpoint(ctx, w.r.db, w.name, false)
	if err != nil || !found || cp.Version != int64(w.p.Version()) || cp.Generation != w.gen || cp.Position != w.pos {
		return nil, nil //nolint:nilerr // the transaction reads it again and reports what it finds
	}
	return st.Stage(recs)
}

// committed tells a Committer projection that its tables hold w.pos.
func (w *worker) committed() {
	if c, ok := w.p.(Committer); ok {
		c.Committed(w.pos)
	}
}

// errMoved: another runner moved the checkpoint ahead (internal to apply).
var errMoved = errors.New("checkpoint moved")

// skipTo replays the records up to target (those of recs, then the log's)
// and returns the records of recs after target.
func (w *worker) skipTo(ctx context.Context, recs []eventlog.Record, target eventlog.Position) ([]eventlog.Record, error) {
	n := upTo(recs, target)
	if n > 0 {
		if err := w.p.Replay(recs[:n]); err != nil {
			return nil, fmt.Errorf("replay events %s..%s: %w", recs[0].Position, recs[n-1].Position, err)
		}
		w.pos = recs[n-1].Position
	}
	if n == len(recs) {
		if err := w.replayTo(ctx, w.pos, target); err != nil {
			return nil, err
		}
	}
	w.pos = target
	w.mu.Lock()
	w.st.pos = w.pos
	if w.st.head.Before(target) {
		w.st.head = target
	}
	w.mu.Unlock()
	return recs[n:], nil
}

// seen records that recs, not yet applied, have been read.
func (w *worker) seen(recs []eventlog.Record) {
	if len(recs) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if last := recs[len(recs)-1].Position; w.st.head.Before(last) {
		w.st.head = last
	}
	if w.st.pendingSince.IsZero() {
		for _, rec := range recs {
			if w.st.pos.Before(rec.Position) {
				w.st.pendingSince = rec.Meta.RecordedAt
				break
			}
		}
	}
}

// settled updates the lag after a batch: next is the first record read and
// not yet applied, if any. It also marks the projection ready once it has
// reached the head it saw at start.
func (w *worker) settled(next *eventlog.Record) {
	w.mu.Lock()
	w.st.pendingSince = time.Time{}
	if next != nil {
		w.st.pendingSince = next.Meta.RecordedAt
	}
	becameReady := !w.st.ready && w.st.loaded && w.st.haveStart && !w.st.pos.Before(w.st.startHead)
	if becameReady {
		w.st.ready = true
	}
	w.mu.Unlock()
	if becameReady {
		w.r.oneReady()
	}
}

// follow subscribes to the log after w.pos and applies what arrives, in
// batches of whatever has arrived.
func (w *worker) follow(ctx context.Context) error {
	r := w.r
	sctx, cancel := context.WithCancel(ctx)
	q := newQueue(4 * r.cfg.batch)
	var subErr error
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		subErr = w.log.Subscribe(sctx, w.pos, func(ctx context.Context, rec eventlog.Record) error {
			w.seen([]eventlog.Record{rec})
			return q.push(ctx, rec)
		})
	}()
	defer func() {
		cancel()
		<-subDone
	}()
	for {
		recs, ok := q.take(ctx, r.cfg.batch, subDone)
		if ok {
			recs = q.linger(ctx, recs, r.cfg.batch, r.cfg.linger, subDone)
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%s: subscription ended: %w", w.name, subErr)
		}
		// Records another runner made this one replay are already done.
		recs = recs[upTo(recs, w.pos):]
		if len(recs) == 0 {
			continue
		}
		if err := w.apply(ctx, recs); err != nil {
			return err
		}
		next, ok := q.first()
		if ok {
			w.settled(&next)
		} else {
			w.settled(nil)
		}
	}
}
