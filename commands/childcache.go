package commands

import (
	"encoding/binary"
	"slices"
	"sync"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
)

// childCache keeps, per child, the aggregate at the version last loaded
// (never handed out: loads get a clone) and the keys of the stream's event
// ids up to it (idKey), so that a command reads only the events appended
// since (by this replica or any other: the log stays the only source)
// instead of the whole stream. A load that watches an id whose key the
// cached stream holds (a retried request, or, rarely, another id with the
// same key) reads the whole stream, to find its events. An erased child is
// not kept: its state held personal data until the erasure. The oldest
// entry makes room for a new one.
type childCache struct {
	size    int // the most entries kept
	mu      sync.Mutex
	entries map[uuid.UUID]*cachedChild
	order   []uuid.UUID // insertion order, for eviction
}

type cachedChild struct {
	child *domain.Child
	l     loaded // the stream, its version and last position, ids sorted
}

// idKey is the key of an event id in a cached stream: its first 8 bytes.
// Two ids may share a key; a watched id's key found costs a whole read,
// never a wrong answer.
func idKey(id uuid.UUID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

// newChildCache returns a cache of at most size children.
func newChildCache(size int) *childCache {
	return &childCache{size: size, entries: map[uuid.UUID]*cachedChild{}}
}

// get returns a clone of the cached child of id and what load had read
// (collecting the ids of the events applied next), or ok false when none
// is cached or the stream holds a watched id's key.
func (cc *childCache) get(id uuid.UUID, watch map[uuid.UUID]bool) (*domain.Child, loaded, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.entries[id]
	if !ok {
		return nil, loaded{}, false
	}
	for w := range watch {
		if _, seen := slices.BinarySearch(e.l.ids, idKey(w)); seen {
			return nil, loaded{}, false
		}
	}
	l := e.l
	l.ids = l.ids[:len(l.ids):len(l.ids)] // appends copy
	return e.child.Clone(), l, true
}

// put keeps a clone of c, loaded up to l (l.ids the keys of the whole
// stream's ids); it drops the entry of an erased child.
func (cc *childCache) put(id uuid.UUID, c *domain.Child, l loaded) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if c.Erased() {
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
	cc.entries[id] = &cachedChild{child: c.Clone(), l: loaded{stream: l.stream, version: l.version, last: l.last, ids: ids, collect: true}}
}
