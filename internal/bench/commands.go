package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/accessledger/accessledger/adapters/processmanager"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/progress"
)

// relationshipOf is the relationship a grant to a member of kind k names.
func relationshipOf(k domain.AccountKind) string {
	switch k {
	case domain.KindParent:
		return string(domain.RelParent)
	case domain.KindGuardian:
		return string(domain.RelGuardian)
	default:
		return string(domain.RelNetworkMember)
	}
}

// commandClient is one client of the command mix. It works through its own
// share of the children, one child at a time: grant a network member access,
// revoke it, place the child with a foster carer, end the placement; each
// command as the child's allocated worker. The members and carers are
// accounts the mix invited itself, so that no command of the mix is
// refused for a relationship the data set already holds.
type commandClient struct {
	be       *benchEngine
	rng      *rand.Rand
	children []sampleChild
	carers   []uuid.UUID
	members  []sampleMember
	next     int
	step     int
	// of the current cycle
	child     sampleChild
	member    sampleMember
	granted   bool
	placement uuid.UUID
}

// Command kinds of the mix, as the figure's by_kind names them.
const (
	kindGrant  = commands.CommandGrant
	kindRevoke = commands.CommandRevoke
	kindPlace  = commands.CommandStartPlacement
	kindEnd    = commands.CommandEndPlacement
)

func (c *commandClient) meta() commands.Meta {
	return commands.Meta{Actor: domain.Actor{ID: c.child.Worker, Role: domain.RoleWorker}, RequestID: "bench"}
}

// do runs the client's next command.
func (c *commandClient) do(ctx context.Context) (string, error) {
	if c.step == 0 {
		c.child = c.children[c.next%len(c.children)]
		c.next++
		c.member = c.members[c.rng.IntN(len(c.members))]
		c.granted, c.placement = false, uuid.Nil
	}
	step := c.step
	c.step = (c.step + 1) % 4
	switch step {
	case 0:
		return kindGrant, c.grant(ctx)
	case 1:
		if !c.granted { // nothing to revoke: go on with the placement
			c.step = 3
			return kindPlace, c.place(ctx)
		}
		return kindRevoke, c.revoke(ctx)
	case 2:
		return kindPlace, c.place(ctx)
	default:
		if c.placement == uuid.Nil {
			return c.do(ctx)
		}
		return kindEnd, c.end(ctx)
	}
}

func (c *commandClient) grant(ctx context.Context) error {
	perms := []string{domain.PermView}
	if c.rng.IntN(3) == 0 {
		perms = append(perms, domain.PermRecord)
	}
	_, err := c.be.cmds.Grant(ctx, c.meta(), commands.Grant{ChildID: c.child.ID, AccountID: c.member.ID,
		Relationship: relationshipOf(c.member.Kind), Permissions: perms, Reason: "bench: contact arranged by the worker"})
	c.granted = err == nil
	return err
}

func (c *commandClient) revoke(ctx context.Context) error {
	_, err := c.be.cmds.Revoke(ctx, c.meta(), commands.Revoke{ChildID: c.child.ID, AccountID: c.member.ID, Reason: "bench: contact ended"})
	c.granted = false
	return err
}

func (c *commandClient) place(ctx context.Context) error {
	carer := c.carers[c.rng.IntN(len(c.carers))]
	res, err := c.be.cmds.StartPlacement(ctx, c.meta(), commands.StartPlacement{ChildID: c.child.ID, CarerAccountID: carer,
		StartedAt: c.be.clock.Now()})
	if err == nil {
		c.placement = res.PlacementID
	}
	return err
}

func (c *commandClient) end(ctx context.Context) error {
	_, err := c.be.cmds.EndPlacement(ctx, c.meta(), commands.EndPlacement{ChildID: c.child.ID, PlacementID: c.placement,
		EndedAt: c.be.clock.Now(), Reason: "bench: placement ended"})
	c.placement = uuid.Nil
	return err
}

