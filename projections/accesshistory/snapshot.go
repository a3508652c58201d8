package accesshistory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/snapshotfile"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// # Snapshots (issue 18)
//
// The projection's fold (accessmodel.Model, with provenance, the grace
// periods and the policy history) lives in memory only, so every start
// used to pass the whole log through it up to the checkpoint (the
// warm-up), and read every current row of the table. A snapshot is that
// fold saved at a position S, with its current rows (what it compares new
// intervals with) and next row id: Load restores it without reading the
// table, and the runner replays only the records in (S, checkpoint]
// (projections.WarmStarter) through the whole fold, as records another
// runner wrote; the first Apply checks that the fold's ids caught up with
// the table's.
//
// The file (SnapshotFile in SnapshotConfig.Dir) is internal/snapshotfile's
// envelope (magic, format version, gob payload, SHA-256), written
// atomically with mode 0600 by RunSnapshots, in the background: it holds
// the fold only while it copies it (between two batches of the runner), and
// never holds appends to the log. It holds the record at S (id, type,
// stream, version, and the position before it), which Load checks against
// the log.
//
// Trust: a snapshot that is corrupt, of another format version, after the
// checkpoint Load is called at, or whose record is not in the log where it
// says, is ignored: a warning names why, and the whole log is replayed. A
// log changed before S is the ledger's start-up check's to catch, not the
// snapshot's.
//
// Personal data (R22): the fold holds no personal field (see
// domain.ChildState); the policy history's reasons, free text, are not
// saved (the fold never reads them). Like the index's, the snapshot is
// removed by RunSnapshots as soon as the projection applies a child's
// erasure, and written again later from the fold after it.
//
// Deleting the snapshot is always safe: the next start replays the whole
// log.

// SnapshotFile is the snapshot's file name in its directory.
const SnapshotFile = "accesshistory.snapshot"

// SnapshotMagic starts every snapshot file.
const SnapshotMagic = "ALHISSNP"

// SnapshotVersion is the format version this package writes and reads.
// Version 1 was the payload in one gob message; version 2 writes it in
// parts (snapshotfile.EncodeGobParts), which gob decodes without copying
// a message of a hundred megabytes several times over.
const SnapshotVersion uint32 = 2

// Errors of a snapshot that is not used; each means "replay the whole log
// instead". They are wrapped with details.
var (
	// ErrSnapshotCorrupt: not a snapshot, truncated, or its checksum or
	// payload is wrong.
	ErrSnapshotCorrupt = errors.New("accesshistory: snapshot corrupt")
	// ErrSnapshotVersion: a snapshot of another format version.
	ErrSnapshotVersion = errors.New("accesshistory: snapshot of another format version")
	// ErrSnapshotAhead: the snapshot's position is after the checkpoint
	// (the read models are behind it: restored, rebuilt, or a batch was
	// not committed).
	ErrSnapshotAhead = errors.New("accesshistory: snapshot is ahead of the checkpoint")
	// ErrSnapshotMismatch: the log does not hold the snapshot's record at
	// its position.
	ErrSnapshotMismatch = errors.New("accesshistory: snapshot does not match the log")
)

var snapshotFormat = snapshotfile.Format{Magic: SnapshotMagic, Version: SnapshotVersion,
	Corrupt: ErrSnapshotCorrupt, OtherVersion: ErrSnapshotVersion}

// Log is what a start from a snapshot reads of the event log: the record at
// the snapshot's position (eventlog.Store provides it).
type Log interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
}

// SnapshotConfig configures the projection's snapshots (WithSnapshots) and
// RunSnapshots.
type SnapshotConfig struct {
	// Dir is the directory of SnapshotFile; empty: no snapshots.
	Dir string
	// Log is the log the projection reads, to check a snapshot's record
	// against; required with Dir.
	Log Log
	// Every: a snapshot is written once this many records were folded
	// since the last one (< 1: 100,000).
	Every uint64
	// Interval: a snapshot is written once this long has passed since the
	// last one and a record was folded since (<= 0: 5 minutes).
	Interval time.Duration
	// Logger reports snapshots loaded, ignored, written and removed (nil:
	// slog.Default()).
	Logger *slog.Logger
}

// Option configures a Projection.
type Option func(*Projection)

