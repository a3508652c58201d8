package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// StreamAppend is one stream's append within AppendBatch: the arguments of
// one Append call (eventlog.StreamAppend).
type StreamAppend = eventlog.StreamAppend

// BatchError reports the append of a batch that made AppendBatch refuse the
// whole batch (eventlog.BatchError).
type BatchError = eventlog.BatchError

var _ eventlog.BatchAppender = (*Store)(nil)

// AppendBatch writes many stream appends in one transaction: it has the
// outcome of calling Append for each of batch in order (the same
// validation, the same expected-version checks, the same idempotency on
// event ids, each append seeing the ones before it in the batch), except
// that it is all or nothing: when any append would fail, nothing of the
// batch is written and the error is a *BatchError naming the first failing
// append (wrapped with context). On success it returns each append's result
// as Append would have returned it, in batch order: positions follow batch
// order without gaps, and an append whose events are already stored exactly
// so (a retry) writes nothing and returns the stored result, so a whole
// batch may be retried after an unknown outcome. Subscribers are woken once
// per batch. An empty batch does nothing.
//
// It is meant for bulk loads: one transaction, one fsync, and a handful of
// statements for the whole batch instead of four per append. The batch is
// held in memory and in one transaction; keep it to thousands of events.
func (s *Store) AppendBatch(ctx context.Context, batch []StreamAppend) ([]eventlog.AppendResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	now := s.cfg.clock().UTC().Truncate(time.Microsecond)
	rows := make([][]eventRow, len(batch))
	total := 0
	for i, a := range batch {
		err := eventlog.Validate(a.Stream, a.Events)
		if err == nil {
			err = eventlog.ValidateStorable(a.Stream, a.Events)
		}
		if err != nil {
			return nil, fmt.Errorf("sqlstore: append batch: %w", &BatchError{Index: i, Stream: a.Stream, Err: err})
		}
		rows[i] = newRows(a.Stream, a.Events, now)
		total += len(a.Events)
	}
	if s.isClosed() {
		return nil, fmt.Errorf("sqlstore: append batch: %w", ErrClosed)
	}
	if !s.pg {
		// One appender at a time per SQLite database, as for Append.
		select {
		case s.shared.appendSem <- struct{}{}:
			defer func() { <-s.shared.appendSem }()
		case <-ctx.Done():
			return nil, fmt.Errorf("sqlstore: append batch: %w", ctx.Err())
		}
	}
	res, wrote, err := s.appendBatchTx(ctx, batch, rows, total)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: append batch of %d appends: %w", len(batch), err)
	}
	if wrote {
		s.shared.wake.broadcast()
	}
	return res, nil
}

// headStatement is a statement on the head's row, with its one parameter
// written for each dialect.
type headStatement struct{ sqlite, pg string }

// The statements on the head's row.
var (
	takePositions = headStatement{
		sqlite: "UPDATE events_head SET position = position + ? WHERE id = 1 RETURNING position",
		pg:     "UPDATE events_head SET position = position + $1 WHERE id = 1 RETURNING position",
	}
	giveBackPositions = headStatement{
		sqlite: "UPDATE events_head SET position = ? WHERE id = 1",
		pg:     "UPDATE events_head SET position = $1 WHERE id = 1",
	}
)

// headSQL is the text of q for the store's dialect.
func (s *Store) headSQL(q headStatement) string {
	if s.pg {
		return q.pg
	}
	return q.sqlite
}

