// Package accessindex is the in-memory access index: the structure every
// access check is answered from (architecture decision 5). It folds the
// event log itself and keeps, per account, its facts, and per (account,
// child) pair the pair's placements and grant intervals, in a compact
// encoding (see fold.go: about 250 bytes per pair in all for a county), so
// that a check costs one map lookup, a binary search among the account's
// children, decoding the pair's facts on the stack and one call of the
// pure policy function, and no database query; it allocates nothing.
//
// # Answers
//
// Every answer is exactly what domain.ChildAccess (or, for a carer record,
// domain.CarerRecordAccess) decides on the facts the index holds, at the
// decision time the caller passes. Deadlines are compared with that time
// (R3, decision 7): a grace period ends at its deadline whether or not the
// process manager has written the expiry event yet.
//
// Every answer carries the position of the last record applied, read under
// the same lock as the data it was computed from: an answer at position P
// reflects every record up to P and none after it (decision 6). WaitFor lets
// a query wait, bounded, until the index has applied a consistency token.
//
// # Concurrency
//
// An Index is safe for any number of concurrent readers (Check, CheckCarer,
// CheckMany, ChildrenOf, ViewersOf, Changes, WaitFor, Position, Stats) while one
// goroutine feeds it (Apply, or Run which calls Apply). Decoding a record
// runs outside the lock; only its fold (a few field and map writes, and the
// answers of the pairs it changes for the change feed) takes the write
// lock, so readers wait for microseconds at most (and the applier for a
// reader's whole CheckMany batch). Packing the state when the index
// becomes ready (Compact) holds readers once, for tens of milliseconds
// for a county's index.
//
// # Feeding
//
// Run replays the log from the index's position with ReadAll pages (the
// next page is read while one is applied) and then follows it with
// Subscribe; Ready is closed once the index has caught up with the head the
// log had when Run started; the state the replay built is then packed
// (Compact). Without a snapshot, start-up is a replay of
// the whole log (see BenchmarkReplay, and BenchmarkCountyReplay for a
// county's log, for its cost); LoadSnapshot, before Run, starts the index
// from a snapshot written by WriteSnapshot or RunSnapshots, so that Run
// replays only the records after it (see snapshot.go and
// BenchmarkReplayFromSnapshot).
//
// # Change feed
//
// Apply publishes a Change for every pair whose facts a record changes (and
// for the pair of a grace expiry record, see Change) into a bounded ring
// buffer, read with Changes: the source of the watch API.
package accessindex

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/snapshotfile"
)

// Answer is the index's answer to one check.
type Answer struct {
	// Allowed reports whether Permissions holds the permission asked for.
	Allowed bool
	// Permissions is everything the account may do on the record at the
	// decision time.
	Permissions domain.PermissionSet
	// Reason names why (the policy's reason, allowing or denying).
	Reason domain.Reason
	// Until is when this answer stops holding; zero when nothing known
	// ends it.
	Until time.Time
	// ExpiresAt is, when Reason is grant, the end of the time-limited
	// grant (R19); zero otherwise.
	ExpiresAt time.Time
	// Position is the position of the last record the answer reflects.
	Position eventlog.Position
	// PlacementEndedAt is, while the reason is grace_period, when the
	// placement whose grace period gives the access ended: what the
	// carer may still complete is the work started before it.
	PlacementEndedAt time.Time
}

// Entry is one (account, child) pair in a list answer, with the access the
// account has on the child at the decision time.
type Entry struct {
	Account     uuid.UUID
	Child       uuid.UUID
	Permissions domain.PermissionSet
	Reason      domain.Reason
	Until       time.Time
}

// Stats describes the index's size.
type Stats struct {
	// Position is the position of the last record applied.
	Position eventlog.Position
	// Applied is the number of records applied.
	Applied uint64
	// Pairs is the number of (account, child) pairs with a placement or a
	// grant, ever.
	Pairs int
	// Accounts is the number of accounts known (invited, ever), and
	// Children the number of children with at least one pair.
	Accounts int
	Children int
	// Changes is the number of changes the change buffer holds.
	Changes int
}

// Default sizes.
const (
	// DefaultChangeBuffer is how many changes Changes can look back.
	DefaultChangeBuffer = 10_000
	// DefaultPageSize is how many records Run reads per ReadAll page
	// while it replays.
	DefaultPageSize = 5_000
)

// Option configures an Index.
type Option func(*config)

type config struct {
	changeBuffer int
	pageSize     int
	logger       *slog.Logger
}

// WithChangeBuffer sets how many changes the change buffer holds; n < 1
// keeps DefaultChangeBuffer.
func WithChangeBuffer(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.changeBuffer = n
		}
	}
}

// WithPageSize sets how many records Run reads per page while it replays;
// n < 1 keeps DefaultPageSize.
func WithPageSize(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.pageSize = n
		}
	}
}