// WithSnapshots makes Load start the fold from cfg.Dir's snapshot, when
// there is a usable one, and lets RunSnapshots write them.
func WithSnapshots(cfg SnapshotConfig) Option {
	return func(p *Projection) {
		if cfg.Every < 1 {
			cfg.Every = 100_000
		}
		if cfg.Interval <= 0 {
			cfg.Interval = 5 * time.Minute
		}
		if cfg.Logger == nil {
			cfg.Logger = slog.Default()
		}
		p.snap = cfg
	}
}

// SnapshotInfo describes a snapshot written or loaded.
type SnapshotInfo struct {
	// Position is the position of the last record the fold reflects.
	Position eventlog.Position
	// Applied is the number of records folded.
	Applied uint64
	// Pairs is the number of (account, child) pairs with provenance.
	Pairs int
	// Bytes is the file's size.
	Bytes int
	// Capture is how long the fold was held while it was copied (writing
	// only); Elapsed the whole write or load.
	Capture, Elapsed time.Duration
}

// snapshotPayload is the encoded part of a snapshot.
type snapshotPayload struct {
	Last  snapshotfile.Record
	Model accessmodel.State
	// Rows are the fold's current rows per pair, as far as it compares and
	// supersedes them (the columns loadState reads), in id order; NextID
	// the id of the next row it makes.
	Rows   []pairRows
	NextID int64
	// Erasures is the count of child erasures folded (RunSnapshots).
	Erasures uint64
}

// pairRows is one pair's current rows in a snapshot.
type pairRows struct {
	Pair accessmodel.Pair
	Rows []savedRow
}

// savedRow is what the fold keeps of a current row (keptRow), as a
// snapshot saves it.
type savedRow = keptRow

// rows returns the payload's rows as the fold keeps them, their reasons
// shared (a decoded snapshot holds a string per row).
func (pl *snapshotPayload) rows() map[accessmodel.Pair][]keptRow {
	out := make(map[accessmodel.Pair][]keptRow, len(pl.Rows))
	reasons := map[string]string{}
	for _, pr := range pl.Rows {
		for i := range pr.Rows {
			r := &pr.Rows[i]
			reason, ok := reasons[r.Reason]
			if !ok {
				reason = r.Reason
				reasons[reason] = reason
			}
			r.Reason = reason
		}
		out[pr.Pair] = pr.Rows
	}
	return out
}

// WarmStart implements projections.WarmStarter: the position the fold was
// restored at by the last Load (eventlog.Start without a snapshot).
func (p *Projection) WarmStart() eventlog.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.warmFrom
}

