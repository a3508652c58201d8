package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Sink receives every checkpoint the engine publishes, so that a copy
// lives outside the database (the bus; a witness).
type Sink interface {
	PublishCheckpoint(ctx context.Context, cp Checkpoint, signed []byte) error
}

// ErrNotVerified: the ledger will not sign (or serve decisions) because the
// log has not been verified against the published checkpoints yet.
var ErrNotVerified = errors.New("ledger: the log has not been verified against the published checkpoints yet")

// ErrUnreadable: Guard could not read the store (every problem it found is
// KindUnreadable): no verdict on tampering, so the ledger stays unverified
// and the caller may try again.
var ErrUnreadable = errors.New("ledger: the store could not be read")

// Config configures a Ledger.
type Config struct {
	// DB is the read store holding the tree (the projection's views) and
	// the ledger_checkpoints table.
	DB bun.IDB
	// Key signs the checkpoints.
	Key *Key
	// Dir is the checkpoint directory: one file per checkpoint, never
	// overwritten. Required.
	Dir string
	// Sinks receive each checkpoint after it is written (optional).
	Sinks []Sink
	// Interval is how often a grown tree is signed (default 1 minute);
	// Every signs as soon as the tree has grown by that many events
	// (default 1000).
	Interval time.Duration
	Every    int64
	// MaxAge is how old the checkpoint GET /v1/ledger/checkpoint answers
	// may be before a new one is signed (default 5 s).
	MaxAge time.Duration
	// GuardCheckpoints is how many of the newest checkpoints of each source
	// (the directory, the table) Guard and Published read (default 64):
	// the newest alone covers the whole log it signed; the others only
	// narrow down where a log and tree rewritten together first differ.
	// accessd ledger verify reads them all.
	GuardCheckpoints int
	// Instance names this replica in the checkpoint table.
	Instance string
	Clock    func() time.Time
	Logger   *slog.Logger
}

// Ledger publishes signed checkpoints of the stored tree and guards the
// engine: it signs nothing until Guard has verified the log against the
// checkpoints already published, and nothing ever again once a check
// failed. Safe for concurrent use.
type Ledger struct {
	cfg  Config
	tree *Tree

	pub      sync.Mutex // serializes publishing (held across writes and sinks)
	mu       sync.Mutex // guards the state below; never held across I/O
	last     *Signed    // the newest checkpoint published or found
	verified bool       // Guard or GuardTail has passed
	whole    bool       // a check of the whole log has passed
	fault    *Report    // the failed verification, if any
	faultErr error
	wake     chan struct{}
}

