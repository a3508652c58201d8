package importer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Reader is what planning reads of the event log: streams, with their
// personal values opened (the personal-data layer), and the head.
type Reader interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error)
	Head(ctx context.Context) (eventlog.Position, error)
}

// streamsReader is a Reader that also reads many whole streams at once
// (the personal-data layer over a SQL store: personaldata.Store): Prepare
// then reads every stream the records name in a few statements, not one
// by one.
type streamsReader interface {
	ReadStreams(ctx context.Context, streams []string) (map[string][]eventlog.Record, error)
}

// Options are the settings of a plan.
type Options struct {
	// Actor is the import's actor (domain.ImportActor). Required.
	Actor domain.Actor
	// Policy is the policy of a store that has none recorded yet (R25):
	// the invitation TTL and the grace period the import's decisions derive
	// deadlines with. Zero durations take the defaults. When the store has
	// a recorded policy, each record is decided with the policy in force
	// at its own date (the first recorded one before it).
	Policy domain.Policy
	// Now is the import's recorded time. Required.
	Now time.Time
	// CorrelationID ties every event of one run together. Required.
	CorrelationID uuid.UUID
	// IDs derives child, account, placement and event ids (the
	// deployment's keyed ids). Required.
	IDs *domain.KeyedIDs
}

// Counts is how many records of one kind a plan holds: those it appends
// and those the store holds already (a re-run).
type Counts struct {
	New, Present int
}

// Plan is what an import will append: every stream's events, decided and
// checked against the store as it was read. Apply appends them.
type Plan struct {
	// Kinds counts the records per kind.
	Kinds map[string]*Counts
	// Events and Streams count what Apply appends.
	Events, Streams int
	// CorrelationID is the correlation id of every event of the plan.
	CorrelationID uuid.UUID
	appends       []*stream
}

// stream is one stream the plan reads and appends to.
type stream struct {
	name    string
	version uint64 // the loaded version: Apply expects it
	phase   int    // accounts and identities (0) before children (1)
	child   *domain.Child
	account *domain.Account
	link    *domain.IdentityLink
	events  []eventlog.EventData
}

func (s *stream) apply(e domain.Event) error {
	switch {
	case s.child != nil:
		return s.child.Apply(e)
	case s.account != nil:
		return s.account.Apply(e)
	}
	return s.link.Apply(e)
}

// planner holds the state of one Prepare call.
type planner struct {
	ctx   context.Context
	log   Reader
	opts  Options
	empty bool // the log is empty: no stream needs reading
	// fetched holds the streams read in bulk before deciding, each whole
	// (nil: no events); a stream not in it is read from log.
	fetched  map[string][]eventlog.Record
	streams  map[string]*stream
	order    []*stream
	accounts map[string]uuid.UUID // normalized email -> account id
	plan     *Plan
	policies *domain.PolicyHistory
}

// policyAt is the policy in force at t (R25).
func (p *planner) policyAt(t time.Time) domain.Policy { return p.policies.PolicyAt(t).Policy }

// loadPolicies reads the recorded policy, if any, on top of the initial
// one.
func (p *planner) loadPolicies() error {
	p.policies = domain.NewPolicyHistory(p.opts.Policy)
	if p.empty {
		return nil
	}
	for from := uint64(1); ; {
		recs, err := p.read(domain.PolicyStream, from, readPage)
		if err != nil {
			return fmt.Errorf("importer: read the policy: %w", err)
		}
		for _, r := range recs {
			env, err := domain.DecodeRecord(r)
			if err != nil {
				return fmt.Errorf("importer: the policy stream: %w", err)
			}
			if err := p.policies.Apply(env); err != nil {
				return fmt.Errorf("importer: the policy stream: %w", err)
			}
			from = r.Version + 1
		}
		if len(recs) < readPage {
			return nil
		}
	}
}

// readPage is the page size of stream reads.
const readPage = 500

