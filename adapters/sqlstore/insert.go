package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/uptrace/bun"
)

// The insert of an append's rows on SQLite: a multi-row INSERT whose
// values are bound to placeholders, so that its text is one of a handful
// (liteInsertRows rows, or a power of two below it for the rest) and the
// connection's statement cache (adapters/sqldb) keeps it compiled: SQLite
// then neither parses a statement per append nor has bun format every
// value into SQL text (both were most of an import's insert CPU outside
// SQLite's B-trees, docs/performance.md).
//
// INSERT OR ROLLBACK: a row that breaks a constraint rolls the whole
// transaction back instead of the statement alone. No row this store
// inserts can break one (the append decided every position, event id and
// stream version under the database's write lock, which it holds until
// commit), and the append fails as a whole on any error, so the outcome is
// the same; what it saves is SQLite's statement journal, which a
// multi-row statement that may abort alone writes for every page it
// changes (a sixth of a bulk import's insert time). The caller's Rollback
// then finds no transaction, which database/sql and the write gate
// tolerate (TestInsertFailureRollsBackEverything).

// liteInsertRows is the most rows per INSERT on SQLite. Few: the driver
// (modernc) binds each parameter by searching the arguments for its
// ordinal, so a statement's binding is quadratic in its parameters (13 a
// row); 8 rows did as well as 4 and better than 16 or 64 in
// BenchmarkAppendBatchImport, and one row a statement was slower.
const liteInsertRows = 8

// eventColumnCount is the number of columns of the events table.
const eventColumnCount = 13

var liteInserts sync.Map // rows per statement → its text

// liteInsertSQL is the INSERT of n rows with placeholders.
func liteInsertSQL(n int) string {
	if q, ok := liteInserts.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString("INSERT OR ROLLBACK INTO events (position, event_id, stream, stream_version, type, data, " +
		"actor_id, actor_role, reason, effective_at, recorded_at, correlation_id, causation_id) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	q, _ := liteInserts.LoadOrStore(n, b.String())
	return q.(string)
}

// liteTimeLayout is the form times are stored in on SQLite: bun's, so that
// rows written before and after this path read alike.
const liteTimeLayout = "2006-01-02 15:04:05.999999-07:00"

// insertEventsLite is insertEvents on SQLite: statements of liteInsertRows
// rows, the rest in statements of powers of two.
func insertEventsLite(ctx context.Context, tx bun.Tx, rows []eventRow) error {
	args := make([]any, 0, min(len(rows), liteInsertRows)*eventColumnCount)
	var buf []byte
	for start := 0; start < len(rows); {
		n := liteInsertRows
		for n > len(rows)-start {
			n /= 2
		}
		args = args[:0]
		for i := range rows[start : start+n] {
			r := &rows[start+i]
			buf = r.EffectiveAt.UTC().AppendFormat(buf[:0], liteTimeLayout)
			effective := string(buf)
			buf = r.RecordedAt.UTC().AppendFormat(buf[:0], liteTimeLayout)
			recorded := string(buf)
			args = append(args, r.Position, r.EventID.String(), r.Stream, r.StreamVersion, r.Type, string(r.Data),
				r.ActorID, r.ActorRole, r.Reason, effective, recorded, r.CorrelationID.String(), r.CausationID.String())
		}
		if _, err := tx.Tx.ExecContext(ctx, liteInsertSQL(n), args...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		start += n
	}
	return nil
}
