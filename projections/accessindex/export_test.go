package accessindex

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// DumpForTest returns everything the index holds (its maps, its change
// buffer, its fold's state), one value per line, in a canonical order and
// form (nil and empty slices alike, no pointers), so that two indexes at
// the same position can be compared line by line.
func (ix *Index) DumpForTest() []string {
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	add("pos %v applied %d known %d last %+v erasures %d", ix.pos, ix.applied, ix.known, ix.last, ix.erasures)
	add("pairs %d", ix.npairs)
	for id, a := range ix.accounts {
		add("account %s id %s known %v facts %+v pairs %d", id, a.id, a.known, a.facts(), len(a.pairs))
		for _, p := range a.pairs {
			add("pair %s %s sources %x", id, p.child(), p.sourcesEnc())
		}
	}
	for id, v := range ix.viewers {
		ids := make([]uuid.UUID, len(v))
		for i, a := range v {
			ids[i] = a.id
		}
		add("viewers %s %v", id, ids)
	}
	for id, c := range ix.children {
		add("child %s %+v", id, *c)
	}
	for k, id := range ix.byRef {
		add("ref %q %s", k, id)
	}
	for w, set := range ix.byWorker {
		ids := make([]uuid.UUID, 0, len(set))
		for id := range set {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		add("worker %q %v", w, ids)
	}
	for c, list := range ix.grants {
		for _, g := range list {
			add("grant %s %+v", c, g)
		}
	}
	add("changes %d dropped %v", ix.changes.len(), ix.changes.dropped)
	for i := range ix.changes.len() {
		add("change %d %+v", i, ix.changes.at(i))
	}
	slices.Sort(out)
	return out
}

// SamplePairsForTest returns up to n of the index's (account, child)
// pairs, in the maps' order.
func (ix *Index) SamplePairsForTest(n int) [][2]uuid.UUID {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([][2]uuid.UUID, 0, n)
	for id, a := range ix.accounts {
		for i := range a.pairs {
			if len(out) == n {
				return out
			}
			out = append(out, [2]uuid.UUID{id, a.pairs[i].child()})
		}
	}
	return out
}
