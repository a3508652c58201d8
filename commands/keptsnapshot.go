package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/snapshotfile"
)

// # Kept-state snapshot (issue 18)
//
// The state the service keeps between commands (statecache.go: each kept
// child's and account's aggregate, its stream's version and last position
// and the keys of its event ids) is saved to one file,
// Config.KeptSnapshots.Dir/KeptSnapshotFile, in the background
// (RunKeptSnapshots), and loaded at start (LoadKeptSnapshot), so that the
// first command on a child after a restart reads only the events appended
// since the snapshot instead of its whole stream.
//
// A restored entry is what the cache would hold had the service loaded the
// stream up to the entry's version: a command reads the stream after it,
// so an entry older than the log (events appended after the snapshot, by
// this replica or another) is still correct, on every path that uses the
// cache (loadChild, loadAccount, the deadlines' batches). What a
// snapshot cannot survive is a log that no longer holds the streams as
// they were: a start checks that the log holds, at their positions, the
// records the latest kept child and the latest kept account were loaded
// up to, and that the log's head is not before them (ErrKeptSnapshotAhead,
// ErrKeptSnapshotMismatch). A snapshot that is corrupt, of another format
// version or fails a check is ignored with a warning (StartFromKeptSnapshot)
// and nothing is restored: commands then read whole streams, which is
// always correct (and a start may keep the children from one pass over the
// log instead, WarmUp). Deleting the file is always safe.
//
// The file is internal/snapshotfile's envelope (magic KeptSnapshotMagic,
// the format version, a gob payload in parts, SHA-256), written to a
// temporary file, synced, renamed over the previous one and the directory
// synced: a crash at any point leaves the previous snapshot or the new
// one.
//
// Personal data: the aggregates hold references, worker ids, emails,
// identity subjects and phone hints (domain.ChildWholeState,
// domain.AccountWholeState). The file is mode 0600, and it is removed
// whenever the service drops an erased aggregate's state (the erase
// commands, before they return, and ForgetErased, as it reads an erasure
// appended by any replica). A write whose state was copied before such a
// removal is never put in place: the writer holds the file's lock while it
// writes and checks, under it, that no erasure came since its copy; a
// removal waits for a write in progress (an erase command may wait that
// long; no other command ever does). A start from a snapshot resumes
// ForgetErased where the snapshot's state may have missed an erasure
// (keptPayload.Erasures), so an aggregate erased while the service was
// down is dropped, and the file removed, as soon as ForgetErased runs.

// KeptSnapshotMagic starts every kept-state snapshot file.
const KeptSnapshotMagic = "ALCMDKPT"

// KeptSnapshotVersion is the format version written and read; a file of
// another version is ignored (ErrKeptSnapshotVersion).
const KeptSnapshotVersion uint32 = 1

// KeptSnapshotFile is the snapshot's file name in its directory.
const KeptSnapshotFile = "commands.kept.snapshot"

// Errors of LoadKeptSnapshot; each means "start with an empty cache".
var (
	// ErrKeptSnapshotCorrupt: not a snapshot, truncated, a wrong checksum
	// or a payload no cache holds.
	ErrKeptSnapshotCorrupt = errors.New("commands: kept-state snapshot corrupt")
	// ErrKeptSnapshotVersion: a snapshot of another format version.
	ErrKeptSnapshotVersion = errors.New("commands: kept-state snapshot of another format version")
	// ErrKeptSnapshotAhead: a record the snapshot holds state up to is
	// after the log's head (the log was replaced or truncated).
	ErrKeptSnapshotAhead = errors.New("commands: kept-state snapshot is ahead of the log")
	// ErrKeptSnapshotMismatch: the log does not hold the snapshot's
	// records at their positions (the log was replaced or changed).
	ErrKeptSnapshotMismatch = errors.New("commands: kept-state snapshot does not match the log")
	// ErrKeptSnapshotNotFresh: the service already follows erasures
	// (ForgetErased); a snapshot loads only before.
	ErrKeptSnapshotNotFresh = errors.New("commands: a kept-state snapshot loads only into a new service")
	// ErrKeptSnapshotOff: Config.KeptSnapshots.Dir is empty.
	ErrKeptSnapshotOff = errors.New("commands: kept-state snapshots are off (no directory)")
	// errKeptSnapshotErased: an aggregate was erased after the write's
	// copy of the state; the write was dropped.
	errKeptSnapshotErased = errors.New("commands: kept-state snapshot not written: an aggregate was erased since its state was copied")
)

