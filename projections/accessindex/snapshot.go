package accessindex

import (
	"bytes"
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

// # Snapshots (issue 18)
//
// A snapshot is the index saved at a position, so that a start replays only
// the records after it (the tail) instead of the whole log. It holds the
// index's fold (each account's facts and pairs, with the pairs'
// placements and grant intervals as the index keeps them, see fold.go; no
// personal field), what the index keeps besides (the children's info, the
// reviews list, the change buffer) and the record at its position (id,
// stream, version, type, and the position before it), by which a start
// checks that the log still holds that record where the snapshot says.
// The reverse maps (viewers, children by worker) are derived when it is
// loaded.
//
// The file is internal/snapshotfile's envelope: SnapshotMagic, the format
// version (4 bytes, big endian), the payload (encoding/gob), and the
// SHA-256 of everything before it (32 bytes). It is written to a temporary
// file in the same directory, synced, renamed over the snapshot and the
// directory synced: a crash at any point leaves the previous snapshot or
// the new one, never a mix, and a leftover temporary file is removed by
// the next write.
//
// Personal data: the children's references (kept for R17's lookup by
// reference) are the only personal values in a snapshot. The file is made
// with mode 0600, and the snapshot writer (RunSnapshots) removes it as soon
// as the index applies a child's erasure, so erasing a child's key leaves
// no readable copy of its reference here for longer than that.
//
// Deleting the snapshot is always safe: the next start replays the whole
// log, and the writer makes a new one.

// SnapshotMagic starts every snapshot file.
const SnapshotMagic = "ALIDXSNP"

// SnapshotVersion is the format version this package writes and reads. A
// file of another version is ignored (ErrSnapshotVersion). Version 1 held
// the aggregates' state (accessmodel.State); version 2 holds the index's
// own compact fold.
const SnapshotVersion uint32 = 2

// SnapshotFile is the snapshot's file name in its directory.
const SnapshotFile = "accessindex.snapshot"

// Errors of LoadSnapshot and DecodeSnapshot; each means "replay the whole
// log instead". They are wrapped with details.
var (
	// ErrSnapshotCorrupt: not a snapshot, truncated, or its checksum or
	// payload is wrong.
	ErrSnapshotCorrupt = errors.New("accessindex: snapshot corrupt")
	// ErrSnapshotVersion: a snapshot of another format version.
	ErrSnapshotVersion = errors.New("accessindex: snapshot of another format version")
	// ErrSnapshotAhead: the snapshot's position is after the log's head
	// (the log was replaced or truncated).
	ErrSnapshotAhead = errors.New("accessindex: snapshot is ahead of the log")
	// ErrSnapshotMismatch: the log does not hold the snapshot's record at
	// its position (the log was replaced or changed).
	ErrSnapshotMismatch = errors.New("accessindex: snapshot does not match the log")
	// ErrSnapshotNotFresh: LoadSnapshot was called on an index that has
	// applied records or is running.
	ErrSnapshotNotFresh = errors.New("accessindex: a snapshot loads only into a new index")
)

// SnapshotInfo describes a snapshot written or loaded.
type SnapshotInfo struct {
	// Position is the position of the last record the snapshot reflects.
	Position eventlog.Position
	// Applied is the number of records the index had applied.
	Applied uint64
	// Pairs is the number of (account, child) pairs.
	Pairs int
	// Bytes is the file's size.
	Bytes int
	// Capture is how long the applier was held while the state was copied
	// (writing only); Elapsed the whole write or load.
	Capture, Elapsed time.Duration
}

// loadedSnapshot is what RunSnapshots needs of the snapshot loaded.
type loadedSnapshot struct {
	Applied, Erasures uint64
}

// refEntry is one entry of the reference lookup.
type refEntry struct {
	Key   string
	Child uuid.UUID
}

// snapshotPayload is the encoded part of a snapshot.
type snapshotPayload struct {
	Position eventlog.Position
	Applied  uint64
	Last     snapshotfile.Record
	Accounts []snapAccount
	Children []ChildInfo
	ByRef    []refEntry
	Grants   []GrantDue
	Changes  []Change
	Dropped  eventlog.Position
	// Erasures is the count of child erasures applied (see RunSnapshots).
	Erasures uint64
}

// snapAccount is one account of a snapshot: its facts as its events set
// them, whether it was invited, and its pairs, sorted by child id.
type snapAccount struct {
	ID    uuid.UUID
	Known bool
	Facts domain.AccountFacts
	Pairs []snapPair
}

// snapPair is one pair of a snapshot: the child and the pair's sources,
// encoded as the index keeps them (pairState).
type snapPair struct {
	Child   uuid.UUID
	Sources []byte
}

func (p *snapshotPayload) pairs() int {
	n := 0
	for i := range p.Accounts {
		n += len(p.Accounts[i].Pairs)
	}
	return n
}

// capture copies the index's state at its position. It holds the applier
// (applyMu) while it copies, so the state is consistent at one position;
// readers are not held. ok is false when the index has applied nothing or
// has stopped.
func (ix *Index) capture() (p *snapshotPayload, ok bool, err error) {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	if ix.err != nil || ix.applied == 0 {
		return nil, false, nil
	}
	// Only the applier (whose lock is held) writes the state below, so
	// reading it needs no read lock.
	p = &snapshotPayload{Position: ix.pos, Applied: ix.applied, Last: ix.last,
		Accounts: make([]snapAccount, 0, len(ix.accounts)),
		Children: make([]ChildInfo, 0, len(ix.children)), ByRef: make([]refEntry, 0, len(ix.byRef)),
		Dropped: ix.changes.dropped, Erasures: ix.erasures}
	for _, ac := range ix.accounts {
		sa := snapAccount{ID: ac.id, Known: ac.known, Facts: ac.facts(), Pairs: make([]snapPair, len(ac.pairs))}
		sa.Facts.Lapses = slices.Clone(sa.Facts.Lapses)
		for i := range ac.pairs {
			pr := &ac.pairs[i]
			sa.Pairs[i] = snapPair{Child: pr.child(), Sources: slices.Clone(pr.sourcesEnc())}
		}
		p.Accounts = append(p.Accounts, sa)
	}
	for _, c := range ix.children {
		p.Children = append(p.Children, *c)
	}
	for k, id := range ix.byRef {
		p.ByRef = append(p.ByRef, refEntry{Key: k, Child: id})
	}
	for child, list := range ix.grants {
		for i := range list {
			p.Grants = append(p.Grants, list[i].grantDue(child))
		}
	}
	p.Changes = make([]Change, ix.changes.len())
	for i := range p.Changes {
		p.Changes[i] = ix.changes.at(i)
	}
	return p, true, nil
}

// snapshotFormat is the index's snapshot file (internal/snapshotfile).
var snapshotFormat = snapshotfile.Format{Magic: SnapshotMagic, Version: SnapshotVersion,
	Corrupt: ErrSnapshotCorrupt, OtherVersion: ErrSnapshotVersion}

// encodeSnapshot writes p as a snapshot file's bytes.
func encodeSnapshot(p *snapshotPayload) ([]byte, error) {
	data, err := snapshotFormat.EncodeGob(p)
	if err != nil {
		return nil, fmt.Errorf("accessindex: %w", err)
	}
	return data, nil
}

// DecodeSnapshot checks a snapshot file's bytes (magic, format version,
// checksum), decodes its payload and checks the fold it holds (the pairs'
// sources); it returns the snapshot's position.
// It fails with ErrSnapshotCorrupt or ErrSnapshotVersion (wrapped) and never
// panics. It is LoadSnapshot's first step, exported for the fuzz test and
// for tools.
func DecodeSnapshot(data []byte) (eventlog.Position, error) {
	p, err := decodeSnapshot(data)
	if err != nil {
		return eventlog.Start, err
	}
	if _, _, _, _, err := restoreFold(p.Accounts); err != nil { // the pairs' encodings, as LoadSnapshot checks them
		return eventlog.Start, err
	}
	return p.Position, nil
}

func decodeSnapshot(data []byte) (*snapshotPayload, error) {
	p := &snapshotPayload{}
	if err := snapshotFormat.DecodeGob(data, p); err != nil {
		return nil, err
	}
	if p.Position.IsZero() || p.Applied == 0 {
		return nil, fmt.Errorf("%w: empty snapshot", ErrSnapshotCorrupt)
	}
	return p, nil
}

// WriteSnapshot saves the index's state at its current position into
// dir/SnapshotFile, atomically (see the package's snapshot notes), with
// mode 0600, and returns what it wrote. It holds the applier only while it
// copies the state (SnapshotInfo.Capture); checks are never held. An
// index that has applied nothing, or has stopped, writes nothing and
// returns a zero SnapshotInfo. It may run concurrently with Run; two
// WriteSnapshot calls on one directory must not.
func (ix *Index) WriteSnapshot(ctx context.Context, dir string) (SnapshotInfo, error) {
	started := time.Now()
	p, ok, err := ix.capture()
	if err != nil || !ok {
		return SnapshotInfo{}, err
	}
	capture := time.Since(started)
	if err := ctx.Err(); err != nil {
		return SnapshotInfo{}, err
	}
	data, err := encodeSnapshot(p)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if err := snapshotfile.WriteAtomic(dir, SnapshotFile, data); err != nil {
		return SnapshotInfo{}, fmt.Errorf("accessindex: %w", err)
	}
	return SnapshotInfo{Position: p.Position, Applied: p.Applied, Pairs: p.pairs(), Bytes: len(data),
		Capture: capture, Elapsed: time.Since(started)}, nil
}

// RemoveSnapshot removes dir's snapshot, if any (and leftover temporary
// files). Removing it is always safe: the next start replays the whole log.
func RemoveSnapshot(dir string) error {
	if err := snapshotfile.Remove(dir, SnapshotFile); err != nil {
		return fmt.Errorf("accessindex: %w", err)
	}
	return nil
}

// LoadSnapshot loads dir/SnapshotFile into ix, which must be new (else
// ErrSnapshotNotFresh): after it, Run replays only the records after the
// snapshot's position. It checks the file (ErrSnapshotCorrupt,
// ErrSnapshotVersion) and the log: the snapshot's position must not be
// after the head (ErrSnapshotAhead), and the log must hold the snapshot's
// record at its position (ErrSnapshotMismatch). A missing file fails with
// an error satisfying errors.Is(err, os.ErrNotExist). On any error ix is
// left unchanged, and the caller replays the whole log (Run).
func (ix *Index) LoadSnapshot(ctx context.Context, dir string, log Follower) (SnapshotInfo, error) {
	started := time.Now()
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("accessindex: read snapshot: %w", err)
	}
	p, err := decodeSnapshot(data)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if err := checkAgainstLog(ctx, p, log); err != nil {
		return SnapshotInfo{}, err
	}
	pairs, err := ix.restore(p)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return SnapshotInfo{Position: p.Position, Applied: p.Applied, Pairs: pairs, Bytes: len(data), Elapsed: time.Since(started)}, nil
}