// appendBatchTx writes a batch of appends (AppendBatch's, or a group of
// Append calls) in one transaction: it takes positions for every event of
// the batch as its first statement (so that batches serialize on the
// counter row, in this process and across processes), decides every append in memory from one
// look-up of the batch's event ids and one of its streams' versions, gives
// back the positions of appends that turned out to be retries, and inserts
// the rest.
func (s *Store) appendBatchTx(ctx context.Context, batch []StreamAppend, rows [][]eventRow, total int) ([]eventlog.AppendResult, bool, error) {
	var opts *sql.TxOptions
	if s.pg {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	var tx bun.Tx
	var err error
	if !s.pg && total >= bulkCacheEvents {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("begin: %w", err)
		}
		defer func() { _ = conn.Close() }()
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", bulkCacheKiB)); err != nil {
			return nil, false, fmt.Errorf("set the page cache size: %w", err)
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", bulkCheckpointPages)); err != nil {
			return nil, false, fmt.Errorf("set the checkpoint interval: %w", err)
		}
		tx, err = conn.BeginTx(ctx, opts)
		if err != nil {
			return nil, false, fmt.Errorf("begin: %w", err)
		}
	} else if tx, err = s.db.BeginTx(ctx, opts); err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()

	// The head's statements run through database/sql with a bound value,
	// as the event ids' check does: bun writes the value into the text,
	// which SQLite then compiles at every append (a tenth of an append's
	// CPU under single grants), where the bound text stays prepared in the
	// connection's statement cache.
	var last int64
	if err := tx.Tx.QueryRowContext(ctx, s.headSQL(takePositions), total).Scan(&last); err != nil {
		return nil, false, fmt.Errorf("take positions: %w", err)
	}

	ids := make([]uuid.UUID, 0, total)
	var streams []string
	seen := make(map[string]bool, len(batch))
	for _, a := range batch {
		for _, e := range a.Events {
			ids = append(ids, e.ID)
		}
		if !seen[a.Stream] {
			seen[a.Stream] = true
			streams = append(streams, a.Stream)
		}
	}
	found, err := storedIDs(ctx, tx, ids)
	if err != nil {
		return nil, false, err
	}
	versions, err := streamVersions(ctx, tx, streams)
	if err != nil {
		return nil, false, err
	}

	results := make([]eventlog.AppendResult, len(batch))
	insert := make([]eventRow, 0, total)
	pos := last - int64(total) // the last position handed out so far
	for i, a := range batch {
		res, done, err := matchExisting(a.Stream, a.Events, found)
		if err != nil {
			return nil, false, &BatchError{Index: i, Stream: a.Stream, Err: err}
		}
		if done {
			results[i] = res
			continue
		}
		actual := versions[a.Stream]
		if !a.Expected.Allows(uint64(actual)) {
			return nil, false, &BatchError{Index: i, Stream: a.Stream,
				Err: &eventlog.ConflictError{Stream: a.Stream, Expected: a.Expected, Actual: uint64(actual)}}
		}
		for j := range rows[i] {
			pos++
			r := &rows[i][j]
			r.Position, r.StreamVersion = pos, actual+1+int64(j)
			// Later appends of the batch see this one as stored.
			found[r.EventID] = eventRow{Position: r.Position, EventID: r.EventID, Stream: r.Stream, StreamVersion: r.StreamVersion}
		}
		versions[a.Stream] = actual + int64(len(rows[i]))
		results[i] = eventlog.AppendResult{Version: uint64(versions[a.Stream]), Position: eventlog.At(uint64(pos))}
		insert = append(insert, rows[i]...)
	}
	if len(insert) == 0 {
		return results, false, nil // every append was a retry: roll back, as Append does
	}
	if len(insert) < total {
		// Retries took no positions: hand back theirs, so positions stay
		// dense.
		if _, err := tx.Tx.ExecContext(ctx, s.headSQL(giveBackPositions), pos); err != nil {
			return nil, false, fmt.Errorf("give back positions: %w", err)
		}
	}
	if err := s.insertEvents(ctx, tx, insert); err != nil {
		return nil, false, err
	}
	if s.pg {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify(?, ?)", s.channel, fmt.Sprint(pos)); err != nil {
			return nil, false, fmt.Errorf("notify: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("commit (outcome unknown; retrying the batch with the same event ids is safe): %w", err)
	}
	committed = true
	s.shared.tail.add(last-int64(total), insert)
	return results, true, nil
}

// streamVersions returns the current version of those of streams that
// exist (a missing one has none: version 0), read in the transaction: one
// statement per idChunk streams, each stream's version one backward step of
// the (stream, stream_version) index.
func streamVersions(ctx context.Context, tx bun.Tx, streams []string) (map[string]int64, error) {
	versions := make(map[string]int64, len(streams))
	pg := tx.Dialect().Name() == dialect.PG
	args := make([]any, 0, min(len(streams), idChunk))
	for start := 0; start < len(streams); start += idChunk {
		chunk := streams[start:min(start+idChunk, len(streams))]
		args = args[:0]
		for _, st := range chunk {
			args = append(args, st)
		}
		q := "WITH s(stream) AS (VALUES (" + strings.ReplaceAll(placeholders(pg, len(chunk)), ", ", "), (") + ")) " +
			"SELECT s.stream, (SELECT MAX(e.stream_version) FROM events AS e WHERE e.stream = s.stream) FROM s"
		if err := scanVersions(ctx, tx, q, args, versions); err != nil {
			return nil, fmt.Errorf("read stream versions: %w", err)
		}
	}
	return versions, nil
}