// Kept-state snapshot writer defaults.
const (
	// DefaultKeptSnapshotEvery is how many changes to the kept state
	// (states kept or dropped) since the last snapshot make the writer
	// write the next one.
	DefaultKeptSnapshotEvery = 10_000
	// DefaultKeptSnapshotInterval is how long the writer waits at most,
	// while the kept state changed, before it writes the next snapshot.
	DefaultKeptSnapshotInterval = time.Minute
)

// KeptSnapshotConfig configures the kept-state snapshot.
type KeptSnapshotConfig struct {
	// Dir is the snapshot file's directory (the engine's snapshot
	// directory); "" turns the snapshot off.
	Dir string
	// Every: the writer writes once this many changes were made to the
	// kept state since the last snapshot (< 1: DefaultKeptSnapshotEvery).
	Every uint64
	// Interval: the writer writes once this long has passed since the
	// last snapshot and the kept state changed (<= 0:
	// DefaultKeptSnapshotInterval).
	Interval time.Duration
}

func (c KeptSnapshotConfig) withDefaults() KeptSnapshotConfig {
	if c.Every < 1 {
		c.Every = DefaultKeptSnapshotEvery
	}
	if c.Interval <= 0 {
		c.Interval = DefaultKeptSnapshotInterval
	}
	return c
}

// KeptSnapshotInfo describes a kept-state snapshot written or loaded.
type KeptSnapshotInfo struct {
	// Children and Accounts are the entries written or restored.
	Children, Accounts int
	// Erasures is where ForgetErased resumes after a load.
	Erasures eventlog.Position
	// Bytes is the file's size.
	Bytes int
	// Capture is how long the caches were held while their entries were
	// copied (writing only); Elapsed the whole write or load.
	Capture, Elapsed time.Duration
}

// KeptLog is the log as a load checks a snapshot against it.
type KeptLog interface {
	Head(ctx context.Context) (eventlog.Position, error)
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error)
}

// keptPayload is the encoded part of a snapshot.
type keptPayload struct {
	// Erasures: every erasure of a kept aggregate its state does not
	// reflect is after it (see capture).
	Erasures eventlog.Position
	// Checks are the records the latest kept child and account were
	// loaded up to.
	Checks   []keptCheck
	Children []keptChild
	Accounts []keptAccount
}

// keptCheck is a record a start checks the log holds.
type keptCheck struct {
	Stream   string
	Version  uint64
	ID       uuid.UUID
	Position eventlog.Position
}

// keptLoaded is an entry's loaded bookkeeping (loaded): the stream's
// version and last record, and the keys of its ids, sorted.
type keptLoaded struct {
	Version uint64
	Last    eventlog.Position
	LastID  uuid.UUID
	IDs     []uint64
}

type keptChild struct {
	State domain.ChildWholeState
	L     keptLoaded
}

type keptAccount struct {
	State domain.AccountWholeState
	L     keptLoaded
}

var keptFormat = snapshotfile.Format{Magic: KeptSnapshotMagic, Version: KeptSnapshotVersion,
	Corrupt: ErrKeptSnapshotCorrupt, OtherVersion: ErrKeptSnapshotVersion}

func keptLoadedOf(l loaded) keptLoaded {
	return keptLoaded{Version: l.version, Last: l.last, LastID: l.lastID, IDs: l.ids}
}