// Prepare checks every record against the domain's rules and the store (read
// through log) and decides the events to append. Children come first, then
// accounts, then placements in the order they started and grants in the
// order they were made, so a file may list its lines in any order. A
// record may refer to a child or an account of the file or of the store.
//
// On an empty log Prepare reads no stream. On another, when log also
// reads many streams at once (personaldata.Store over a SQL store), it
// reads every stream the records can need first, in a few statements and
// into memory, instead of one read per stream.
//
// Every record that cannot be imported is a *LineError (naming the line,
// the kind and the field or the rule, never a value), and Prepare returns
// them all, joined, with no plan. An error reading the store is returned
// alone.
func Prepare(ctx context.Context, log Reader, recs []*Record, opts Options) (*Plan, error) {
	if opts.IDs == nil || opts.Now.IsZero() || opts.CorrelationID == uuid.Nil {
		return nil, errors.New("importer: prepare: ids, now and a correlation id are required")
	}
	if err := opts.Actor.Validate(); err != nil {
		return nil, fmt.Errorf("importer: prepare: actor: %w", err)
	}
	opts.Policy = opts.Policy.WithDefaults()
	head, err := log.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("importer: read the head of the log: %w", err)
	}
	p := &planner{ctx: ctx, log: log, opts: opts, empty: head.IsZero(), streams: map[string]*stream{},
		accounts: map[string]uuid.UUID{}, plan: &Plan{Kinds: map[string]*Counts{}, CorrelationID: opts.CorrelationID}}
	for _, k := range []string{KindChild, KindAccount, KindPlacement, KindGrant} {
		p.plan.Kinds[k] = &Counts{}
	}
	if bulk, ok := log.(streamsReader); ok && !p.empty {
		if err := p.prefetch(bulk, recs); err != nil {
			return nil, err
		}
	}
	if err := p.loadPolicies(); err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range ordered(recs) {
		n, err := p.decide(r)
		var internal *internalError
		switch {
		case errors.As(err, &internal):
			return nil, internal.err
		case err != nil:
			errs = append(errs, &LineError{Line: r.Line, Kind: r.Kind, Err: err})
		case n == 0:
			p.plan.Kinds[r.Kind].Present++
		default:
			p.plan.Kinds[r.Kind].New++
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int {
			var x, y *LineError
			errors.As(a, &x)
			errors.As(b, &y)
			return cmp.Compare(x.Line, y.Line)
		})
		return nil, errors.Join(errs...)
	}
	for _, s := range p.order {
		if len(s.events) > 0 {
			p.plan.appends = append(p.plan.appends, s)
			p.plan.Events += len(s.events)
		}
	}
	slices.SortStableFunc(p.plan.appends, func(a, b *stream) int { return cmp.Compare(a.phase, b.phase) })
	p.plan.Streams = len(p.plan.appends)
	return p.plan, nil
}

// prefetch reads every stream that deciding recs may read (the policy,
// each child's, and for each email and identity subject both the keyed
// and the name-based account and identity streams and the email's claim)
// in one ReadStreams call, into p.fetched. Values that do not check are
// left out: decide refuses their lines.
func (p *planner) prefetch(bulk streamsReader, recs []*Record) error {
	names := []string{domain.PolicyStream}
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	child := func(reference string) {
		if domain.CheckReference("child_reference", reference) == nil {
			add(domain.ChildStream(p.opts.IDs.ChildID(reference)))
		}
	}
	email := func(email string) {
		if domain.CheckEmail("email", email) != nil {
			return
		}
		norm := domain.NormalizeEmail(email)
		add(domain.AccountStream(p.opts.IDs.AccountID(norm)))
		add(domain.AccountStream(domain.AccountIDForEmail(norm)))
		add(p.opts.IDs.EmailStream(norm))
	}
	for _, r := range recs {
		switch {
		case r.Child != nil:
			child(r.Child.Reference)
		case r.Account != nil:
			email(r.Account.Email)
			if subj := r.Account.IdentitySubject; subj != "" {
				add(p.opts.IDs.IdentityStream(subj))
				add(domain.IdentityStream(subj))
			}
		case r.Placement != nil:
			child(r.Placement.ChildReference)
			email(r.Placement.CarerEmail)
		case r.Grant != nil:
			child(r.Grant.ChildReference)
			email(r.Grant.Email)
		}
	}
	got, err := bulk.ReadStreams(p.ctx, names)
	switch {
	case errors.Is(err, eventlog.ErrBatchUnsupported):
		return nil // the store reads one stream at a time: decide reads them so
	case err != nil:
		return fmt.Errorf("importer: read %d streams: %w", len(names), err)
	}
	p.fetched = make(map[string][]eventlog.Record, len(names))
	for _, name := range names {
		p.fetched[name] = got[name]
	}
	return nil
}

