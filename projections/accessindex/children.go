package accessindex

import (
	"slices"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// ChildInfo is what the index keeps of a registered child for workers to
// find it again (R17): its reference, as registered (ErasedText once the
// child was erased), and its allocated worker ("" when none).
type ChildInfo struct {
	ID        uuid.UUID
	Reference string
	Worker    string
}

// Erased reports whether the child's personal data was erased (R22).
func (c ChildInfo) Erased() bool { return domain.IsErased(c.Reference) }

// noteChild keeps what e changes of a child's info: its registration, a new
// allocated worker, its erasure. Callers hold mu for writing.
func (ix *Index) noteChild(e domain.Event) {
	switch e := e.(type) {
	case *domain.ChildRegistered:
		info := &ChildInfo{ID: e.ChildID, Reference: e.Reference}
		if domain.IsSealed(info.Reference) {
			info.Reference = domain.ErasedText // a value that does not open reads as erased
		}
		ix.children[e.ChildID] = info
		if !info.Erased() {
			ix.byRef[domain.NormalizeReference(info.Reference)] = e.ChildID
		}
		ix.allocate(info, e.WorkerID)
	case *domain.WorkerAllocated:
		if info := ix.children[e.ChildID]; info != nil {
			ix.allocate(info, e.WorkerID)
		}
	case *domain.ChildErased:
		if info := ix.children[e.ChildID]; info != nil && !info.Erased() {
			if key := domain.NormalizeReference(info.Reference); ix.byRef[key] == e.ChildID {
				delete(ix.byRef, key)
			}
			info.Reference = domain.ErasedText
		}
	}
}

// allocate moves info to worker's children. Callers hold mu for writing.
func (ix *Index) allocate(info *ChildInfo, worker string) {
	if info.Worker != "" {
		if set := ix.byWorker[info.Worker]; set != nil {
			delete(set, info.ID)
			if len(set) == 0 {
				delete(ix.byWorker, info.Worker)
			}
		}
	}
	info.Worker = worker
	if worker == "" {
		return
	}
	set := ix.byWorker[worker]
	if set == nil {
		set = map[uuid.UUID]struct{}{}
		ix.byWorker[worker] = set
	}
	set[info.ID] = struct{}{}
}

// ChildByReference returns the child registered with reference (compared
// as domain.NormalizeReference does), whatever its id (R17: also children
// registered before ids were derived from references), and the position
// the answer reflects.
func (ix *Index) ChildByReference(reference string) (ChildInfo, bool, eventlog.Position) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	id, ok := ix.byRef[domain.NormalizeReference(reference)]
	if !ok {
		return ChildInfo{}, false, ix.pos
	}
	return *ix.children[id], true, ix.pos
}

// ChildInfo returns what the index keeps of child, if it was registered.
func (ix *Index) ChildInfo(child uuid.UUID) (ChildInfo, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	info, ok := ix.children[child]
	if !ok {
		return ChildInfo{}, false
	}
	return *info, true
}

// ChildrenAllocatedTo returns up to limit children allocated to worker
// whose id sorts after after (uuid.Nil: from the first), in id order,
// whether more follow, and the position the answer reflects.
func (ix *Index) ChildrenAllocatedTo(worker string, after uuid.UUID, limit int) ([]ChildInfo, bool, eventlog.Position) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ids := make([]uuid.UUID, 0, len(ix.byWorker[worker]))
	for id := range ix.byWorker[worker] {
		if after == uuid.Nil || compareIDs(id, after) > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, compareIDs)
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	out := make([]ChildInfo, len(ids))
	for i, id := range ids {
		out[i] = *ix.children[id]
	}
	return out, more, ix.pos
}