// finish completes the cycle the end of a measurement interrupted (not
// measured), so that the next measurement finds no grant or placement of
// the mix open.
func (c *commandClient) finish(ctx context.Context) error {
	var errs []error
	if c.step == 1 && c.granted {
		errs = append(errs, c.revoke(ctx))
	}
	if c.placement != uuid.Nil {
		errs = append(errs, c.end(ctx))
	}
	c.step = 0
	return errors.Join(errs...)
}

// Accounts the command mix invites and activates before it runs.
const (
	mixCarers  = 8
	mixMembers = 16
)

// mixAccounts invites (as a child's worker) and activates (as the portal
// service) the foster carers and network members of the command mix.
func mixAccounts(ctx context.Context, be *benchEngine) ([]uuid.UUID, []sampleMember, error) {
	worker := domain.Actor{ID: be.data.Children[0].Worker, Role: domain.RoleWorker}
	service := domain.Actor{ID: "bench-portal", Role: domain.RoleService}
	nonce := be.clock.Now().UnixNano()
	kinds := []domain.AccountKind{domain.KindParent, domain.KindGuardian, domain.KindNetworkMember}
	var carers []uuid.UUID
	var members []sampleMember
	for i := range mixCarers + mixMembers {
		kind := domain.KindFosterCarer
		if i >= mixCarers {
			kind = kinds[i%len(kinds)]
		}
		email := fmt.Sprintf("bench-%d-%d@example.org", nonce, i)
		inv, err := be.cmds.Invite(ctx, commands.Meta{Actor: worker, RequestID: "bench-setup"}, commands.Invite{Email: email, Kind: string(kind)})
		if err != nil {
			return nil, nil, fmt.Errorf("invite %s: %w", email, err)
		}
		if _, err := be.cmds.Activate(ctx, commands.Meta{Actor: service, RequestID: "bench-setup"},
			commands.Activate{AccountID: inv.AccountID, IdentitySubject: fmt.Sprintf("bench|%d|%d", nonce, i), Email: email}); err != nil {
			return nil, nil, fmt.Errorf("activate %s: %w", email, err)
		}
		if kind == domain.KindFosterCarer {
			carers = append(carers, inv.AccountID)
		} else {
			members = append(members, sampleMember{ID: inv.AccountID, Kind: kind})
		}
	}
	return carers, members, nil
}

// commandMix measures the command mix through the command service,
// sequentially and with 8 concurrent clients, each client on children of
// its own.
func (b *bencher) commandMix(ctx context.Context, be *benchEngine, store string) error {
	carers, members, err := mixAccounts(ctx, be)
	if err != nil {
		return fmt.Errorf("command mix setup: %w", err)
	}
	for _, conc := range []int{1, 8} {
		clients := make([]*commandClient, conc)
		for w := range clients {
			c := &commandClient{be: be, rng: rand.New(rand.NewPCG(b.cfg.seed, uint64(100+w))), carers: carers, members: members}
			for i := w; i < len(be.data.Children); i += conc {
				c.children = append(c.children, be.data.Children[i])
			}
			clients[w] = c
		}
		if err := b.settle(ctx, be, fmt.Sprintf("the command mix at %d clients", conc)); err != nil {
			return err
		}
		var r loadResult
		_ = b.profiled(fmt.Sprintf("commands-c%d", conc), store, func() error {
			r = closedLoop(ctx, conc, b.warmup(), b.cfg.duration, func(ctx context.Context, w int) (string, error) {
				return clients[w].do(ctx)
			})
			return nil
		})
		for _, c := range clients {
			if err := c.finish(ctx); err != nil {
				return fmt.Errorf("command mix: finish the last cycle: %w", err)
			}
		}
		f := r.figure("commands", store, "commands", conc)
		f.Fsync = b.fsync[store]
		f.Note = "grant, revoke, start placement, end placement, as the child's worker, through commands.Service"
		f.met("p99 < 10 ms", f.Count > 0 && f.Latency.P99 < targetCommandP99 && f.Errors == 0)
		b.add(f)
	}
	return nil
}