// WithLogger sets the logger Run reports its replay to; the default is
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// Index is the in-memory access index. The zero value is not usable; call
// New.
type Index struct {
	cfg config

	// applyMu serializes appliers; err, the scratch buffers and packed
	// belong to it.
	applyMu sync.Mutex
	err     error
	// packed: the state was packed (Compact, or a snapshot's load) when
	// packedAt records were applied.
	packed     bool
	packedAt   uint64
	scratch    []source
	encScratch []byte
	running    atomic.Bool
	// last names the record at pos (for snapshots); erasures counts the
	// child erasures applied (RunSnapshots removes the snapshot on one).
	last     snapshotfile.Record
	erasures uint64
	loaded   loadedSnapshot

	// mu guards everything below. The applier (holding applyMu) reads
	// it without mu (nobody else writes it) and takes mu to write.
	mu      sync.RWMutex
	pos     eventlog.Position
	applied uint64
	// accounts holds every account an event named, with its facts and
	// its pairs (the fold's state, see fold.go).
	accounts map[uuid.UUID]*account
	// viewers lists, per child, the accounts it has a pair with, sorted by
	// id.
	viewers map[uuid.UUID][]*account
	npairs  int // pairs, ever
	known   int // accounts with known set
	// children holds the children registered (so that a query about a
	// child never seen answers not found); children, byRef and byWorker
	// let workers find a child again (R17): by id, by normalized
	// reference, by allocated worker.
	children map[uuid.UUID]*ChildInfo
	byRef    map[string]uuid.UUID
	byWorker map[string]map[uuid.UUID]struct{}
	// grants holds, per child, the grant to each account that is neither
	// revoked nor recorded as run out, with its review date or end (R19):
	// the reviews list; rels the relationships' values, kept once.
	grants  map[uuid.UUID][]dueEntry
	rels    map[domain.Relationship]domain.Relationship
	changes ring
	// notify is closed, and replaced, after every Apply that applied a
	// record: WaitFor and Changes callers wait on it.
	notify chan struct{}
	// ready is closed once pos reaches target (set by Run).
	ready     chan struct{}
	target    eventlog.Position
	targetSet bool
	isReady   bool
}