// loadSnapshot restores the fold from the snapshot, if it is usable at
// checkpoint at, and returns the snapshot (nil when none was usable: the
// fold is then empty). Called by Load with p.mu held.
func (p *Projection) loadSnapshot(ctx context.Context, at eventlog.Position) *snapshotPayload {
	if p.snap.Dir == "" || at.IsZero() {
		return nil
	}
	l := p.snap.Logger
	started := time.Now()
	data, err := os.ReadFile(filepath.Join(p.snap.Dir, SnapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		l.InfoContext(ctx, "access history: no snapshot; replaying the log up to the checkpoint", slog.String("dir", p.snap.Dir))
		return nil
	}
	if err == nil {
		var m *accessmodel.Model
		var pl *snapshotPayload
		if pl, err = decodeSnapshot(data); err == nil {
			if err = p.checkSnapshot(ctx, pl, at); err == nil {
				m, err = accessmodel.Restore(pl.Model)
				if err != nil {
					err = fmt.Errorf("%w: %w", ErrSnapshotCorrupt, err)
				}
			}
		}
		if err == nil {
			p.model, p.warmFrom, p.last, p.erasures = m, pl.Model.Position, pl.Last, pl.Erasures
			p.loadedErasures, p.loadedApplied = pl.Erasures, pl.Model.Applied
			l.InfoContext(ctx, "access history loaded from its snapshot; replaying the log after it up to the checkpoint",
				slog.String("dir", p.snap.Dir), slog.String("position", pl.Model.Position.String()),
				slog.String("checkpoint", at.String()), slog.Int("bytes", len(data)), slog.Duration("elapsed", time.Since(started)))
			return pl
		}
	}
	l.WarnContext(ctx, "access history snapshot ignored; replaying the whole log up to the checkpoint",
		slog.String("dir", p.snap.Dir), slog.String("error", err.Error()))
	return nil
}

// decodeSnapshot checks a snapshot file's bytes and decodes its payload.
func decodeSnapshot(data []byte) (*snapshotPayload, error) {
	pl := &snapshotPayload{}
	if err := snapshotFormat.DecodeGobParts(data, pl); err != nil {
		return nil, err
	}
	if pl.Model.Position.IsZero() || pl.Model.Applied == 0 || !pl.Model.Provenance {
		return nil, fmt.Errorf("%w: empty snapshot, or a fold without provenance", ErrSnapshotCorrupt)
	}
	if !pl.Last.Prev.Before(pl.Model.Position) {
		return nil, fmt.Errorf("%w: record before %s at %s", ErrSnapshotCorrupt, pl.Model.Position, pl.Last.Prev)
	}
	return pl, nil
}

// DecodeSnapshot checks a snapshot file's bytes (magic, format version,
// checksum, payload) and returns its position. It fails with
// ErrSnapshotCorrupt or ErrSnapshotVersion (wrapped) and never panics. For
// the fuzz test and tools.
func DecodeSnapshot(data []byte) (eventlog.Position, error) {
	pl, err := decodeSnapshot(data)
	if err != nil {
		return eventlog.Start, err
	}
	return pl.Model.Position, nil
}

// checkSnapshot checks that pl's position is not after the checkpoint at
// and that the log holds pl's record there.
func (p *Projection) checkSnapshot(ctx context.Context, pl *snapshotPayload, at eventlog.Position) error {
	pos := pl.Model.Position
	if at.Before(pos) {
		return fmt.Errorf("%w: snapshot at %s, checkpoint at %s", ErrSnapshotAhead, pos, at)
	}
	if p.snap.Log == nil {
		return fmt.Errorf("%w: no log to check it against", ErrSnapshotMismatch)
	}
	if err := pl.Last.Check(ctx, p.snap.Log, pos, ErrSnapshotMismatch); err != nil {
		return fmt.Errorf("accesshistory: %w", err)
	}
	return nil
}

// noted records what a snapshot needs of a record just folded: the record
// itself (the snapshot's check against the log) and child erasures.
// Called with p.mu held.
func (p *Projection) noted(rec *eventlog.Record, prev eventlog.Position, res accessmodel.Result) {
	p.last = snapshotfile.RecordOf(rec, prev)
	if _, ok := res.Envelope.Event.(*domain.ChildErased); ok {
		p.erasures++
	}
}

// capture copies the fold, holding p.mu (between two batches of the
// runner). ok is false when there is nothing to save: no fold, a fold that
// failed, one still short of the checkpoint it was loaded at, or one ahead
// of what the table has committed (a staged batch waiting for the write
// lock, which may never commit: a snapshot of it would be ahead of the
// checkpoint at the next start, and ignored).
func (p *Projection) capture() (pl *snapshotPayload, ok bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.model == nil || p.broken || p.model.Applied() == 0 || p.model.Position().Before(p.warmTo) ||
		p.committed.Before(p.model.Position()) {
		return nil, false, nil
	}
	st, err := p.model.State()
	if err != nil {
		return nil, false, fmt.Errorf("accesshistory: snapshot: %w", err)
	}
	pl = &snapshotPayload{Last: p.last, Model: st, NextID: p.nextID, Erasures: p.erasures, Rows: make([]pairRows, 0, len(p.rows))}
	// The slices are shared, not copied: the fold never changes a pair's
	// slice once kept, it replaces it (diff).
	for pair, rs := range p.rows {
		pl.Rows = append(pl.Rows, pairRows{Pair: pair, Rows: rs})
	}
	return pl, true, nil
}

// WriteSnapshot saves the fold at its current position into
// dir/SnapshotFile, atomically, mode 0600. It holds
// the fold only while it copies it (SnapshotInfo.Capture): the runner's
// next batch waits that long; appends to the log never wait. With nothing
// to save (see capture) it writes nothing and returns a zero SnapshotInfo.
// Two WriteSnapshot calls must not run at once.
func (p *Projection) WriteSnapshot(ctx context.Context, dir string) (SnapshotInfo, error) {
	started := time.Now()
	pl, ok, err := p.capture()
	if err != nil || !ok {
		return SnapshotInfo{}, err
	}
	capture := time.Since(started)
	if err := ctx.Err(); err != nil {
		return SnapshotInfo{}, err
	}
	data, err := snapshotFormat.EncodeGobParts(pl)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("accesshistory: %w", err)
	}
	if err := snapshotfile.WriteAtomic(dir, SnapshotFile, data); err != nil {
		return SnapshotInfo{}, fmt.Errorf("accesshistory: %w", err)
	}
	return SnapshotInfo{Position: pl.Model.Position, Applied: pl.Model.Applied, Pairs: len(pl.Model.PairProv), Bytes: len(data),
		Capture: capture, Elapsed: time.Since(started)}, nil
}

