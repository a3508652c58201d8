package accessindex

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessmodel"
)

// # The fold (issue 18)
//
// The index folds the log itself, keeping only what the policy needs and
// what later events need to be folded: per account its facts (kind,
// activation, closure, lapses: one copy, read by all of its pairs), and
// per (account, child) pair the pair's sources, in one byte encoding
// (pairState): each placement of the child with the carer (a 64-bit key
// of its id, start, end, grace deadline, early grace end, the account
// life it was recorded in, cancelled or not) and each interval of the
// grants to the account (from, to, expires_at, the account life, the
// permissions), times as differences. No aggregate, no provenance, no
// per-pair copy of the account's facts. Besides, per child the accounts
// it has a pair with (viewers), the children's info and the reviews list.
// Once the index is ready (Run) or loaded from a snapshot, the state is
// packed into a few large blocks (pack), so that the replay's garbage
// leaves no partly used memory behind.
//
// A check decodes the pair's sources into domain.PlacementFacts and
// domain.GrantFacts in buffers on its stack and calls domain.ChildAccess:
// the facts are exactly those the aggregates (domain.Child.PlacementFacts,
// GrantFacts, domain.Account.Facts) would give, in the same order, so the
// answers are too (TestIndexMatchesModel compares them on every pair).
// The fold runs under the write lock (decoding the record does not): a
// record changes a pair's encoding in place, or moves it when it grows.
//
// Event times are whole microseconds in UTC (the domain refuses others
// when it decodes an event), so utime holds them without loss and gives
// them back equal (==) to the decoded ones.

// utime is a time of the facts: Unix microseconds less those of the zero
// time.Time, so that the zero value is the zero time ("never"). Every
// event time (years 1900 to 9999, whole microseconds, UTC) round-trips
// exactly through it; order is kept.
type utime int64

// zeroMicros is the zero time.Time's Unix microseconds.
var zeroMicros = time.Time{}.UnixMicro()

func ut(t time.Time) utime {
	if t.IsZero() {
		return 0
	}
	return utime(t.UnixMicro() - zeroMicros)
}

func (u utime) time() time.Time {
	if u == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(u) + zeroMicros).UTC()
}

// source is one placement of the pair's child with the pair's account as
// carer, or one interval of the grants to the pair's account (srcGrant),
// decoded (a pair keeps its sources encoded, see pairState).
//
// A placement: its id's key (and its whole id with srcFullID, see
// placementIn), from = started at, to = ended at (with srcEnded), until =
// grace deadline, early = the worker's early end of the grace period
// (zero: none), since = the carer account's life it was recorded
// in; srcCancelled when it was cancelled before it started (it then gives
// nothing). A grant interval: from = granted at, to = revoked, replaced or
// recorded as run out (zero: standing), until = expires_at (zero:
// open-ended), since, perms.
type source struct {
	// id is the placement's id when srcFullID is set; key is always the
	// placement's idKey (see placementIn).
	id                            uuid.UUID
	key                           uint64
	from, to, until, early, since utime
	perms                         domain.PermissionSet
	flags                         uint8
}

// Flags of a source (the low three), and of its encoding (the others:
// which times follow).
const (
	srcGrant uint8 = 1 << iota
	srcEnded
	srcCancelled
	encTo
	encUntil
	encEarly
	encSince
	srcFullID // the placement's whole id is kept (see placementIn)
	srcFlags  = srcGrant | srcEnded | srcCancelled | srcFullID
)

// idKey is the 64 bits of a placement's id a pair keeps of it: its halves
// xor-ed.
func idKey(id uuid.UUID) uint64 {
	return binary.LittleEndian.Uint64(id[:8]) ^ binary.LittleEndian.Uint64(id[8:])
}

func (s *source) isGrant() bool { return s.flags&srcGrant != 0 }

// graceEnd is when the carer's limited access ends (domain's placement
// graceEnd): the early end when it comes before the deadline.
func (s *source) graceEnd() utime {
	if s.early != 0 && s.early < s.until {
		return s.early
	}
	return s.until
}

func (s *source) placementFacts() domain.PlacementFacts {
	f := domain.PlacementFacts{Start: s.from.time(), Since: s.since.time()}
	if s.flags&srcEnded != 0 {
		f.End, f.GraceEnd = s.to.time(), s.graceEnd().time()
	}
	return f
}

func (s *source) grantFacts() domain.GrantFacts {
	return domain.GrantFacts{From: s.from.time(), To: s.to.time(), Permissions: s.perms, ExpiresAt: s.until.time(), Since: s.since.time()}
}

