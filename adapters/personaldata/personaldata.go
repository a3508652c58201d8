// Package personaldata encrypts the personal data in events (R22). Store
// wraps an eventlog.Store: Append seals every personal field of an event
// (domain.PersonalFields: an email, an identity subject, a phone hint, a
// child's reference) and its reason under the data key of the event's data
// subject (adapters/keystore); reads open them again, so that commands,
// projections and queries see plain values, or domain.ErasedText once the
// subject was erased. The wrapped store, and so the ledger that hashes what
// it stores, holds only the sealed values.
//
// # Subjects
//
// An event's subject is its stream's: the child of a child stream, the
// account of an account stream, and for an identity stream the account the
// event names (its account_id).
//
// # Sealed values
//
// A sealed value is the string "sealed:v1:" followed by the unpadded
// base64url of a 12-byte nonce and the AES-256-GCM ciphertext and tag. The
// additional data binds it to its subject, event id and field:
// "accessledger field v1", subject, event id, field name, separated by
// zero bytes. The nonce is synthetic: the first 12 bytes of
// HMAC-SHA256(nonce key, additional data || value), the nonce key being
// HMAC-SHA256(data key, "accessledger nonce key v1"); sealing is therefore
// deterministic (a retried append stores the same bytes) and two values
// never share a nonce unless they are the same value in the same place.
//
// Values that do not start with the prefix are plain: events written
// before encryption was on read as they are (accessd status counts them).
package personaldata

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Prefix starts every sealed value.
const Prefix = "sealed:v1:"

// Field is the name a reason is sealed under (the payload's fields go by
// their JSON names).
const reasonField = "meta.reason"

var (
	// ErrNoSubject: an event whose data subject cannot be told (a stream of
	// another kind, an identity event without account_id) holds personal
	// data; it is not appended.
	ErrNoSubject = errors.New("personaldata: no data subject for the event")
	// ErrCorrupt: a sealed value does not open with its subject's key (it
	// was changed, or moved), or its subject has no key at all (the key
	// table was lost: never drop it with the read models).
	ErrCorrupt = errors.New("personaldata: a sealed value does not open")
)

// Keys is what the layer needs of the key store (adapters/keystore).
type Keys interface {
	// Key returns the subject's key, creating it on first use;
	// keystore.ErrErased once erased.
	Key(ctx context.Context, s keystore.Subject) ([]byte, error)
	// Find returns the subject's key: keystore.ErrNoKey when it has none,
	// keystore.ErrErased once erased.
	Find(ctx context.Context, s keystore.Subject) ([]byte, error)
	// Erase destroys the subject's key, once; it reports whether this call
	// did.
	Erase(ctx context.Context, s keystore.Subject) (bool, error)
	// ErasedSubjects lists every erased subject.
	ErasedSubjects(ctx context.Context) ([]keystore.Subject, error)
	// KeyAll is Key for many subjects in a few statements (the missing
	// keys made in one transaction per chunk): every subject's key, nil
	// for an erased one.
	KeyAll(ctx context.Context, subjects []keystore.Subject) (map[keystore.Subject][]byte, error)
	// FindAll is Find for many subjects in a few statements: the key of
	// each subject that has one, nil for an erased one; a subject without
	// a key is absent.
	FindAll(ctx context.Context, subjects []keystore.Subject) (map[keystore.Subject][]byte, error)
}

// EraseAccount destroys the key of account id: every personal value
// recorded of the account reads as domain.ErasedText from then on. The
// erase commands call it right after appending the erasure event.
func (s *Store) EraseAccount(ctx context.Context, id uuid.UUID) error {
	_, err := s.keys.Erase(ctx, keystore.AccountSubject(id))
	s.noteErased(keystore.AccountSubject(id))
	return err
}

