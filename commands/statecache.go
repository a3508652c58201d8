package commands

import (
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
)

// stateCacheSize bounds the accounts whose state the service keeps (the
// children's bound is Config.KeptChildren).
const stateCacheSize = 4096

// aggregate is what stateCache keeps: an aggregate that copies itself
// whole and says whether its personal data was erased.
type aggregate[T any] interface {
	Clone() T
	Erased() bool
}

// stateCache keeps, per aggregate (a child, an account), its state at the
// version last loaded (never handed out: loads get a clone) and the keys
// of the stream's event ids up to it (idKey), so that a command reads
// only the events appended since (by this replica or any other: the log
// stays the only source) instead of the whole stream. A load that watches
// an id whose key the cached stream holds (a retried request, or, rarely,
// another id with the same key) reads the whole stream, to find its
// events. An erased aggregate is not kept: its state held personal
// data until the erasure (the erase commands drop it as soon as their
// event is appended). The oldest entry makes room for a new one.
type stateCache[T aggregate[T]] struct {
	stream func(uuid.UUID) string
	size   int // the most entries kept

	mu      sync.Mutex
	entries map[uuid.UUID]*cachedState[T]
	order   []uuid.UUID // insertion order, for eviction
	// erased are the aggregates dropped at their erasure: a load that
	// began before the erasure's append must not put their earlier state
	// back (an erasure is never undone; erasures are few).
	erased map[uuid.UUID]struct{}
	// changes counts the entries put and dropped (the kept-state
	// snapshot's writer, keptsnapshot.go).
	changes atomic.Uint64
}

type cachedState[T any] struct {
	state T
	l     loaded // the stream, its version and last position, ids sorted
}

// idKey is the key of an event id in a cached stream: its first 8 bytes.
// Two ids may share a key; a watched id's key found costs a whole read,
// never a wrong answer.
func idKey(id uuid.UUID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

func newStateCache[T aggregate[T]](stream func(uuid.UUID) string, size int) *stateCache[T] {
	return &stateCache[T]{stream: stream, size: size, entries: map[uuid.UUID]*cachedState[T]{}, erased: map[uuid.UUID]struct{}{}}
}

// newChildCache returns a cache of at most size children.
func newChildCache(size int) *stateCache[*domain.Child] {
	return newStateCache[*domain.Child](domain.ChildStream, size)
}

func newAccountCache() *stateCache[*domain.Account] {
	return newStateCache[*domain.Account](domain.AccountStream, stateCacheSize)
}

// get returns a clone of the cached state of id and what load had read
// (collecting the ids of the events applied next), or ok false when none
// is cached or the stream holds a watched id's key.
func (cc *stateCache[T]) get(id uuid.UUID, watch map[uuid.UUID]bool) (T, loaded, bool) {
	var zero T
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.entries[id]
	if !ok {
		return zero, loaded{}, false
	}
	for w := range watch {
		if _, seen := slices.BinarySearch(e.l.ids, idKey(w)); seen {
			return zero, loaded{}, false
		}
	}
	l := e.l
	l.ids = l.ids[:len(l.ids):len(l.ids)] // appends copy
	return e.state.Clone(), l, true
}

// drop forgets the state of id for good (its erasure was just appended:
// the state kept from before it holds personal data).
func (cc *stateCache[T]) drop(id uuid.UUID) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.entries, id)
	cc.erased[id] = struct{}{}
	cc.changes.Add(1)
}

// clear forgets every kept state (the erased stay dropped).
func (cc *stateCache[T]) clear() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	clear(cc.entries)
	cc.order = cc.order[:0]
}

// put keeps a clone of s, loaded up to l (l.ids the keys of the whole
// stream's ids); it drops the entry of an erased aggregate.
func (cc *stateCache[T]) put(id uuid.UUID, s T, l loaded) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, gone := cc.erased[id]; gone || s.Erased() {
		delete(cc.entries, id)
		return
	}
	if e, ok := cc.entries[id]; ok && e.l.version >= l.version {
		return // a later load got there first
	}
	if _, ok := cc.entries[id]; !ok {
		for len(cc.entries) >= cc.size && len(cc.order) > 0 {
			delete(cc.entries, cc.order[0])
			cc.order = cc.order[1:]
		}
		cc.order = append(cc.order, id)
	}
	ids := slices.Clone(l.ids)
	slices.Sort(ids)
	cc.entries[id] = &cachedState[T]{state: s.Clone(), l: loaded{stream: l.stream, version: l.version, last: l.last, lastID: l.lastID, ids: ids, collect: true}}
	cc.changes.Add(1)
}

// kept returns the entries, oldest first. An entry is never changed once
// kept (put replaces it, get hands out clones), so the caller reads them
// without the lock, which is held only while their pointers are copied.
func (cc *stateCache[T]) kept() []*cachedState[T] {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	out := make([]*cachedState[T], 0, len(cc.entries))
	seen := make(map[uuid.UUID]struct{}, len(cc.entries))
	for _, id := range cc.order {
		if e, ok := cc.entries[id]; ok {
			if _, dup := seen[id]; !dup {
				seen[id] = struct{}{}
				out = append(out, e)
			}
		}
	}
	return out
}
