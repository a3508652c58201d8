package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The process manager's deadline commands in batches (issue 18): many
// deadlines falling due together are decided one by one through their
// aggregates, exactly as the single commands decide them, and their events
// are appended together.

// DeadlineCommand is one deadline's command in a FireDeadlines batch: the
// process manager's Meta (the system actor, the deadline's idempotency key,
// the event that set it as causation) and one of ExpireCarerAccess,
// ExpireGrant, ExpireInvitation, MarkPlacementStart or MarkPlacementEnd (a
// value, not a pointer).
type DeadlineCommand struct {
	Meta    Meta
	Command any
}

// DeadlineOutcome is the outcome of one DeadlineCommand: the Result and
// error the command's own method would have returned, and the events of
// the command: those it appended, or, for a repeat of a request already
// carried out (the same idempotency key), those the first one appended.
// Events is empty when the command changed nothing, failed or was refused,
// and may be empty when the command fell back to its own method (a
// concurrency conflict in the batch).
type DeadlineOutcome struct {
	Result Result
	Err    error
	Events []domain.Envelope
}

// ErrUnknownDeadlineCommand is the error of a DeadlineCommand whose Command
// is none of the deadline commands. It is not a refusal.
var ErrUnknownDeadlineCommand = errors.New("commands: not a deadline command")

// deadlineLoaders bounds the streams a batch loads and decides at once.
const deadlineLoaders = 8

// deadlineAppenders bounds the appends in flight at once on a store without
// AppendBatch (EventStoreDB).
const deadlineAppenders = 16

// FireDeadlines carries out a batch of deadline commands and returns their
// outcomes in batch order. Each command keeps the contract of its own
// method: its Meta is checked (refused if invalid), its aggregate decides
// at the service's clock with the same rules (a refusal such as
// domain.ErrNotDue is written to the security log and appends nothing), its
// event ids come from its idempotency key (a repeat appends nothing and
// answers the first result), and it appends to its stream at the version it
// loaded.
//
// What differs is how the appends are made. The streams of the batch are
// read together (with one statement when the store is an
// eventlog.StreamsReader) and the aggregate of each stream is loaded once:
// several commands on one stream (two deadlines of one child) are decided
// in batch order, each with the events decided before it applied, as if
// carried out one after the other (one that decides nothing answers the
// stream's position as loaded). Then the events of every command are
// appended at once: with one AppendBatch (one transaction) when the store
// is an eventlog.BatchAppender, else with concurrent Appends (one stream's
// in order). When the batch append refuses an append (a concurrency
// conflict: another writer got to the stream first; or any append error),
// that command is carried out alone by its own method, with its retries
// (and so are the later commands on its stream), and the rest of the batch
// is appended without it. Any other error of the batch append (the store
// failing, an unknown outcome of the commit) is the error of every command
// to be appended: none is known to be written, and a retry with the same
// idempotency keys appends each at most once.
func (s *Service) FireDeadlines(ctx context.Context, batch []DeadlineCommand) []DeadlineOutcome {
	out := make([]DeadlineOutcome, len(batch))
	items := make([]*deadlineItem, 0, len(batch))
	for i, c := range batch {
		it, err := s.deadlineItem(i, c)
		if err != nil {
			out[i].Err = err
			continue
		}
		if it.meta.CorrelationID == uuid.Nil {
			it.meta.CorrelationID = s.cfg.NewID()
		}
		if err := checkMeta(it.meta); err != nil {
			s.refuse(ctx, it.meta, it.spec.command, it.spec.target, err)
			out[i].Err = err
			continue
		}
		items = append(items, it)
	}
	if len(items) > 0 {
		s.fireGroups(ctx, groupByStream(items), out)
	}
	return out
}

// deadlineItem is one command of a batch on its way through.
type deadlineItem struct {
	index int
	meta  Meta
	spec  deadlineSpec
	d     *ids

	// Set once loaded and decided:
	l      loaded
	cause  domain.Cause
	events []domain.Event
	data   []eventlog.EventData
}

// deadlineSpec is how a deadline command is carried out: its name, target
// and reason as its own method has them, its stream, how its aggregate is
// loaded and decides, and its own method (the fallback).
type deadlineSpec struct {
	command, target, reason, stream string
	// start returns the aggregate the stream's events are to be applied
	// to, with apply, and what it holds: a clone of the child's state the
	// service keeps (stateCache: at l.version, the keys of the stream's
	// event ids in l.ids; kept true) when it keeps one and the stream
	// holds none of the watched ids, else a new aggregate (version 0).
	start func(watch map[uuid.UUID]bool) (agg any, apply func(domain.Event) error, l loaded, kept bool)
	// keep keeps the aggregate loaded up to l for the next command in
	// place of the state start took (a child's). It keeps a clone.
	keep func(agg any, l loaded)
	// decide is the command's decision on the aggregate start returned,
	// once loaded.
	decide func(agg any, now time.Time) ([]domain.Event, error)
	single func(ctx context.Context, meta Meta) (Result, error)
}