// read returns up to limit events of stream name from version from, from
// p.fetched when the stream was read in bulk, else from the log.
func (p *planner) read(name string, from uint64, limit int) ([]eventlog.Record, error) {
	recs, ok := p.fetched[name]
	if !ok {
		return p.log.ReadStream(p.ctx, name, from, limit)
	}
	i, _ := slices.BinarySearchFunc(recs, from, func(r eventlog.Record, v uint64) int { return cmp.Compare(r.Version, v) })
	recs = recs[i:]
	return recs[:min(len(recs), limit)], nil
}

// ordered returns recs in the order Prepare decides them.
func ordered(recs []*Record) []*Record {
	rank := map[string]int{KindChild: 0, KindAccount: 1, KindPlacement: 2, KindGrant: 3}
	at := func(r *Record) time.Time {
		switch {
		case r.Placement != nil:
			return r.Placement.StartedAt.Time
		case r.Grant != nil:
			return r.Grant.GrantedAt.Time
		}
		return time.Time{}
	}
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b *Record) int {
		return cmp.Or(cmp.Compare(rank[a.Kind], rank[b.Kind]), at(a).Compare(at(b)), cmp.Compare(a.Line, b.Line))
	})
	return out
}

// internalError is a failure of the store or a bug, not the line's fault.
type internalError struct{ err error }

func (e *internalError) Error() string { return e.err.Error() }

