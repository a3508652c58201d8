package esdbtest

import (
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
)

// tfPos is a transaction-file position (commit, prepare), ordered like the
// server's TFPos: by commit position, then by prepare position.
type tfPos struct {
	commit, prepare int64
}

// headOfTf is the position before the first record of the log.
var headOfTf = tfPos{-1, -1}

func (a tfPos) cmp(b tfPos) int {
	switch {
	case a.commit < b.commit:
		return -1
	case a.commit > b.commit:
		return 1
	case a.prepare < b.prepare:
		return -1
	case a.prepare > b.prepare:
		return 1
	}
	return 0
}

func maxPos(a, b tfPos) tfPos {
	if a.cmp(b) >= 0 {
		return a
	}
	return b
}

// record is one event in the emulated transaction log. Records are immutable
// once appended.
type record struct {
	stream    string
	revision  uint64
	id        uuid.UUID
	eventType string
	isJSON    bool
	data      []byte
	metadata  []byte
	created   int64 // .NET ticks (100ns) since the Unix epoch
	pos       int64 // pre-position: where the record starts in the log
	post      int64 // post-position: where the next record starts
}

// tf is the record's $all position. Since v20 every event is written as an
// implicitly committed prepare, so commit == prepare == its log position.
func (r *record) tf() tfPos { return tfPos{r.pos, r.pos} }

// postTF is the position right after the record; backwards reads of $all
// return the records whose postTF is <= the requested position.
func (r *record) postTF() tfPos { return tfPos{r.post, r.post} }

// proposed is one event of an append request, already validated.
type proposed struct {
	id        uuid.UUID
	eventType string
	isJSON    bool
	data      []byte
	metadata  []byte
}

type expectedKind int

const (
	expectAny expectedKind = iota
	expectNoStream
	expectStreamExists
	expectRevision
)

// expectation is the expected stream revision of an append.
type expectation struct {
	kind     expectedKind
	revision uint64 // for expectRevision
}

// version is the server's long form of the expectation: -1 no stream,
// -2 any, -4 stream exists, N an exact revision.
func (e expectation) version() int64 {
	switch e.kind {
	case expectNoStream:
		return -1
	case expectAny:
		return -2
	case expectStreamExists:
		return -4
	}
	return int64(e.revision)
}

// appendResult is the outcome of an append, shaped like the server's
// WriteEventsCompleted message.
type appendResult struct {
	wrongExpectedVersion bool
	// current is the stream's last revision (-1: no stream) for a wrong
	// expected version, or the last revision written (or matched, for an
	// idempotent retry) for a success.
	current int64
	// position is the commit (== prepare) position of the last event written
	// or matched; -1 means no position (empty append).
	position int64
	// written is the number of events added to the log.
	written int
}

// idEntry remembers where a committed event id went, like the server's
// bounded committed-events cache used for idempotency with "any".
type idEntry struct {
	stream   string
	revision uint64
	seq      uint64
}

type idKey struct {
	id  uuid.UUID
	seq uint64
}

// epochRecordSize is the room taken at the start of the log by the (non-event)
// epoch record, so that no event ever sits at position 0.
const epochRecordSize = 128

// store is the in-memory transaction log with its stream index.
type store struct {
	mu      sync.Mutex
	log     []*record
	streams map[string][]*record
	next    int64 // post-position of the last record: where the next one goes
	changed chan struct{}

	ids      map[uuid.UUID]idEntry
	idOrder  []idKey
	idSeq    uint64
	idLimit  int
	ticksNow func() int64
}

func newStore(idLimit int) *store {
	return &store{
		streams:  make(map[string][]*record),
		next:     epochRecordSize,
		changed:  make(chan struct{}),
		ids:      make(map[uuid.UUID]idEntry),
		idLimit:  idLimit,
		ticksNow: func() int64 { return time.Now().UnixNano() / 100 },
	}
}

// recordSize approximates the size of a v2 prepare log record: fixed header
// and footer (88 bytes) plus the length-prefixed stream name and event type,
// data and metadata.
func recordSize(stream, eventType string, data, metadata []byte) int64 {
	return int64(88 + uvarintLen(len(stream)) + len(stream) + uvarintLen(len(eventType)) +
		len(eventType) + len(data) + len(metadata))
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// appendEvents checks the expected revision and idempotency exactly like the
// server's IndexWriter.CheckCommit, then writes all events or none.
func (s *store) appendEvents(stream string, exp expectation, events []proposed) appendResult {
	s.mu.Lock()
	defer s.mu.Unlock()

	existing := s.streams[stream]
	cur := int64(len(existing)) - 1
	wrong := appendResult{wrongExpectedVersion: true, current: cur, position: -1}

	if exp.kind == expectStreamExists && cur < 0 && len(s.streams["$$"+stream]) == 0 {
		return wrong
	}

	if exp.kind == expectAny || exp.kind == expectStreamExists {
		if len(events) == 0 {
			return s.write(stream, events)
		}
		var end uint64
		for i, e := range events {
			entry, ok := s.ids[e.id]
			if !ok || entry.stream != stream {
				if i == 0 {
					return s.write(stream, events)
				}
				// Part of the request was committed, the rest is different:
				// the server answers with a wrong expected version.
				return wrong
			}
			end = entry.revision
		}
		return s.idempotent(stream, end)
	}

	expected := exp.version()
	switch {
	case expected < cur:
		n := expected
		for _, e := range events {
			n++
			if n <= cur && existing[n].id == e.id {
				continue
			}
			// The first event differs: a plain concurrency conflict. A later
			// one differs: corrupted idempotency, also a wrong expected version.
			return wrong
		}
		if n == expected {
			return wrong
		}
		return s.idempotent(stream, uint64(n))
	case expected > cur:
		return wrong
	}
	return s.write(stream, events)
}

// idempotent answers a retry that matched events already in the stream: the
// revision and position are those of the last matched event.
func (s *store) idempotent(stream string, end uint64) appendResult {
	r := s.streams[stream][end]
	return appendResult{current: int64(end), position: r.pos}
}

// write appends events to the log; s.mu must be held.
func (s *store) write(stream string, events []proposed) appendResult {
	cur := int64(len(s.streams[stream])) - 1
	if len(events) == 0 {
		return appendResult{current: cur, position: -1}
	}
	created := s.ticksNow()
	var last *record
	for i, e := range events {
		r := &record{
			stream:    stream,
			revision:  uint64(cur + 1 + int64(i)),
			id:        e.id,
			eventType: e.eventType,
			isJSON:    e.isJSON,
			data:      e.data,
			metadata:  e.metadata,
			created:   created,
			pos:       s.next,
		}
		r.post = r.pos + recordSize(stream, e.eventType, e.data, e.metadata)
		s.next = r.post
		s.log = append(s.log, r)
		s.streams[stream] = append(s.streams[stream], r)
		s.rememberID(r)
		last = r
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return appendResult{current: int64(last.revision), position: last.pos, written: len(events)}
}

// rememberID records where an event id was committed, evicting the oldest
// entries beyond idLimit (the server's cache is bounded too).
func (s *store) rememberID(r *record) {
	if s.idLimit <= 0 {
		return
	}
	s.idSeq++
	s.ids[r.id] = idEntry{stream: r.stream, revision: r.revision, seq: s.idSeq}
	s.idOrder = append(s.idOrder, idKey{id: r.id, seq: s.idSeq})
	for len(s.ids) > s.idLimit && len(s.idOrder) > 0 {
		oldest := s.idOrder[0]
		s.idOrder = s.idOrder[1:]
		if e, ok := s.ids[oldest.id]; ok && e.seq == oldest.seq {
			delete(s.ids, oldest.id)
		}
	}
}

// count returns the number of records in the log.
func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

// streamRevisionKind selects where a stream read or subscription starts.
type startKind int

const (
	fromStart startKind = iota
	fromEnd
	fromRevision // or, for $all, fromPosition
)

// readStream returns up to count events of a stream; ok is false when the
// stream does not exist.
func (s *store) readStream(stream string, forward bool, kind startKind, rev uint64, count uint64) (recs []*record, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.streams[stream]
	if len(all) == 0 {
		return nil, false
	}
	n := uint64(len(all))
	if forward {
		var from uint64
		switch kind {
		case fromStart:
			from = 0
		case fromEnd:
			from = n
		default:
			from = rev
		}
		if from >= n {
			return nil, true
		}
		to := n
		if count < to-from {
			to = from + count
		}
		return reversedCopy(all[from:to], false), true
	}
	var from uint64 // index of the first event returned, then going down
	switch kind {
	case fromStart:
		from = 0
	case fromEnd:
		from = n - 1
	default:
		from = min(rev, n-1)
	}
	size := min(count, from+1)
	return reversedCopy(all[from+1-size:from+1], true), true
}

func reversedCopy(in []*record, reverse bool) []*record {
	out := make([]*record, len(in))
	for i, r := range in {
		if reverse {
			out[len(in)-1-i] = r
		} else {
			out[i] = r
		}
	}
	return out
}

// readAll returns up to count records of $all. Forwards from P returns the
// records whose position is >= P (inclusive); backwards from P returns the
// records that end at or before P, i.e. positioned strictly before an event
// at P (exclusive).
func (s *store) readAll(forward bool, kind startKind, from tfPos, count uint64) []*record {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.log)
	if forward {
		var i int
		switch kind {
		case fromStart:
			i = 0
		case fromEnd:
			i = n
		default:
			i = s.firstAtOrAfter(from)
		}
		to := n
		if count < uint64(to-i) {
			to = i + int(count)
		}
		return reversedCopy(s.log[i:to], false)
	}
	var end int // exclusive upper index
	switch kind {
	case fromStart:
		end = 0
	case fromEnd:
		end = n
	default:
		end = sort.Search(n, func(i int) bool { return s.log[i].postTF().cmp(from) > 0 })
	}
	size := end
	if count < uint64(size) {
		size = int(count)
	}
	return reversedCopy(s.log[end-size:end], true)
}

// firstAtOrAfter is the index of the first record positioned at or after p;
// s.mu must be held.
func (s *store) firstAtOrAfter(p tfPos) int {
	return sort.Search(len(s.log), func(i int) bool { return s.log[i].tf().cmp(p) >= 0 })
}

// allSince returns the records of $all from index i on and the channel closed
// at the next append.
func (s *store) allSince(i int) ([]*record, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.log) {
		return nil, s.changed
	}
	return s.log[i:len(s.log):len(s.log)], s.changed
}

// streamSince returns the events of a stream from revision rev on and the
// channel closed at the next append.
func (s *store) streamSince(stream string, rev uint64) ([]*record, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.streams[stream]
	if rev >= uint64(len(all)) {
		return nil, s.changed
	}
	return all[rev:len(all):len(all)], s.changed
}

// streamLength is the number of events in a stream.
func (s *store) streamLength(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.streams[stream]))
}

// tail returns the number of records and the position of the last one.
func (s *store) tail() (int, tfPos) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return 0, headOfTf
	}
	return len(s.log), s.log[len(s.log)-1].tf()
}

// indexAtOrAfter is the index of the first record positioned at or after p.
func (s *store) indexAtOrAfter(p tfPos) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstAtOrAfter(p)
}

// replace swaps the record of event id for with(record) in the log and its
// stream, or removes it from the log when remove is set.
func (s *store) replace(id uuid.UUID, with func(*record) *record, remove bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.log {
		if r.id != id {
			continue
		}
		if remove {
			s.log = append(s.log[:i:i], s.log[i+1:]...)
			return true
		}
		n := with(r)
		s.log[i] = n
		recs := s.streams[r.stream]
		for j := range recs {
			if recs[j] == r {
				recs[j] = n
			}
		}
		return true
	}
	return false
}
