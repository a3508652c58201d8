// Package reseal moves an existing deployment's event log into a new one
// whose personal data is sealed (R22, docs/personal-data.md): accessd
// reseal. An event log is never edited in place, so the log is copied:
// every event of the source, in global order, goes through the
// destination's personal-data layer, which seals what the source holds in
// plain text (events written before sealing was on) under the
// destination's subject keys. Then both are verified.
//
// Copy and Compare work on any event stores (eventlog.Store); Run is the
// whole command on two opened deployments (internal/engine): it checks the
// source against its ledger, copies, compares, counts what is left in
// plain text, builds the destination's ledger and signs its first
// checkpoint, and returns a Report whose checks make the verdict.
// PrepareSecrets gives the destination the files it must share with the
// source, before it is opened.
//
// What changes between the logs: personal values and reasons are sealed;
// identity streams get the destination's keyed names; an erased subject's
// values are stand-ins. What does not: event ids, types, stream versions,
// the order, metadata, account and child ids (portals hold them).
package reseal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/progress"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// Deployment is one side of Run: its configuration and its opened stores.
type Deployment struct {
	Config *engine.Config
	Stores *engine.Stores
}

// Options configure Run.
type Options struct {
	// Checkpoints are checkpoint files of the source kept outside it
	// (accessd ledger verify --checkpoint): its log must agree with them.
	Checkpoints []string
	// Progress receives the progress of the copy and of the ledger's
	// build (internal/progress); nil prints nothing. Terminal draws bars.
	Progress io.Writer
	Terminal bool
	// Copy tunes the copy (page and batch sizes).
	Copy   CopyOptions
	Logger *slog.Logger
}

// Check is one verdict of Run.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// The checks of a Report, in order.
const (
	CheckSource      = "(a) source ledger"
	CheckCopy        = "copy"
	CheckEqual       = "(b) destination equals source"
	CheckSealed      = "(c) no plain personal data in the destination"
	CheckDestination = "(d) destination ledger"
	CheckUnchanged   = "source unchanged"
)

// Report is what Run did and found.
type Report struct {
	Copy    CopyResult
	Checks  []Check
	Elapsed time.Duration
	// SourcePlain is how many of the source's events hold personal data in
	// plain text.
	SourcePlain int64
	// SourceLedger is the source's verification (its root at its size);
	// DestinationLedger the destination's.
	SourceLedger, DestinationLedger *ledger.Report
	// Checkpoint is the destination's newest checkpoint (the first of the
	// new log, signed by Run), and PublicKey the key that verifies it.
	Checkpoint *ledger.Signed
	PublicKey  string
}

// OK reports whether every check passed (and every check ran).
func (r *Report) OK() bool {
	names := map[string]bool{}
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
		names[c.Name] = true
	}
	for _, n := range []string{CheckSource, CheckCopy, CheckEqual, CheckSealed, CheckDestination, CheckUnchanged} {
		if !names[n] {
			return false
		}
	}
	return true
}

// Failed returns the first check that failed.
func (r *Report) Failed() (Check, bool) {
	for _, c := range r.Checks {
		if !c.OK {
			return c, true
		}
	}
	return Check{}, false
}

func (r *Report) add(name string, ok bool, format string, args ...any) bool {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	return ok
}