// capture copies the kept state into a payload. The caches are held only
// while their entries' pointers are copied: a kept entry is never changed
// (put replaces it, get hands out clones), so it is read after.
func (s *Service) capture() (*keptPayload, uint64, time.Duration) {
	started := time.Now()
	// In this order (see keptErased and followErasures): an erasure
	// counted or followed before is dropped from the entries copied next.
	gen := s.keptGen.Load()
	followed := s.followedErasures()
	children, accounts := s.children.kept(), s.accounts.kept()
	held := time.Since(started)

	p := &keptPayload{Children: make([]keptChild, 0, len(children)), Accounts: make([]keptAccount, 0, len(accounts))}
	var first eventlog.Position
	var checks [2]*keptCheck
	note := func(i int, stream string, l loaded) {
		if first.IsZero() || l.last.Before(first) {
			first = l.last
		}
		if checks[i] == nil || checks[i].Position.Before(l.last) {
			checks[i] = &keptCheck{Stream: stream, Version: l.version, ID: l.lastID, Position: l.last}
		}
	}
	// An entry of an empty stream (kept by the command that created it,
	// as loaded before) is left out: it saves no read.
	for _, e := range children {
		if e.l.version > 0 {
			p.Children = append(p.Children, keptChild{State: e.state.WholeState(), L: keptLoadedOf(e.l)})
			note(0, e.l.stream, e.l)
		}
	}
	for _, e := range accounts {
		if e.l.version > 0 {
			p.Accounts = append(p.Accounts, keptAccount{State: e.state.WholeState(), L: keptLoadedOf(e.l)})
			note(1, e.l.stream, e.l)
		}
	}
	for _, c := range checks {
		if c != nil {
			p.Checks = append(p.Checks, *c)
		}
	}
	// An erasure of a kept aggregate that its state does not reflect is
	// after the aggregate's last record, and after every erasure followed.
	p.Erasures = first
	if first.Before(followed) {
		p.Erasures = followed
	}
	return p, gen, held
}

// WriteKeptSnapshot saves the kept state into
// Config.KeptSnapshots.Dir/KeptSnapshotFile (see the notes above), mode
// 0600, and returns what it wrote. The caches are held only while their
// entries are copied (KeptSnapshotInfo.Capture); commands and appends
// never wait for it. With nothing kept it writes nothing and returns a
// zero info. Two calls must not run at once (RunKeptSnapshots is the one
// writer).
func (s *Service) WriteKeptSnapshot(ctx context.Context) (KeptSnapshotInfo, error) {
	dir := s.cfg.KeptSnapshots.Dir
	if dir == "" {
		return KeptSnapshotInfo{}, ErrKeptSnapshotOff
	}
	started := time.Now()
	p, gen, held := s.capture()
	if len(p.Children)+len(p.Accounts) == 0 {
		return KeptSnapshotInfo{}, nil
	}
	if err := ctx.Err(); err != nil {
		return KeptSnapshotInfo{}, err
	}
	data, err := keptFormat.EncodeGobParts(p)
	if err != nil {
		return KeptSnapshotInfo{}, fmt.Errorf("commands: kept-state snapshot: %w", err)
	}
	s.keptFileMu.Lock()
	defer s.keptFileMu.Unlock()
	if s.keptGen.Load() != gen {
		return KeptSnapshotInfo{}, errKeptSnapshotErased
	}
	if err := snapshotfile.WriteAtomic(dir, KeptSnapshotFile, data); err != nil {
		return KeptSnapshotInfo{}, fmt.Errorf("commands: kept-state snapshot: %w", err)
	}
	return KeptSnapshotInfo{Children: len(p.Children), Accounts: len(p.Accounts), Erasures: p.Erasures,
		Bytes: len(data), Capture: held, Elapsed: time.Since(started)}, nil
}

// keptErased removes the snapshot file after an erased aggregate's state
// was dropped (see the notes above); it returns once the file is gone.
func (s *Service) keptErased(ctx context.Context) {
	dir := s.cfg.KeptSnapshots.Dir
	if dir == "" {
		return
	}
	s.keptGen.Add(1)
	s.keptFileMu.Lock()
	defer s.keptFileMu.Unlock()
	_, statErr := os.Stat(filepath.Join(dir, KeptSnapshotFile))
	if err := snapshotfile.Remove(dir, KeptSnapshotFile); err != nil {
		s.cfg.Logger.WarnContext(ctx, "commands: kept-state snapshot: remove after an erasure", slog.String("error", err.Error()))
		return
	}
	if statErr == nil {
		s.cfg.Logger.InfoContext(ctx, "commands: kept-state snapshot removed: an aggregate's personal data was erased", slog.String("dir", dir))
	}
}

// forgetChild and forgetAccount drop an erased aggregate's kept state and
// the snapshot file that may hold it.
func (s *Service) forgetChild(ctx context.Context, id uuid.UUID) {
	s.children.drop(id)
	s.keptErased(ctx)
}

func (s *Service) forgetAccount(ctx context.Context, id uuid.UUID) {
	s.accounts.drop(id)
	s.keptErased(ctx)
}

