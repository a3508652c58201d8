// Package datagen generates realistic, deterministic event histories of a
// children's services portal, at the sizes of the Performance issue: a
// county (about a million events) and a nation (about fifty million), for
// the load tool and the benchmarks.
//
// # What is generated
//
// Every event is decided by the domain aggregates (domain.Child,
// domain.Account, domain.IdentityLink) exactly as the command layer decides
// it, at a decision time that only moves forward, and carries the metadata
// the command path writes: actor and role, the reason (the command's, or
// commands.DefaultReason of the event type), the effective and recorded
// times, a correlation id per command, and for the process manager's
// expiries the event that set the deadline as causation (and its
// correlation). Each stream append expects the stream's version, as the
// handlers do. A refused command appends nothing, as in the engine.
//
// The history of a region (a county), over Scale.Years from Epoch:
//
//   - Foster carers, most invited in the first month, the rest recruited
//     over the years; some retire and their accounts are closed once their
//     last placement and its grace period are over.
//   - Children in sibling groups (one to three), half of them the existing
//     caseload registered in the first three months with backdated
//     placements (R4), the rest over the years. Each child has a run of
//     placements (emergency, short, long), each ended on time, recorded late
//     (the expiry is then decided at once), planned ahead, with the grace
//     period ended early (R6), or with the carer placed again within the
//     grace (R5); the process manager writes the grace expiries at the
//     deadline, some late. Three children in five have regular short
//     breaks (respite placements of a few days every two to six weeks) with
//     a respite carer that changes every few months: most of the churn that
//     brings a county to a million events. Children leave care, and then
//     their grants are mostly revoked. Managers reallocate workers.
//   - The family network: parents, guardians and other network members
//     (shared by siblings, some by two families), invited by a worker and
//     granted view or view and record; contact is reviewed every few months,
//     with grants revoked, widened, narrowed and given again.
//   - Accounts: invitations accepted within days (identity linked, account
//     activated, phone enrolled at the first sign-in), some left to lapse
//     (the process manager's expiry) and renewed; phone resets (a worker's
//     request, the portals team's clearing, a new enrolment at the next
//     sign-in); closures.
//   - Corrections (R18): a share of short breaks planned ahead and
//     cancelled by the worker before they start; a share of closures
//     reopened months later by the portals team, after which the carer is
//     placed and the member's grants given anew (access before a closure
//     does not come back); a share of activated accounts whose email
//     changes (a worker's request, applied by the portals team).
//   - Email claims (R10, R18), as the command path appends them: the first
//     invitation of an email claims it on its claim stream
//     (domain.EmailStream) before the invitation; an email change claims
//     the new email, records the change and releases the old one.
//
// Within a region the events are in decision-time order, as in a live log.
// A nation is Regions county-sized regions, generated and written one after
// the other (each region's recorded times start again at Epoch), so memory
// holds one region's aggregates and a few batches, whatever the scale.
//
// # Determinism
//
// The same Scale and Options.Seed give a byte-identical stream of appends:
// every random choice and every id comes from a PCG generator seeded per
// region from the seed, and every time from Epoch; nothing reads the clock.
// Ids have the command path's shapes: version 7 UUIDs stamped with the
// decision time (child, placement, event and correlation ids), and for the
// process manager's expiries version 5 UUIDs derived from the deadline, as
// its idempotency keys derive them. Account ids are
// domain.AccountIDForEmail of generated addresses.
package datagen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Scale is the size of a generated history. Children, Carers and Members
// are totals over all regions, split evenly between them.
type Scale struct {
	Name     string
	Regions  int
	Children int
	Carers   int
	Members  int // parents, guardians and other network members
	Years    int
}

// The scales of the Performance issue, and a small one for tests.
var (
	// County: about 1,000,000 events.
	County = Scale{Name: "county", Regions: 1, Children: 10_000, Carers: 3_000, Members: 20_000, Years: 5}
	// Nation: England-sized, fifty county-sized regions, about 50,000,000
	// events.
	Nation = Scale{Name: "nation", Regions: 50, Children: 500_000, Carers: 150_000, Members: 1_000_000, Years: 5}
	// Small: a hundredth of a county, about 10,000 events (8,000 to
	// 11,000, by seed: a hundred children are few).
	Small = Scale{Name: "small", Regions: 1, Children: 100, Carers: 30, Members: 200, Years: 5}
)

// ErrUnknownScale is returned (wrapped) by ScaleByName for a name it does
// not know.
var ErrUnknownScale = errors.New("datagen: unknown scale")

// ScaleByName returns the scale named "county", "nation" or "small".
func ScaleByName(name string) (Scale, error) {
	for _, s := range []Scale{County, Nation, Small} {
		if s.Name == name {
			return s, nil
		}
	}
	return Scale{}, fmt.Errorf("%w %q (want county, nation or small)", ErrUnknownScale, name)
}