// NewLedger returns a Ledger; Guard must succeed before it signs.
func NewLedger(cfg Config) (*Ledger, error) {
	var problems []error
	if cfg.DB == nil {
		problems = append(problems, errors.New("DB is nil"))
	}
	if cfg.Key == nil {
		problems = append(problems, errors.New("Key is nil"))
	}
	if cfg.Dir == "" {
		problems = append(problems, errors.New("dir is empty (Dir)"))
	}
	if cfg.Interval < 0 || cfg.Every < 0 || cfg.MaxAge < 0 {
		problems = append(problems, errors.New("the intervals must not be negative (Interval, Every, MaxAge)"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("ledger: config: %w", err)
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Every == 0 {
		cfg.Every = 1000
	}
	if cfg.GuardCheckpoints == 0 {
		cfg.GuardCheckpoints = 64
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Ledger{cfg: cfg, tree: NewTree(cfg.DB), wake: make(chan struct{}, 1)}, nil
}

// AddSink adds a receiver of the checkpoints published from now on.
func (l *Ledger) AddSink(s Sink) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.Sinks = append(l.cfg.Sinks, s)
}

// Tree returns the stored tree the ledger signs.
func (l *Ledger) Tree() *Tree { return l.tree }

// Key returns the signing key.
func (l *Ledger) Key() *Key { return l.cfg.Key }

// Published returns every checkpoint published so far that opens with the
// ledger's key (the checkpoint directory and the database's table), one per
// size, and the problems of those that do not.
func (l *Ledger) Published(ctx context.Context) ([]Signed, []Problem, error) {
	return LoadPublished(ctx, l.cfg.DB, l.cfg.Dir, l.cfg.Key.Verifier, l.cfg.GuardCheckpoints)
}

// LoadPublished reads and opens the checkpoints of dir and of db's table
// with verifier (see OpenAll): all of them, or the newest of each source
// when newest > 0.
func LoadPublished(ctx context.Context, db bun.IDB, dir string, verifier note.Verifier, newest int) ([]Signed, []Problem, error) {
	files, err := ReadCheckpointDir(dir, newest)
	if err != nil {
		return nil, nil, err
	}
	var stored []Signed
	if db != nil {
		if stored, err = StoredCheckpoints(ctx, db, newest); err != nil {
			return nil, nil, err
		}
	}
	cps, problems := OpenAll(append(files, stored...), verifier)
	return cps, problems, nil
}

// Guard verifies the log against the stored tree and every published
// checkpoint (Verify). When the log passes, the ledger may sign; when it
// fails, the report is kept (Fault), the ledger never signs, and Guard
// returns an error wrapping ErrMismatch. When the store could not be read
// (and nothing else was found) it returns the report and an error wrapping
// ErrUnreadable, and the ledger stays unverified.
//
// A Guard that passes marks the whole log verified (Whole); one that fails
// after GuardTail has passed stops the ledger all the same: Err then
// returns the fault, and the engine answers no decision.
func (l *Ledger) Guard(ctx context.Context, log Log, opts VerifyOptions) (*Report, error) {
	return l.guard(ctx, opts, func(opts VerifyOptions) (*Report, error) { return Verify(ctx, log, l.tree, opts) }, true)
}

// GuardTail is Guard on the log's tail, the records after position after
// (VerifyTail: bounded by the tail, not the log's length). When it passes,
// Err is nil (the engine may serve decisions derived from the records up
// to after, checked when they were read, and from the tail, checked now)
// but Whole is false until a Guard of the whole log has passed too. A
// failure is kept as Guard's is.
func (l *Ledger) GuardTail(ctx context.Context, log Log, after eventlog.Position, opts VerifyOptions) (*Report, error) {
	return l.guard(ctx, opts, func(opts VerifyOptions) (*Report, error) { return VerifyTail(ctx, log, l.tree, after, opts) },
		after.IsZero())
}

// guard runs check with the published checkpoints and records its verdict;
// whole: a pass verifies the whole log.
func (l *Ledger) guard(ctx context.Context, opts VerifyOptions, check func(VerifyOptions) (*Report, error), whole bool) (*Report, error) {
	cps, problems, err := l.Published(ctx)
	if err != nil {
		return nil, err
	}
	opts.Checkpoints = cps
	rep, err := check(opts)
	if err != nil {
		return nil, err
	}
	rep.Problems = append(problems, rep.Problems...)
	rep.OK = len(rep.Problems) == 0
	l.mu.Lock()
	defer l.mu.Unlock()
	if !rep.OK && onlyUnreadable(rep.Problems) {
		first, _ := rep.FirstBad()
		return rep, fmt.Errorf("%w: %s", ErrUnreadable, first)
	}
	if !rep.OK {
		first, _ := rep.FirstBad()
		l.fault, l.faultErr = rep, fmt.Errorf("%w: %s", ErrMismatch, first)
		return rep, l.faultErr
	}
	if len(cps) > 0 && (l.last == nil || l.last.Size < cps[len(cps)-1].Size) {
		latest := cps[len(cps)-1]
		l.last = &latest
	}
	l.verified = true
	l.whole = l.whole || whole || rep.FromLeaf == 0
	return rep, nil
}

// Whole reports whether a check of the whole stored log (Guard, or a
// GuardTail that had to read it all) has passed. Until it has, the engine
// serves no answer read from the stored log's older records themselves
// (commands, a child's record): see ErrNotWhole.
func (l *Ledger) Whole() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.whole
}

// ErrNotWhole: only the log's tail has been verified yet (GuardTail), and
// the whole log is being re-hashed: reads of the stored log's older records
// wait for it. It wraps ErrNotVerified.
var ErrNotWhole = fmt.Errorf("%w: only its tail yet; the whole log is being re-hashed in the background", ErrNotVerified)

// ErrWhole returns nil once the whole log has been verified and nothing was
// found wrong; the fault once a check failed; ErrNotWhole (or
// ErrNotVerified) before.
func (l *Ledger) ErrWhole() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.faultErr != nil:
		return l.faultErr
	case !l.verified:
		return ErrNotVerified
	case !l.whole:
		return ErrNotWhole
	}
	return nil
}