func (s *Service) childSpec(command string, child uuid.UUID, target, reason string,
	decide func(c *domain.Child, now time.Time) ([]domain.Event, error),
	single func(ctx context.Context, meta Meta) (Result, error)) deadlineSpec {
	return deadlineSpec{command: command, target: target, reason: reason, stream: domain.ChildStream(child), single: single,
		start: func(watch map[uuid.UUID]bool) (any, func(domain.Event) error, loaded, bool) {
			c, l, ok := s.children.get(child, watch)
			if !ok {
				c, l = domain.NewChild(child), loaded{stream: domain.ChildStream(child), collect: true}
			}
			return c, c.Apply, l, ok
		},
		keep: func(agg any, l loaded) {
			if c, ok := agg.(*domain.Child); ok {
				s.children.put(child, c, l)
			}
		},
		decide: func(agg any, now time.Time) ([]domain.Event, error) {
			c, ok := agg.(*domain.Child)
			if !ok {
				return nil, fmt.Errorf("%s: the aggregate of %s is a %T", command, target, agg)
			}
			return decide(c, now)
		}}
}

func (s *Service) accountSpec(command string, account uuid.UUID, reason string,
	decide func(a *domain.Account, now time.Time) ([]domain.Event, error),
	single func(ctx context.Context, meta Meta) (Result, error)) deadlineSpec {
	return deadlineSpec{command: command, target: accountTarget(account), reason: reason, stream: domain.AccountStream(account), single: single,
		start: func(map[uuid.UUID]bool) (any, func(domain.Event) error, loaded, bool) {
			a := domain.NewAccount(account)
			return a, a.Apply, loaded{stream: domain.AccountStream(account)}, false
		},
		keep: func(any, loaded) {},
		decide: func(agg any, now time.Time) ([]domain.Event, error) {
			a, ok := agg.(*domain.Account)
			if !ok {
				return nil, fmt.Errorf("%s: the aggregate of %s is a %T", command, accountTarget(account), agg)
			}
			return decide(a, now)
		}}
}

// deadlineItem builds the item of a batch's i-th command.
func (s *Service) deadlineItem(i int, c DeadlineCommand) (*deadlineItem, error) {
	meta := c.Meta
	var spec deadlineSpec
	switch cmd := c.Command.(type) {
	case ExpireCarerAccess:
		spec = s.childSpec(CommandExpireCarerAccess, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), reasonGraceRanOut,
			expireCarerAccess(meta, cmd),
			func(ctx context.Context, meta Meta) (Result, error) { return s.ExpireCarerAccess(ctx, meta, cmd) })
	case ExpireGrant:
		spec = s.childSpec(CommandExpireGrant, cmd.ChildID, grantTarget(cmd.ChildID, cmd.AccountID), reasonGrantRanOut,
			expireGrant(meta, cmd),
			func(ctx context.Context, meta Meta) (Result, error) { return s.ExpireGrant(ctx, meta, cmd) })
	case MarkPlacementStart:
		spec = s.childSpec(CommandMarkPlacementStart, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), reasonStartReached,
			markPlacementStart(meta, cmd),
			func(ctx context.Context, meta Meta) (Result, error) { return s.MarkPlacementStart(ctx, meta, cmd) })
	case MarkPlacementEnd:
		spec = s.childSpec(CommandMarkPlacementEnd, cmd.ChildID, placementTarget(cmd.ChildID, cmd.PlacementID), reasonEndReached,
			markPlacementEnd(meta, cmd),
			func(ctx context.Context, meta Meta) (Result, error) { return s.MarkPlacementEnd(ctx, meta, cmd) })
	case ExpireInvitation:
		spec = s.accountSpec(CommandExpireInvitation, cmd.AccountID, reasonInvitationRanOut,
			expireInvitation(meta),
			func(ctx context.Context, meta Meta) (Result, error) { return s.ExpireInvitation(ctx, meta, cmd) })
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnknownDeadlineCommand, c.Command)
	}
	return &deadlineItem{index: i, meta: meta, spec: spec, d: s.ids(meta, spec.command, spec.target)}, nil
}