// EraseChild destroys the key of child id (see EraseAccount).
func (s *Store) EraseChild(ctx context.Context, id uuid.UUID) error {
	_, err := s.keys.Erase(ctx, keystore.ChildSubject(id))
	s.noteErased(keystore.ChildSubject(id))
	return err
}

// erasureSubject returns the subject an erasure event erases.
func erasureSubject(r eventlog.Record) (keystore.Subject, bool) {
	if r.Type != domain.TypeAccountErased && r.Type != domain.TypeChildErased {
		return "", false
	}
	subj, err := SubjectOf(r.Stream, r.Data)
	return subj, err == nil
}

// Store is an eventlog.Store that seals personal data on the way in and
// opens it on the way out.
type Store struct {
	inner eventlog.Store
	keys  Keys

	// ciphers caches each subject's cipher (a replay opens many events of
	// each subject). An erasure event read drops its subject's.
	mu      sync.Mutex
	ciphers map[keystore.Subject]*subjectCipher
	// erased is the set of erased subjects, for the values written before
	// sealing (plain in the log: no key to destroy): loaded from the key
	// store on first need, then kept by this store's erasures and the
	// erasure events it reads (another replica's). nil until loaded.
	erased map[keystore.Subject]bool
}

var _ eventlog.Store = (*Store)(nil)

// maxCiphers bounds the cipher cache (about 1 KiB each).
const maxCiphers = 100_000

// New wraps inner.
func New(inner eventlog.Store, keys Keys) *Store {
	return &Store{inner: inner, keys: keys, ciphers: map[keystore.Subject]*subjectCipher{}}
}

// cipherOf returns subj's cipher, from the cache or made with key(ctx, subj).
func (s *Store) cipherOf(ctx context.Context, subj keystore.Subject,
	key func(context.Context, keystore.Subject) ([]byte, error)) (*subjectCipher, error) {
	s.mu.Lock()
	c, ok := s.ciphers[subj]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	k, err := key(ctx, subj)
	if err != nil {
		return nil, err
	}
	return s.keepCipher(subj, k)
}

// cachedCipher returns subj's cipher if it is in the cache.
func (s *Store) cachedCipher(subj keystore.Subject) (*subjectCipher, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.ciphers[subj]
	return c, ok
}

// keepCipher makes subj's cipher of key and caches it.
func (s *Store) keepCipher(subj keystore.Subject, key []byte) (*subjectCipher, error) {
	c, err := newSubjectCipher(key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ciphers) >= maxCiphers {
		clear(s.ciphers)
	}
	s.ciphers[subj] = c
	return c, nil
}

// cipherSource returns the cipher of a subject, or an error wrapping
// keystore.ErrErased or keystore.ErrNoKey.
type cipherSource func(ctx context.Context, subj keystore.Subject) (*subjectCipher, error)

// bulkCiphers returns a cipherSource that answers the subjects of subjects
// from one call to all (the key store's KeyAll or FindAll), made before it
// returns, and any other subject with fallback (Key or Find). Subjects
// whose cipher is cached are not asked for.
func (s *Store) bulkCiphers(ctx context.Context, subjects []keystore.Subject,
	all func(context.Context, []keystore.Subject) (map[keystore.Subject][]byte, error),
	fallback func(context.Context, keystore.Subject) ([]byte, error)) (cipherSource, error) {
	var need []keystore.Subject
	for _, subj := range subjects {
		if _, ok := s.cachedCipher(subj); !ok {
			need = append(need, subj)
		}
	}
	got := map[keystore.Subject]*subjectCipher{}
	erased := map[keystore.Subject]bool{}
	if len(need) > 0 {
		keys, err := all(ctx, need)
		if err != nil {
			return nil, err
		}
		for subj, k := range keys {
			if k == nil {
				erased[subj] = true
				continue
			}
			if got[subj], err = s.keepCipher(subj, k); err != nil {
				return nil, err
			}
		}
	}
	return func(ctx context.Context, subj keystore.Subject) (*subjectCipher, error) {
		if c, ok := got[subj]; ok {
			if _, still := s.cachedCipher(subj); still {
				return c, nil
			}
			// Dropped from the cache since: an erasure event read
			// (noteErased), or the cache was full. Ask again.
			delete(got, subj)
		}
		if erased[subj] {
			return nil, fmt.Errorf("%s: %w", subj, keystore.ErrErased)
		}
		return s.cipherOf(ctx, subj, fallback)
	}, nil
}

