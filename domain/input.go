package domain

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The checks in this file apply to new input: what a command (or an
// import) brings into the engine. They are stricter than the checks a stored
// event passes when it is decoded (validate), so that tightening them never
// makes an event log that was written under older rules unreadable.

// ---- times ----

// The engine's time range: every time an event carries lies in the years
// 1900 to 9999 (checkTime), in UTC and whole microseconds.
var (
	EarliestTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	LatestTime   = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// LatestCommandTime is the latest time a command may carry (a placement's
// start or end, a retention date, and every other time a caller gives): the
// last instant of the year 9899. The century left up to LatestTime is room
// for what the engine derives from a given time (a grace period's end, a
// deadline), since no policy period exceeds MaxPolicyPeriod.
var LatestCommandTime = time.Date(9899, 12, 31, 23, 59, 59, 999999000, time.UTC)

// MaxPolicyPeriod bounds every duration of the policy (36,500 days, just
// under a century; Policy.Validate): a time derived from a command's time
// plus a policy period always fits in the engine's range.
const MaxPolicyPeriod = 36500 * 24 * time.Hour

// CheckCommandTime checks a time a command brings: present, and between
// EarliestTime and LatestCommandTime (in UTC). It fails with a *FieldError
// (ErrInvalid) naming field.
func CheckCommandTime(field string, t time.Time) error {
	if t.IsZero() {
		return invalid(field, "required")
	}
	u := t.UTC()
	if u.Before(EarliestTime) {
		return invalid(field, "before %s: the engine keeps times from the year 1900 on", EarliestTime.Format(time.RFC3339))
	}
	if u.After(LatestCommandTime) {
		return invalid(field, "after %s: the engine keeps times up to the year 9999 and needs room after a given time for what it derives from it (grace periods, deadlines)",
			LatestCommandTime.Format(time.RFC3339Nano))
	}
	return nil
}

// checkDerivedTime checks a time the engine derived from a command's time
// (t = from + a policy period) is within the engine's range, so that the
// decision can be written; why names what was derived.
func checkDerivedTime(field string, t time.Time, why string) error {
	if u := t.UTC(); u.Before(EarliestTime) || u.After(LatestTime) || t.IsZero() {
		return invalid(field, "%s would fall outside the times the engine keeps (years 1900 to 9999)", why)
	}
	return nil
}

// ---- actor ids ----

// MaxActorIDBytes bounds an actor id.
const MaxActorIDBytes = 200

// ActorIDChars are the characters of an actor id besides ASCII letters and
// digits.
const ActorIDChars = "._-@|:+/='"

// CheckActorID checks an actor id: a bearer token's "sub", a worker id, any
// id of a caller that an event records as its actor. The format is 1 to
// MaxActorIDBytes bytes of ASCII letters, digits and the characters of
// ActorIDChars ( . _ - @ | : + / = ' ): what identity providers put in "sub"
// (UUIDs and Azure AD object ids, Auth0's "auth0|5f7c8ec7c33c6c004bbafe82",
// pairwise base64url subjects, email addresses, URIs). No spaces, control,
// invisible or bidirectional formatting characters, nothing outside ASCII:
// two ids that look the same are the same id. It fails with a *FieldError
// (ErrInvalid) that never quotes the id.
func CheckActorID(id string) error { return checkActorID("actor id", id) }

func checkActorID(field, id string) error {
	if id == "" {
		return invalid(field, "required")
	}
	if len(id) > MaxActorIDBytes {
		return invalid(field, "longer than %d bytes", MaxActorIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isActorIDByte(c) {
			return invalid(field, "%s: an id has only ASCII letters, digits and %s", describeByte(id, i), spaced(ActorIDChars))
		}
	}
	return nil
}

func isActorIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(ActorIDChars, c) >= 0
}

// describeByte says what the character at byte i of s is, without quoting
// s: a code point, and its kind when it is one a reader cannot see.
func describeByte(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && size <= 1:
		return "not valid UTF-8"
	case unicode.IsControl(r):
		return fmt.Sprintf("contains a control character (U+%04X)", r)
	case unicode.IsSpace(r):
		return fmt.Sprintf("contains a space (U+%04X)", r)
	case isInvisible(r):
		return fmt.Sprintf("contains an invisible or bidirectional formatting character (U+%04X)", r)
	}
	return fmt.Sprintf("contains U+%04X", r)
}

func spaced(chars string) string {
	parts := make([]string, 0, len(chars))
	for _, c := range chars {
		parts = append(parts, string(c))
	}
	return strings.Join(parts, " ")
}

// ---- identifiers and free text ----

// IsBidiControl reports the characters of Unicode's Bidi_Control property:
// they make text display in another order than it is stored (CVE-2021-42574,
// "Trojan Source").
func IsBidiControl(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F:
		return true
	case 0x202A <= r && r <= 0x202E:
		return true
	case 0x2066 <= r && r <= 0x2069:
		return true
	}
	return false
}

// isInvisible reports the characters a reader cannot see: the format
// characters (Unicode category Cf: zero-width spaces and joiners U+200B to
// U+200D, the bidirectional controls, U+2060 to U+2064, U+FEFF, the soft
// hyphen...) and the bidirectional controls.
func isInvisible(r rune) bool { return IsBidiControl(r) || unicode.Is(unicode.Cf, r) }

// checkIdentifier checks text that identifies something to people (a
// child's reference, an email address, an identity subject): besides
// checkText's checks, no tab or line break, no invisible or bidirectional
// formatting character (see isInvisible), no space other than U+0020 and
// none at either end, no U+FFFD. Two identifiers that look the same are
// then the same text (except for look-alike letters of different scripts).
func checkIdentifier(field, s string, max int) error {
	if err := checkText(field, s, max); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return invalid(field, "starts or ends with a space")
	}
	for i, r := range s {
		switch {
		case r == ' ':
		case r == utf8.RuneError, unicode.IsSpace(r), unicode.IsControl(r), isInvisible(r):
			return invalid(field, "%s", describeByte(s, i))
		}
	}
	return nil
}

// checkFreeText checks free text a person wrote (a reason): checkText's
// checks (tab and line feed allowed), and no bidirectional formatting
// character, which would make a line of the audit trail read differently
// from what it holds. Other invisible characters stay allowed: zero-width
// joiners belong to emoji and to several scripts.
func checkFreeText(field, s string, max int) error {
	if err := checkText(field, s, max); err != nil {
		return err
	}
	for _, r := range s {
		if IsBidiControl(r) {
			return invalid(field, "contains a bidirectional formatting character (U+%04X)", r)
		}
	}
	return nil
}
