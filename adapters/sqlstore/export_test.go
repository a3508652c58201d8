package sqlstore

import (
	"context"
	"time"

	"github.com/accessledger/accessledger/adapters/sqldb"
)

// NewDetached is New, but the Store shares no in-process state with other
// Stores on the same SQLite database (no append lock, no wake-ups), as a
// Store in another process would.
func NewDetached(ctx context.Context, db *sqldb.DB, opts ...Option) (*Store, error) {
	s, err := New(ctx, db, opts...)
	if err != nil {
		return nil, err
	}
	if !s.pg {
		s.release()
		s.shared, s.release = newShared(), func() {}
	}
	return s, nil
}

// Channel returns the PostgreSQL NOTIFY channel of the Store.
func (s *Store) Channel() string { return s.channel }

// WithHealthInterval sets how long the LISTEN connection may stay silent
// before it is pinged.
func WithHealthInterval(d time.Duration) Option { return func(c *config) { c.health = d } }

// TailsStatementPG is the statement ReadStreamsFrom runs on PostgreSQL for
// streams, each read from version 1, and its arguments.
func TailsStatementPG(streams []string) (string, []any) {
	from := make(map[string]uint64, len(streams))
	for _, st := range streams {
		from[st] = 1
	}
	clause, args := tailsClausePG(streams, from)
	return "SELECT " + eventColumns + clause, args
}

// TailReads returns how many of Subscribe's reads the tail in memory has
// answered, over every Store sharing this one's state.
func (s *Store) TailReads() int64 { return s.shared.tail.hits.Load() }

// WithoutTail makes Subscribe read every event from the database, as it
// did before the tail in memory.
func WithoutTail() Option { return func(c *config) { c.noTail = true } }