// noteErased records that subj is erased, once the erased set is loaded
// (until then, loading it reads subj's erasure from the key store).
func (s *Store) noteErased(subj keystore.Subject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ciphers, subj)
	if s.erased != nil {
		s.erased[subj] = true
	}
}

// isErased reports whether subj is erased, by the erased set.
func (s *Store) isErased(ctx context.Context, subj keystore.Subject) (bool, error) {
	s.mu.Lock()
	set := s.erased
	s.mu.Unlock()
	if set == nil {
		subjects, err := s.keys.ErasedSubjects(ctx)
		if err != nil {
			return false, err
		}
		loaded := make(map[keystore.Subject]bool, len(subjects))
		for _, e := range subjects {
			loaded[e] = true
		}
		s.mu.Lock()
		if s.erased == nil {
			s.erased = loaded
		} else {
			for e := range loaded {
				s.erased[e] = true
			}
		}
		set = s.erased
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return set[subj], nil
}

// openPlain is Open for an event with no sealed value: written before
// sealing. When its subject is erased, its reason and personal fields read
// as domain.ErasedText, as sealed ones do; else it is returned as is.
func (s *Store) openPlain(ctx context.Context, r eventlog.Record, fields []string) (eventlog.Record, error) {
	if (r.Meta.Reason == "" && len(fields) == 0) || r.Type == domain.TypeAccountErased || r.Type == domain.TypeChildErased {
		return r, nil // nothing personal (an erasure's reason is kept as given)
	}
	subj, err := SubjectOf(r.Stream, r.Data)
	if err != nil {
		return r, nil // no subject: nothing of anyone's to hide
	}
	erased, err := s.isErased(ctx, subj)
	if err != nil {
		return eventlog.Record{}, fmt.Errorf("event %s at %s: %w", r.ID, r.Position, err)
	}
	if !erased {
		return r, nil
	}
	if r.Meta.Reason != "" {
		r.Meta.Reason = domain.ErasedText
	}
	if len(fields) > 0 {
		if r.Data, err = mapFields(r.Data, fields, func(_, v string) (string, error) {
			if v == "" {
				return v, nil
			}
			return domain.ErasedText, nil
		}); err != nil {
			return eventlog.Record{}, fmt.Errorf("personaldata: open event %s at %s: %w", r.ID, r.Position, err)
		}
	}
	return r, nil
}

// Inner is the wrapped store, which holds the sealed values (the ledger
// hashes them).
func (s *Store) Inner() eventlog.Store { return s.inner }

// Append seals the personal data of events under their subject's key and
// appends them. An event with personal fields about an erased subject is
// refused (keystore.ErrErased): nothing personal is recorded of an erased
// person again; the reason of any other event about one is stored as
// domain.ErasedText.
func (s *Store) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	sealed, err := s.Seal(ctx, stream, events)
	if err != nil {
		return eventlog.AppendResult{}, err
	}
	return s.inner.Append(ctx, stream, expected, sealed)
}

