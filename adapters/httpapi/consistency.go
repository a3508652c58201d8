package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// projectionPoll is how often a query waiting for a SQL read model to
// reach its min_position looks at the runner's status (the runner offers no
// notification; the index is waited for first, without polling, and the
// read models are usually as far by then).
const projectionPoll = 5 * time.Millisecond

// waitIndex waits, bounded by MinPositionWait, until the access index has
// applied the query's min_position (when given). It fails with an error
// wrapping accessindex.ErrStale (503 "stale") when the index is not there in
// time, and with a 400 for a malformed token.
func (s *server) waitIndex(ctx context.Context, q query) error {
	min, given, err := q.position("min_position")
	if err != nil || !given {
		return err
	}
	_, err = s.cfg.Index.WaitFor(ctx, min, s.cfg.MinPositionWait)
	return s.staleError(err, "the access index", min)
}

// staleError turns the index's ErrStale into the API's 503 "stale" problem
// with a detail for people; other errors pass unchanged.
func (s *server) staleError(err error, what string, min eventlog.Position) error {
	if err == nil || !errors.Is(err, accessindex.ErrStale) {
		return err
	}
	return &httpError{status: http.StatusServiceUnavailable, code: codeStale, err: err,
		detail: fmt.Sprintf("%s of this replica has not reached position %s within %s; retry later", what, min, s.cfg.MinPositionWait)}
}

// projectionPosition returns the position the runner reports for
// projection name (Start when it does not report it).
func (s *server) projectionPosition(name string) eventlog.Position {
	for _, st := range s.cfg.Projections() {
		if st.Name == name {
			return st.Position
		}
	}
	return eventlog.Start
}

// waitProjection waits, bounded by MinPositionWait, until SQL read model
// name has applied min (when given), and returns the read model's position:
// an answer read after it reflects at least every event up to that
// position. It fails like waitIndex.
func (s *server) waitProjection(ctx context.Context, name string, min eventlog.Position, given bool) (eventlog.Position, error) {
	pos := s.projectionPosition(name)
	if !given || !pos.Before(min) {
		return pos, nil
	}
	deadline := time.Now().Add(s.cfg.MinPositionWait)
	if _, err := s.cfg.Index.WaitFor(ctx, min, s.cfg.MinPositionWait); err != nil {
		return pos, s.staleError(err, "the read model "+name, min)
	}
	t := time.NewTicker(projectionPoll)
	defer t.Stop()
	for {
		if pos = s.projectionPosition(name); !pos.Before(min) {
			return pos, nil
		}
		if !time.Now().Before(deadline) {
			return pos, s.staleError(fmt.Errorf("%w: read model %s is at position %s, asked for %s",
				accessindex.ErrStale, name, pos, min), "the read model "+name, min)
		}
		select {
		case <-ctx.Done():
			return pos, ctx.Err()
		case <-t.C:
		}
	}
}

// minPosition returns the query's min_position and whether it was given.
func minPosition(q query) (eventlog.Position, bool, error) { return q.position("min_position") }