// FirstRegions returns the scale of s's first n regions (1 to s.Regions):
// the totals of n regions, each as large as s's. The nation-scale
// measurements fold that many regions; regions are independent, so what
// they measure grows linearly with n.
func (s Scale) FirstRegions(n int) Scale {
	s.Children = s.Children / s.Regions * n
	s.Carers = s.Carers / s.Regions * n
	s.Members = s.Members / s.Regions * n
	s.Regions = n
	return s
}

// Validate checks that every region gets at least one child, carer and
// member, and that the history lasts at least a year.
func (s Scale) Validate() error {
	var problems []error
	if s.Regions < 1 {
		problems = append(problems, fmt.Errorf("regions %d: want at least 1", s.Regions))
	} else {
		for _, f := range []struct {
			name string
			n    int
		}{{"children", s.Children}, {"carers", s.Carers}, {"members", s.Members}} {
			if f.n < s.Regions {
				problems = append(problems, fmt.Errorf("%s %d: want at least one per region (%d)", f.name, f.n, s.Regions))
			}
		}
	}
	if s.Years < 1 || s.Years > 50 {
		problems = append(problems, fmt.Errorf("years %d: want 1 to 50", s.Years))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("datagen: invalid scale %q: %w", s.Name, err)
	}
	return nil
}

// Epoch is when every generated history starts (a Monday, midnight UTC):
// recorded times run from Epoch to Epoch plus Scale.Years. Effective times
// reach further back (backdated placements of the existing caseload) and a
// little further on (placement ends planned ahead).
var Epoch = time.Date(2021, 1, 4, 0, 0, 0, 0, time.UTC)

// Append is one stream append: the arguments of eventlog.Store.Append.
// Expected is always the exact version the stream had (NoStream for a new
// one), as the command handlers append.
type Append struct {
	Stream   string
	Expected eventlog.ExpectedVersion
	Events   []eventlog.EventData
}

// Sink receives the generated appends in log order, a batch at a time. A
// batch never splits one append. The batch is the sink's to keep: Generate
// does not touch it after handing it over. Write is called from the
// goroutine that called Generate, one batch at a time.
type Sink interface {
	Write(ctx context.Context, batch []Append) error
}

// SinkFunc is a function as a Sink.
type SinkFunc func(ctx context.Context, batch []Append) error

// Write calls f.
func (f SinkFunc) Write(ctx context.Context, batch []Append) error { return f(ctx, batch) }

// Appender is the part of an event store StoreSink needs: eventlog.Store
// satisfies it.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error)
}

// StoreSink returns a Sink that makes one Append call per stream append, in
// order. It stops at the first error.
func StoreSink(s Appender) Sink {
	return SinkFunc(func(ctx context.Context, batch []Append) error {
		for _, a := range batch {
			if _, err := s.Append(ctx, a.Stream, a.Expected, a.Events); err != nil {
				return fmt.Errorf("datagen: append to %q: %w", a.Stream, err)
			}
		}
		return nil
	})
}

// AppendShape is the type set of a store's own type for one stream append
// in a batch: any struct type with exactly Append's fields (such as
// sqlstore.StreamAppend), so that BatchSink can hand a store its own type
// without this package importing the store.
type AppendShape interface {
	~struct {
		Stream   string
		Expected eventlog.ExpectedVersion
		Events   []eventlog.EventData
	}
}

// BatchSink returns a Sink that writes every batch with one call of
// appendBatch, a store's all-or-nothing batch append (for example
// (*sqlstore.Store).AppendBatch: datagen.BatchSink(store.AppendBatch)).
// Whatever appendBatch returns besides its error is ignored.
func BatchSink[A AppendShape, R any](appendBatch func(context.Context, []A) (R, error)) Sink {
	return SinkFunc(func(ctx context.Context, batch []Append) error {
		conv := make([]A, len(batch))
		for i, a := range batch {
			conv[i] = A(a)
		}
		if _, err := appendBatch(ctx, conv); err != nil {
			return fmt.Errorf("datagen: append a batch of %d appends: %w", len(batch), err)
		}
		return nil
	})
}

// Version identifies what Generate writes for a scale and seed: it changes
// with every change that makes the same seed generate other events, so
// that caches of generated data (the load tool's) can tell theirs apart.
const Version = 3

// DefaultBatchAppends is the number of stream appends per batch when
// Options.BatchAppends is zero.
const DefaultBatchAppends = 500

// Options tune Generate.
type Options struct {
	// Seed selects the history: the same scale and seed give the same
	// stream of appends, byte for byte.
	Seed uint64
	// BatchAppends is how many stream appends a batch holds (the last one
	// may hold fewer); 0 means DefaultBatchAppends.
	BatchAppends int
	// Progress, when set, is called after every batch the sink has taken,
	// with the number of events written so far, from Generate's goroutine.
	Progress func(events int64)
}