// AppendBatch seals the personal data of every append's events as Append
// does and writes the batch with the wrapped store's AppendBatch
// (eventlog.BatchAppender: all or nothing). When the wrapped store has no
// AppendBatch it writes nothing and returns an error wrapping
// eventlog.ErrBatchUnsupported; a refusal to seal (keystore.ErrErased)
// writes nothing either and is returned as the *eventlog.BatchError of its
// append.
func (s *Store) AppendBatch(ctx context.Context, batch []eventlog.StreamAppend) ([]eventlog.AppendResult, error) {
	inner, ok := s.inner.(eventlog.BatchAppender)
	if !ok {
		return nil, fmt.Errorf("personaldata: append batch: %w", eventlog.ErrBatchUnsupported)
	}
	sealed := make([]eventlog.StreamAppend, len(batch))
	for i, a := range batch {
		events, err := s.Seal(ctx, a.Stream, a.Events)
		if err != nil {
			return nil, fmt.Errorf("personaldata: append batch: %w", &eventlog.BatchError{Index: i, Stream: a.Stream, Err: err})
		}
		sealed[i] = eventlog.StreamAppend{Stream: a.Stream, Expected: a.Expected, Events: events}
	}
	return inner.AppendBatch(ctx, sealed)
}

var _ eventlog.BatchAppender = (*Store)(nil)

var _ eventlog.StreamsReader = (*Store)(nil)

var _ eventlog.StreamTailsReader = (*Store)(nil)

// Seal returns events as Append stores them in stream, without storing
// them: their personal data sealed under their subject's key (made on the
// subject's first use), with Append's refusals. Append is Seal, then the
// inner store's Append; a bulk load (accessd reseal) seals with it and
// writes to the inner store in batches of its own. Sealing is
// deterministic: sealing the same events again gives the same bytes.
func (s *Store) Seal(ctx context.Context, stream string, events []eventlog.EventData) ([]eventlog.EventData, error) {
	return s.sealWith(ctx, stream, events, s.keyCipher)
}

// keyCipher is the cipherSource of Seal: the subject's key made on first
// use.
func (s *Store) keyCipher(ctx context.Context, subj keystore.Subject) (*subjectCipher, error) {
	return s.cipherOf(ctx, subj, s.keys.Key)
}

func (s *Store) sealWith(ctx context.Context, stream string, events []eventlog.EventData, ciphers cipherSource) ([]eventlog.EventData, error) {
	sealed := make([]eventlog.EventData, len(events))
	for i, e := range events {
		var err error
		if sealed[i], err = s.seal(ctx, stream, e, ciphers); err != nil {
			return nil, err
		}
	}
	return sealed, nil
}

// StreamEvents is the events of one stream, for SealStreams.
type StreamEvents struct {
	Stream string
	Events []eventlog.EventData
}