// checkAgainstLog checks that log holds p's last record at p's position.
func checkAgainstLog(ctx context.Context, p *snapshotPayload, log Follower) error {
	head, err := log.Head(ctx)
	if err != nil {
		return fmt.Errorf("accessindex: check snapshot: read the log's head: %w", err)
	}
	if head.Before(p.Position) {
		return fmt.Errorf("%w: snapshot at %s, log's head at %s", ErrSnapshotAhead, p.Position, head)
	}
	if err := p.Last.Check(ctx, log, p.Position, ErrSnapshotMismatch); err != nil {
		return fmt.Errorf("accessindex: %w", err)
	}
	return nil
}

// restore installs p into ix, which must be new; it returns the number of
// pairs.
func (ix *Index) restore(p *snapshotPayload) (int, error) {
	accounts, viewers, npairs, known, err := restoreFold(p.Accounts)
	if err != nil {
		return 0, err
	}
	children := make(map[uuid.UUID]*ChildInfo, len(p.Children))
	byWorker := map[string]map[uuid.UUID]struct{}{}
	for i := range p.Children {
		info := p.Children[i]
		if _, dup := children[info.ID]; dup {
			return 0, fmt.Errorf("%w: child %s twice", ErrSnapshotCorrupt, info.ID)
		}
		children[info.ID] = &info
		if info.Worker != "" {
			set := byWorker[info.Worker]
			if set == nil {
				set = map[uuid.UUID]struct{}{}
				byWorker[info.Worker] = set
			}
			set[info.ID] = struct{}{}
		}
	}
	byRef := make(map[string]uuid.UUID, len(p.ByRef))
	for _, r := range p.ByRef {
		byRef[r.Key] = r.Child
	}
	rels := map[domain.Relationship]domain.Relationship{}
	grants := make(map[uuid.UUID][]dueEntry, len(p.Grants))
	for _, g := range p.Grants {
		list := grants[g.Child]
		if slices.ContainsFunc(list, func(d dueEntry) bool { return d.account == g.Account }) {
			return 0, fmt.Errorf("%w: grant of %s to %s twice", ErrSnapshotCorrupt, g.Child, g.Account)
		}
		rel, ok := rels[g.Relationship]
		if !ok {
			rel = g.Relationship
			rels[rel] = rel
		}
		grants[g.Child] = append(list, dueEntry{account: g.Account, relationship: rel, grantedAt: ut(g.GrantedAt),
			reviewBy: ut(g.ReviewBy), expiresAt: ut(g.ExpiresAt)})
	}

	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	if ix.running.Load() || ix.applied > 0 || ix.err != nil {
		return 0, ErrSnapshotNotFresh
	}
	changes := newRing(ix.changes.size)
	changes.dropped = p.Dropped
	for _, c := range p.Changes {
		changes.push(c)
	}
	ix.last, ix.erasures = p.Last, p.Erasures
	ix.packed, ix.packedAt = true, p.Applied // restoreFold packed it
	ix.loaded = loadedSnapshot{Applied: p.Applied, Erasures: p.Erasures}
	ix.mu.Lock()
	ix.pos, ix.applied = p.Position, p.Applied
	ix.accounts, ix.viewers, ix.npairs, ix.known = accounts, viewers, npairs, known
	ix.children, ix.byRef, ix.byWorker, ix.grants, ix.rels = children, byRef, byWorker, grants, rels
	ix.changes = changes
	ix.mu.Unlock()
	return npairs, nil
}