// groupByStream groups items by stream: the groups in the order of their
// first item, each group's items in batch order.
func groupByStream(items []*deadlineItem) [][]*deadlineItem {
	at := make(map[string]int, len(items))
	var groups [][]*deadlineItem
	for _, it := range items {
		k, ok := at[it.spec.stream]
		if !ok {
			k = len(groups)
			at[it.spec.stream] = k
			groups = append(groups, nil)
		}
		groups[k] = append(groups[k], it)
	}
	return groups
}

// groupLoad is a group's stream on its way through fireGroups: the
// aggregate and what it holds (deadlineSpec.start), then the stream's
// events after it applied.
type groupLoad struct {
	watch map[uuid.UUID]bool
	agg   any
	apply func(domain.Event) error
	l     loaded
	kept  bool
}

// fireGroups starts each group's aggregate (a child's kept state, or a new
// one), reads what each stream holds after it (with one statement when
// the store can), decides each group concurrently, settles in out the
// commands that need no append (a repeat, nothing to do, a refusal, a
// failure), and appends the others' events together.
func (s *Service) fireGroups(ctx context.Context, groups [][]*deadlineItem, out []DeadlineOutcome) {
	now := s.cfg.Clock()
	loads := make([]groupLoad, len(groups))
	for k, g := range groups {
		watch := map[uuid.UUID]bool{}
		for _, it := range g {
			maps.Copy(watch, it.d.watch(mainEvents))
		}
		agg, apply, l, kept := g[0].spec.start(watch)
		loads[k] = groupLoad{watch: watch, agg: agg, apply: apply, l: l, kept: kept}
	}
	streams, read, err := s.readGroups(ctx, loads)
	if err != nil {
		for _, g := range groups {
			for _, it := range g {
				out[it.index].Err = fmt.Errorf("commands: %s on %s: read the batch's streams: %w", it.spec.command, it.spec.target, err)
			}
		}
		return
	}
	var (
		mu       sync.Mutex
		toAppend []*deadlineItem
	)
	inParallel(deadlineLoaders, len(groups), func(k int) {
		g := groups[k]
		if decided := s.decideGroup(ctx, g, &loads[k], streams[g[0].spec.stream], read, now, out); len(decided) > 0 {
			mu.Lock()
			toAppend = append(toAppend, decided...)
			mu.Unlock()
		}
	})
	if len(toAppend) == 0 {
		return
	}
	// Batch order, so that a batch's positions follow its commands (and
	// one stream's appends follow one another).
	sortByIndex(toAppend)
	s.appendRound(ctx, toAppend, out)
}

// readGroups reads the groups' streams at once when the store can: each
// stream from the version after its load's (the events appended since the
// state the service kept, by this replica or any other; the whole stream
// without one) with one ReadStreamsFrom statement when the store is an
// eventlog.StreamTailsReader, else the whole streams with ReadStreams when
// it is an eventlog.StreamsReader. read is false when it read nothing (a
// store with neither: each group reads its own stream); a stream absent
// from a read has no events after its load's version.
func (s *Service) readGroups(ctx context.Context, loads []groupLoad) (streams map[string][]eventlog.Record, read bool, err error) {
	if r, ok := s.store.(eventlog.StreamTailsReader); ok && !s.noTailRead.Load() {
		from := make([]eventlog.StreamFrom, len(loads))
		for k, gl := range loads {
			from[k] = eventlog.StreamFrom{Stream: gl.l.stream, From: gl.l.version + 1}
		}
		streams, err = r.ReadStreamsFrom(ctx, from)
		if !errors.Is(err, eventlog.ErrBatchUnsupported) {
			return streams, err == nil, err
		}
		s.noTailRead.Store(true)
	}
	if r, ok := s.store.(eventlog.StreamsReader); ok && !s.noMultiRead.Load() {
		names := make([]string, len(loads))
		for k, gl := range loads {
			names[k] = gl.l.stream
		}
		streams, err = r.ReadStreams(ctx, names)
		if !errors.Is(err, eventlog.ErrBatchUnsupported) {
			return streams, err == nil, err
		}
		s.noMultiRead.Store(true)
	}
	return nil, false, nil
}

