package commands

import (
	"sync"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// stateCacheSize bounds the aggregates of one kind whose state the service
// keeps.
const stateCacheSize = 4096

// aggregate is what stateCache keeps: an aggregate that copies itself
// whole and says whether its personal data was erased.
type aggregate[T any] interface {
	Clone() T
	Erased() bool
}

// stateCache keeps, per aggregate (a child, an account), its state at the
// version last loaded (never handed out: loads get a clone) and the ids of
// the stream's events up to it, so that a command reads only the events
// appended since (by this replica or any other: the log stays the only
// source) instead of the whole stream. A load that watches an id the
// cached stream holds (a retried request) reads the whole stream, to find
// its events. An erased aggregate is not kept: its state held personal
// data until the erasure (the erase commands drop it as soon as their
// event is appended). The oldest entry makes room for a new one.
type stateCache[T aggregate[T]] struct {
	stream func(uuid.UUID) string

	mu      sync.Mutex
	entries map[uuid.UUID]*cachedState[T]
	order   []uuid.UUID // insertion order, for eviction
	// erased are the aggregates dropped at their erasure: a load that
	// began before the erasure's append must not put their earlier state
	// back (an erasure is never undone; erasures are few).
	erased map[uuid.UUID]struct{}
}

type cachedState[T any] struct {
	state   T
	version uint64
	last    eventlog.Position
	ids     map[uuid.UUID]struct{}
}

func newStateCache[T aggregate[T]](stream func(uuid.UUID) string) *stateCache[T] {
	return &stateCache[T]{stream: stream, entries: map[uuid.UUID]*cachedState[T]{}, erased: map[uuid.UUID]struct{}{}}
}

func newChildCache() *stateCache[*domain.Child] {
	return newStateCache[*domain.Child](domain.ChildStream)
}

func newAccountCache() *stateCache[*domain.Account] {
	return newStateCache[*domain.Account](domain.AccountStream)
}

// get returns a clone of the cached state of id and what load had read,
// or ok false when none is cached or the stream holds a watched id.
func (cc *stateCache[T]) get(id uuid.UUID, watch map[uuid.UUID]bool) (T, loaded, map[uuid.UUID]struct{}, bool) {
	var zero T
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.entries[id]
	if !ok {
		return zero, loaded{}, nil, false
	}
	for w := range watch {
		if _, seen := e.ids[w]; seen {
			return zero, loaded{}, nil, false
		}
	}
	ids := make(map[uuid.UUID]struct{}, len(e.ids)+4)
	for k := range e.ids {
		ids[k] = struct{}{}
	}
	return e.state.Clone(), loaded{stream: cc.stream(id), version: e.version, last: e.last}, ids, true
}

// drop forgets the state of id for good (its erasure was just appended:
// the state kept from before it holds personal data).
func (cc *stateCache[T]) drop(id uuid.UUID) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.entries, id)
	cc.erased[id] = struct{}{}
}

// put keeps a clone of s, loaded up to l, whose stream holds ids; it
// drops the entry of an erased aggregate.
func (cc *stateCache[T]) put(id uuid.UUID, s T, l loaded, ids map[uuid.UUID]struct{}) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, gone := cc.erased[id]; gone || s.Erased() {
		delete(cc.entries, id)
		return
	}
	if e, ok := cc.entries[id]; ok && e.version >= l.version {
		return // a later load got there first
	}
	if _, ok := cc.entries[id]; !ok {
		for len(cc.entries) >= stateCacheSize && len(cc.order) > 0 {
			delete(cc.entries, cc.order[0])
			cc.order = cc.order[1:]
		}
		cc.order = append(cc.order, id)
	}
	cc.entries[id] = &cachedState[T]{state: s.Clone(), version: l.version, last: l.last, ids: ids}
}
