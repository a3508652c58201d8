package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/internal/importer"
	"github.com/accessledger/accessledger/internal/progress"
)

// errImportRefused ends accessd import with exit code 1 after the bad
// lines were listed: nothing was appended.
var errImportRefused = errors.New("nothing appended")

// maxLineErrors bounds the bad lines import lists.
const maxLineErrors = 100

// runImport imports the records of --file (docs/import.md) with their real
// dates (R24): it reads and checks every line against the domain's rules
// and the store, and appends nothing when a line is bad, listing the bad
// lines by number (never their values); else it appends the decided events
// in batches and prints what it appended. --dry-run stops after the checks.
// Importing the same file again appends nothing.
func runImport(ctx context.Context, args []string, env *environment) error {
	var cfg storeConfig
	var file, operator string
	var dryRun bool
	var batch int
	pol := domain.DefaultPolicy
	fs := newFlagSet("import", env.stderr)
	cfg.register(fs)
	fs.StringVar(&file, "file", "", "the JSON Lines file of the records to import (required; format in docs/import.md)")
	fs.BoolVar(&dryRun, "dry-run", false, "check the whole file against the store and print what would be appended; append nothing")
	fs.StringVar(&operator, "actor", "", "the operator's name: the events' actor is import:NAME (default: import), role system")
	fs.DurationVar(&pol.GracePeriod, "grace-period", pol.GracePeriod, "policy of a store with none recorded yet: a carer's limited access after an imported placement ended (R3); a recorded policy (R25) wins")
	fs.DurationVar(&pol.InvitationTTL, "invitation-ttl", pol.InvitationTTL, "policy of a store with none recorded yet: how long an imported invitation stayed open (R9); a recorded policy (R25) wins")
	fs.IntVar(&batch, "batch-events", importer.DefaultBatchEvents, "events per transaction (SQL stores)")
	if err := cfg.parse(fs, args, env); err != nil {
		return err
	}
	if strings.TrimSpace(file) == "" {
		return fmt.Errorf("%w: --file is required", errUsage)
	}
	actor, err := domain.ImportActor(operator)
	if err != nil {
		return fmt.Errorf("%w: --actor: %v", errUsage, err)
	}
	if err := pol.Validate(); err != nil {
		return fmt.Errorf("%w: policy: %v", errUsage, err)
	}
	out := env.stdout
	start := time.Now()
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open the import file: %w", err)
	}
	recs, err := importer.Read(f)
	_ = f.Close()
	if err != nil && !isLineErrors(err) {
		return err
	}
	lineErrs := err
	fmt.Fprintf(out, "read:      %d records in %s\n", len(recs), time.Since(start).Round(time.Millisecond))

	log := cfg.logger(env)
	st, err := engine.OpenStores(ctx, &cfg.Config, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if lineErrs != nil {
		// The good lines are still checked against the store, so that one
		// run lists every bad line it can.
		_, perr := prepare(ctx, st, recs, actor, pol)
		if perr != nil && !isLineErrors(perr) {
			return perr
		}
		return refuse(out, env.stderr, errors.Join(lineErrs, perr))
	}
	checkStart := time.Now()
	plan, err := prepare(ctx, st, recs, actor, pol)
	if err != nil {
		if isLineErrors(err) {
			return refuse(out, env.stderr, err)
		}
		return err
	}
	fmt.Fprintf(out, "checked:   every line, against %s, in %s\n", st.Events.Name, time.Since(checkStart).Round(time.Millisecond))
	for _, k := range []string{importer.KindChild, importer.KindAccount, importer.KindPlacement, importer.KindGrant} {
		c := plan.Kinds[k]
		fmt.Fprintf(out, "%-11s %d to import, %d in the store already\n", plural[k]+":", c.New, c.Present)
	}
	if dryRun {
		fmt.Fprintf(out, "dry run:   would append %d events to %d streams; nothing appended\n", plan.Events, plan.Streams)
		return nil
	}
	report, finish := progress.New(out, progress.IsTerminal(out), "import")
	applyStart := time.Now()
	res, err := plan.Apply(ctx, st.Log, importer.ApplyOptions{BatchEvents: batch, Progress: report})
	finish()
	elapsed := time.Since(applyStart)
	if err != nil {
		fmt.Fprintf(out, "FAILED:    %d events appended before the import stopped; run it again to append the rest\n", res.Events)
		return err
	}
	if a, ok := st.Events.Log.(interface{ Analyze(context.Context) error }); ok && res.Events > 0 {
		// The planner's statistics of the events table after the bulk
		// load (PostgreSQL); the import is done whatever this says.
		if err := a.Analyze(ctx); err != nil {
			fmt.Fprintf(out, "warning:   %v\n", err)
		}
	}
	rate := ""
	if res.Events > 0 && elapsed > 0 {
		rate = fmt.Sprintf(", %.0f events/s", float64(res.Events)/elapsed.Seconds())
	}
	fmt.Fprintf(out, "appended:  %d events to %d streams in %d writes (%s%s), as actor %s, correlation id %s\n",
		res.Events, res.Streams, res.Writes, elapsed.Round(time.Millisecond), rate, actor.ID, correlationOf(plan, res))
	if res.Events > 0 {
		fmt.Fprintf(out, "position:  %s (a running engine answers with the import from there on: ?min_position=%s)\n", res.Last, res.Last)
	}
	fmt.Fprintf(out, "total:     %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// plural names the kinds of record in the summary.
var plural = map[string]string{importer.KindChild: "children", importer.KindAccount: "accounts",
	importer.KindPlacement: "placements", importer.KindGrant: "grants"}

// prepare checks recs against the stores and plans the import.
func prepare(ctx context.Context, st *engine.Stores, recs []*importer.Record, actor domain.Actor, pol domain.Policy) (*importer.Plan, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return importer.Prepare(ctx, st.Log, recs, importer.Options{Actor: actor, Policy: pol, Now: time.Now(),
		CorrelationID: id, IDs: st.IDs})
}

// correlationOf is the correlation id of the plan's events, or "-" when
// it appended none.
func correlationOf(p *importer.Plan, res importer.Applied) string {
	if res.Events == 0 {
		return "-"
	}
	return p.CorrelationID.String()
}

// isLineErrors reports whether err is made of line errors only.
func isLineErrors(err error) bool {
	var le *importer.LineError
	if !errors.As(err, &le) {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil && !isLineErrors(e) {
				return false
			}
		}
	}
	return true
}

// refuse lists the bad lines of err (at most maxLineErrors) on w and
// returns errImportRefused.
func refuse(out, w io.Writer, err error) error {
	lines := flatten(err)
	slices.SortStableFunc(lines, func(a, b error) int {
		var x, y *importer.LineError
		errors.As(a, &x)
		errors.As(b, &y)
		return cmp.Compare(x.Line, y.Line)
	})
	for i, e := range lines {
		if i == maxLineErrors {
			fmt.Fprintf(w, "... and %d more bad lines\n", len(lines)-i)
			break
		}
		fmt.Fprintln(w, e)
	}
	fmt.Fprintf(out, "FAILED:    %d bad lines; nothing appended\n", len(lines))
	return fmt.Errorf("%d bad lines: %w", len(lines), errImportRefused)
}

// flatten returns the errors joined in err, in order.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
