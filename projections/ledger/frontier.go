package ledger

import (
	"fmt"
	"math/bits"
	"slices"

	"golang.org/x/mod/sumdb/tlog"
)

// frontier builds a tree leaf by leaf in memory, keeping only the hashes
// that later leaves and the root need: the roots of the maximal complete
// subtrees of the tree so far (at most one per level). tlog computes the
// stored hashes; frontier is its HashReader.
type frontier struct {
	n      int64               // leaves so far
	hashes map[int64]tlog.Hash // stored hash index → hash, the frontier and this leaf's new hashes
}

func newFrontier() *frontier { return &frontier{hashes: map[int64]tlog.Hash{}} }

// frontierIndexes returns the stored hash indexes of the maximal complete
// subtrees of a tree of n leaves, left to right.
func frontierIndexes(n int64) []int64 { return appendFrontier(nil, n) }

// appendFrontier appends frontierIndexes(n) to idx.
func appendFrontier(idx []int64, n int64) []int64 {
	var offset int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) == 0 {
			continue
		}
		idx = append(idx, tlog.StoredHashIndex(level, offset>>level))
		offset += 1 << level
	}
	return idx
}

// ReadHashes implements tlog.HashReader from the frontier.
func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := f.hashes[x]
		if !ok {
			level, n := tlog.SplitStoredHashIndex(x)
			return nil, fmt.Errorf("ledger: hash at level %d index %d is not on the frontier of %d leaves", level, n, f.n)
		}
		out[i] = h
	}
	return out, nil
}

// add appends the leaf hash h and returns the stored hashes it creates, the
// first at stored index tlog.StoredHashIndex(0, n) for the n before it and
// the rest following on (as tlog.StoredHashesForRecordHash).
func (f *frontier) add(h tlog.Hash) ([]tlog.Hash, error) {
	hs, err := tlog.StoredHashesForRecordHash(f.n, h, f)
	if err != nil {
		return nil, err
	}
	base := tlog.StoredHashIndex(0, f.n)
	for i, x := range hs {
		f.hashes[base+int64(i)] = x
	}
	f.n++
	f.prune()
	return hs, nil
}

// prune forgets the hashes no longer on the frontier.
func (f *frontier) prune() {
	if len(f.hashes) <= bits.OnesCount64(uint64(f.n)) {
		return
	}
	var buf [64]int64
	keep := appendFrontier(buf[:0], f.n)
	for x := range f.hashes {
		if !slices.Contains(keep, x) {
			delete(f.hashes, x)
		}
	}
}

// root returns the tree hash of the leaves so far.
func (f *frontier) root() (tlog.Hash, error) { return tlog.TreeHash(f.n, f) }