// SealStreams is Seal for many streams at once, for bulk loads (accessd
// import): the result holds each stream's events as Seal returns them, in
// the order of streams, with Seal's refusals. The keys of every subject
// the events need are got in one call to the key store (Keys.KeyAll: the
// missing ones made in one transaction per chunk of subjects, not one
// each), so sealing a batch of new subjects costs a few statements and
// one commit instead of a write and a commit per subject. Each subject
// keeps a key of its own, as with Seal.
func (s *Store) SealStreams(ctx context.Context, streams []StreamEvents) ([][]eventlog.EventData, error) {
	var subjects []keystore.Subject
	seen := map[keystore.Subject]bool{}
	for _, st := range streams {
		for _, e := range st.Events {
			if !hasPersonal(e.Type, e.Meta.Reason) {
				continue
			}
			subj, err := SubjectOf(st.Stream, e.Data)
			if err != nil || seen[subj] {
				continue // seal reports it
			}
			seen[subj] = true
			subjects = append(subjects, subj)
		}
	}
	ciphers, err := s.bulkCiphers(ctx, subjects, s.keys.KeyAll, s.keys.Key)
	if err != nil {
		return nil, fmt.Errorf("personaldata: the keys of %d subjects: %w", len(subjects), err)
	}
	out := make([][]eventlog.EventData, len(streams))
	for i, st := range streams {
		if out[i], err = s.sealWith(ctx, st.Stream, st.Events, ciphers); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadStream implements eventlog.Store, opening sealed values.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	recs, err := s.inner.ReadStream(ctx, stream, from, limit)
	if err != nil {
		return nil, err
	}
	return s.openAll(ctx, recs)
}

// StreamsReader is the bulk read ReadStreams uses when the inner store
// has it (sqlstore.Store).
type StreamsReader = eventlog.StreamsReader

// ReadStreams returns every event of each of streams, opened as
// ReadStream opens them, keyed by stream (a stream without events is
// absent). On an inner store that is a StreamsReader it reads them in a
// few statements and the keys of their subjects in one call to the key
// store (Keys.FindAll); on another (the in-memory one, EventStoreDB) it
// reads nothing and returns an error wrapping eventlog.ErrBatchUnsupported,
// so that callers read the streams their own way (in parallel, one by
// one). The streams are not read at one instant: a writer may append
// between two of them.
func (s *Store) ReadStreams(ctx context.Context, streams []string) (map[string][]eventlog.Record, error) {
	bulk, ok := s.inner.(StreamsReader)
	if !ok {
		return nil, fmt.Errorf("personaldata: read streams: %w", eventlog.ErrBatchUnsupported)
	}
	stored, err := bulk.ReadStreams(ctx, streams)
	if err != nil {
		return nil, err
	}
	return s.openStreams(ctx, streams, stored)
}

// StreamTailsReader is the bulk read ReadStreamsFrom uses when the inner
// store has it (sqlstore.Store).
type StreamTailsReader = eventlog.StreamTailsReader

// ReadStreamsFrom returns, for each of from, the events of its stream from
// version From on, opened as ReadStream opens them, keyed by stream (a
// stream without such events is absent). On an inner store that is a
// StreamTailsReader it reads them in a few statements and the keys of their
// subjects in one call to the key store, as ReadStreams; on another it
// reads nothing and returns an error wrapping eventlog.ErrBatchUnsupported.
func (s *Store) ReadStreamsFrom(ctx context.Context, from []eventlog.StreamFrom) (map[string][]eventlog.Record, error) {
	bulk, ok := s.inner.(StreamTailsReader)
	if !ok {
		return nil, fmt.Errorf("personaldata: read the ends of streams: %w", eventlog.ErrBatchUnsupported)
	}
	stored, err := bulk.ReadStreamsFrom(ctx, from)
	if err != nil {
		return nil, err
	}
	streams := make([]string, len(from))
	for i, f := range from {
		streams[i] = f.Stream
	}
	return s.openStreams(ctx, streams, stored)
}

// openStreams opens the records of streams read in bulk (stored, keyed by
// stream), with the keys of their subjects got in one call to the key
// store.
func (s *Store) openStreams(ctx context.Context, streams []string, stored map[string][]eventlog.Record) (map[string][]eventlog.Record, error) {
	out := make(map[string][]eventlog.Record, len(stored))
	var subjects []keystore.Subject
	seen := map[keystore.Subject]bool{}
	for name, recs := range stored {
		for _, r := range recs {
			if !isSealed(r.Meta.Reason) && !bytes.Contains(r.Data, []byte(Prefix)) {
				continue
			}
			subj, err := SubjectOf(name, r.Data)
			if err != nil || seen[subj] {
				continue // open reports it
			}
			seen[subj] = true
			subjects = append(subjects, subj)
		}
	}
	ciphers, err := s.bulkCiphers(ctx, subjects, s.keys.FindAll, s.keys.Find)
	if err != nil {
		return nil, fmt.Errorf("personaldata: the keys of %d subjects: %w", len(subjects), err)
	}
	for _, name := range streams {
		recs, ok := stored[name]
		if !ok {
			continue
		}
		if _, done := out[name]; done {
			continue // named twice
		}
		for i, r := range recs {
			if recs[i], err = s.open(ctx, r, ciphers); err != nil {
				return nil, err
			}
		}
		out[name] = recs
	}
	return out, nil
}

// ReadAll implements eventlog.Store, opening sealed values.
func (s *Store) ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	recs, err := s.inner.ReadAll(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	return s.openAll(ctx, recs)
}

// Head implements eventlog.Store.
func (s *Store) Head(ctx context.Context) (eventlog.Position, error) { return s.inner.Head(ctx) }

// Subscribe implements eventlog.Store, opening sealed values before handle
// sees them.
func (s *Store) Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error {
	return s.inner.Subscribe(ctx, after, func(ctx context.Context, r eventlog.Record) error {
		opened, err := s.Open(ctx, r)
		if err != nil {
			return err
		}
		return handle(ctx, opened)
	})
}

func (s *Store) openAll(ctx context.Context, recs []eventlog.Record) ([]eventlog.Record, error) {
	for i, r := range recs {
		opened, err := s.Open(ctx, r)
		if err != nil {
			return nil, err
		}
		recs[i] = opened
	}
	return recs, nil
}

// SubjectOf returns the data subject of an event of stream with payload
// data.
func SubjectOf(stream string, data []byte) (keystore.Subject, error) {
	switch {
	case strings.HasPrefix(stream, domain.ChildStreamPrefix):
		id, err := uuid.Parse(strings.TrimPrefix(stream, domain.ChildStreamPrefix))
		if err != nil {
			return "", fmt.Errorf("%w: stream %q", ErrNoSubject, stream)
		}
		return keystore.ChildSubject(id), nil
	case strings.HasPrefix(stream, domain.AccountStreamPrefix):
		id, err := uuid.Parse(strings.TrimPrefix(stream, domain.AccountStreamPrefix))
		if err != nil {
			return "", fmt.Errorf("%w: stream %q", ErrNoSubject, stream)
		}
		return keystore.AccountSubject(id), nil
	case strings.HasPrefix(stream, domain.IdentityStreamPrefix), strings.HasPrefix(stream, domain.EmailStreamPrefix):
		// An identity's link, and an email's claim, are about the account
		// they name.
		var p struct {
			AccountID uuid.UUID `json:"account_id"`
		}
		if err := json.Unmarshal(data, &p); err != nil || p.AccountID == uuid.Nil {
			return "", fmt.Errorf("%w: an event of stream %q without account_id", ErrNoSubject, stream)
		}
		return keystore.AccountSubject(p.AccountID), nil
	}
	return "", fmt.Errorf("%w: stream %q", ErrNoSubject, stream)
}

// hasPersonal reports whether an event of type typ with reason carries
// personal data. The reason of an erasure is the data protection
// officer's record of why (a request's reference, the retention policy):
// it stays readable after the erasure, so it is kept as given. A policy
// event (R25) is about no data subject: its reason is the manager's record
// of why the policy changed, kept as given too.
func hasPersonal(typ, reason string) bool {
	if typ == domain.TypeAccountErased || typ == domain.TypeChildErased || typ == domain.TypePolicySet {
		return false
	}
	return reason != "" || len(domain.PersonalFields(typ)) > 0
}

func (s *Store) seal(ctx context.Context, stream string, e eventlog.EventData, ciphers cipherSource) (eventlog.EventData, error) {
	if !hasPersonal(e.Type, e.Meta.Reason) {
		return e, nil
	}
	subj, err := SubjectOf(stream, e.Data)
	if err != nil {
		return eventlog.EventData{}, err
	}
	fields := domain.PersonalFields(e.Type)
	sc, err := ciphers(ctx, subj)
	if errors.Is(err, keystore.ErrErased) && len(fields) == 0 {
		// The engine's own events about an erased subject (an expiry) keep
		// no reason: it reads as erased, like the subject's older ones.
		e.Meta.Reason = domain.ErasedText
		return e, nil
	}
	if err != nil {
		return eventlog.EventData{}, fmt.Errorf("personaldata: the key of %s: %w", subj, err)
	}
	c := sc.forEvent(subj, e.ID)
	if e.Meta.Reason != "" {
		e.Meta.Reason = c.seal(reasonField, e.Meta.Reason)
	}
	if len(fields) > 0 {
		if e.Data, err = mapFields(e.Data, fields, func(name, v string) (string, error) { return c.seal(name, v), nil }); err != nil {
			return eventlog.EventData{}, fmt.Errorf("personaldata: seal %s: %w", e.Type, err)
		}
	}
	return e, nil
}

// Open returns r with its sealed values opened, or replaced by
// domain.ErasedText when the subject was erased. Reading an erasure event
// destroys its subject's key if it still exists (the command that appended
// it stopped before it did): whichever replica reads the log first
// completes the erasure.
func (s *Store) Open(ctx context.Context, r eventlog.Record) (eventlog.Record, error) {
	return s.open(ctx, r, s.findCipher)
}

// findCipher is the cipherSource of Open: the subject's key, never made.
func (s *Store) findCipher(ctx context.Context, subj keystore.Subject) (*subjectCipher, error) {
	return s.cipherOf(ctx, subj, s.keys.Find)
}

func (s *Store) open(ctx context.Context, r eventlog.Record, ciphers cipherSource) (eventlog.Record, error) {
	if subj, ok := erasureSubject(r); ok {
		s.noteErased(subj)
		// A replay reads every erasure again: the key store's cache says
		// it is done without a write.
		if _, err := s.keys.Find(ctx, subj); !errors.Is(err, keystore.ErrErased) {
			if _, err := s.keys.Erase(ctx, subj); err != nil {
				return eventlog.Record{}, fmt.Errorf("event %s at %s: complete the erasure of %s: %w", r.ID, r.Position, subj, err)
			}
		}
	}
	fields := domain.PersonalFields(r.Type)
	if !isSealed(r.Meta.Reason) && (len(fields) == 0 || !bytes.Contains(r.Data, []byte(Prefix))) {
		return s.openPlain(ctx, r, fields) // nothing sealed: written before sealing, or nothing personal
	}
	subj, err := SubjectOf(r.Stream, r.Data)
	if err != nil {
		return eventlog.Record{}, fmt.Errorf("event %s at %s: %w", r.ID, r.Position, err)
	}
	sc, err := ciphers(ctx, subj)
	var c *fieldCipher
	switch {
	case errors.Is(err, keystore.ErrErased):
		// c stays nil: every sealed value reads as erased.
	case errors.Is(err, keystore.ErrNoKey):
		return eventlog.Record{}, fmt.Errorf("event %s at %s: %w: %s has no key", r.ID, r.Position, ErrCorrupt, subj)
	case err != nil:
		return eventlog.Record{}, fmt.Errorf("event %s at %s: the key of %s: %w", r.ID, r.Position, subj, err)
	default:
		c = sc.forEvent(subj, r.ID)
	}
	open := func(name, v string) (string, error) {
		if !isSealed(v) {
			return v, nil
		}
		if c == nil {
			return domain.ErasedText, nil
		}
		plain, err := c.open(name, v)
		if err != nil {
			return "", fmt.Errorf("event %s at %s, %s: %w", r.ID, r.Position, name, err)
		}
		return plain, nil
	}
	if r.Meta.Reason, err = open(reasonField, r.Meta.Reason); err != nil {
		return eventlog.Record{}, err
	}
	if len(fields) > 0 {
		if r.Data, err = mapFields(r.Data, fields, open); err != nil {
			return eventlog.Record{}, fmt.Errorf("personaldata: open event %s at %s: %w", r.ID, r.Position, err)
		}
	}
	return r, nil
}

func isSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// mapFields rewrites the string fields named in data (a JSON object) with
// f; other fields, and personal fields that are absent or not strings, are
// kept. The object is re-encoded with its keys sorted.
func mapFields(data []byte, fields []string, f func(name, v string) (string, error)) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	for _, name := range fields {
		raw, ok := obj[name]
		if !ok {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			continue // not a string: the domain's decoder refuses it
		}
		nv, err := f(name, v)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(nv)
		if err != nil {
			return nil, err
		}
		obj[name] = b
	}
	return json.Marshal(obj)
}