// expiries measures the process manager firing n deadlines that fall due
// at once: it places n children with a carer and ends the placements at
// the same instant, through the command service (8 clients), waits until
// the process manager has recorded the n grace deadlines, then moves the
// clock past them and times until every GraceExpired is in the log.
func (b *bencher) expiries(ctx context.Context, be *benchEngine, store string, n int) error {
	d := be.data
	pm := be.msg.PM
	before, err := pm.Status(ctx)
	if err != nil {
		return err
	}
	// A child can be placed with several carers in one window, but with
	// each carer once: a small data set holds fewer (child, carer) pairs
	// than the deadlines asked for; measure as many as it holds.
	if most := len(d.Children) * len(d.Carers) / 2; n > most {
		b.log.Warn("bench: fewer expiries than asked: the data set has too few children and carers", "asked", n, "measured", most)
		fmt.Fprintf(b.progress, "expiry: %d deadlines asked, the %s data set holds %d: measuring %d\n", n, b.sc.Name, most, most)
		n = most
	}
	endedAt := be.clock.Now().UTC().Truncate(time.Second)
	startedAt := endedAt.Add(-24 * time.Hour)
	placements := make([]uuid.UUID, n)
	var refused atomic.Int64
	setupStart := time.Now()
	var done atomic.Int64
	report, finish := progress.New(b.progress, progress.IsTerminal(b.progress), "expiry setup")
	stopReport := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopReport:
				return
			case <-t.C:
				report(uint64(2*done.Load()), uint64(2*n))
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	const setupClients = 8
	for w := range setupClients {
		g.Go(func() error {
			for i := w; i < n; i += setupClients {
				child := d.Children[i%len(d.Children)]
				round := i / len(d.Children) // the child's round: its carer
				meta := commands.Meta{Actor: domain.Actor{ID: child.Worker, Role: domain.RoleWorker}, RequestID: "bench-expiry"}
				var placed commands.PlacementStarted
				var err error
				for k := range len(d.Carers) {
					carer := d.Carers[(round+k)%len(d.Carers)]
					placed, err = be.cmds.StartPlacement(gctx, meta, commands.StartPlacement{ChildID: child.ID,
						CarerAccountID: carer, StartedAt: startedAt})
					if err == nil || domain.KindOf(err) == domain.KindInternal {
						break
					}
					// e.g. this carer has an open placement of the child
					// (or, when n exceeds the children, one of these)
					refused.Add(1)
				}
				if err != nil {
					return fmt.Errorf("expiry setup: place child %s: %w", child.ID, err)
				}
				if _, err := be.cmds.EndPlacement(gctx, meta, commands.EndPlacement{ChildID: child.ID,
					PlacementID: placed.PlacementID, EndedAt: endedAt, Reason: "bench: placement ended"}); err != nil {
					return fmt.Errorf("expiry setup: end placement %s: %w", placed.PlacementID, err)
				}
				placements[i] = placed.PlacementID
				done.Add(1)
			}
			return nil
		})
	}
	err = g.Wait()
	close(stopReport)
	report(uint64(2*done.Load()), uint64(2*n))
	finish()
	if err != nil {
		return err
	}
	setup := time.Since(setupStart)

	// The relay publishes the ends and the process manager records their
	// deadlines; wait until all n are recorded.
	recordStart := time.Now()
	if err := waitFor(ctx, 10*time.Minute, func() (bool, error) {
		st, err := pm.Status(ctx)
		return st.Pending >= before.Pending+n, err
	}); err != nil {
		return fmt.Errorf("waiting for the process manager to record %d deadlines: %w", n, err)
	}
	recorded := time.Since(recordStart)

	log := be.e.Stores.Log
	head, err := log.Head(ctx)
	if err != nil {
		return err
	}
	want := make(map[uuid.UUID]bool, n)
	for _, p := range placements {
		want[p] = true
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	all := make(chan struct{})
	subDone := make(chan error, 1)
	var seen atomic.Int64
	var once sync.Once
	go func() {
		subDone <- log.Subscribe(sctx, head, func(_ context.Context, r eventlog.Record) error {
			if r.Type != domain.TypeGraceExpired {
				return nil
			}
			ev, err := domain.Decode(r.Type, r.Data)
			if err != nil {
				return err
			}
			if ge, ok := ev.(*domain.GraceExpired); ok && want[ge.PlacementID] {
				delete(want, ge.PlacementID)
				if seen.Add(1) == int64(n) {
					once.Do(func() { close(all) })
				}
			}
			return nil
		})
	}()

	var took time.Duration
	err = b.profiled("expiry", store, func() error {
		start := time.Now()
		be.clock.Advance(be.policy.GracePeriod + time.Minute)
		select {
		case <-all:
			took = time.Since(start)
			return nil
		case err := <-subDone:
			return fmt.Errorf("following the log for the expiries: %w", err)
		case <-time.After(10 * time.Minute):
			return fmt.Errorf("only %d of %d expiries written after 10 minutes", seen.Load(), n)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	cancel()
	if err != nil {
		return err
	}
	// The process manager settles each deadline's row after its expiry is
	// written: wait for the last ones before reading its counters.
	var after processmanager.Status
	if err := waitFor(ctx, time.Minute, func() (bool, error) {
		after, err = pm.Status(ctx)
		return after.Pending <= before.Pending, err
	}); err != nil {
		return fmt.Errorf("waiting for the process manager to settle the deadlines: %w", err)
	}
	// Its counter moves just after a row is settled: give the last one a
	// moment (a shortfall is reported in the figure, not waited for).
	_ = waitFor(ctx, 5*time.Second, func() (bool, error) {
		after, err = pm.Status(ctx)
		return after.Fired-before.Fired >= int64(n), err
	})
	f := figure{Name: "expiry", Store: store, Fsync: b.fsync[store], Concurrency: 1, Seconds: took.Seconds(), Count: int64(n),
		Unit: "expiries", PerSecond: float64(n) / took.Seconds(), Errors: after.Failures - before.Failures,
		FirstError: after.LastError,
		Values: valueList{{"setup_seconds", setup.Seconds()}, {"setup_refusals", float64(refused.Load())},
			{"deadlines_recorded_seconds", recorded.Seconds()}, {"fired", float64(after.Fired - before.Fired)}},
		Note: "grace deadlines due at one instant; process manager on the gochannel bus, clock moved past them"}
	if n == targetExpiries {
		f.met(fmt.Sprintf("%s in < %.0f s", human(targetExpiries), targetExpirySeconds), took.Seconds() < targetExpirySeconds)
	}
	b.add(f)
	return nil
}

// waitFor polls cond until it holds, fails, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// settle waits until every read model has applied the log up to its head
// as it is now, and the outbox relay has published it (on the in-process
// bus, once the process manager has handled it), so that a measurement
// starts on an engine that is not still catching up with the one before
// it (the command mix at 8 clients leaves the read models seconds behind;
// the grants measured right after it shared SQLite's writer and the cores
// with that backlog, the process manager's deadlines among it). Not
// measured; the wait is printed.
func (b *bencher) settle(ctx context.Context, be *benchEngine, before string) error {
	start := time.Now()
	head, err := be.e.Stores.Events.Log.Head(ctx)
	if err != nil {
		return err
	}
	err = waitFor(ctx, 10*time.Minute, func() (bool, error) {
		for _, s := range be.e.Runner.Status() {
			if s.Position.Before(head) {
				return false, nil
			}
		}
		if be.msg == nil {
			return true, nil
		}
		rs, err := be.msg.RelayStatus(ctx)
		if err != nil {
			return false, err
		}
		return !rs.Position.Before(head), nil
	})
	if err != nil {
		return fmt.Errorf("wait for the read models and the process manager to catch up before %s: %w", before, err)
	}
	fmt.Fprintf(b.progress, "bench: the read models and the process manager caught up with the log in %s before %s (not measured)\n", time.Since(start).Round(time.Millisecond), before)
	return nil
}
