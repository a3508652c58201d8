package reseal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// step is what the copy makes of one source record: the event to append
// (or to find) in the destination, in which stream and at which version.
type step struct {
	src    eventlog.Record // the source record, opened
	stream string          // the destination stream
	event  eventlog.EventData
	// subject is the record's data subject ("" for an event without
	// personal data whose subject cannot be told).
	subject keystore.Subject
	// erased: the subject is erased; the event's personal values are
	// stand-ins and it is appended as stored, past the sealing layer, so
	// that no key is made for the subject.
	erased bool
}

// version is the event's stream version (the same in both logs).
func (s step) version() uint64 { return s.src.Version }

// plan turns source records into steps. It depends on the source alone
// (the erasures its log records, and the records read before, in order),
// so that a run that resumes an interrupted copy, and the verification,
// make the same steps again.
type plan struct {
	ids    *domain.KeyedIDs
	erased map[keystore.Subject]bool

	// streams maps each source identity stream to its destination name;
	// owners is the reverse.
	streams map[string]string
	owners  map[string]string

	stats Stats
	keyed map[keystore.Subject]bool
}

// Stats counts what a copy did with the subjects and streams it read.
type Stats struct {
	// SubjectsKeyed is how many data subjects have their personal values
	// sealed under a key of the destination.
	SubjectsKeyed int
	// ErasedSubjects is how many subjects the source log records as
	// erased: the destination holds only stand-ins of theirs, and no key.
	ErasedSubjects int
	// IdentityRenamed is how many identity streams were renamed from their
	// name-based (or otherwise unkeyed) name to the destination's keyed
	// name; IdentityKeyed how many had their keyed name already;
	// IdentityKept how many kept their name because the subject they are
	// named from could not be read (erased).
	IdentityRenamed, IdentityKeyed, IdentityKept int
}

func newPlan(ids *domain.KeyedIDs, erased map[keystore.Subject]bool) *plan {
	return &plan{ids: ids, erased: erased, streams: map[string]string{}, owners: map[string]string{},
		keyed: map[keystore.Subject]bool{}, stats: Stats{ErasedSubjects: len(erased)}}
}

// ErrUnexplainedErasure: a record of a subject the log records no erasure
// of reads as erased (its key was destroyed outside the engine, or the
// read store is not the event store's): the copy stops rather than guess.
var ErrUnexplainedErasure = errors.New("reseal: a value reads as erased but the log records no erasure of its subject")

// isErasure reports whether typ erases a subject.
func isErasure(typ string) bool {
	return typ == domain.TypeAccountErased || typ == domain.TypeChildErased
}

// personal reports whether the sealing layer seals something of an event
// of type typ with reason: the same rule as personaldata's.
func personal(typ, reason string) bool {
	if isErasure(typ) || typ == domain.TypePolicySet {
		return false
	}
	return reason != "" || len(domain.PersonalFields(typ)) > 0
}

// step returns what to do with the source record r (opened).
func (p *plan) step(r eventlog.Record) (step, error) {
	st := step{src: r, stream: r.Stream,
		event: eventlog.EventData{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}}
	hasPersonal := personal(r.Type, r.Meta.Reason)
	subj, err := personaldata.SubjectOf(r.Stream, r.Data)
	switch {
	case err == nil:
		st.subject = subj
	case hasPersonal:
		return step{}, fmt.Errorf("event %s at %s: %w", r.ID, r.Position, err)
	}
	st.erased = st.subject != "" && p.erased[st.subject]
	if st.erased {
		if st.event, err = standIns(st.event); err != nil {
			return step{}, fmt.Errorf("event %s at %s: %w", r.ID, r.Position, err)
		}
	} else if hasPersonal {
		if v, ok := erasedValue(r); ok {
			return step{}, fmt.Errorf("%w: event %s at %s (%s), %s of %s", ErrUnexplainedErasure, r.ID, r.Position, r.Type, v, st.subject)
		}
		if !p.keyed[st.subject] {
			p.keyed[st.subject] = true
			p.stats.SubjectsKeyed++
		}
	}
	if strings.HasPrefix(r.Stream, domain.IdentityStreamPrefix) {
		if st.stream, err = p.identityStream(r); err != nil {
			return step{}, err
		}
	}
	return st, nil
}

// identityStream returns the destination name of r's identity stream: the
// keyed name of the subject its first event links, or its own name when
// that subject reads as erased.
func (p *plan) identityStream(r eventlog.Record) (string, error) {
	if name, ok := p.streams[r.Stream]; ok {
		return name, nil
	}
	name := r.Stream
	subject, _ := stringField(r.Data, "subject")
	switch {
	case r.Type != domain.TypeIdentityLinked || subject == "" || domain.IsErased(subject) || domain.IsSealed(subject):
		p.stats.IdentityKept++
	case p.ids.IdentityStream(subject) == r.Stream:
		p.stats.IdentityKeyed++
	default:
		name = p.ids.IdentityStream(subject)
		p.stats.IdentityRenamed++
	}
	if other, ok := p.owners[name]; ok {
		return "", fmt.Errorf("reseal: identity streams %s and %s both link the subject of event %s: the destination "+
			"can hold only one (%s)", other, r.Stream, r.ID, name)
	}
	p.streams[r.Stream], p.owners[name] = name, r.Stream
	return name, nil
}