// sameFacts reports whether a and b, two states of one source, give the
// same facts.
func sameFacts(a, b *source) bool {
	ca, cb := a.flags&srcCancelled != 0, b.flags&srcCancelled != 0
	switch {
	case ca != cb:
		return false
	case ca:
		return true // neither gives anything
	case a.isGrant():
		return a.from == b.from && a.to == b.to && a.until == b.until && a.perms == b.perms && a.since == b.since
	}
	ea, eb := a.flags&srcEnded != 0, b.flags&srcEnded != 0
	return a.from == b.from && a.since == b.since && ea == eb && (!ea || (a.to == b.to && a.graceEnd() == b.graceEnd()))
}

// pairState is what the index keeps of one (account, child) pair: the
// child's id and the pair's sources, in one encoding (most pairs of a
// county have one to a dozen sources, a respite carer's dozens of short
// breaks the most).
//
// The encoding: the child's id (16 bytes); then, when the pair has
// sources, the number of placements and of grant intervals (uvarints),
// then each source, each kind in the order recorded: a flags byte (the
// source's flags and which times follow), the placement's idKey (8
// bytes; its whole id, 16 bytes, with srcFullID) or the interval's
// permissions (a byte), from as the difference with the previous
// source's from (the first's from whole), then the times present, each as
// a difference (see appendDelta): to from from, until from to (from when
// there is no to), early from to (from), since from from. A placement is
// about 24 bytes, a grant interval 15 (a county: about 95 bytes per pair in
// all, its child's id included).
type pairState struct {
	enc []byte
}

// newPair returns the pair of child, without sources.
func newPair(child uuid.UUID) pairState {
	return pairState{enc: append(make([]byte, 0, len(child)), child[:]...)}
}

// child returns the pair's child's id.
func (p *pairState) child() uuid.UUID { return uuid.UUID(p.enc[:len(uuid.UUID{})]) }

// sourcesEnc returns the encoding of the pair's sources.
func (p *pairState) sourcesEnc() []byte { return p.enc[len(uuid.UUID{}):] }