// decide decides one record and adds its events to the plan; it returns
// how many events it decided.
func (p *planner) decide(r *Record) (int, error) {
	now, by := p.opts.Now, p.opts.Actor
	switch {
	case r.Child != nil:
		c := r.Child
		s, err := p.childStream(c.Reference)
		if err != nil {
			return 0, err
		}
		events, err := s.child.ImportRegistration(by, c.Reference, c.WorkerID, c.RegisteredAt.Time, c.RetainUntil.Time, now)
		if err != nil {
			return 0, err
		}
		return len(events), p.add(s, r, "child", "", events)
	case r.Account != nil:
		a := r.Account
		s, err := p.accountStream("email", a.Email)
		if err != nil {
			return 0, err
		}
		events, err := s.account.ImportAccount(by, domain.ImportedAccount{Email: a.Email, Kind: a.AccountKind,
			InvitedAt: a.InvitedAt.Time, ActivatedAt: a.ActivatedAt.Time, IdentitySubject: a.IdentitySubject,
			ClosedAt: a.ClosedAt.Time}, now, p.policyAt(a.InvitedAt.Time))
		if err != nil {
			return 0, err
		}
		var linking []domain.Event
		var ls *stream
		if a.IdentitySubject != "" {
			if ls, err = p.identityStream(a.IdentitySubject); err != nil {
				return 0, err
			}
			if linking, err = ls.link.Link(s.account.ID(), a.ActivatedAt.Time); err != nil {
				return 0, fmt.Errorf("identity_subject: %w", err)
			}
		}
		// Both decided: only now change the aggregates.
		if ls != nil {
			if err := p.add(ls, r, "link", "", linking); err != nil {
				return 0, err
			}
		}
		return len(events) + len(linking), p.add(s, r, "account", "", events)
	case r.Placement != nil:
		pl := r.Placement
		s, err := p.childStream(pl.ChildReference)
		if err != nil {
			return 0, err
		}
		carer, err := p.accountStream("carer_email", pl.CarerEmail)
		if err != nil {
			return 0, err
		}
		id := p.opts.IDs.LegacyPlacementID(pl.LegacyID)
		pol := p.policyAt(pl.StartedAt.Time)
		if !pl.EndedAt.Time.IsZero() {
			pol = p.policyAt(pl.EndedAt.Time) // the grace period in force at the end (R25)
		}
		events, err := s.child.ImportPlacement(by, id, carer.account, pl.StartedAt.Time, pl.EndedAt.Time, now, pol)
		if err != nil {
			return 0, err
		}
		return len(events), p.add(s, r, "placement/"+id.String(), pl.Reason, events)
	case r.Grant != nil:
		g := r.Grant
		s, err := p.childStream(g.ChildReference)
		if err != nil {
			return 0, err
		}
		grantee, err := p.accountStream("email", g.Email)
		if err != nil {
			return 0, err
		}
		events, err := s.child.ImportGrant(by, grantee.account, g.Relationship, g.Permissions, g.GrantedAt.Time, g.RevokedAt.Time, now)
		if err != nil {
			return 0, err
		}
		key := "grant/" + grantee.account.ID().String() + "/" + g.GrantedAt.UTC().Format(time.RFC3339Nano)
		return len(events), p.add(s, r, key, g.Reason, events)
	}
	return 0, &internalError{fmt.Errorf("importer: line %d: a record of no kind", r.Line)}
}

// add encodes events for s, with ids derived from the stream and key and
// the import's cause, and applies them to s's aggregate.
func (p *planner) add(s *stream, r *Record, key, reason string, events []domain.Event) error {
	if len(events) == 0 {
		return nil
	}
	c := domain.Cause{Actor: p.opts.Actor, RecordedAt: p.opts.Now, CorrelationID: p.opts.CorrelationID,
		Reason: fmt.Sprintf("imported from an older system (line %d)", r.Line)}
	if reason != "" {
		c.Reason += ": " + reason
	}
	data := make([]eventlog.EventData, len(events))
	for i, e := range events {
		// Two events of one stream and key in one run (a grant replaced
		// and granted again) keep apart by their index in the stream.
		id := p.opts.IDs.ImportEventID(s.name, key, len(s.events)+i)
		ed, err := c.EventData(id, e)
		if err != nil {
			if domain.KindOf(err) != domain.KindInternal && reason != "" {
				return fmt.Errorf("reason: %w", err)
			}
			return &internalError{fmt.Errorf("importer: line %d: encode %s: %w", r.Line, e.EventType(), err)}
		}
		data[i] = ed
	}
	for _, e := range events {
		if err := s.apply(e); err != nil {
			return &internalError{fmt.Errorf("importer: line %d: apply %s: %w", r.Line, e.EventType(), err)}
		}
	}
	s.events = append(s.events, data...)
	return nil
}

// childStream returns the stream of the child with reference, loaded.
func (p *planner) childStream(reference string) (*stream, error) {
	if err := domain.CheckReference("child_reference", reference); err != nil {
		return nil, err
	}
	id := p.opts.IDs.ChildID(reference)
	return p.stream(domain.ChildStream(id), 1, func(s *stream) { s.child = domain.NewChild(id) })
}

