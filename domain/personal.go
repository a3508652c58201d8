package domain

import (
	"sort"
	"strings"
)

// Personal data in events (R22). The personal fields of an event (an
// email, an identity subject, a phone hint, a child's reference) and the
// reason of every event are stored encrypted under a key of their data
// subject (adapters/personaldata); once the subject is erased they decode
// as ErasedText. Ids and times are not personal data: decisions and
// history never depend on a personal field.

// ErasedText stands in for a personal value whose subject was erased: it
// decodes where the value was, and no command may write it.
const ErasedText = "[erased]"

// IsErased reports whether s is the erased stand-in.
func IsErased(s string) bool { return s == ErasedText }

// SealedPrefix starts a personal value as stored: sealed under its
// subject's key (adapters/personaldata opens it). The audit trail and the
// ledger read the events as stored, so a personal field decodes when it
// holds its value, ErasedText or a sealed value; no command may write
// either of the last two.
const SealedPrefix = "sealed:v1:"

// IsSealed reports whether s is a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, SealedPrefix) }

// personal is implemented by the events that hold personal fields: it
// returns them by their JSON name.
type personal interface {
	personalFields() map[string]*string
}

func (e *ChildRegistered) personalFields() map[string]*string {
	return map[string]*string{"reference": &e.Reference}
}

func (e *AccountInvited) personalFields() map[string]*string {
	return map[string]*string{"email": &e.Email}
}

func (e *AccountActivated) personalFields() map[string]*string {
	return map[string]*string{"identity_subject": &e.IdentitySubject}
}

func (e *PhoneEnrolled) personalFields() map[string]*string {
	return map[string]*string{"phone_hint": &e.PhoneHint}
}

func (e *IdentityLinked) personalFields() map[string]*string {
	return map[string]*string{"subject": &e.Subject}
}

// PersonalFields returns the JSON names of the personal fields of events
// named typ (each a JSON string), sorted; nil for an event without any or
// an unknown name. The reason in every event's metadata is personal too.
func PersonalFields(typ string) []string {
	newEvent, ok := catalogue[typ]
	if !ok {
		return nil
	}
	p, ok := newEvent().(personal)
	if !ok {
		return nil
	}
	names := make([]string, 0, 1)
	for n := range p.personalFields() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// refuseErased fails when a personal field of e holds ErasedText: the
// stand-in is for reading erased events, never for writing new ones.
func refuseErased(e Event) error {
	p, ok := e.(personal)
	if !ok {
		return nil
	}
	for name, v := range p.personalFields() {
		if IsErased(*v) {
			return invalid(name, "%q stands for erased data and cannot be written", ErasedText)
		}
		if IsSealed(*v) {
			return invalid(name, "a value starting %q stands for sealed data and cannot be written", SealedPrefix)
		}
	}
	return nil
}

// erasedOr accepts ErasedText or a sealed value (a field decoding erased,
// or as stored), else runs check.
func erasedOr(s string, check func(string) error) error {
	if IsErased(s) || IsSealed(s) {
		return nil
	}
	return check(s)
}