// findPair returns the index of child's pair in pairs (sorted by child
// id), or where it would be inserted, and whether it is there. It compares
// ids as two big-endian words (the order of bytes.Compare): a check's
// search is on its hot path.
func findPair(pairs []pairState, child uuid.UUID) (int, bool) {
	c0, c1 := binary.BigEndian.Uint64(child[:8]), binary.BigEndian.Uint64(child[8:])
	lo, hi := 0, len(pairs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		e := pairs[m].enc
		p0, p1 := binary.BigEndian.Uint64(e[:8]), binary.BigEndian.Uint64(e[8:16])
		if p0 < c0 || (p0 == c0 && p1 < c1) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(pairs) {
		e := pairs[lo].enc
		return lo, binary.BigEndian.Uint64(e[:8]) == c0 && binary.BigEndian.Uint64(e[8:16]) == c1
	}
	return lo, false
}

// appendDelta appends d, a difference of two times (|d| < 2^60: times are
// in years 1900 to 9999, less than 2^59 microseconds apart), as a uvarint
// of d in
// the largest whole unit of microseconds, seconds, hours or days it is
// counted in, with its sign and unit in the low three bits: grace periods
// and review periods are whole days, for example.
func appendDelta(dst []byte, d int64) []byte {
	var sign uint64
	if d < 0 {
		sign, d = 1, -d
	}
	v, unit := uint64(d), uint64(0)
	switch {
	case v%86_400_000_000 == 0:
		v, unit = v/86_400_000_000, 3
	case v%3_600_000_000 == 0:
		v, unit = v/3_600_000_000, 2
	case v%1_000_000 == 0:
		v, unit = v/1_000_000, 1
	}
	return binary.AppendUvarint(dst, v<<3|sign<<2|unit)
}

var deltaUnits = [4]uint64{1, 1_000_000, 3_600_000_000, 86_400_000_000}

// readDelta reads a difference appendDelta wrote, and the bytes it took
// (0 when b does not start with one).
func readDelta(b []byte) (int64, int) {
	x, n := binary.Uvarint(b)
	if n <= 0 || x>>3 > math.MaxInt64/deltaUnits[x&3] {
		return 0, 0
	}
	d := int64(x>>3) * int64(deltaUnits[x&3])
	if x&4 != 0 {
		d = -d
	}
	return d, n
}

// errEncoding is a pair's encoding that does not decode (a snapshot's).
var errEncoding = fmt.Errorf("bad source encoding")

// counts returns how many placements and grant intervals the pair has.
func (p *pairState) counts() (np, ng int) {
	enc := p.sourcesEnc()
	a, n := binary.Uvarint(enc)
	if n <= 0 {
		return 0, 0
	}
	b, m := binary.Uvarint(enc[n:])
	if m <= 0 {
		return 0, 0
	}
	return int(a), int(b)
}

// decode appends the pair's sources to dst.
func (p *pairState) decode(dst []source) ([]source, error) {
	if len(p.enc) < len(uuid.UUID{}) {
		return dst, errEncoding
	}
	b := p.sourcesEnc()
	if len(b) == 0 {
		return dst, nil
	}
	np, n := binary.Uvarint(b)
	if n <= 0 {
		return dst, errEncoding
	}
	b = b[n:]
	ng, n := binary.Uvarint(b)
	if n <= 0 || np+ng > uint64(len(b)) {
		return dst, errEncoding
	}
	b = b[n:]
	var prev utime
	var gotP, gotG uint64
	for len(b) > 0 {
		var s source
		var err error
		s, b, err = decodeSource(b, prev)
		if err != nil {
			return dst, err
		}
		if s.isGrant() {
			gotG++
		} else {
			gotP++
		}
		prev = s.from
		dst = append(dst, s)
	}
	if gotP != np || gotG != ng {
		return dst, errEncoding
	}
	return dst, nil
}

func decodeSource(b []byte, prev utime) (source, []byte, error) {
	var s source
	if len(b) < 2 {
		return s, nil, errEncoding
	}
	h := b[0]
	s.flags = h & srcFlags
	switch {
	case s.isGrant():
		s.perms = domain.PermissionSet(b[1])
		b = b[2:]
	case s.flags&srcFullID != 0:
		if len(b) < 1+len(s.id) {
			return s, nil, errEncoding
		}
		copy(s.id[:], b[1:])
		s.key = idKey(s.id)
		b = b[1+len(s.id):]
	default:
		if len(b) < 1+8 {
			return s, nil, errEncoding
		}
		s.key = binary.LittleEndian.Uint64(b[1:])
		b = b[1+8:]
	}
	var ok bool
	if s.from, b, ok = readTime(b, prev); !ok {
		return s, nil, errEncoding
	}
	ref := s.from
	if h&encTo != 0 {
		if s.to, b, ok = readTime(b, s.from); !ok {
			return s, nil, errEncoding
		}
		ref = s.to
	}
	if h&encUntil != 0 {
		if s.until, b, ok = readTime(b, ref); !ok {
			return s, nil, errEncoding
		}
	}
	if h&encEarly != 0 {
		if s.early, b, ok = readTime(b, ref); !ok {
			return s, nil, errEncoding
		}
	}
	if h&encSince != 0 {
		if s.since, b, ok = readTime(b, s.from); !ok {
			return s, nil, errEncoding
		}
	}
	return s, b, nil
}

// readTime reads the time base plus the difference b starts with, and the
// rest of b.
func readTime(b []byte, base utime) (utime, []byte, bool) {
	d, n := readDelta(b)
	if n <= 0 {
		return 0, nil, false
	}
	return base + utime(d), b[n:], true
}

// encode appends the encoding of srcs (the part after the child's id) to
// dst.
func encode(dst []byte, srcs []source) []byte {
	var np, ng uint64
	for i := range srcs {
		if srcs[i].isGrant() {
			ng++
		} else {
			np++
		}
	}
	if np+ng == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, np)
	dst = binary.AppendUvarint(dst, ng)
	var prev utime
	for i := range srcs {
		s := &srcs[i]
		h := s.flags & srcFlags
		ref := s.from
		if s.to != 0 {
			h |= encTo
			ref = s.to
		}
		if s.until != 0 {
			h |= encUntil
		}
		if s.early != 0 {
			h |= encEarly
		}
		if s.since != 0 {
			h |= encSince
		}
		dst = append(dst, h)
		switch {
		case s.isGrant():
			dst = append(dst, byte(s.perms))
		case s.flags&srcFullID != 0:
			dst = append(dst, s.id[:]...)
		default:
			dst = binary.LittleEndian.AppendUint64(dst, s.key)
		}
		dst = appendDelta(dst, int64(s.from-prev))
		if s.to != 0 {
			dst = appendDelta(dst, int64(s.to-s.from))
		}
		if s.until != 0 {
			dst = appendDelta(dst, int64(s.until-ref))
		}
		if s.early != 0 {
			dst = appendDelta(dst, int64(s.early-ref))
		}
		if s.since != 0 {
			dst = appendDelta(dst, int64(s.since-s.from))
		}
		prev = s.from
	}
	return dst
}

// factsBuffer is how many placements (and grant intervals) a check turns
// into facts on its stack; a pair with more takes buffers from a pool.
// (The stack's buffers are zeroed at every check: larger ones cost more
// than the pool.)
const factsBuffer = 4