// accountStream returns the stream of email's account, loaded: the
// name-based id when the store has an account under it (made before ids
// were keyed), else the keyed one, as the commands choose.
func (p *planner) accountStream(field, email string) (*stream, error) {
	if err := domain.CheckEmail(field, email); err != nil {
		return nil, err
	}
	norm := domain.NormalizeEmail(email)
	id, ok := p.accounts[norm]
	if !ok {
		id = p.opts.IDs.AccountID(norm)
		legacy := domain.AccountIDForEmail(norm)
		old, err := p.exists(domain.AccountStream(legacy))
		if err != nil {
			return nil, err
		}
		if old {
			id = legacy
		}
		if err := p.unclaimedBy(norm, id); err != nil {
			return nil, err
		}
		p.accounts[norm] = id
	}
	return p.stream(domain.AccountStream(id), 0, func(s *stream) { s.account = domain.NewAccount(id) })
}

// unclaimedBy refuses an email that another account than id holds on the
// email's claim stream (R10, R18: an account whose email was changed to it
// after the older system's records were taken): the record would make a
// second account of one email. Accounts the import makes claim nothing:
// an email with no claim belongs to the account derived from it.
func (p *planner) unclaimedBy(email string, id uuid.UUID) error {
	if p.empty {
		return nil
	}
	claim := domain.NewEmailClaim()
	for from := uint64(1); ; {
		recs, err := p.read(p.opts.IDs.EmailStream(email), from, readPage)
		if err != nil {
			return &internalError{fmt.Errorf("importer: read an email's claim: %w", err)}
		}
		for _, r := range recs {
			env, err := domain.DecodeRecord(r)
			if err != nil {
				return &internalError{fmt.Errorf("importer: an email's claim stream: %w", err)}
			}
			if err := claim.Apply(env.Event); err != nil {
				return &internalError{fmt.Errorf("importer: an email's claim stream: %w", err)}
			}
			from = r.Version + 1
		}
		if len(recs) < readPage {
			break
		}
	}
	if h := claim.Holder(); h != uuid.Nil && h != id {
		return fmt.Errorf("email: held by account %s (an email changed to it, R18): %w", h, domain.ErrImportConflict)
	}
	return nil
}

// identityStream returns the identity stream of subject, keyed as
// accountStream keys accounts.
func (p *planner) identityStream(subject string) (*stream, error) {
	name := p.opts.IDs.IdentityStream(subject)
	if _, ok := p.streams[name]; !ok {
		legacy := domain.IdentityStream(subject)
		old, err := p.exists(legacy)
		if err != nil {
			return nil, err
		}
		if old {
			name = legacy
		}
	}
	return p.stream(name, 0, func(s *stream) { s.link = domain.NewIdentityLink(subject) })
}

// exists reports whether stream has an event in the store.
func (p *planner) exists(name string) (bool, error) {
	if p.empty {
		return false, nil
	}
	recs, err := p.read(name, 1, 1)
	if err != nil {
		return false, &internalError{fmt.Errorf("importer: read stream %s: %w", name, err)}
	}
	return len(recs) > 0, nil
}

// stream returns the stream name, made with init and loaded from the store
// on first use.
func (p *planner) stream(name string, phase int, init func(*stream)) (*stream, error) {
	if s, ok := p.streams[name]; ok {
		return s, nil
	}
	s := &stream{name: name, phase: phase}
	init(s)
	if !p.empty {
		for {
			recs, err := p.read(name, s.version+1, readPage)
			if err != nil {
				return nil, &internalError{fmt.Errorf("importer: read stream %s: %w", name, err)}
			}
			for _, r := range recs {
				env, err := domain.DecodeRecord(r)
				if err == nil && r.Version != s.version+1 {
					err = fmt.Errorf("version %d after %d", r.Version, s.version)
				}
				if err == nil {
					err = s.apply(env.Event)
				}
				if err != nil {
					return nil, &internalError{fmt.Errorf("importer: stream %s does not load: %w", name, err)}
				}
				s.version = r.Version
			}
			if len(recs) < readPage {
				break
			}
		}
	}
	p.streams[name] = s
	p.order = append(p.order, s)
	return s, nil
}