// Checker verifies Log against Ledger's tree and every published
// checkpoint on demand (the console's "verify now"), without changing the
// ledger's state: unlike Guard, a failure found here does not stop it (the
// next start's Guard does).
type Checker struct {
	Ledger *Ledger
	Log    Log
}

// VerifyNow runs Verify with the published checkpoints, and reports the
// problems of checkpoints that do not open too.
func (c Checker) VerifyNow(ctx context.Context) (*Report, error) {
	cps, problems, err := c.Ledger.Published(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := Verify(ctx, c.Log, c.Ledger.Tree(), VerifyOptions{Checkpoints: cps})
	if err != nil {
		return nil, err
	}
	rep.Problems = append(problems, rep.Problems...)
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

func onlyUnreadable(ps []Problem) bool {
	for _, p := range ps {
		if p.Kind != KindUnreadable {
			return false
		}
	}
	return true
}

// Fault returns the failed verification that stops the ledger, or nil.
func (l *Ledger) Fault() (*Report, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fault, l.faultErr
}

// Err returns nil when the ledger has verified the log and found nothing
// wrong; ErrNotVerified before Guard has finished; else the fault.
func (l *Ledger) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.faultErr != nil:
		return l.faultErr
	case !l.verified:
		return ErrNotVerified
	}
	return nil
}

// Latest returns the newest checkpoint published or found; ok is false
// when there is none yet.
func (l *Ledger) Latest() (Signed, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return Signed{}, false
	}
	return *l.last, true
}

// Current returns a checkpoint of the tree as it is now: the newest one
// published when it is at most MaxAge old or the tree has not grown since,
// else a new one (Publish).
func (l *Ledger) Current(ctx context.Context) (Signed, error) {
	if err := l.Err(); err != nil {
		return Signed{}, err
	}
	if s, ok := l.Latest(); ok && l.cfg.Clock().Sub(s.At) <= l.cfg.MaxAge {
		return s, nil
	}
	s, _, err := l.Publish(ctx)
	if errors.Is(err, errEmpty) {
		return l.sign(Checkpoint{Origin: l.cfg.Key.Origin(), Size: 0, Root: tlog.Hash{}})
	}
	return s, err
}

var errEmpty = errors.New("ledger: empty tree")