// RemoveSnapshot removes dir's snapshot, if any. Removing it is always
// safe: the next start replays the whole log.
func RemoveSnapshot(dir string) error {
	if err := snapshotfile.Remove(dir, SnapshotFile); err != nil {
		return fmt.Errorf("accesshistory: %w", err)
	}
	return nil
}

// folded reports the fold's count of records and of child erasures, and
// whether it has reached the checkpoint it was loaded at.
func (p *Projection) folded() (applied, erasures uint64, warm bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.model == nil || p.broken {
		return 0, p.erasures, false
	}
	return p.model.Applied(), p.erasures, !p.model.Position().Before(p.warmTo)
}

// RunSnapshots writes the projection's snapshots in the background until
// ctx is done, then returns nil; without WithSnapshots it returns at once.
// Once the fold has reached its checkpoint, it writes a snapshot when
// cfg.Every records were folded since the last one written or loaded, or
// when cfg.Interval has passed since and a record was folded (so at once
// after a start without a snapshot). A failed write is logged (warn) and
// tried again after cfg.Interval.
//
// When the fold applies a child's erasure (R22), RunSnapshots removes the
// snapshot at once, and the next one is due by the rules above, counted
// from the removal.
func (p *Projection) RunSnapshots(ctx context.Context) error {
	cfg := p.snap
	if cfg.Dir == "" {
		return nil
	}
	log := cfg.Logger
	tick := time.NewTicker(max(min(cfg.Interval/4, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	var (
		started                bool
		lastApplied, erasures  uint64
		lastWrite, notBefore   time.Time
		loadedApplied, loadedE uint64
	)
	for {
		applied, erased, warm := p.folded()
		if !started && warm {
			started = true
			p.mu.Lock()
			loadedApplied, loadedE = p.loadedApplied, p.loadedErasures
			p.mu.Unlock()
			lastApplied, erasures = loadedApplied, erased
			if loadedApplied > 0 {
				// Erasures folded since the snapshot loaded count.
				erasures, lastWrite = loadedE, time.Now()
			}
		}
		if started && warm {
			if erased != erasures {
				erasures = erased
				if err := RemoveSnapshot(cfg.Dir); err != nil {
					log.WarnContext(ctx, "access history snapshot: remove after an erasure", slog.String("error", err.Error()))
				} else {
					log.InfoContext(ctx, "access history snapshot removed: a child's personal data was erased", slog.String("dir", cfg.Dir))
				}
				lastApplied, lastWrite = applied, time.Now()
			}
			now := time.Now()
			pending := applied - min(lastApplied, applied)
			if pending > 0 && !now.Before(notBefore) && (pending >= cfg.Every || now.Sub(lastWrite) >= cfg.Interval) {
				info, err := p.WriteSnapshot(ctx, cfg.Dir)
				switch {
				case ctx.Err() != nil:
					return nil
				case err != nil:
					log.WarnContext(ctx, "access history snapshot not written", slog.String("dir", cfg.Dir), slog.String("error", err.Error()))
					notBefore = now.Add(cfg.Interval)
				case info.Applied == 0: // nothing to save now (a failed fold being reloaded)
				default:
					lastApplied, lastWrite = info.Applied, time.Now()
					log.InfoContext(ctx, "access history snapshot written", slog.String("dir", cfg.Dir),
						slog.String("position", info.Position.String()), slog.Int("pairs", info.Pairs), slog.Int("bytes", info.Bytes),
						slog.Duration("capture", info.Capture), slog.Duration("elapsed", info.Elapsed))
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

var (
	_ projections.WarmStarter = (*Projection)(nil)
	_ projections.Committer   = (*Projection)(nil)
)