// factsBuffers are a check's buffers for a pair with more than
// factsBuffer placements or grant intervals.
type factsBuffers struct {
	pl []domain.PlacementFacts
	gr []domain.GrantFacts
}

var factsPool = sync.Pool{New: func() any { return new(factsBuffers) }}

// facts appends the pair's placement facts to pl and grant facts to gr,
// as the aggregates give them (cancelled placements left out).
func (p *pairState) facts(pl []domain.PlacementFacts, gr []domain.GrantFacts) ([]domain.PlacementFacts, []domain.GrantFacts) {
	b := p.sourcesEnc()
	if len(b) == 0 {
		return pl, gr
	}
	_, n := binary.Uvarint(b)
	_, m := binary.Uvarint(b[n:])
	b = b[n+m:]
	var prev utime
	for len(b) > 0 {
		var s source
		var err error
		if s, b, err = decodeSource(b, prev); err != nil {
			break // never: the index wrote the encoding, or checked it (restoreFold)
		}
		prev = s.from
		switch {
		case s.isGrant():
			gr = append(gr, s.grantFacts())
		case s.flags&srcCancelled == 0:
			pl = append(pl, s.placementFacts())
		}
	}
	return pl, gr
}

// access is domain.ChildAccess on the pair's facts with acct's facts at
// t, and, in a grace period, when the placement ended (GraceFrom). It
// allocates nothing.
func (p *pairState) access(acct *domain.AccountFacts, t time.Time) (domain.Access, time.Time) {
	if np, ng := p.counts(); np > factsBuffer || ng > factsBuffer {
		fb := factsPool.Get().(*factsBuffers)
		pl, gr := p.facts(fb.pl[:0], fb.gr[:0])
		a, ended := decide(acct, pl, gr, t)
		fb.pl, fb.gr = pl[:0], gr[:0]
		factsPool.Put(fb)
		return a, ended
	}
	var (
		pbuf [factsBuffer]domain.PlacementFacts
		gbuf [factsBuffer]domain.GrantFacts
	)
	pl, gr := p.facts(pbuf[:0], gbuf[:0])
	return decide(acct, pl, gr, t)
}

func decide(acct *domain.AccountFacts, pl []domain.PlacementFacts, gr []domain.GrantFacts, t time.Time) (domain.Access, time.Time) {
	a := domain.ChildAccess(*acct, pl, gr, t)
	if a.Reason == domain.ReasonGracePeriod {
		return a, domain.GraceFrom(pl, t)
	}
	return a, time.Time{}
}

// placementIn returns the index in srcs of placement id, or -1.
//
// A pair keeps of a placement's id its idKey only, unless another
// placement of the pair has the same key when it is recorded: then it
// keeps the whole id (srcFullID). So the placement found is the one with
// the whole id, else the one with its key: exactly the placement named,
// for every log the domain writes (a child's placement ids are distinct:
// StartPlacement refuses one already used). An event naming a placement
// the pair never had, whose key is one of the pair's (a log that
// contradicts itself, one chance in 2^64 for random ids), would be
// applied to that placement instead of stopping the index.
func placementIn(srcs []source, id uuid.UUID) int {
	k, found := idKey(id), -1
	for i := range srcs {
		s := &srcs[i]
		switch {
		case s.isGrant():
		case s.flags&srcFullID != 0:
			if s.id == id {
				return i
			}
		case found < 0 && s.key == k:
			found = i
		}
	}
	return found
}

// newPlacement returns the source of a placement id recorded with the pair
// whose sources are srcs (see placementIn).
func newPlacement(srcs []source, id uuid.UUID) source {
	s := source{key: idKey(id)}
	for i := range srcs {
		if !srcs[i].isGrant() && srcs[i].key == s.key {
			s.id, s.flags = id, srcFullID
			break
		}
	}
	return s
}

// lastGrantIn returns the index in srcs of the last grant interval, or -1.
func lastGrantIn(srcs []source) int {
	for i := len(srcs) - 1; i >= 0; i-- {
		if srcs[i].isGrant() {
			return i
		}
	}
	return -1
}

// grantIn returns the index in srcs of the last grant interval made at
// from, or -1.
func grantIn(srcs []source, from utime) int {
	for i := len(srcs) - 1; i >= 0; i-- {
		if srcs[i].isGrant() && srcs[i].from == from {
			return i
		}
	}
	return -1
}

// account is what the index keeps per account.
type account struct {
	id uuid.UUID
	// known is true once the account was invited: its facts are then the
	// account's, and a check of a child it has no pair with answers by
	// them (account_not_active, account_closed or no_relationship).
	known bool
	// kind (an index in kinds), activated, closed and lapses (nil: none)
	// are the account's facts as its events set them, also before it was
	// invited (policyFacts gives what the policy sees).
	kind              uint8
	activated, closed utime
	lapses            *[]domain.Lapse
	// pairs are the account's pairs, sorted by child id.
	pairs []pairState
}