// Publish signs the stored tree as it is now, when it has grown since the
// last checkpoint, after proving it consistent with that checkpoint: it
// stores the note in the database (a commit with fsync, before anything
// else sees the checkpoint), writes the checkpoint file and hands it to
// the sinks. It returns the newest checkpoint and whether it is new. A
// tree that is not consistent with the last checkpoint is never signed:
// the ledger then stops signing (Fault) and the error wraps ErrMismatch.
func (l *Ledger) Publish(ctx context.Context) (Signed, bool, error) {
	l.pub.Lock()
	defer l.pub.Unlock()
	if err := l.Err(); err != nil {
		return Signed{}, false, err
	}
	size, err := l.tree.Size(ctx)
	if err != nil {
		return Signed{}, false, err
	}
	if size == 0 {
		return Signed{}, false, errEmpty
	}
	last, hasLast := l.Latest()
	if hasLast && last.Size >= size {
		if last.Size > size {
			return Signed{}, false, l.stop(fmt.Errorf("%w: the stored tree has %d leaves but checkpoint %s signed %d",
				ErrMismatch, size, last.Source, last.Size))
		}
		return last, false, nil // nothing new: the last checkpoint is the tree now
	}
	root, err := l.tree.Root(ctx, size)
	if err != nil {
		return Signed{}, false, err
	}
	if hasLast {
		proof, err := l.tree.ProveConsistency(ctx, last.Size, size)
		if err != nil {
			return Signed{}, false, err
		}
		if err := tlog.CheckTree(proof, size, root, last.Size, last.Root); err != nil {
			return Signed{}, false, l.stop(fmt.Errorf("%w: the stored tree of %d leaves is not an extension of checkpoint %s (size %d): %v",
				ErrMismatch, size, last.Source, last.Size, err))
		}
	}
	s, err := l.sign(Checkpoint{Origin: l.cfg.Key.Origin(), Size: size, Root: root})
	if err != nil {
		return Signed{}, false, err
	}
	// The row first: its commit waits for fsync, and so makes durable the
	// tree it signs, which the read models' runner may have written
	// without (sqldb.DB.Unsynced, the same file). A checkpoint file is
	// never on disk ahead of the tree it signs, so a power loss cannot
	// leave a published checkpoint that the stored tree falls short of.
	if err := saveCheckpoint(ctx, l.cfg.DB, s, l.cfg.Instance); err != nil {
		return Signed{}, false, err
	}
	path, err := writeCheckpointFile(l.cfg.Dir, s)
	if err != nil {
		if errors.Is(err, ErrMismatch) {
			return Signed{}, false, l.stop(err)
		}
		return Signed{}, false, err
	}
	s.Source = path
	l.mu.Lock()
	l.last = &s
	sinks := l.cfg.Sinks
	l.mu.Unlock()
	for _, sink := range sinks {
		if err := sink.PublishCheckpoint(ctx, s.Checkpoint, s.Note); err != nil {
			l.cfg.Logger.WarnContext(ctx, "ledger: checkpoint not handed to a sink", "size", s.Size, "err", err)
		}
	}
	l.cfg.Logger.InfoContext(ctx, "ledger: checkpoint published", "size", s.Size, "root", s.Root.String(), "file", path)
	return s, true, nil
}

// stop records err as the ledger's fault (it signs nothing more) and
// returns it.
func (l *Ledger) stop(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.faultErr == nil {
		l.faultErr = err
		l.fault = &Report{Problems: []Problem{{Kind: KindTree, LeafIndex: -1, Detail: err.Error()}}}
		l.cfg.Logger.Error("ledger: stopped signing", "err", err)
	}
	return err
}

func (l *Ledger) sign(cp Checkpoint) (Signed, error) {
	msg, err := cp.Sign(l.cfg.Key.Signer)
	if err != nil {
		return Signed{}, fmt.Errorf("ledger: sign: %w", err)
	}
	return Signed{Checkpoint: cp, Note: msg, Source: "signed now", At: l.cfg.Clock().UTC()}, nil
}

// Grew tells the publisher that the log has grown by n events (the
// runner's progress, or a caller's estimate); it never blocks.
func (l *Ledger) Grew() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run publishes checkpoints until ctx ends: every Interval when the tree
// has grown, and as soon as it has grown by Every events (it looks at the
// tree's size every second and whenever Grew is called). It starts only
// once Guard has passed, and returns the fault when publishing finds the
// tree inconsistent with the last checkpoint. Other errors (a database
// briefly away) are logged and retried at the next tick.
func (l *Ledger) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastSigned := l.cfg.Clock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-l.wake:
		}
		if err := l.Err(); err != nil {
			if errors.Is(err, ErrNotVerified) {
				continue
			}
			return err
		}
		size, err := l.tree.Size(ctx)
		if err != nil {
			l.cfg.Logger.WarnContext(ctx, "ledger: read the tree size", "err", err)
			continue
		}
		var published int64
		if s, ok := l.Latest(); ok {
			published = s.Size
		}
		if size <= published {
			continue
		}
		if size-published < l.cfg.Every && l.cfg.Clock().Sub(lastSigned) < l.cfg.Interval {
			continue
		}
		if _, _, err := l.Publish(ctx); err != nil {
			if errors.Is(err, ErrMismatch) {
				return err
			}
			if ctx.Err() == nil {
				l.cfg.Logger.WarnContext(ctx, "ledger: publish a checkpoint", "err", err)
			}
			continue
		}
		lastSigned = l.cfg.Clock()
	}
}