func scanVersions(ctx context.Context, tx bun.Tx, q string, args []any, versions map[string]int64) error {
	rows, err := tx.Tx.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var stream string
		var v sql.NullInt64
		if err := rows.Scan(&stream, &v); err != nil {
			return err
		}
		if v.Valid {
			versions[stream] = v.Int64
		}
	}
	return rows.Err()
}

// ReadStreams returns every event of each of streams, in stream order,
// keyed by stream; a stream without events is absent. The records are
// those ReadStream(ctx, stream, 1, 0) returns for each, read in one
// statement per idChunk streams (a bulk load checks thousands of streams:
// one query each costs more than the rows). Each statement reads at one
// instant; the chunks do not: an append may land between two.
func (s *Store) ReadStreams(ctx context.Context, streams []string) (map[string][]eventlog.Record, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlstore: read streams: %w", ErrClosed)
	}
	out := make(map[string][]eventlog.Record, len(streams))
	for start := 0; start < len(streams); start += idChunk {
		chunk := streams[start:min(start+idChunk, len(streams))]
		var q strings.Builder
		q.WriteString(" FROM events WHERE stream IN (")
		args := make([]any, len(chunk))
		for i, st := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			if s.pg {
				fmt.Fprintf(&q, "$%d", i+1)
			} else {
				// Positional: the SQLite driver matches each $N against
				// every argument by its formatted number (quadratic).
				q.WriteByte('?')
			}
			args[i] = st
		}
		q.WriteString(") ORDER BY stream, stream_version")
		recs, err := s.queryRecords(ctx, len(chunk), q.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: read %d streams: %w", len(chunk), err)
		}
		for i := 0; i < len(recs); {
			j := i + 1
			for j < len(recs) && recs[j].Stream == recs[i].Stream {
				j++
			}
			out[recs[i].Stream] = recs[i:j:j]
			i = j
		}
	}
	return out, nil
}

// Analyze gathers the planner's statistics of the log's table after a
// bulk load (AppendBatch over many streams): on PostgreSQL it runs ANALYZE
// on events, as autovacuum would in its own time (or, where it is off,
// never); the statements of the log are planned from these statistics. On
// SQLite it does nothing: its plans of the log's statements follow the
// indexes, not statistics.
func (s *Store) Analyze(ctx context.Context) error {
	if !s.pg {
		return nil
	}
	if s.isClosed() {
		return fmt.Errorf("sqlstore: analyze: %w", ErrClosed)
	}
	if _, err := s.db.ExecContext(ctx, "ANALYZE events"); err != nil {
		return fmt.Errorf("sqlstore: analyze the events table: %w", err)
	}
	return nil
}

// bulkCacheEvents is the size of batch, in events, from which an append on
// SQLite runs with a page cache of bulkCacheKiB: the rows' random keys (the
// event ids, the stream names) touch pages all over both unique indexes,
// and SQLite's default cache (2 MiB) then spills dirty pages to the WAL
// before the commit and reads index pages back from the file, batch after
// batch (a fifth of an import's append CPU, docs/performance.md). The
// connection keeps the larger cache for the next batch: setting it back
// after each batch lost half the gain (the next batch reads the same index
// pages again). So a connection of the log's pool that wrote a bulk batch
// holds up to bulkCacheKiB of pages (filled only by the pages it reads),
// at most sqliteMaxConns (8) times that per file.
//
// The same connection checkpoints the WAL into the file after
// bulkCheckpointPages pages (32 MiB) rather than SQLite's 1,000: a bulk
// batch writes more than 1,000 pages, so with the default every commit
// copied its pages into the file (and synced it), the same hot index pages
// batch after batch; now once every few batches. The WAL grows to about
// that size between checkpoints. Durability is unchanged: a commit is in
// the WAL, synced, either way.
const (
	bulkCacheEvents     = 1000
	bulkCacheKiB        = 64 << 10
	bulkCheckpointPages = 8192
)