// Run reseals src into dst and verifies both; the destination must have
// been given the source's master key (PrepareSecrets). In order:
//
//	(a) the source's log agrees with its ledger (the stored tree, its
//	    published checkpoints and opts.Checkpoints): else nothing is
//	    copied (a changed log would be laundered into a new one);
//	    then Copy (resuming an interrupted run);
//	(b) Compare: the destination, opened, is the source, event by event;
//	(c) no event of the destination holds personal data in plain text,
//	    and no erased subject has a key there;
//	(d) when (b) and (c) passed, the destination's ledger tree is built
//	    from its log, verified, and its first checkpoint signed with the
//	    destination's ledger key (created if missing): a new log, so a
//	    new tree under a key of its own; the source's checkpoints stay
//	    valid for the source's log;
//	and the source's head has not moved meanwhile (the source's engine
//	must be stopped).
//
// An empty source log fails (a): a mistyped --data-dir is not a
// deployment. Every check is in the report (Report.OK is the verdict).
// Run returns an error only when ctx ends; the report then holds the
// checks done so far.
func Run(ctx context.Context, src, dst Deployment, opts Options) (*Report, error) {
	started := time.Now()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{}
	done := func() (*Report, error) {
		rep.Elapsed = time.Since(started)
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("reseal interrupted (run it again to resume): %w", err)
		}
		return rep, nil
	}

	head, err := src.Stores.Events.Log.Head(ctx)
	if err != nil {
		rep.add(CheckSource, false, "the source's log could not be read: %v", err)
		return done()
	}
	if head.IsZero() {
		rep.add(CheckSource, false, "the source's log is empty: nothing to reseal (do the store flags name the deployment?)")
		return done()
	}
	if !verifySource(ctx, src, opts, rep) {
		return done()
	}
	if rep.SourcePlain, _, err = personaldata.CountPlain(ctx, src.Stores.Events.Log); err != nil {
		rep.add(CheckCopy, false, "the source's log could not be read: %v", err)
		return done()
	}

	s := Source{Log: src.Stores.Log, Stored: src.Stores.Events.Log}
	d := Destination{Log: dst.Stores.Log, Keys: dst.Stores.Keys, IDs: dst.Stores.IDs}
	copyOpts := opts.Copy
	finish := func() {}
	if opts.Progress != nil {
		copyOpts.Progress, finish = progress.New(opts.Progress, opts.Terminal, "reseal copy")
	}
	rep.Copy, err = Copy(ctx, s, d, copyOpts)
	finish()
	if err != nil {
		if ctx.Err() == nil {
			rep.add(CheckCopy, false, "%v", err)
		}
		return done()
	}
	rep.add(CheckCopy, true, "%d events: %d copied by this run in %d writes, %d found copied by an earlier run",
		rep.Copy.Total, rep.Copy.Copied, rep.Copy.Writes, rep.Copy.Verified)

	cmp, err := Compare(ctx, s, d, opts.Copy.PageSize)
	if ctx.Err() != nil {
		return done()
	}
	if err != nil {
		rep.add(CheckEqual, false, "%v", err)
	} else {
		rep.add(CheckEqual, true, "the %d events, opened, are the source's (ids, versions, types, data, metadata; "+
			"identity streams under keyed names, erased subjects' values as stand-ins)", cmp.Events)
		plain, total, err := VerifySealed(ctx, d, cmp.Erased)
		switch {
		case ctx.Err() != nil:
			return done()
		case err != nil:
			rep.add(CheckSealed, false, "%v", err)
		default:
			rep.add(CheckSealed, plain == 0, "personal data in plain text: %d of %d events; the %d erased subject(s) have no key",
				plain, total, len(cmp.Erased))
		}
	}
	if _, bad := rep.Failed(); bad {
		// A destination that is not the source's copy gets no checkpoint.
		rep.add(CheckDestination, false, "not built: an earlier check failed")
	} else {
		buildLedger(ctx, dst, opts, log, rep)
	}
	if ctx.Err() != nil {
		return done()
	}
	now, err := src.Stores.Events.Log.Head(ctx)
	switch {
	case ctx.Err() != nil:
		return done()
	case err != nil:
		rep.add(CheckUnchanged, false, "the source's log could not be read: %v", err)
	case now != head:
		rep.add(CheckUnchanged, false, "its head moved from %s to %s during the reseal: stop every engine on the source and run reseal again", head, now)
	default:
		rep.add(CheckUnchanged, true, "its head is still %s", head)
	}
	return done()
}