// New returns an empty index, at eventlog.Start.
func New(opts ...Option) *Index {
	cfg := config{changeBuffer: DefaultChangeBuffer, pageSize: DefaultPageSize, logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	return &Index{
		cfg:      cfg,
		accounts: map[uuid.UUID]*account{},
		viewers:  map[uuid.UUID][]*account{},
		changes:  newRing(cfg.changeBuffer),
		children: map[uuid.UUID]*ChildInfo{},
		byRef:    map[string]uuid.UUID{},
		byWorker: map[string]map[uuid.UUID]struct{}{},
		grants:   map[uuid.UUID][]dueEntry{},
		rels:     map[domain.Relationship]domain.Relationship{},
		notify:   make(chan struct{}),
		ready:    make(chan struct{}),
	}
}

// Check answers for account on child at decision time t: exactly
// domain.ChildAccess on the pair's facts. A pair the index does not hold
// answers by the account's own facts with no placement and no grant
// (account_not_active, account_closed, or no_relationship), and an account
// the index does not know answers no_relationship. It allocates nothing
// (a pair with more than factsBuffer placements or grant intervals
// decodes them into buffers from a pool).
func (ix *Index) Check(acct, child uuid.UUID, perm domain.Permission, t time.Time) Answer {
	ix.mu.RLock()
	pos := ix.pos
	a, ended := ix.childAccess(acct, child, t)
	ix.mu.RUnlock()
	return Answer{Allowed: a.Allows(perm), Permissions: a.Permissions, Reason: a.Reason, Until: a.Until, ExpiresAt: a.ExpiresAt, Position: pos,
		PlacementEndedAt: ended}
}

// CheckCarer answers for account on carer's own record (R1) at decision
// time t: exactly domain.CarerRecordAccess(account == carer, account's facts,
// t). An account the index does not know answers no_relationship. It
// allocates nothing.
func (ix *Index) CheckCarer(acct, carer uuid.UUID, perm domain.Permission, t time.Time) Answer {
	ix.mu.RLock()
	pos := ix.pos
	a := ix.carerAccess(acct, carer, t)
	ix.mu.RUnlock()
	return Answer{Allowed: a.Allows(perm), Permissions: a.Permissions, Reason: a.Reason, Until: a.Until, Position: pos}
}

// childAccess is Check's access, and, in a grace period, when the
// placement ended (Answer.PlacementEndedAt); ix.mu is held.
func (ix *Index) childAccess(acct, child uuid.UUID, t time.Time) (domain.Access, time.Time) {
	ac := ix.accounts[acct]
	if ac == nil {
		return domain.Access{Reason: domain.ReasonNoRelationship}, time.Time{}
	}
	if p := ac.pair(child); p != nil {
		f := ac.policyFacts()
		return p.access(&f, t)
	}
	if ac.known {
		return domain.ChildAccess(ac.facts(), nil, nil, t), time.Time{}
	}
	return domain.Access{Reason: domain.ReasonNoRelationship}, time.Time{}
}

// carerAccess is CheckCarer's access; ix.mu is held.
func (ix *Index) carerAccess(acct, carer uuid.UUID, t time.Time) domain.Access {
	if ac := ix.accounts[acct]; ac != nil && ac.known {
		return domain.CarerRecordAccess(acct == carer, ac.facts(), t)
	}
	return domain.Access{Reason: domain.ReasonNoRelationship}
}

// CheckItem is one check of CheckMany: may Account do Permission on Child's
// record, or, when Carer is set (not uuid.Nil), on Carer's own record (R1)?
type CheckItem struct {
	Account, Child, Carer uuid.UUID
	Permission            domain.Permission
}

// ItemAnswer is CheckMany's answer to one item.
type ItemAnswer struct {
	// Answer is what Check (CheckCarer for a carer item) answers for the
	// item; its Position is the batch's.
	Answer
	// Unknown reports that the index has never seen the item's account
	// invited, or its child registered (its carer invited): the ids a
	// single check answers 404 for. Answer is then Check's answer for such
	// ids (denied, no_relationship or the account's own reason).
	Unknown bool
}

// CheckMany answers every item at decision time t under one read lock: all
// the answers, and whether each item's ids are known, reflect exactly the
// records up to the position it returns (also every answer's Position),
// as one Check would for each at that position. Each answer equals Check's
// (CheckCarer's) for the item. The answers are appended to dst[:0], in the
// items' order; with cap(dst) >= len(items) CheckMany allocates nothing.
//
// The applier waits for the whole batch (about 1 ms for 1,000 random pairs
// of a county's index); callers bound the batch (queries.MaxChecks).
func (ix *Index) CheckMany(items []CheckItem, t time.Time, dst []ItemAnswer) ([]ItemAnswer, eventlog.Position) {
	dst = dst[:0]
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	pos := ix.pos
	for _, it := range items {
		var a domain.Access
		var ended time.Time
		ac := ix.accounts[it.Account]
		known := ac != nil && ac.known
		if it.Carer != uuid.Nil {
			a = ix.carerAccess(it.Account, it.Carer, t)
			c := ix.accounts[it.Carer]
			known = known && c != nil && c.known
		} else {
			a, ended = ix.childAccess(it.Account, it.Child, t)
			_, registered := ix.children[it.Child]
			known = known && registered
		}
		dst = append(dst, ItemAnswer{Answer: Answer{Allowed: a.Allows(it.Permission), Permissions: a.Permissions,
			Reason: a.Reason, Until: a.Until, ExpiresAt: a.ExpiresAt, Position: pos, PlacementEndedAt: ended}, Unknown: !known})
	}
	return dst, pos
}

// ChildrenOf lists the children account can see at decision time t (some
// permission allowed), sorted by child id, and the position the list was
// computed at. The slice is the caller's.
func (ix *Index) ChildrenOf(acct uuid.UUID, t time.Time) ([]Entry, eventlog.Position) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ac := ix.accounts[acct]
	if ac == nil {
		return nil, ix.pos
	}
	var out []Entry
	f := ac.policyFacts()
	for i := range ac.pairs {
		p := &ac.pairs[i]
		if a, _ := p.access(&f, t); a.Permissions != 0 {
			out = append(out, Entry{Account: acct, Child: p.child(), Permissions: a.Permissions, Reason: a.Reason, Until: a.Until})
		}
	}
	return out, ix.pos
}

// ViewersOf lists the accounts that can see child at decision time t (some
// permission allowed), sorted by account id, and the position the list was
// computed at. The slice is the caller's.
func (ix *Index) ViewersOf(child uuid.UUID, t time.Time) ([]Entry, eventlog.Position) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []Entry
	for _, ac := range ix.viewers[child] {
		f := ac.policyFacts()
		if a, _ := ac.pair(child).access(&f, t); a.Permissions != 0 {
			out = append(out, Entry{Account: ac.id, Child: child, Permissions: a.Permissions, Reason: a.Reason, Until: a.Until})
		}
	}
	return out, ix.pos
}

// KnowsAccount reports whether account was ever invited, as far as the
// index has applied the log.
func (ix *Index) KnowsAccount(acct uuid.UUID) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ac := ix.accounts[acct]
	return ac != nil && ac.known
}

// KnowsChild reports whether child was ever registered, as far as the
// index has applied the log.
func (ix *Index) KnowsChild(child uuid.UUID) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.children[child]
	return ok
}

// Position returns the position of the last record applied (eventlog.Start
// for none).
func (ix *Index) Position() eventlog.Position {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.pos
}

// Stats returns the index's size, read consistently.
func (ix *Index) Stats() Stats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return Stats{Position: ix.pos, Applied: ix.applied, Pairs: ix.npairs, Accounts: ix.known,
		Children: len(ix.viewers), Changes: ix.changes.len()}
}

func compareIDs(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }
