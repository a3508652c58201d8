package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// The read path (ReadAll, ReadStream, and so Subscribe) scans rows with
// plain database/sql instead of bun's model scanning, which reflects over
// eventRow for every row and parses every time with time.Parse: replaying
// the log at start-up spends most of its time here.
//
//   - On SQLite the driver allocates every text column twice and looks up
//     its declared type, under the connection's mutex, for every row. So the
//     text columns come packed into one BLOB, separated by NUL bytes, which
//     no stored string or data can hold (Append refuses them): one column
//     instead of eleven. Data comes last, so the split needs only the
//     separators of the ten short fields. A row that does not split or
//     parse as expected makes the page be read again column by column.
//   - Times in SQLite are text in the one form Append writes, parsed by
//     hand; any other form falls back to the layouts bun itself accepts.
//   - Strings are allocated once per distinct value and query: a page
//     repeats the same types, actors, roles and reasons.
//
// The records are exactly those the bun path returned
// (TestReadPathMatchesBun).

// eventColumns are the columns of a record, in the order recordScanner
// reads them.
const eventColumns = "position, stream_version, event_id, stream, type, actor_id, actor_role, reason, " +
	"effective_at, recorded_at, correlation_id, causation_id, data"

// packedColumns selects the same as eventColumns on SQLite: the integers,
// then every text column in one BLOB, NUL-separated, data last.
const packedColumns = "position, stream_version, CAST(event_id || char(0) || stream || char(0) || type || char(0) || " +
	"actor_id || char(0) || actor_role || char(0) || reason || char(0) || effective_at || char(0) || " +
	"recorded_at || char(0) || correlation_id || char(0) || causation_id || char(0) || data AS BLOB)"

// packedFields is the number of NUL-separated fields before data.
const packedFields = 10

// readAllClause and readStreamClause return the FROM ... clause of ReadAll
// and ReadStream (PostgreSQL's pgx takes $n placeholders, SQLite either
// form). A positive limit (none for 0) is written into the text, not bound
// as a parameter: SQLite plans a LIMIT on the value bound to it, so each
// new binding of a LIMIT parameter recompiled the statement
// (sqlite3ExprIsInteger marks the parameter) and every read of the log
// compiled its statement twice. With the limit in the text the statement
// is compiled once per connection and kept by adapters/sqldb's statement
// cache: a read of a few events costs about a third of what it did
// (docs/performance.md).
func readAllClause(limit int) string {
	q := " FROM events WHERE position > $1 ORDER BY position"
	if limit > 0 {
		q += " LIMIT " + strconv.Itoa(limit)
	}
	return q
}

func readStreamClause(limit int) string {
	q := " FROM events WHERE stream = $1 AND stream_version >= $2 ORDER BY stream_version"
	if limit > 0 {
		q += " LIMIT " + strconv.Itoa(limit)
	}
	return q
}

// errUnpacked reports a packed row that did not split or parse: the page is
// read again column by column.
var errUnpacked = errors.New("packed row does not parse")

// queryRecords selects the records of clause (FROM ...) with args.
func (s *Store) queryRecords(ctx context.Context, sizeHint int, clause string, args ...any) ([]eventlog.Record, error) {
	if !s.pg {
		recs, err := s.scanQuery(ctx, true, sizeHint, "SELECT "+packedColumns+clause, args)
		if !errors.Is(err, errUnpacked) {
			return recs, err
		}
	}
	return s.scanQuery(ctx, false, sizeHint, "SELECT "+eventColumns+clause, args)
}