// kinds are the account kinds an account's kind indexes.
var kinds = [...]domain.AccountKind{"", domain.KindFosterCarer, domain.KindParent, domain.KindGuardian, domain.KindNetworkMember}

// facts returns the account's facts as its events set them.
func (a *account) facts() domain.AccountFacts {
	f := domain.AccountFacts{Kind: kinds[a.kind], ActivatedAt: a.activated.time(), ClosedAt: a.closed.time()}
	if a.lapses != nil {
		f.Lapses = *a.lapses
	}
	return f
}

// setFacts sets the account's facts; it fails, changing nothing, for a
// kind the domain does not know.
func (a *account) setFacts(f domain.AccountFacts) error {
	k := slices.Index(kinds[:], f.Kind)
	if k < 0 {
		return fmt.Errorf("unknown account kind %q", f.Kind)
	}
	a.kind, a.activated, a.closed, a.lapses = uint8(k), ut(f.ActivatedAt), ut(f.ClosedAt), nil
	if len(f.Lapses) > 0 {
		l := f.Lapses
		a.lapses = &l
	}
	return nil
}

// policyFacts is the account's facts as the policy sees them: none until
// the account was invited.
func (a *account) policyFacts() domain.AccountFacts {
	if a.known {
		return a.facts()
	}
	return domain.AccountFacts{}
}

// pair returns the account's pair with child, or nil.
func (a *account) pair(child uuid.UUID) *pairState {
	i, ok := findPair(a.pairs, child)
	if !ok {
		return nil
	}
	return &a.pairs[i]
}

// sameAccountFacts reports whether a and b are the same facts.
func sameAccountFacts(a, b *domain.AccountFacts) bool {
	return a.Kind == b.Kind && a.ActivatedAt.Equal(b.ActivatedAt) && a.ClosedAt.Equal(b.ClosedAt) && slices.Equal(a.Lapses, b.Lapses)
}

// errApply wraps accessmodel.ErrApply for a record the fold refuses.
func errApply(rec eventlog.Record, format string, a ...any) error {
	return fmt.Errorf("accessindex: %w %s at %s: %s", accessmodel.ErrApply, rec.ID, rec.Position, fmt.Sprintf(format, a...))
}

// pairOf returns acct's entry and its pair with child, creating both as
// needed, and whether the pair is new. Callers hold mu for writing.
func (ix *Index) pairOf(acct, child uuid.UUID) (*account, *pairState, bool) {
	ac := ix.account(acct)
	i, ok := findPair(ac.pairs, child)
	if ok {
		return ac, &ac.pairs[i], false
	}
	ac.pairs = slices.Insert(ac.pairs, i, newPair(child))
	v := ix.viewers[child]
	j, _ := slices.BinarySearchFunc(v, acct, func(a *account, id uuid.UUID) int { return compareIDs(a.id, id) })
	ix.viewers[child] = slices.Insert(v, j, ac)
	ix.npairs++
	return ac, &ac.pairs[i], true
}

// existingPair returns acct's pair with child, or nil when there is none.
func (ix *Index) existingPair(acct, child uuid.UUID) (*account, *pairState) {
	ac := ix.accounts[acct]
	if ac == nil {
		return nil, nil
	}
	return ac, ac.pair(child)
}

// account returns the entry of id, creating it. Callers hold mu for writing.
func (ix *Index) account(id uuid.UUID) *account {
	ac := ix.accounts[id]
	if ac == nil {
		ac = &account{id: id}
		ix.accounts[id] = ac
	}
	return ac
}

// sources decodes p's sources into the applier's scratch buffer (valid
// until the next call).
func (ix *Index) sources(p *pairState) []source {
	srcs, err := p.decode(ix.scratch[:0])
	if err != nil {
		panic(fmt.Sprintf("accessindex: pair with %s: %v", p.child(), err)) // the index wrote it, or checked it (restoreFold)
	}
	ix.scratch = srcs
	return srcs
}

// setSources encodes srcs as p's sources, in place when they fit. Callers
// hold mu for writing.
func (ix *Index) setSources(p *pairState, srcs []source) {
	ix.encScratch = encode(append(ix.encScratch[:0], p.enc[:len(uuid.UUID{})]...), srcs)
	if n := len(ix.encScratch); n > cap(p.enc) {
		p.enc = make([]byte, n, n+16) // room for a grant interval more
	}
	p.enc = append(p.enc[:0], ix.encScratch...)
}