// restoreFold rebuilds the fold's state from a snapshot's accounts, packed
// (see pack): the accounts, the viewers of each child, the number of pairs
// and of known accounts. A state no fold makes (an account twice, pairs
// out of order or twice, sources that do not decode or not as the index
// encodes them, with unknown flags or permissions, a placement without an
// id or a grant interval with one) fails with ErrSnapshotCorrupt.
func restoreFold(sas []snapAccount) (map[uuid.UUID]*account, map[uuid.UUID][]*account, int, int, error) {
	accounts := make(map[uuid.UUID]*account, len(sas))
	npairs, known := 0, 0
	var srcs []source
	var enc []byte
	for i := range sas {
		sa := &sas[i]
		if _, dup := accounts[sa.ID]; dup {
			return nil, nil, 0, 0, fmt.Errorf("%w: account %s twice", ErrSnapshotCorrupt, sa.ID)
		}
		ac := &account{id: sa.ID, known: sa.Known, pairs: make([]pairState, len(sa.Pairs))}
		if err := ac.setFacts(sa.Facts); err != nil {
			return nil, nil, 0, 0, fmt.Errorf("%w: account %s: %w", ErrSnapshotCorrupt, sa.ID, err)
		}
		if ac.known {
			known++
		}
		for j := range sa.Pairs {
			sp := &sa.Pairs[j]
			if j > 0 && compareIDs(sa.Pairs[j-1].Child, sp.Child) >= 0 {
				return nil, nil, 0, 0, fmt.Errorf("%w: account %s's pairs out of order", ErrSnapshotCorrupt, sa.ID)
			}
			pr := pairState{enc: append(sp.Child[:len(sp.Child):len(sp.Child)], sp.Sources...)}
			var err error
			if srcs, err = pr.decode(srcs[:0]); err != nil {
				return nil, nil, 0, 0, fmt.Errorf("%w: account %s, child %s: %w", ErrSnapshotCorrupt, sa.ID, sp.Child, err)
			}
			for _, src := range srcs {
				if src.perms&^domain.All != 0 || (src.isGrant() && src.flags&srcFullID != 0) {
					return nil, nil, 0, 0, fmt.Errorf("%w: account %s, child %s: bad source", ErrSnapshotCorrupt, sa.ID, sp.Child)
				}
			}
			if enc = encode(enc[:0], srcs); !bytes.Equal(enc, sp.Sources) {
				return nil, nil, 0, 0, fmt.Errorf("%w: account %s, child %s: sources not as encoded", ErrSnapshotCorrupt, sa.ID, sp.Child)
			}
			ac.pairs[j] = pr
			npairs++
		}
		accounts[sa.ID] = ac
	}
	accounts, viewers := pack(accounts, npairs)
	return accounts, viewers, npairs, known, nil
}

