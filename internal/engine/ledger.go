package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// openLedger loads (or, on first start, creates) the ledger's signing key
// and returns the ledger publishing into the checkpoint directory, with the
// newest checkpoint published so far (nil when none opens with the key).
func openLedger(ctx context.Context, cfg *Config, st *Stores, opts Options, log *slog.Logger) (*ledger.Ledger, *ledger.Checkpoint, error) {
	path := cfg.LedgerKeyPath()
	if opts.ReadOnlyKey {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
	}
	key, created, err := ledger.LoadOrCreateKey(path)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger key: %w", err)
	}
	if created {
		log.Info("ledger: created the signing key; keep a copy of the public key with your auditors",
			"file", path, "public_key", key.VerifierKey)
	}
	l, err := ledger.NewLedger(ledger.Config{DB: st.Read, Key: key, Dir: cfg.CheckpointPath(),
		Interval: opts.CheckpointInterval, Every: opts.CheckpointEvery, Instance: opts.Instance, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	cps, _, err := l.Published(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(cps) == 0 {
		return l, nil, nil
	}
	latest := cps[len(cps)-1].Checkpoint
	return l, &latest, nil
}

// guardRetry is how long the start-up check waits before it tries again
// after the store could not be read.
const guardRetry = 5 * time.Second

// guardAndPublish checks the log's tail (the records this start reads,
// tailStart) against the stored tree and the published checkpoints, closes
// e.verified when it agrees, then publishes checkpoints until ctx ends
// while it re-hashes the whole stored log in the background (closing
// e.whole when it agrees). When the log disagrees, at start or in the
// background, it logs an alert and the ledger stops: the API refuses
// decisions, naming the first bad position (docs/ledger.md); the engine
// keeps running. A store that cannot be read is tried again.
func (e *Engine) guardAndPublish(ctx context.Context, indexFrom <-chan eventlog.Position, models eventlog.Position) error {
	if e.Ledger == nil {
		close(e.verified)
		close(e.whole)
		return nil
	}
	// The runner creates the tree's tables at its start (on a new store).
	for {
		ok, err := ProjectionExists(ctx, e.Stores, ledger.Name)
		if ok || err != nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	from, err := e.tailStart(ctx, indexFrom, models)
	if err != nil {
		return nil // ctx ended
	}
	rep, ok, err := e.guard(ctx, "start-up check", func() (*ledger.Report, error) {
		return e.Ledger.GuardTail(ctx, e.Stores.Events.Log, from, ledger.VerifyOptions{})
	})
	if !ok {
		return err
	}
	close(e.verified)
	g, gctx := errgroup.WithContext(ctx)
	if e.Ledger.Whole() {
		close(e.whole)
	} else {
		g.Go(func() error {
			e.log.Info("ledger: re-hashing the whole stored log in the background", "tail_from_leaf", rep.FromLeaf)
			_, ok, err := e.guard(gctx, "background check of the whole log", func() (*ledger.Report, error) {
				return e.Ledger.Guard(gctx, e.Stores.Events.Log, ledger.VerifyOptions{})
			})
			if ok {
				close(e.whole)
			}
			return err
		})
	}
	g.Go(func() error {
		err := e.Ledger.Run(gctx)
		if errors.Is(err, ledger.ErrMismatch) {
			e.log.Error("ALERT ledger: stopped signing checkpoints: the stored tree is not an extension of the last checkpoint, "+
				"or the stored event log disagrees with it", "err", err)
			return nil
		}
		if gctx.Err() != nil {
			return nil
		}
		return err
	})
	return g.Wait()
}

// guard runs check (a Guard of the ledger) until it gives a verdict: it
// retries while the store cannot be read, logs the pass (info) or the
// mismatch (the ALERT line), and reports whether the log agreed. ok is
// false when ctx ended first; err is set when the check failed otherwise
// (the checkpoints could not be read).
func (e *Engine) guard(ctx context.Context, what string, check func() (*ledger.Report, error)) (*ledger.Report, bool, error) {
	for {
		started := time.Now()
		rep, err := check()
		switch {
		case ctx.Err() != nil:
			return nil, false, nil
		case errors.Is(err, ledger.ErrUnreadable):
			e.log.Error("ledger: the "+what+" could not read the store; trying again", "err", err, "retry_in", guardRetry.String())
			select {
			case <-ctx.Done():
				return nil, false, nil
			case <-time.After(guardRetry):
			}
			continue
		case errors.Is(err, ledger.ErrMismatch):
			first, _ := rep.FirstBad()
			e.log.Error("ALERT ledger: the stored event log disagrees with what was recorded and signed ("+what+"); "+
				"the engine is not ready and answers no decisions. Run accessd ledger verify and follow docs/ledger.md",
				"kind", string(first.Kind), "first_bad", positionText(first), "detail", first.Detail,
				"report", strings.ReplaceAll(rep.Summary(), "\n", "; "))
			return rep, false, nil
		case err != nil:
			return nil, false, fmt.Errorf("ledger: %s: %w", what, err)
		}
		attrs := []any{"check", what, "events", rep.Events, "from_leaf", rep.FromLeaf, "tree", rep.TreeSize, "checkpoints", rep.Checkpoints,
			"elapsed", time.Since(started).Round(time.Millisecond).String()}
		if rep.Latest != nil {
			attrs = append(attrs, "latest_checkpoint", rep.Latest.Size)
		}
		e.log.Info("ledger: the log agrees with the stored tree and the published checkpoints", attrs...)
		return rep, true, nil
	}
}

// positionText names a problem's first bad position, or "unknown".
func positionText(p ledger.Problem) string {
	if !p.HasPosition {
		return "unknown"
	}
	return p.Position.String()
}

// VerifyStores is verifyLedger on open stores.
func VerifyStores(ctx context.Context, cfg *Config, st *Stores, files []string, verifier note.Verifier) (*ledger.Report, error) {
	notes, err := ledger.ReadCheckpointDir(cfg.CheckpointPath(), 0)
	if err != nil {
		return nil, err
	}
	stored, err := ledger.StoredCheckpoints(ctx, st.Read, 0)
	if err != nil {
		return nil, fmt.Errorf("the read store could not be read: %w", err)
	}
	notes = append(notes, stored...)
	for _, f := range files {
		s, err := ledger.ReadCheckpointFile(f)
		if err != nil {
			return nil, err
		}
		notes = append(notes, s)
	}
	var cps []ledger.Signed
	var problems []ledger.Problem
	switch {
	case verifier != nil:
		cps, problems = ledger.OpenAll(notes, verifier)
	case len(notes) > 0:
		problems = append(problems, ledger.Problem{Kind: ledger.KindSignature, LeafIndex: -1, Detail: fmt.Sprintf(
			"%d published checkpoint(s) but no key to check them with: give --ledger-key (or --public-key to accessd ledger verify)", len(notes))})
	}
	var tree *ledger.Tree
	if ok, err := ProjectionExists(ctx, st, ledger.Name); err != nil {
		return nil, fmt.Errorf("the read store could not be read: %w", err)
	} else if ok {
		tree = ledger.NewTree(st.Read)
	}
	rep, err := ledger.Verify(ctx, st.Events.Log, tree, ledger.VerifyOptions{Checkpoints: cps})
	if err != nil {
		return nil, err
	}
	if tree == nil {
		rep.Problems = append(rep.Problems, ledger.Problem{Kind: ledger.KindTree, LeafIndex: -1, Detail: "the read store has no ledger tree yet " +
			"(accessd serve, or accessd rebuild --projection ledger, builds it): only the checkpoints were compared"})
		if len(cps) == 0 {
			rep.Problems = rep.Problems[:len(rep.Problems)-1] // a new store: nothing to compare, nothing wrong
		}
	}
	rep.Problems = append(problems, rep.Problems...)
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// LedgerVerifier returns the verifier of the checkpoints: from the public
// key file, else from the signing key (never created here).
func LedgerVerifier(cfg *Config, publicKey string) (note.Verifier, error) {
	if publicKey != "" {
		b, err := os.ReadFile(publicKey)
		if err != nil {
			return nil, fmt.Errorf("--public-key: %w", err)
		}
		return ledger.ParseVerifierKey(string(b))
	}
	key, err := ledger.LoadKey(cfg.LedgerKeyPath())
	if err != nil {
		return nil, fmt.Errorf("no key to check the checkpoints' signatures with (give --public-key or --ledger-key): %w", err)
	}
	return key.Verifier, nil
}

// ProjectionExists reports whether the runner has a checkpoint row (and so
// tables and views) for the projection.
func ProjectionExists(ctx context.Context, st *Stores, name string) (bool, error) {
	n, err := st.Read.NewSelect().Table("projection_checkpoints").Where("name = ?", name).Count(ctx)
	return n > 0, err
}

// OptionalVerifier returns the verifier of the ledger's key, or nil when
// there is no key file (a store the engine never served).
func OptionalVerifier(cfg *Config) (note.Verifier, error) {
	path := cfg.LedgerKeyPath()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	key, err := ledger.LoadKey(path)
	if err != nil {
		return nil, err
	}
	return key.Verifier, nil
}

// CheckBeforeRebuild refuses a rebuild of read models from a log that
// disagrees with what the ledger recorded and signed: the rebuilt read
// models, and a rebuilt tree, would vouch for a changed history. Only a
// damaged tree (the log itself agreeing with every checkpoint) may be
// rebuilt. It returns the newest checkpoint, which the rebuilt tree must
// agree with.
func CheckBeforeRebuild(ctx context.Context, cfg *Config, st *Stores) (*ledger.Checkpoint, error) {
	verifier, err := OptionalVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	rep, err := VerifyStores(ctx, cfg, st, nil, verifier)
	if err != nil {
		return nil, fmt.Errorf("rebuild: the log could not be verified first: %w", err)
	}
	for _, p := range rep.Problems {
		if p.Kind != ledger.KindTree {
			first, _ := rep.FirstBad()
			return nil, fmt.Errorf("rebuild refused: the stored log disagrees with what the ledger recorded and signed (%s); "+
				"rebuilt read models would vouch for a changed history. Run accessd ledger verify and follow docs/ledger.md", first)
		}
	}
	if rep.Latest == nil {
		return nil, nil
	}
	latest := *rep.Latest
	return &latest, nil
}