// decideGroup applies to the group's aggregate the stream's events after
// its load (from recs when read: a tail or the whole stream; else read from
// the store), keeps the state so loaded for the next command when it
// started from a kept one (a batch does not add the children it read whole:
// a burst of deadlines would push out the children commands are working
// on, and the deadlines of a child it read are rarely followed by more
// commands soon), and decides
// the group's commands at now, in order, each on the aggregate with the
// events decided before it in the group applied: as if each had been
// carried out alone, one after the other. It settles in out the commands
// that need no append and returns the others, each with its events and the
// stream's version it expects.
func (s *Service) decideGroup(ctx context.Context, group []*deadlineItem, gl *groupLoad, recs []eventlog.Record, read bool, now time.Time, out []DeadlineOutcome) []*deadlineItem {
	spec := group[0].spec
	l, agg, apply := gl.l, gl.agg, gl.apply
	var err error
	if read {
		// A whole stream's read holds the events the kept state has
		// applied already.
		for len(recs) > 0 && recs[0].Version <= l.version {
			recs = recs[1:]
		}
		err = l.apply(recs, apply, gl.watch)
	} else {
		l, err = s.loadAfter(ctx, l, apply, gl.watch)
	}
	if err != nil {
		for _, it := range group {
			out[it.index].Err = fmt.Errorf("commands: %s on %s: %w", it.spec.command, it.spec.target, err)
		}
		return nil
	}
	if gl.kept {
		spec.keep(agg, l)
	}
	var decided []*deadlineItem
	for k, it := range group {
		o := &out[it.index]
		if envs, ok := l.replay(it.d, mainEvents); ok {
			o.Result, o.Events = Result{Position: lastPosition(envs)}, envs
			continue
		}
		events, err := it.spec.decide(agg, now)
		if err != nil {
			if domain.KindOf(err) != domain.KindInternal {
				s.refuse(ctx, it.meta, it.spec.command, it.spec.target, err)
				o.Err = err
			} else {
				o.Err = fmt.Errorf("commands: %s on %s: %w", it.spec.command, it.spec.target, err)
			}
			continue
		}
		if len(events) == 0 {
			o.Result = Result{Position: l.last} // as loaded: before the group's appends
			continue
		}
		c := cause(it.meta, it.spec.reason, now)
		data, err := encode(l, c, it.d, mainEvents, events)
		if err == nil {
			for _, e := range events {
				if err = apply(e); err != nil {
					err = fmt.Errorf("%w: apply the decided %s: %v", errCorruptStream, e.EventType(), err)
					break
				}
			}
		}
		if err != nil {
			// The aggregate no longer stands for the stream: the rest of
			// the group fails (and is retried) too.
			for _, rest := range group[k:] {
				out[rest.index].Err = fmt.Errorf("commands: %s on %s: %w", rest.spec.command, rest.spec.target, err)
			}
			return decided
		}
		it.l, it.cause, it.events, it.data = l, c, events, data
		decided = append(decided, it)
		l.version += uint64(len(events))
	}
	return decided
}

func sortByIndex(items []*deadlineItem) {
	slices.SortFunc(items, func(a, b *deadlineItem) int { return cmp.Compare(a.index, b.index) })
}

// appendRound appends the decided items' events: in one AppendBatch when
// the store has it, else concurrently. Items whose append is refused are
// carried out again by their own method.
func (s *Service) appendRound(ctx context.Context, items []*deadlineItem, out []DeadlineOutcome) {
	var alone []*deadlineItem
	if b, ok := s.store.(eventlog.BatchAppender); ok && !s.noBatch.Load() {
		for len(items) > 0 {
			batch := make([]eventlog.StreamAppend, len(items))
			for k, it := range items {
				batch[k] = eventlog.StreamAppend{Stream: it.l.stream, Expected: eventlog.Exactly(it.l.version), Events: it.data}
			}
			results, err := b.AppendBatch(ctx, batch)
			if err == nil {
				for k, it := range items {
					s.appended(it, results[k], &out[it.index])
				}
				items = nil
				break
			}
			if errors.Is(err, eventlog.ErrBatchUnsupported) {
				s.noBatch.Store(true)
				break
			}
			var be *eventlog.BatchError
			if errors.As(err, &be) && be.Index >= 0 && be.Index < len(items) && ctx.Err() == nil {
				s.cfg.Logger.DebugContext(ctx, "commands: a deadline's append was refused in its batch; carrying it out alone",
					"command", items[be.Index].spec.command, "target", items[be.Index].spec.target, "error", be.Err)
				alone = append(alone, items[be.Index])
				items = append(items[:be.Index:be.Index], items[be.Index+1:]...)
				continue
			}
			for _, it := range items {
				out[it.index].Err = fmt.Errorf("commands: %s on %s: %w", it.spec.command, it.spec.target, err)
			}
			items = nil
		}
	}
	if len(items) > 0 {
		alone = append(alone, s.appendEach(ctx, items, out)...)
	}
	for _, it := range alone {
		res, err := it.spec.single(ctx, it.meta)
		out[it.index] = DeadlineOutcome{Result: res, Err: err}
	}
}