// erasesPersonalData reports whether e erases personal data a snapshot may
// hold (a child's reference).
func erasesPersonalData(e domain.Event) bool {
	_, ok := e.(*domain.ChildErased)
	return ok
}

// Snapshot writer defaults.
const (
	// DefaultSnapshotEvery is how many records applied since the last
	// snapshot make RunSnapshots write the next one.
	DefaultSnapshotEvery = 100_000
	// DefaultSnapshotInterval is how long RunSnapshots waits at most,
	// while records were applied, before it writes the next snapshot.
	DefaultSnapshotInterval = 5 * time.Minute
)

// SnapshotConfig configures RunSnapshots.
type SnapshotConfig struct {
	// Dir is the directory of the snapshot file (SnapshotFile); required.
	Dir string
	// Every: a snapshot is written once this many records were applied
	// since the last one (< 1: DefaultSnapshotEvery).
	Every uint64
	// Interval: a snapshot is written once this long has passed since the
	// last one and some record was applied since (<= 0:
	// DefaultSnapshotInterval).
	Interval time.Duration
	// Logger reports each snapshot written or removed, and failures
	// (nil: slog.Default()).
	Logger *slog.Logger
}

// RunSnapshots writes the index's snapshots in the background until ctx is
// done, and then returns nil. It starts once the index is ready (Ready);
// then it writes a snapshot when cfg.Every records were applied since the
// last one written or loaded, or when cfg.Interval has passed since and a
// record was applied (at once, when the index was not loaded from a
// snapshot and has applied records). The applier is held only while the
// state is copied (WriteSnapshot); appends to the log are never held. A
// failed write is logged (warn) and tried again after cfg.Interval.
//
// When the index applies a child's erasure (R22), RunSnapshots removes the
// snapshot at once, since it may hold the child's reference; the next one
// is written by the rules above, counted from the removal (until then a
// start replays the whole log).
func (ix *Index) RunSnapshots(ctx context.Context, cfg SnapshotConfig) error {
	if cfg.Every < 1 {
		cfg.Every = DefaultSnapshotEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSnapshotInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	select {
	case <-ctx.Done():
		return nil
	case <-ix.Ready():
	}
	ix.applyMu.Lock()
	lastApplied, erasures, loaded := ix.loaded.Applied, ix.loaded.Erasures, ix.loaded.Applied > 0
	ix.applyMu.Unlock()
	var lastWrite, notBefore time.Time
	if loaded {
		lastWrite = time.Now()
	}
	tick := time.NewTicker(max(cfg.Interval/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		_, wake := ix.positionAndWake()
		ix.applyMu.Lock()
		applied, erased := ix.applied, ix.erasures
		ix.applyMu.Unlock()
		if erased != erasures {
			erasures = erased
			if err := RemoveSnapshot(cfg.Dir); err != nil {
				log.WarnContext(ctx, "access index snapshot: remove after an erasure", slog.String("error", err.Error()))
			} else {
				log.InfoContext(ctx, "access index snapshot removed: a child's personal data was erased", slog.String("dir", cfg.Dir))
			}
			// The next one is due by the usual rules, counted from now, so
			// a burst of erasures costs removals, not a write each.
			lastApplied, lastWrite = applied, time.Now()
		}
		now := time.Now()
		pending := applied - min(lastApplied, applied)
		if pending > 0 && !now.Before(notBefore) && (pending >= cfg.Every || now.Sub(lastWrite) >= cfg.Interval) {
			info, err := ix.WriteSnapshot(ctx, cfg.Dir)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				log.WarnContext(ctx, "access index snapshot not written", slog.String("dir", cfg.Dir), slog.String("error", err.Error()))
				notBefore = now.Add(cfg.Interval)
			case info.Applied == 0: // the index has stopped (Apply failed): nothing to save
				notBefore = now.Add(cfg.Interval)
			default:
				lastApplied, lastWrite = info.Applied, time.Now()
				log.InfoContext(ctx, "access index snapshot written", slog.String("dir", cfg.Dir),
					slog.String("position", info.Position.String()), slog.Int("pairs", info.Pairs), slog.Int("bytes", info.Bytes),
					slog.Duration("capture", info.Capture), slog.Duration("elapsed", info.Elapsed))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

// StartFromSnapshot loads dir's snapshot into ix (LoadSnapshot) and logs
// the outcome with the index's logger: loaded (info), none there (info), or
// ignored and why (warn): corrupt, of another format version, ahead of the
// log, not matching the log. It reports whether the snapshot was loaded;
// when it was not, ix is unchanged and Run replays the whole log.
func (ix *Index) StartFromSnapshot(ctx context.Context, dir string, log Follower) (SnapshotInfo, bool) {
	l := ix.cfg.logger
	info, err := ix.LoadSnapshot(ctx, dir, log)
	switch {
	case err == nil:
		l.InfoContext(ctx, "access index loaded from its snapshot; replaying the log after it",
			slog.String("dir", dir), slog.String("position", info.Position.String()), slog.Int("pairs", info.Pairs),
			slog.Int("bytes", info.Bytes), slog.Duration("elapsed", info.Elapsed))
		return info, true
	case errors.Is(err, os.ErrNotExist):
		l.InfoContext(ctx, "access index: no snapshot; replaying the whole log", slog.String("dir", dir))
	default:
		l.WarnContext(ctx, "access index snapshot ignored; replaying the whole log",
			slog.String("dir", dir), slog.String("error", err.Error()))
	}
	return SnapshotInfo{}, false
}