// erasedValue returns the first value of r that reads as erased: its
// reason, or a personal field.
func erasedValue(r eventlog.Record) (string, bool) {
	if domain.IsErased(r.Meta.Reason) {
		return "the reason", true
	}
	for _, f := range domain.PersonalFields(r.Type) {
		if v, _ := stringField(r.Data, f); domain.IsErased(v) {
			return f, true
		}
	}
	return "", false
}

// standIns returns e with its reason and every personal value that is not
// empty replaced by domain.ErasedText: what an erased subject's events
// read as. An erasure keeps its reason (the officer's record of why).
func standIns(e eventlog.EventData) (eventlog.EventData, error) {
	if isErasure(e.Type) {
		return e, nil
	}
	if e.Meta.Reason != "" {
		e.Meta.Reason = domain.ErasedText
	}
	fields := domain.PersonalFields(e.Type)
	if len(fields) == 0 {
		return e, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(e.Data, &obj); err != nil {
		return eventlog.EventData{}, fmt.Errorf("reseal: data of %s: %w", e.Type, err)
	}
	changed := false
	for _, f := range fields {
		var v string
		if raw, ok := obj[f]; !ok || json.Unmarshal(raw, &v) != nil || v == "" || domain.IsErased(v) {
			continue
		}
		obj[f] = json.RawMessage(`"` + domain.ErasedText + `"`)
		changed = true
	}
	if !changed {
		return e, nil
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return eventlog.EventData{}, fmt.Errorf("reseal: data of %s: %w", e.Type, err)
	}
	e.Data = data
	return e, nil
}

// stringField returns the string field name of the JSON object data.
func stringField(data []byte, name string) (string, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return "", false
	}
	var v string
	if raw, ok := obj[name]; !ok || json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// check compares the destination record got (opened) with what the step
// wants there: the same id, stream (renamed when an identity stream is),
// version, type, metadata and data (as JSON values: the sealing layer
// re-encodes objects). It names every difference.
func (s step) check(got eventlog.Record) error {
	var diffs []string
	differ := func(what string, got, want any) {
		diffs = append(diffs, fmt.Sprintf("%s %v, want %v", what, got, want))
	}
	want := s.event
	if got.ID != want.ID {
		differ("id", got.ID, want.ID)
	}
	if got.Stream != s.stream {
		differ("stream", got.Stream, s.stream)
	}
	if got.Version != s.version() {
		differ("version", got.Version, s.version())
	}
	if got.Type != want.Type {
		differ("type", got.Type, want.Type)
	}
	gm, wm := got.Meta, want.Meta
	if gm.ActorID != wm.ActorID || gm.ActorRole != wm.ActorRole {
		differ("actor", gm.ActorID+" ("+gm.ActorRole+")", wm.ActorID+" ("+wm.ActorRole+")")
	}
	if gm.Reason != wm.Reason {
		differ("reason", fmt.Sprintf("%q", gm.Reason), fmt.Sprintf("%q", wm.Reason))
	}
	if !sameTime(gm.EffectiveAt, wm.EffectiveAt) {
		differ("effective time", gm.EffectiveAt, wm.EffectiveAt)
	}
	if !sameTime(gm.RecordedAt, wm.RecordedAt) {
		differ("recorded time", gm.RecordedAt, wm.RecordedAt)
	}
	if gm.CorrelationID != wm.CorrelationID || gm.CausationID != wm.CausationID {
		differ("correlation/causation", gm.CorrelationID.String()+"/"+gm.CausationID.String(),
			wm.CorrelationID.String()+"/"+wm.CausationID.String())
	}
	if ok, err := sameJSON(got.Data, want.Data); err != nil || !ok {
		differ("data", string(got.Data), string(want.Data))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: event %s (source position %s, destination position %s): %s",
			ErrMismatch, s.src.ID, s.src.Position, got.Position, strings.Join(diffs, "; "))
	}
	return nil
}

// sameTime compares times as the stores keep them: UTC, microseconds.
func sameTime(a, b time.Time) bool {
	return a.UTC().Truncate(time.Microsecond).Equal(b.UTC().Truncate(time.Microsecond))
}

// sameJSON reports whether a and b are the same JSON value (numbers
// compared as written).
func sameJSON(a, b []byte) (bool, error) {
	decode := func(b []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		err := d.Decode(&v)
		return v, err
	}
	va, err := decode(a)
	if err != nil {
		return false, err
	}
	vb, err := decode(b)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(va, vb), nil
}