// ReadStreamsFrom returns, for each of from, the events of its stream from
// version From on (the whole stream for From 0 or 1), in stream order,
// keyed by stream; a stream without such events is absent, and a stream
// named twice is read from the lower From. The records are those
// ReadStream(ctx, stream, From, 0) returns for each, read in one statement
// per idChunk/2 streams (each stream is two arguments): a caller that keeps
// the streams' state up to a version reads only what was appended since.
// Each statement reads at one instant; the chunks do not.
func (s *Store) ReadStreamsFrom(ctx context.Context, from []eventlog.StreamFrom) (map[string][]eventlog.Record, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlstore: read streams: %w", ErrClosed)
	}
	lowest := make(map[string]uint64, len(from))
	names := make([]string, 0, len(from))
	for _, f := range from {
		v := max(f.From, 1)
		if v > math.MaxInt64 {
			continue // no such version
		}
		if got, ok := lowest[f.Stream]; ok {
			lowest[f.Stream] = min(got, v)
			continue
		}
		lowest[f.Stream] = v
		names = append(names, f.Stream)
	}
	out := make(map[string][]eventlog.Record, len(names))
	const chunkStreams = idChunk / 2
	for start := 0; start < len(names); start += chunkStreams {
		chunk := names[start:min(start+chunkStreams, len(names))]
		var (
			clause string
			args   []any
		)
		if s.pg {
			clause, args = tailsClausePG(chunk, lowest)
		} else {
			clause, args = tailsClauseLite(chunk, lowest)
		}
		recs, err := s.queryRecords(ctx, len(chunk), clause, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: read the ends of %d streams: %w", len(chunk), err)
		}
		for _, r := range recs {
			out[r.Stream] = append(out[r.Stream], r)
		}
	}
	for _, recs := range out {
		if !slices.IsSortedFunc(recs, byVersion) {
			slices.SortFunc(recs, byVersion)
		}
	}
	return out, nil
}

// tailsClauseLite is ReadStreamsFrom's FROM clause on SQLite: the streams'
// terms OR-ed, which SQLite answers with one range of the (stream,
// stream_version) index per term. No ORDER BY: over OR-ed terms SQLite
// would sort the rows, whole, in a temporary B-tree (it read whole streams
// slower than ReadStreams' IN, which the index keeps in order); each
// stream's records are put in version order by the caller.
func tailsClauseLite(streams []string, from map[string]uint64) (string, []any) {
	var q strings.Builder
	q.WriteString(" FROM events WHERE ")
	args := make([]any, 0, 2*len(streams))
	for i, st := range streams {
		if i > 0 {
			q.WriteString(" OR ")
		}
		q.WriteString("(stream = ? AND stream_version >= ?)")
		args = append(args, st, int64(from[st])) //nolint:gosec // at most math.MaxInt64, checked by the caller
	}
	return q.String(), args
}

// tailsClausePG is ReadStreamsFrom's FROM clause on PostgreSQL: the
// streams and versions as two arrays, and for each pair a range of the
// (stream, stream_version) index: a lateral subquery that OFFSET 0 keeps
// from being flattened into a join. Not OR-ed terms as on SQLite, nor a
// plain join: without statistics on the events table (after a bulk load,
// before autovacuum analyzes it, or with autovacuum off) PostgreSQL
// estimates thousands of rows per stream and chose a scan of the whole
// table for both (7-9 s per batch of 500 expiries at county size,
// docs/performance.md), where one index range per stream takes a
// fraction of a millisecond.
func tailsClausePG(streams []string, from map[string]uint64) (string, []any) {
	versions := make([]int64, len(streams))
	for i, st := range streams {
		versions[i] = int64(from[st]) //nolint:gosec // at most math.MaxInt64, checked by the caller
	}
	return " FROM unnest($1::text[], $2::bigint[]) AS wanted(wanted_stream, wanted_from)" +
		" CROSS JOIN LATERAL (SELECT * FROM events WHERE events.stream = wanted.wanted_stream" +
		" AND events.stream_version >= wanted.wanted_from OFFSET 0) AS tail", []any{streams, versions}
}

func byVersion(a, b eventlog.Record) int { return cmp.Compare(a.Version, b.Version) }
