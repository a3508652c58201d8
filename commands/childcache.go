package commands

import (
	"sync"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// childCacheSize bounds the children whose state the service keeps.
const childCacheSize = 4096

// childCache keeps, per child, the aggregate at the version last loaded
// (never handed out: loads get a clone) and the ids of the stream's events
// up to it, so that a command reads only the events appended since (by
// this replica or any other: the log stays the only source) instead of
// the whole stream. A load that watches an id the cached stream holds (a
// retried request) reads the whole stream, to find its events. An erased
// child is not kept: its state held personal data until the erasure. The
// oldest entry makes room for a new one.
type childCache struct {
	mu      sync.Mutex
	entries map[uuid.UUID]*cachedChild
	order   []uuid.UUID // insertion order, for eviction
}

type cachedChild struct {
	child   *domain.Child
	version uint64
	last    eventlog.Position
	ids     map[uuid.UUID]struct{}
}

func newChildCache() *childCache {
	return &childCache{entries: map[uuid.UUID]*cachedChild{}}
}

// get returns a clone of the cached child of id and what load had read,
// or ok false when none is cached or the stream holds a watched id.
func (cc *childCache) get(id uuid.UUID, watch map[uuid.UUID]bool) (*domain.Child, loaded, map[uuid.UUID]struct{}, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.entries[id]
	if !ok {
		return nil, loaded{}, nil, false
	}
	for w := range watch {
		if _, seen := e.ids[w]; seen {
			return nil, loaded{}, nil, false
		}
	}
	ids := make(map[uuid.UUID]struct{}, len(e.ids)+4)
	for k := range e.ids {
		ids[k] = struct{}{}
	}
	return e.child.Clone(), loaded{stream: domain.ChildStream(id), version: e.version, last: e.last}, ids, true
}

// put keeps a clone of c, loaded up to l, whose stream holds ids; it
// drops the entry of an erased child.
func (cc *childCache) put(id uuid.UUID, c *domain.Child, l loaded, ids map[uuid.UUID]struct{}) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if c.Erased() {
		delete(cc.entries, id)
		return
	}
	if e, ok := cc.entries[id]; ok && e.version >= l.version {
		return // a later load got there first
	}
	if _, ok := cc.entries[id]; !ok {
		for len(cc.entries) >= childCacheSize && len(cc.order) > 0 {
			delete(cc.entries, cc.order[0])
			cc.order = cc.order[1:]
		}
		cc.order = append(cc.order, id)
	}
	cc.entries[id] = &cachedChild{child: c.Clone(), version: l.version, last: l.last, ids: ids}
}