// verifySource is check (a).
func verifySource(ctx context.Context, src Deployment, opts Options, rep *Report) bool {
	verifier, err := engine.OptionalVerifier(src.Config)
	if err != nil {
		return rep.add(CheckSource, false, "the source's ledger key: %v", err)
	}
	lrep, err := engine.VerifyStores(ctx, src.Config, src.Stores, opts.Checkpoints, verifier)
	if err != nil {
		return rep.add(CheckSource, false, "the source's log could not be checked against its ledger: %v", err)
	}
	rep.SourceLedger = lrep
	if !lrep.OK {
		first, _ := lrep.FirstBad()
		return rep.add(CheckSource, false, "the source's log disagrees with its ledger (%s); nothing was copied. "+
			"Run accessd ledger verify on it and follow docs/ledger.md", first)
	}
	what := fmt.Sprintf("%d events agree with the stored tree (%d leaves) and %d checkpoint(s)", lrep.Events, lrep.TreeSize, lrep.Checkpoints)
	if lrep.TreeSize == 0 && lrep.Checkpoints == 0 {
		what = fmt.Sprintf("%d events; no ledger tree or checkpoint to check them against (never served by a version with the ledger)", lrep.Events)
	}
	return rep.add(CheckSource, true, "%s; root %s", what, rootText(lrep))
}

func rootText(r *ledger.Report) string {
	if r.Events == 0 {
		return "of the empty log"
	}
	return fmt.Sprintf("%s at size %d", r.Root, r.Events)
}

// LedgerInstance names reseal in the destination's checkpoint table.
const LedgerInstance = "accessd-reseal"

// buildLedger is check (d): it builds the destination's tree from its log
// as stored, verifies it, signs a checkpoint of it (the new log's first)
// and verifies the log against tree and checkpoints again.
func buildLedger(ctx context.Context, dst Deployment, opts Options, log *slog.Logger, rep *Report) bool {
	fail := func(format string, args ...any) bool {
		return rep.add(CheckDestination, false, format, args...)
	}
	key, created, err := ledger.LoadOrCreateKey(dst.Config.LedgerKeyPath())
	if err != nil {
		return fail("the destination's ledger key: %v", err)
	}
	if created {
		log.Info("ledger: created the destination's signing key; keep a copy of the public key with your auditors",
			"file", dst.Config.LedgerKeyPath(), "public_key", key.VerifierKey)
	}
	rep.PublicKey = key.VerifierKey
	l, err := ledger.NewLedger(ledger.Config{DB: dst.Stores.Read, Key: key, Dir: dst.Config.CheckpointPath(),
		Instance: LedgerInstance, Logger: log})
	if err != nil {
		return fail("%v", err)
	}
	published, _, err := l.Published(ctx)
	if err != nil {
		return fail("the destination's checkpoints could not be read: %v", err)
	}
	var lopts []ledger.Option
	if len(published) > 0 {
		lopts = append(lopts, ledger.WithCheckpoint(published[len(published)-1].Checkpoint))
	}
	report, finish := func(uint64, uint64) {}, func() {}
	if opts.Progress != nil {
		report, finish = progress.New(opts.Progress, opts.Terminal, "reseal ledger")
	}
	err = projections.Rebuild(ctx, dst.Stores.Read.DB, dst.Stores.Events.Log, ledger.New(lopts...), report, projections.WithLogger(log))
	finish()
	if err != nil {
		return fail("the destination's ledger tree could not be built: %v", err)
	}
	grep, err := l.Guard(ctx, dst.Stores.Events.Log, ledger.VerifyOptions{})
	if err != nil {
		return fail("the destination's log disagrees with its new tree: %v", err)
	}
	if grep.Events > 0 {
		s, _, err := l.Publish(ctx)
		if err != nil {
			return fail("the destination's first checkpoint could not be signed: %v", err)
		}
		rep.Checkpoint = &s
	}
	vrep, err := engine.VerifyStores(ctx, dst.Config, dst.Stores, nil, key.Verifier)
	if err != nil {
		return fail("the destination's log could not be checked against its ledger: %v", err)
	}
	rep.DestinationLedger = vrep
	if !vrep.OK {
		first, _ := vrep.FirstBad()
		return fail("the destination's log disagrees with its ledger: %s", first)
	}
	if rep.Checkpoint != nil && (rep.Checkpoint.Size != vrep.Events || rep.Checkpoint.Root != vrep.Root) {
		return fail("the checkpoint signed (size %d, root %s) is not the log's tree (size %d, root %s)",
			rep.Checkpoint.Size, rep.Checkpoint.Root, vrep.Events, vrep.Root)
	}
	return rep.add(CheckDestination, true, "%d events agree with the new tree and %d checkpoint(s); root %s, signed by %s",
		vrep.Events, vrep.Checkpoints, rootText(vrep), key.Origin())
}