// fold applies env, the record rec, to the index's state and publishes
// its changes. It checks the record against the state before it changes
// anything: a record the state contradicts (an event of a placement or a
// grant the pair does not have, an event type not handled) changes nothing
// and fails with accessmodel.ErrApply. Callers hold mu for writing.
func (ix *Index) fold(rec eventlog.Record, env domain.Envelope) error {
	at := env.RecordedAt
	var err error
	switch e := env.Event.(type) {
	case *domain.ChildRegistered, *domain.WorkerAllocated, *domain.ChildErased:
		ix.noteChild(e)
	case *domain.ChildRetentionSet, *domain.PhoneResetRequested, *domain.PhoneCleared, *domain.PhoneEnrolled,
		*domain.IdentityLinked, *domain.AccountErased, *domain.EmailChangeRequested, *domain.EmailChanged,
		*domain.EmailClaimed, *domain.EmailReleased, *domain.PolicySet:
		// No access fact (R22, R25; identity, email and phone events).

	case *domain.PlacementStarted:
		ac, p, _ := ix.pairOf(e.CarerAccountID, e.ChildID)
		srcs := ix.sources(p)
		s := newPlacement(srcs, e.PlacementID)
		s.from, s.since = ut(e.StartedAt), ut(e.AccountSince)
		srcs = append(srcs, s)
		ix.setSources(p, srcs)
		ix.publish(rec, at, ac, p, true, time.Time{})
	case *domain.PlacementEnded:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, time.Time{}, func(s *source) {
			s.flags |= srcEnded
			s.to, s.until = ut(e.EndedAt), ut(e.GraceUntil)
		})
	case *domain.GraceEndedEarly:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, time.Time{}, func(s *source) { s.early = ut(e.EndedAt) })
	case *domain.PlacementCancelled:
		// The placement's times are no longer facts of the pair (R18).
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, time.Time{}, func(s *source) { s.flags |= srcCancelled })
	case *domain.GraceExpired:
		// Time marks: the time was a fact already.
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, e.ExpiredAt, nil)
	case *domain.PlacementStartReached:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, e.ReachedAt, nil)
	case *domain.PlacementEndReached:
		return ix.foldPlacement(rec, at, e.CarerAccountID, e.ChildID, e.PlacementID, e.ReachedAt, nil)

	case *domain.AccessGranted:
		ac, p, _ := ix.pairOf(e.AccountID, e.ChildID)
		srcs := ix.sources(p)
		if i := lastGrantIn(srcs); i >= 0 && srcs[i].to == 0 {
			srcs[i].to = ut(e.GrantedAt)
		}
		srcs = append(srcs, source{flags: srcGrant, from: ut(e.GrantedAt), until: ut(e.ExpiresAt), since: ut(e.AccountSince),
			perms: e.PermissionSet()})
		ix.setSources(p, srcs)
		ix.publish(rec, at, ac, p, true, time.Time{})
		ix.noteGrant(ix.grantNote(e))
	case *domain.AccessRevoked:
		ac, p, isNew := ix.pairOf(e.AccountID, e.ChildID)
		changed := isNew
		if srcs := ix.sources(p); len(srcs) > 0 {
			if i := lastGrantIn(srcs); i >= 0 && srcs[i].to == 0 {
				srcs[i].to, changed = ut(e.RevokedAt), true
				ix.setSources(p, srcs)
			}
		}
		ix.publish(rec, at, ac, p, changed, time.Time{})
		ix.noteGrant(ix.grantNote(e))
	case *domain.GrantReviewed:
		// A review changes no access (R19), only the grant's review date.
		_, p := ix.existingPair(e.AccountID, e.ChildID)
		if p == nil || grantIn(ix.sources(p), ut(e.GrantedAt)) < 0 {
			return errApply(rec, "child %s: review of an unknown grant to %s made at %s", e.ChildID, e.AccountID, e.GrantedAt)
		}
		ix.noteGrant(ix.grantNote(e))
	case *domain.GrantExpired:
		ac, p := ix.existingPair(e.AccountID, e.ChildID)
		i := -1
		var srcs []source
		if p != nil {
			srcs = ix.sources(p)
			i = grantIn(srcs, ut(e.GrantedAt))
		}
		if i < 0 {
			return errApply(rec, "child %s: expiry of an unknown grant to %s made at %s", e.ChildID, e.AccountID, e.GrantedAt)
		}
		changed := srcs[i].to == 0
		if changed {
			srcs[i].to = ut(e.ExpiredAt)
			ix.setSources(p, srcs)
		}
		ix.publish(rec, at, ac, p, changed, e.ExpiredAt)
		ix.noteGrant(ix.grantNote(e))

	case *domain.AccountInvited:
		err = ix.foldAccount(rec, at, e.AccountID, true, func(f *domain.AccountFacts) { f.Kind = e.Kind })
	case *domain.InvitationExpired:
		err = ix.foldAccount(rec, at, e.AccountID, false, nil)
	case *domain.AccountActivated:
		err = ix.foldAccount(rec, at, e.AccountID, false, func(f *domain.AccountFacts) { f.ActivatedAt = e.ActivatedAt })
	case *domain.AccountClosed:
		if err := ix.foldAccount(rec, at, e.AccountID, false, func(f *domain.AccountFacts) { f.ClosedAt = e.ClosedAt }); err != nil {
			return err
		}
		// A closure ends every grant of the account (R13), and a
		// reopening does not bring them back (R18): they leave the
		// reviews list.
		for i := range ix.accounts[e.AccountID].pairs {
			ix.noteGrant(grantNote{child: ix.accounts[e.AccountID].pairs[i].child(), account: e.AccountID, gone: true})
		}
	case *domain.AccountReopened:
		err = ix.foldAccount(rec, at, e.AccountID, false, func(f *domain.AccountFacts) {
			// A new slice: the facts handed to checks before stay as they were.
			f.Lapses = append(slices.Clip(f.Lapses), domain.Lapse{ClosedAt: e.ClosedAt, ReopenedAt: e.ReopenedAt})
			f.ClosedAt = time.Time{}
		})
	default:
		return errApply(rec, "event type %s not handled", rec.Type)
	}
	return err
}