// LoadKeptSnapshot restores Config.KeptSnapshots.Dir's snapshot into the
// kept state, checking it against log (see the notes above). It must be
// called before ForgetErased runs (ErrKeptSnapshotNotFresh), which then
// starts from where the snapshot may have missed an erasure; commands may
// run meanwhile (a start loads it while the engine replays the log): a
// state a command kept at a later version than the snapshot's stays, and
// an aggregate erased meanwhile is not restored. A missing file fails
// with an error satisfying errors.Is(err, os.ErrNotExist). On any error
// nothing is restored.
func (s *Service) LoadKeptSnapshot(ctx context.Context, log KeptLog) (KeptSnapshotInfo, error) {
	dir := s.cfg.KeptSnapshots.Dir
	if dir == "" {
		return KeptSnapshotInfo{}, ErrKeptSnapshotOff
	}
	started := time.Now()
	if s.following() {
		return KeptSnapshotInfo{}, ErrKeptSnapshotNotFresh
	}
	data, err := os.ReadFile(filepath.Join(dir, KeptSnapshotFile))
	if err != nil {
		return KeptSnapshotInfo{}, fmt.Errorf("commands: read kept-state snapshot: %w", err)
	}
	p := &keptPayload{}
	if err := keptFormat.DecodeGobParts(data, p); err != nil {
		return KeptSnapshotInfo{}, err
	}
	if err := p.check(); err != nil {
		return KeptSnapshotInfo{}, err
	}
	if err := p.checkLog(ctx, log); err != nil {
		return KeptSnapshotInfo{}, err
	}
	for _, c := range p.Children {
		s.children.put(c.State.ID, domain.RestoreWholeChild(c.State), c.L.loaded(domain.ChildStream(c.State.ID)))
	}
	for _, a := range p.Accounts {
		s.accounts.put(a.State.ID, domain.RestoreWholeAccount(a.State), a.L.loaded(domain.AccountStream(a.State.ID)))
	}
	s.resumeErasuresAt(p.Erasures)
	s.keptLoadedChanges.Store(s.keptChanges())
	return KeptSnapshotInfo{Children: len(p.Children), Accounts: len(p.Accounts), Erasures: p.Erasures,
		Bytes: len(data), Elapsed: time.Since(started)}, nil
}

func (l keptLoaded) loaded(stream string) loaded {
	return loaded{stream: stream, version: l.Version, last: l.Last, lastID: l.LastID, ids: l.IDs, collect: true}
}

// check refuses a payload no cache holds: an entry without an id or
// twice, of an erased or empty aggregate, whose version is not its
// state's, whose ids are not one per event, sorted, or without a last
// record; or no check for its entries.
func (p *keptPayload) check() error {
	seen := make(map[uuid.UUID]struct{}, len(p.Children)+len(p.Accounts))
	entry := func(kind string, id uuid.UUID, version uint64, erased bool, l keptLoaded) error {
		if _, dup := seen[id]; dup || id == uuid.Nil {
			return fmt.Errorf("%w: %s %s twice or nil", ErrKeptSnapshotCorrupt, kind, id)
		}
		seen[id] = struct{}{}
		if erased || version == 0 || version != l.Version || uint64(len(l.IDs)) != l.Version ||
			!slices.IsSorted(l.IDs) || l.Last.IsZero() || l.LastID == uuid.Nil {
			return fmt.Errorf("%w: %s %s: no kept state", ErrKeptSnapshotCorrupt, kind, id)
		}
		return nil
	}
	for _, c := range p.Children {
		if err := entry("child", c.State.ID, c.State.Version, !c.State.ErasedAt.IsZero(), c.L); err != nil {
			return err
		}
	}
	for _, a := range p.Accounts {
		if err := entry("account", a.State.ID, a.State.Version, !a.State.ErasedAt.IsZero(), a.L); err != nil {
			return err
		}
	}
	if len(seen) > 0 && len(p.Checks) == 0 {
		return fmt.Errorf("%w: no record to check", ErrKeptSnapshotCorrupt)
	}
	return nil
}

