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
	add("pairs %d", len(ix.pairs))
	for p, f := range ix.pairs {
		add("pair %s %s account %+v placements %+v grants %+v", p.Account, p.Child, f.account, f.placements, f.grants)
	}
	for id, a := range ix.accounts {
		add("account %s known %v facts %+v children %v", id, a.known, a.facts, a.children)
	}
	for id, v := range ix.viewers {
		add("viewers %s %v", id, v)
	}
	for id := range ix.registered {
		add("registered %s", id)
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
	for c, byAccount := range ix.grants {
		for a, g := range byAccount {
			add("grant %s %s %+v", c, a, g)
		}
	}
	add("changes %d dropped %v", ix.changes.len(), ix.changes.dropped)
	for i := range ix.changes.len() {
		add("change %d %+v", i, *ix.changes.at(i))
	}
	st, err := ix.model.State()
	if err != nil {
		add("model: %v", err)
	}
	add("model %v applied %d", st.Position, st.Applied)
	for _, c := range st.Children {
		add("model child %+v", c)
	}
	for _, a := range st.Accounts {
		add("model account %+v", a)
	}
	for _, ac := range st.PairsOf {
		add("model pairsOf %s %v", ac.Account, ac.Children)
	}
	slices.Sort(out)
	return out
}