func (s *Store) scanQuery(ctx context.Context, packed bool, sizeHint int, query string, args []any) ([]eventlog.Record, error) {
	rows, err := s.db.DB.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	sc := newRecordScanner(s.pg, packed)
	recs, err := sc.scan(rows, sizeHint)
	if cerr := rows.Close(); err == nil { //nolint:sqlclosecheck // closed here to report its error
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// recordScanner holds the scan destinations of one query, reused for every
// row, and the strings it has already allocated.
type recordScanner struct {
	pg, packed bool

	position, version int64
	packedRow         sql.RawBytes
	// The text fields, as scanned or split from packedRow, in the order of
	// eventColumns.
	fields      [packedFields + 1][]byte
	raw         [packedFields + 1]sql.RawBytes
	effectiveAt time.Time // PostgreSQL
	recordedAt  time.Time // PostgreSQL
	dest        []any
	strings     map[string]string
}

// Indexes into recordScanner.fields.
const (
	fEventID = iota
	fStream
	fType
	fActor
	fRole
	fReason
	fEffective
	fRecorded
	fCorrelation
	fCausation
	fData
)

// maxInterned bounds the distinct strings one query keeps for reuse.
const maxInterned = 4096

func newRecordScanner(pg, packed bool) *recordScanner {
	sc := &recordScanner{pg: pg, packed: packed, strings: make(map[string]string, 64)}
	if packed {
		sc.dest = []any{&sc.position, &sc.version, &sc.packedRow}
		return sc
	}
	sc.dest = []any{&sc.position, &sc.version}
	for i := range sc.raw {
		switch {
		case pg && i == fEffective:
			sc.dest = append(sc.dest, &sc.effectiveAt)
		case pg && i == fRecorded:
			sc.dest = append(sc.dest, &sc.recordedAt)
		default:
			sc.dest = append(sc.dest, &sc.raw[i])
		}
	}
	return sc
}

// str returns b as a string, allocating each distinct value once.
func (sc *recordScanner) str(b []byte) string {
	if s, ok := sc.strings[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(sc.strings) < maxInterned {
		sc.strings[s] = s
	}
	return s
}

func (sc *recordScanner) scan(rows *sql.Rows, sizeHint int) ([]eventlog.Record, error) {
	var out []eventlog.Record
	if sizeHint > 0 {
		out = make([]eventlog.Record, 0, min(sizeHint, 64)) // a limit is a bound, not a size: streams are short
	}
	for rows.Next() {
		if err := rows.Scan(sc.dest...); err != nil {
			return nil, err
		}
		if sc.packed {
			if !sc.split() {
				return nil, errUnpacked
			}
		} else {
			for i := range sc.raw {
				sc.fields[i] = sc.raw[i]
			}
		}
		rec, err := sc.record()
		if err != nil {
			if sc.packed {
				return nil, errUnpacked
			}
			return nil, err
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil // as bun's scanning returned
	}
	return out, nil
}

// split cuts packedRow into fields.
func (sc *recordScanner) split() bool {
	b := []byte(sc.packedRow)
	for i := range packedFields {
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			return false
		}
		sc.fields[i], b = b[:j], b[j+1:]
	}
	sc.fields[fData] = b
	return true
}

// record builds the record of the row just scanned.
func (sc *recordScanner) record() (eventlog.Record, error) {
	f := &sc.fields
	id, err := uuid.ParseBytes(f[fEventID])
	if err != nil {
		return eventlog.Record{}, fmt.Errorf("event at %d: event_id: %w", sc.position, err)
	}
	corr, err := uuid.ParseBytes(f[fCorrelation])
	if err != nil {
		return eventlog.Record{}, fmt.Errorf("event %s: correlation_id: %w", id, err)
	}
	cause, err := uuid.ParseBytes(f[fCausation])
	if err != nil {
		return eventlog.Record{}, fmt.Errorf("event %s: causation_id: %w", id, err)
	}
	effective, recorded := sc.effectiveAt, sc.recordedAt
	if !sc.pg {
		if effective, err = parseTime(f[fEffective]); err != nil {
			return eventlog.Record{}, fmt.Errorf("event %s: effective_at: %w", id, err)
		}
		if recorded, err = parseTime(f[fRecorded]); err != nil {
			return eventlog.Record{}, fmt.Errorf("event %s: recorded_at: %w", id, err)
		}
	}
	data := make([]byte, len(f[fData]))
	copy(data, f[fData])
	return eventlog.Record{
		ID:       id,
		Stream:   sc.str(f[fStream]),
		Version:  uint64(sc.version),
		Position: eventlog.At(uint64(sc.position)),
		Type:     sc.str(f[fType]),
		Data:     data,
		Meta: eventlog.Meta{
			ActorID:       sc.str(f[fActor]),
			ActorRole:     sc.str(f[fRole]),
			Reason:        sc.str(f[fReason]),
			EffectiveAt:   effective.UTC(),
			RecordedAt:    recorded.UTC(),
			CorrelationID: corr,
			CausationID:   cause,
		},
	}, nil
}

var errTimeFormat = errors.New("not a time")

// parseTime parses a time as SQLite holds it: the form this store writes,
// 'YYYY-MM-DD HH:MM:SS[.fraction]+00:00', by hand; any other form with the
// layouts bun accepts.
func parseTime(b []byte) (time.Time, error) {
	if t, ok := parseStoredTime(b); ok {
		return t, nil
	}
	t, err := parseTimeSlow(string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q", errTimeFormat, b)
	}
	return t, nil
}

// parseStoredTime parses 'YYYY-MM-DD HH:MM:SS[.f{1,9}]+00:00' as UTC and
// reports whether b had exactly that form (and a valid date).
func parseStoredTime(b []byte) (time.Time, bool) {
	const head = len("2006-01-02 15:04:05")
	const zone = "+00:00"
	n := len(b)
	if n < head+len(zone) || string(b[n-len(zone):]) != zone {
		return time.Time{}, false
	}
	if b[4] != '-' || b[7] != '-' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		v := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[head : n-len(zone)]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		digits := frac[1:]
		v, ok := num(digits)
		if !ok {
			return time.Time{}, false
		}
		for range 9 - len(digits) {
			v *= 10
		}
		nsec = v
	}
	// time.Date normalizes out-of-range fields; the store never writes
	// them, so insist on a valid date rather than accept a different one.
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// parseTimeSlow accepts the forms bun's own time parsing accepts for a
// timestamp with a date.
func parseTimeSlow(s string) (time.Time, error) {
	const (
		tz1 = "2006-01-02 15:04:05.999999999-07:00:00"
		tz2 = "2006-01-02 15:04:05.999999999-07:00"
		tz3 = "2006-01-02 15:04:05.999999999-07"
		ts  = "2006-01-02 15:04:05.999999999"
	)
	l := len(s)
	if l < len("2006-01-02 15:04:05") {
		return time.Time{}, errTimeFormat
	}
	switch s[10] {
	case ' ':
		if c := s[l-6]; c == '+' || c == '-' {
			return time.Parse(tz2, s)
		}
		if c := s[l-3]; c == '+' || c == '-' {
			return time.Parse(tz3, s)
		}
		if c := s[l-9]; c == '+' || c == '-' {
			return time.Parse(tz1, s)
		}
		return time.ParseInLocation(ts, s, time.UTC)
	case 'T':
		return time.Parse(time.RFC3339Nano, s)
	}
	return time.Time{}, errTimeFormat
}
