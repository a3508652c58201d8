package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// WarmLog is the log as WarmUp reads it, in its global order.
type WarmLog interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
}

// WarmUpInfo describes a warm-up.
type WarmUpInfo struct {
	// Records is the number of records read; Children the children kept.
	Records  int
	Children int
	// Busy is the time spent reading and folding; Elapsed the whole
	// warm-up, its pauses included.
	Busy, Elapsed time.Duration
}

// warmPage is the page size of the warm-up's reads.
const warmPage = 2000

// warmChild is a child folded by the warm-up.
type warmChild struct {
	id  uuid.UUID
	c   *domain.Child
	l   loaded
	bad bool // its stream did not fold: not kept
}

// WarmUp fills the kept children's state from one pass over log (after a
// start without a usable kept-state snapshot), so that the first command
// on a child reads only its stream's end and the next snapshot holds the
// children: it reads the log in pages and folds the streams of the first
// Config.KeptChildren children it meets, then keeps each as a command's
// load would (a child loaded by a command since, at a later version, stays
// as the command loaded it; an erased child, or one whose erasure was
// followed meanwhile, is not kept). It runs at low priority: after each
// page it pauses as long as the page took, so it takes at most about half
// of one core, and it stops when ctx ends (keeping nothing). Run it after
// the log was verified (the ledger), as the commands' reads wait for that
// too.
func (s *Service) WarmUp(ctx context.Context, log WarmLog) (WarmUpInfo, error) {
	started := time.Now()
	var info WarmUpInfo
	limit := s.cfg.KeptChildren
	byStream := make(map[string]*warmChild, min(limit, 1<<16))
	order := make([]*warmChild, 0, min(limit, 1<<16))
	after := eventlog.Start
	for {
		pageStart := time.Now()
		recs, err := log.ReadAll(ctx, after, warmPage)
		if err != nil {
			return info, fmt.Errorf("commands: warm-up: read the log after %s: %w", after, err)
		}
		for i := range recs {
			r := &recs[i]
			if !strings.HasPrefix(r.Stream, domain.ChildStreamPrefix) {
				continue
			}
			w := byStream[r.Stream]
			if w == nil {
				if len(order) >= limit {
					continue
				}
				id, err := uuid.Parse(strings.TrimPrefix(r.Stream, domain.ChildStreamPrefix))
				if err != nil {
					continue
				}
				w = &warmChild{id: id, c: domain.NewChild(id), l: loaded{stream: r.Stream, collect: true}}
				byStream[r.Stream] = w
				order = append(order, w)
			}
			if w.bad {
				continue
			}
			if err := w.l.apply(recs[i:i+1], w.c.Apply, nil); err != nil {
				w.bad = true // a command on it reports the stream
			}
		}
		info.Records += len(recs)
		if len(recs) > 0 {
			after = recs[len(recs)-1].Position
		}
		took := time.Since(pageStart)
		info.Busy += took
		if len(recs) < warmPage {
			break
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(took):
		}
	}
	for _, w := range order {
		if w.bad || w.c.Erased() || w.l.version == 0 {
			continue
		}
		s.children.put(w.id, w.c, w.l)
		info.Children++
	}
	info.Elapsed = time.Since(started)
	return info, nil
}