// subjectCipher is one subject's cipher and nonce key. It is safe for
// concurrent use (AES-GCM's Seal and Open are).
type subjectCipher struct {
	aead     cipher.AEAD
	nonceKey []byte
}

func newSubjectCipher(key []byte) (*subjectCipher, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("personaldata: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("personaldata: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("accessledger nonce key v1"))
	return &subjectCipher{aead: aead, nonceKey: m.Sum(nil)}, nil
}

// forEvent is the cipher of the fields of one event.
func (sc *subjectCipher) forEvent(subj keystore.Subject, event uuid.UUID) *fieldCipher {
	return &fieldCipher{subjectCipher: sc, prefix: "accessledger field v1\x00" + string(subj) + "\x00" + event.String() + "\x00"}
}

// fieldCipher seals and opens the fields of one event of one subject.
type fieldCipher struct {
	*subjectCipher
	prefix string // of the additional data: version, subject, event id
}

func (c *fieldCipher) aad(field string) []byte { return []byte(c.prefix + field) }

func (c *fieldCipher) seal(field, v string) string {
	aad := c.aad(field)
	m := hmac.New(sha256.New, c.nonceKey)
	m.Write(aad)
	m.Write([]byte{0})
	m.Write([]byte(v))
	nonce := m.Sum(nil)[:c.aead.NonceSize()]
	out := c.aead.Seal(append([]byte(nil), nonce...), nonce, []byte(v), aad)
	return Prefix + base64.RawURLEncoding.EncodeToString(out)
}