// appendEach appends each item's events to its stream: one stream's items
// one after the other, in order, deadlineAppenders streams at a time. It
// returns the items to carry out alone: the one whose append conflicted
// and the rest of its stream's items, whose expected versions counted on
// it (after another failure, the rest of its stream's items too).
func (s *Service) appendEach(ctx context.Context, items []*deadlineItem, out []DeadlineOutcome) []*deadlineItem {
	groups := groupByStream(items)
	var (
		mu    sync.Mutex
		alone []*deadlineItem
	)
	inParallel(deadlineAppenders, len(groups), func(k int) {
		g := groups[k]
		for j, it := range g {
			res, err := s.store.Append(ctx, it.l.stream, eventlog.Exactly(it.l.version), it.data)
			if err == nil {
				s.appended(it, res, &out[it.index])
				continue
			}
			rest := g[j+1:]
			if errors.Is(err, eventlog.ErrConflict) && ctx.Err() == nil {
				rest = g[j:]
			} else {
				out[it.index].Err = fmt.Errorf("commands: %s on %s: %w", it.spec.command, it.spec.target, err)
			}
			mu.Lock()
			alone = append(alone, rest...)
			mu.Unlock()
			return
		}
	})
	sortByIndex(alone)
	return alone
}

// appended settles the outcome of an item whose events were appended with
// result res.
func (s *Service) appended(it *deadlineItem, res eventlog.AppendResult, o *DeadlineOutcome) {
	o.Result = Result{Position: res.Position}
	o.Events = make([]domain.Envelope, len(it.events))
	for i, e := range it.events {
		o.Events[i] = domain.Envelope{EventID: it.data[i].ID, Stream: it.l.stream, StreamVersion: it.l.version + uint64(i) + 1,
			Type: e.EventType(), ActorID: it.meta.Actor.ID, ActorRole: it.meta.Actor.Role, Reason: it.data[i].Meta.Reason,
			RecordedAt: it.cause.RecordedAt, CorrelationID: it.meta.CorrelationID, CausationID: it.meta.CausationID, Event: e}
	}
	o.Events[len(o.Events)-1].Position = res.Position
}

// The decisions of the deadline commands, shared by their own methods and
// FireDeadlines.

func expireCarerAccess(meta Meta, cmd ExpireCarerAccess) func(*domain.Child, time.Time) ([]domain.Event, error) {
	return func(c *domain.Child, now time.Time) ([]domain.Event, error) {
		if err := systemOnly(meta.Actor, "expire carer access"); err != nil {
			return nil, err
		}
		return c.ExpireCarerAccess(cmd.PlacementID, now)
	}
}

func expireGrant(meta Meta, cmd ExpireGrant) func(*domain.Child, time.Time) ([]domain.Event, error) {
	return func(c *domain.Child, now time.Time) ([]domain.Event, error) {
		if err := systemOnly(meta.Actor, "expire grant"); err != nil {
			return nil, err
		}
		return c.ExpireGrant(cmd.AccountID, cmd.GrantedAt, now)
	}
}

func markPlacementStart(meta Meta, cmd MarkPlacementStart) func(*domain.Child, time.Time) ([]domain.Event, error) {
	return func(c *domain.Child, now time.Time) ([]domain.Event, error) {
		if err := systemOnly(meta.Actor, "mark placement start"); err != nil {
			return nil, err
		}
		return c.MarkStartReached(cmd.PlacementID, now)
	}
}

func markPlacementEnd(meta Meta, cmd MarkPlacementEnd) func(*domain.Child, time.Time) ([]domain.Event, error) {
	return func(c *domain.Child, now time.Time) ([]domain.Event, error) {
		if err := systemOnly(meta.Actor, "mark placement end"); err != nil {
			return nil, err
		}
		return c.MarkEndReached(cmd.PlacementID, now)
	}
}

func expireInvitation(meta Meta) func(*domain.Account, time.Time) ([]domain.Event, error) {
	return func(a *domain.Account, now time.Time) ([]domain.Event, error) {
		if err := systemOnly(meta.Actor, "expire invitation"); err != nil {
			return nil, err
		}
		return a.ExpireInvitation(now)
	}
}

// inParallel calls f for each of 0..n-1 from at most workers goroutines,
// each taking the next index, and returns when every call has returned.
func inParallel(workers, n int, f func(k int)) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(workers, n) {
		wg.Go(func() {
			for k := int(next.Add(1)) - 1; k < n; k = int(next.Add(1)) - 1 {
				f(k)
			}
		})
	}
	wg.Wait()
}