// Summary describes a generated history.
type Summary struct {
	Events   int64 // events appended
	Appends  int64 // stream appends
	Children int   // children registered
	Accounts int   // accounts invited (carers and members)
	// From and To span the events' effective times.
	From, To time.Time
	// ByType counts the events of each type.
	ByType map[string]int64
	// Samples are known ids and answers, for the load tool's queries.
	Samples Samples
}

// Samples are a few hundred known ids and access answers of a generated
// history, chosen deterministically and spread over its regions, for the
// load tool's queries. Every answer is the domain policy's
// (domain.Child.Access) on the aggregates at the end of the history, that
// is on every fact of the log.
type Samples struct {
	// At is the decision time Accounts is taken at: the end of the
	// history.
	At time.Time
	// Children are registered children, some with viewers at At, some
	// without.
	Children []uuid.UUID
	// Accounts can each see (domain.View) at least one child at At.
	Accounts []uuid.UUID
	// CanSee are (child, account, time) triples whose answer allows
	// domain.View; CannotSee triples deny it, for reasons of every kind
	// (grace expired, revoked, account closed or not active, no
	// relationship).
	CanSee    []Triple
	CannotSee []Triple
}

// Triple is one access question with its known answer: may Account see
// Child's record (domain.View) at At? Reason is the policy's reason for the
// answer.
type Triple struct {
	Child   uuid.UUID
	Account uuid.UUID
	At      time.Time
	Reason  domain.Reason
}

// SampleSize is about how many entries each list of Samples holds: each
// region contributes its share.
const SampleSize = 300

// Generate generates the history of sc and hands it to sink in batches, in
// log order. It returns the summary once the sink has taken every batch, or
// the first error: the sink's (wrapped), ctx's, or a refusal of the domain
// that the generator did not expect (a bug; wrapped, naming the command).
// Generation runs in a goroutine of its own, one batch or two ahead of the
// sink, so a slow sink and the generator overlap.
func Generate(ctx context.Context, sc Scale, sink Sink, opt Options) (Summary, error) {
	if err := sc.Validate(); err != nil {
		return Summary{}, err
	}
	if sink == nil {
		return Summary{}, errors.New("datagen: sink is nil")
	}
	if opt.BatchAppends < 0 {
		return Summary{}, fmt.Errorf("datagen: batch size %d is negative", opt.BatchAppends)
	}
	if opt.BatchAppends == 0 {
		opt.BatchAppends = DefaultBatchAppends
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	batches := make(chan []Append, 2)
	var (
		sum    Summary
		genErr error
	)
	go func() {
		defer close(batches)
		sum, genErr = generate(ctx, sc, opt, batches)
	}()
	var (
		written int64
		sinkErr error
	)
	for batch := range batches {
		if sinkErr != nil {
			continue // drain until the generator sees the cancellation
		}
		if err := sink.Write(ctx, batch); err != nil {
			sinkErr = err
			cancel()
			continue
		}
		for _, a := range batch {
			written += int64(len(a.Events))
		}
		if opt.Progress != nil {
			opt.Progress(written)
		}
	}
	switch {
	case sinkErr != nil:
		return Summary{}, fmt.Errorf("datagen: sink: %w", sinkErr)
	case genErr != nil:
		return Summary{}, genErr
	}
	return sum, nil
}

// generate runs the regions one after the other, sending full batches to
// out, and sums them up.
func generate(ctx context.Context, sc Scale, opt Options, out chan<- []Append) (Summary, error) {
	w := &writer{ctx: ctx, out: out, size: opt.BatchAppends, byType: map[string]int64{},
		from: math.MaxInt64, to: math.MinInt64}
	sum := Summary{Children: sc.Children, Accounts: sc.Carers + sc.Members}
	horizon := Epoch.AddDate(sc.Years, 0, 0)
	sum.Samples.At = horizon
	quota := (SampleSize + sc.Regions - 1) / sc.Regions
	for i := range sc.Regions {
		r := newRegion(i, share(sc.Children, i, sc.Regions), share(sc.Carers, i, sc.Regions),
			share(sc.Members, i, sc.Regions), horizon, opt.Seed, w)
		if i == 0 {
			if err := r.initialPolicy(); err != nil {
				return Summary{}, fmt.Errorf("datagen: %w", err)
			}
		}
		if err := r.run(ctx); err != nil {
			return Summary{}, fmt.Errorf("datagen: region %d: %w", i, err)
		}
		r.sample(&sum.Samples, quota)
	}
	if err := w.flush(); err != nil {
		return Summary{}, err
	}
	sum.Events, sum.Appends, sum.ByType = w.events, w.appends, w.byType
	if w.events > 0 {
		sum.From, sum.To = time.UnixMicro(w.from).UTC(), time.UnixMicro(w.to).UTC()
	}
	return sum, nil
}

// share is region i's part of total split over n regions.
func share(total, i, n int) int { return total*(i+1)/n - total*i/n }