// checkLog checks that log holds p's records at their positions.
func (p *keptPayload) checkLog(ctx context.Context, log KeptLog) error {
	head, err := log.Head(ctx)
	if err != nil {
		return fmt.Errorf("commands: check kept-state snapshot: read the log's head: %w", err)
	}
	for _, c := range p.Checks {
		if head.Before(c.Position) {
			return fmt.Errorf("%w: record at %s, log's head at %s", ErrKeptSnapshotAhead, c.Position, head)
		}
		recs, err := log.ReadStream(ctx, c.Stream, c.Version, 1)
		if err != nil {
			return fmt.Errorf("commands: check kept-state snapshot: read %s: %w", c.Stream, err)
		}
		if len(recs) != 1 || recs[0].Version != c.Version || recs[0].ID != c.ID || recs[0].Position != c.Position {
			return fmt.Errorf("%w: %s@%d is not record %s at %s", ErrKeptSnapshotMismatch, c.Stream, c.Version, c.ID, c.Position)
		}
	}
	return nil
}

// StartFromKeptSnapshot loads the snapshot (LoadKeptSnapshot) and logs the
// outcome: loaded (info), none there (info), or ignored and why (warn). It
// reports whether it was loaded; when it was not nothing was restored and
// commands read whole streams until they keep them. With
// snapshots off it does nothing.
func (s *Service) StartFromKeptSnapshot(ctx context.Context, log KeptLog) (KeptSnapshotInfo, bool) {
	dir := s.cfg.KeptSnapshots.Dir
	if dir == "" {
		return KeptSnapshotInfo{}, false
	}
	l := s.cfg.Logger
	info, err := s.LoadKeptSnapshot(ctx, log)
	switch {
	case err == nil:
		l.InfoContext(ctx, "commands: kept state loaded from its snapshot", slog.String("dir", dir),
			slog.Int("children", info.Children), slog.Int("accounts", info.Accounts), slog.Int("bytes", info.Bytes),
			slog.Duration("elapsed", info.Elapsed))
		return info, true
	case errors.Is(err, os.ErrNotExist):
		l.InfoContext(ctx, "commands: no kept-state snapshot; commands read whole streams until they keep them", slog.String("dir", dir))
	default:
		l.WarnContext(ctx, "commands: kept-state snapshot ignored; commands read whole streams until they keep them",
			slog.String("dir", dir), slog.String("error", err.Error()))
	}
	return KeptSnapshotInfo{}, false
}

// RunKeptSnapshots writes the kept-state snapshot in the background until
// ctx ends: when Config.KeptSnapshots.Every changes were made to the kept
// state since the last one, or Interval has passed since and the state
// changed; and once more when ctx ends, if it changed since (a stop's
// snapshot: the next start keeps everything this one kept). A failed write
// is logged (warn) and tried again after Interval. With snapshots off it
// waits for ctx and returns nil. It returns nil.
func (s *Service) RunKeptSnapshots(ctx context.Context) error {
	cfg := s.cfg.KeptSnapshots.withDefaults()
	if cfg.Dir == "" {
		<-ctx.Done()
		return nil
	}
	log := s.cfg.Logger
	// What was restored is on disk already; anything else kept is not.
	last, lastWrite := s.keptLoadedChanges.Load(), time.Now()
	var notBefore time.Time
	write := func(ctx context.Context, changes uint64) {
		info, err := s.WriteKeptSnapshot(ctx)
		now := time.Now()
		switch {
		case errors.Is(err, errKeptSnapshotErased):
			// Tried again at the next turn, from a new copy.
		case err != nil:
			log.WarnContext(ctx, "commands: kept-state snapshot not written", slog.String("dir", cfg.Dir), slog.String("error", err.Error()))
			notBefore = now.Add(cfg.Interval)
		default:
			last, lastWrite = changes, now
			if info.Children+info.Accounts > 0 {
				log.InfoContext(ctx, "commands: kept-state snapshot written", slog.String("dir", cfg.Dir),
					slog.Int("children", info.Children), slog.Int("accounts", info.Accounts), slog.Int("bytes", info.Bytes),
					slog.Duration("capture", info.Capture), slog.Duration("elapsed", info.Elapsed))
			}
		}
	}
	tick := time.NewTicker(max(min(cfg.Interval/4, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if changes := s.keptChanges(); changes != last {
				write(context.WithoutCancel(ctx), changes)
			}
			return nil
		case <-tick.C:
		}
		changes, now := s.keptChanges(), time.Now()
		pending := changes - min(last, changes)
		if pending > 0 && !now.Before(notBefore) && (pending >= cfg.Every || now.Sub(lastWrite) >= cfg.Interval) {
			write(ctx, changes)
		}
	}
}

// keptChanges counts the changes made to the kept state.
func (s *Service) keptChanges() uint64 { return s.children.changes.Load() + s.accounts.changes.Load() }