// foldPlacement applies change (nil for a time mark at mark) to the
// placement id of carer with child, and publishes the pair's change.
func (ix *Index) foldPlacement(rec eventlog.Record, at time.Time, carer, child, id uuid.UUID, mark time.Time, change func(*source)) error {
	ac, p := ix.existingPair(carer, child)
	i := -1
	var srcs []source
	if p != nil {
		srcs = ix.sources(p)
		i = placementIn(srcs, id)
	}
	if i < 0 {
		return errApply(rec, "child %s: event of unknown placement %s of carer %s", child, id, carer)
	}
	changed := false
	if change != nil {
		before := srcs[i]
		change(&srcs[i])
		ix.setSources(p, srcs)
		changed = !sameFacts(&before, &srcs[i])
	}
	ix.publish(rec, at, ac, p, changed, mark)
	return nil
}

// foldAccount applies change (nil: none) to the account's facts (invited:
// the event invites it), and publishes a change for each of its pairs
// when the facts the policy sees changed.
func (ix *Index) foldAccount(rec eventlog.Record, at time.Time, id uuid.UUID, invited bool, change func(*domain.AccountFacts)) error {
	ac := ix.accounts[id]
	var f domain.AccountFacts
	if ac != nil {
		f = ac.facts()
	}
	if change != nil {
		change(&f)
		if slices.Index(kinds[:], f.Kind) < 0 {
			return errApply(rec, "account %s: unknown account kind %q", id, f.Kind)
		}
	}
	if ac == nil {
		ac = ix.account(id)
	}
	before := ac.policyFacts()
	if invited && !ac.known {
		ac.known = true
		ix.known++
	}
	_ = ac.setFacts(f) // its kind is known (checked above)
	after := ac.policyFacts()
	if sameAccountFacts(&before, &after) {
		return nil
	}
	for i := range ac.pairs {
		ix.publish(rec, at, ac, &ac.pairs[i], true, time.Time{})
	}
	return nil
}

// publish pushes the change of pair p of ac by rec (recorded at at) into
// the change buffer: when its facts changed, or when rec is a time mark
// (mark not zero) and the pair's access changes at the marked time (see
// Change). Callers hold mu for writing.
func (ix *Index) publish(rec eventlog.Record, at time.Time, ac *account, p *pairState, changed bool, mark time.Time) {
	f := ac.policyFacts()
	if !changed {
		if mark.IsZero() {
			return
		}
		before, _ := p.access(&f, mark.Add(-time.Microsecond))
		after, _ := p.access(&f, mark)
		if before.Permissions == after.Permissions && before.Reason == after.Reason {
			return
		}
	}
	a, _ := p.access(&f, at)
	ix.changes.push(Change{Account: ac.id, Child: p.child(), Access: a, At: at, Position: rec.Position})
}