func (c *fieldCipher) open(field, v string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, Prefix))
	n := c.aead.NonceSize()
	if err != nil || len(raw) < n+c.aead.Overhead() {
		return "", fmt.Errorf("%w: malformed", ErrCorrupt)
	}
	plain, err := c.aead.Open(nil, raw[:n], raw[n:], c.aad(field))
	if err != nil {
		return "", ErrCorrupt
	}
	return string(plain), nil
}

// Plain reports whether the stored record r holds personal data in plain
// text: a reason, or a personal field, that is not sealed (an event
// written before sealing was on). The erased stand-in is not personal, nor
// are the reasons kept as given (hasPersonal).
func Plain(r eventlog.Record) bool {
	if !hasPersonal(r.Type, r.Meta.Reason) {
		return false
	}
	if r.Meta.Reason != "" && !isSealed(r.Meta.Reason) && !domain.IsErased(r.Meta.Reason) {
		return true
	}
	fields := domain.PersonalFields(r.Type)
	if len(fields) == 0 {
		return false
	}
	plain := false
	if _, err := mapFields(r.Data, fields, func(_, v string) (string, error) {
		if v != "" && !isSealed(v) && !domain.IsErased(v) {
			plain = true
		}
		return v, nil
	}); err != nil {
		return true // not even a JSON object: count it, someone should look
	}
	return plain
}

// CountPlain reads the whole stored log (inner, not through the layer) and
// counts the events that hold personal data in plain text (Plain), and all
// events. accessd status reports it: a log written before sealing was on
// is moved with a copy-and-transform (docs/personal-data.md), never edited.
func CountPlain(ctx context.Context, log eventlog.Store) (plain, total int64, err error) {
	const page = 5000
	after := eventlog.Start
	for {
		recs, err := log.ReadAll(ctx, after, page)
		if err != nil {
			return 0, 0, err
		}
		for _, r := range recs {
			total++
			if Plain(r) {
				plain++
			}
		}
		if len(recs) < page {
			return plain, total, nil
		}
		after = recs[len(recs)-1].Position
	}
}