// pack moves the fold's state (the accounts, their pairs, the pairs'
// encodings) into a few large allocations of exactly their size, and
// derives the viewers lists (sorted by account id) the same way. A
// replay's state is otherwise spread over the heap among the garbage of
// decoding the log, keeping mostly empty spans in use, and its slices
// carry the slack of their growth. The pairs and encodings packed are
// clipped, so a later change moves only what it changes out of the
// packed blocks.
func pack(accounts map[uuid.UUID]*account, npairs int) (map[uuid.UUID]*account, map[uuid.UUID][]*account) {
	ids := make([]uuid.UUID, 0, len(accounts))
	nbytes := 0
	counts := map[uuid.UUID]int{}
	for id, ac := range accounts {
		ids = append(ids, id)
		for i := range ac.pairs {
			nbytes += len(ac.pairs[i].enc)
			counts[ac.pairs[i].child()]++
		}
	}
	slices.SortFunc(ids, compareIDs)
	var (
		accts   = make([]account, len(ids))
		pairs   = make([]pairState, 0, npairs)
		buf     = make([]byte, 0, nbytes)
		out     = make(map[uuid.UUID]*account, len(ids))
		views   = make([]*account, npairs)
		viewers = make(map[uuid.UUID][]*account, len(counts))
	)
	off := 0
	for child, n := range counts {
		viewers[child] = views[off : off : off+n]
		off += n
	}
	for i, id := range ids {
		ac, na := accounts[id], &accts[i]
		*na = *ac
		na.pairs = nil
		start := len(pairs)
		for j := range ac.pairs {
			p := &ac.pairs[j]
			at := len(buf)
			buf = append(buf, p.enc...)
			pairs = append(pairs, pairState{enc: buf[at:len(buf):len(buf)]})
			child := p.child()
			viewers[child] = append(viewers[child], na) // in account id order
		}
		na.pairs = pairs[start:len(pairs):len(pairs)]
		out[id] = na
	}
	return out, viewers
}

// Compact packs the index's state (see pack) so that it holds the least
// memory, holding checks for its duration (tens of milliseconds for a
// county's index). Run calls it once, when the index becomes ready
// (unless it was loaded from a snapshot, which is packed as it loads, and
// the replay after it changed few pairs: fewer records than an eighth of
// the pairs); a caller that feeds the index with
// Apply calls it when it has applied the bulk of the log.
func (ix *Index) Compact() {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.compact()
}

// compact is Compact; callers hold applyMu and mu for writing.
func (ix *Index) compact() {
	ix.packed, ix.packedAt = true, ix.applied
	ix.accounts, ix.viewers = pack(ix.accounts, ix.npairs)
	ix.children, ix.byRef, ix.byWorker = packChildren(ix.children, ix.byRef, ix.byWorker)
	ix.grants = packGrants(ix.grants)
}

// packChildren moves the children's info, the reference lookup and the
// children by worker into new allocations made together (see pack): the
// info in one block, the workers' ids one copy each.
func packChildren(children map[uuid.UUID]*ChildInfo, byRef map[string]uuid.UUID,
	byWorker map[string]map[uuid.UUID]struct{},
) (map[uuid.UUID]*ChildInfo, map[string]uuid.UUID, map[string]map[uuid.UUID]struct{}) {
	workers := make(map[string]string, len(byWorker))
	worker := func(w string) string {
		if c, ok := workers[w]; ok {
			return c
		}
		c := strings.Clone(w)
		workers[c] = c
		return c
	}
	infos := make([]ChildInfo, 0, len(children))
	outChildren := make(map[uuid.UUID]*ChildInfo, len(children))
	for _, c := range children {
		info := *c
		info.Reference, info.Worker = strings.Clone(info.Reference), worker(info.Worker)
		infos = append(infos, info)
		outChildren[info.ID] = &infos[len(infos)-1]
	}
	outByRef := make(map[string]uuid.UUID, len(byRef))
	for k, id := range byRef {
		if c := outChildren[id]; c != nil && c.Reference == k {
			k = c.Reference // one copy, when the key is the reference as registered
		} else {
			k = strings.Clone(k)
		}
		outByRef[k] = id
	}
	outByWorker := make(map[string]map[uuid.UUID]struct{}, len(byWorker))
	for w, set := range byWorker {
		s := make(map[uuid.UUID]struct{}, len(set))
		for id := range set {
			s[id] = struct{}{}
		}
		outByWorker[worker(w)] = s
	}
	return outChildren, outByRef, outByWorker
}

// packGrants moves the reviews list into one block (see pack).
func packGrants(grants map[uuid.UUID][]dueEntry) map[uuid.UUID][]dueEntry {
	n := 0
	for _, l := range grants {
		n += len(l)
	}
	all := make([]dueEntry, 0, n)
	out := make(map[uuid.UUID][]dueEntry, len(grants))
	for child, l := range grants {
		at := len(all)
		all = append(all, l...)
		out[child] = all[at:len(all):len(all)]
	}
	return out
}
