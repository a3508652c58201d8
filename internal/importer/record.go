// Package importer imports records moved over from older systems (R24):
// children, accounts, placements and grants, with their real dates, from a
// JSON Lines file (docs/import.md). It checks the whole file against the
// domain's rules and the store before it appends anything (Plan), and
// appends nothing when a line is bad; it appends what the plan decided in
// batches (Plan.Apply). Importing the same file again appends nothing.
//
// The file holds personal data (references, emails, identity subjects,
// reasons): the package never writes a value of a line into an error or a
// log, only line numbers and field names, and it appends through the
// personal-data layer (adapters/personaldata), which seals them.
package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// The kinds of record, the value of a line's "kind".
const (
	KindChild     = "child"
	KindAccount   = "account"
	KindPlacement = "placement"
	KindGrant     = "grant"
)

// MaxLineBytes is the longest line a file may have.
const MaxLineBytes = 64 << 10

// ErrBadLine is wrapped by every error about a line's own content.
var ErrBadLine = errors.New("importer: bad line")

// badLine is a problem of a line's own content; errors.Is finds
// ErrBadLine in it.
type badLine string

func (b badLine) Error() string      { return string(b) }
func (badLine) Is(target error) bool { return target == ErrBadLine }

// Time is a date of a line: an RFC 3339 string. Its errors never quote the
// value.
type Time struct{ time.Time }

// UnmarshalJSON parses an RFC 3339 string.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "value", Type: timeType}
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		// The decoder names the field of a type error, and not the value.
		return &json.UnmarshalTypeError{Value: "string", Type: timeType}
	}
	t.Time = v
	return nil
}

var timeType = reflect.TypeFor[Time]()

// fieldName matches a quoted key that looks like a field's name.
var fieldName = regexp.MustCompile(`^"[a-z][a-z_]{0,39}"$`)

// kindField is the "kind" every line has, in each kind's struct so that
// the strict decoder accepts it.
type kindField struct {
	Kind string `json:"kind"`
}

// Child is a "child" line: a child's record.
type Child struct {
	kindField
	Reference    string `json:"reference"`
	WorkerID     string `json:"worker_id"`
	RegisteredAt Time   `json:"registered_at"`
	RetainUntil  Time   `json:"retain_until"`
}

// Account is an "account" line: a portal account with its invitation,
// activation and closure dates.
type Account struct {
	kindField
	Email           string `json:"email"`
	AccountKind     string `json:"account_kind"`
	InvitedAt       Time   `json:"invited_at"`
	ActivatedAt     Time   `json:"activated_at"`
	IdentitySubject string `json:"identity_subject"`
	ClosedAt        Time   `json:"closed_at"`
}

// Placement is a "placement" line: a child placed with a foster carer.
type Placement struct {
	kindField
	LegacyID       string `json:"legacy_id"`
	ChildReference string `json:"child_reference"`
	CarerEmail     string `json:"carer_email"`
	StartedAt      Time   `json:"started_at"`
	EndedAt        Time   `json:"ended_at"`
	Reason         string `json:"reason"`
}

// Grant is a "grant" line: a network member's access to a child's record.
type Grant struct {
	kindField
	ChildReference string   `json:"child_reference"`
	Email          string   `json:"email"`
	Relationship   string   `json:"relationship"`
	Permissions    []string `json:"permissions"`
	GrantedAt      Time     `json:"granted_at"`
	RevokedAt      Time     `json:"revoked_at"`
	Reason         string   `json:"reason"`
}

// Record is one decoded line: its number and kind, and the one of Child,
// Account, Placement and Grant its kind names.
type Record struct {
	Line      int
	Kind      string
	Child     *Child
	Account   *Account
	Placement *Placement
	Grant     *Grant
}

// LineError is an error about one line. Its message names the line, the
// kind and the field, never a value of the line.
type LineError struct {
	Line int
	Kind string // "" when the line's kind is unknown
	Err  error
}

func (e *LineError) Error() string {
	if e.Kind == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.Kind, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// DecodeLine decodes one line (without its line feed) numbered line. The
// line must be one JSON object with a known "kind" and only the fields of
// that kind, each of the right type, the required ones present; dates are
// RFC 3339 strings. A blank line decodes to a nil record and no error. Its
// errors are *LineError wrapping ErrBadLine.
func DecodeLine(line int, b []byte) (*Record, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	bad := func(kind, format string, args ...any) error {
		return &LineError{Line: line, Kind: kind, Err: badLine(fmt.Sprintf(format, args...))}
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil || b[0] != '{' {
		return nil, bad("", "not a JSON object with a \"kind\"")
	}
	r := &Record{Line: line, Kind: head.Kind}
	var target any
	switch head.Kind {
	case KindChild:
		r.Child = &Child{}
		target = r.Child
	case KindAccount:
		r.Account = &Account{}
		target = r.Account
	case KindPlacement:
		r.Placement = &Placement{}
		target = r.Placement
	case KindGrant:
		r.Grant = &Grant{}
		target = r.Grant
	default:
		return nil, bad("", "kind: want child, account, placement or grant")
	}
	if err := decodeStrict(b, target); err != nil {
		return nil, bad(head.Kind, "%s", err)
	}
	if field := missing(r); field != "" {
		return nil, bad(head.Kind, "%s: required", field)
	}
	return r, nil
}

// decodeStrict decodes b into v, refusing unknown fields and trailing
// data, with an error that names the field and not the value.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return errors.New("trailing data after the object")
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "" && te.Type == timeType:
		return fmt.Errorf("%s: not an RFC 3339 time (2019-04-01T09:00:00Z)", te.Field)
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf("%s: not a %s", te.Field, jsonKind(te.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// A key is named only when it looks like a field name (a key
		// could hold a value of the older system).
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if fieldName.MatchString(name) {
			return fmt.Errorf("unknown field %s", name)
		}
		return errors.New("an unknown field")
	}
	return errors.New("not a JSON object of this kind")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice":
		return "list"
	}
	return goKind
}

// missing names the first required field of r that is empty, or "".
func missing(r *Record) string {
	type req struct {
		name  string
		empty bool
	}
	var reqs []req
	switch {
	case r.Child != nil:
		reqs = []req{{"reference", r.Child.Reference == ""}}
	case r.Account != nil:
		a := r.Account
		reqs = []req{{"email", a.Email == ""}, {"account_kind", a.AccountKind == ""}, {"invited_at", a.InvitedAt.IsZero()}}
	case r.Placement != nil:
		p := r.Placement
		reqs = []req{{"legacy_id", p.LegacyID == ""}, {"child_reference", p.ChildReference == ""},
			{"carer_email", p.CarerEmail == ""}, {"started_at", p.StartedAt.IsZero()}}
	case r.Grant != nil:
		g := r.Grant
		reqs = []req{{"child_reference", g.ChildReference == ""}, {"email", g.Email == ""}, {"relationship", g.Relationship == ""},
			{"permissions", len(g.Permissions) == 0}, {"granted_at", g.GrantedAt.IsZero()}}
	}
	for _, q := range reqs {
		if q.empty {
			return q.name
		}
	}
	return ""
}

// Read decodes every line of r. It returns the records of the good lines
// and every line's error (each a *LineError), joined; an error reading r
// is returned alone.
func Read(r io.Reader) ([]*Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	var recs []*Record
	var errs []error
	line := 0
	for sc.Scan() {
		line++
		rec, err := DecodeLine(line, sc.Bytes())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rec != nil {
			recs = append(recs, rec)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			errs = append(errs, &LineError{Line: line + 1, Err: badLine(fmt.Sprintf("longer than %d bytes", MaxLineBytes))})
			return recs, errors.Join(errs...)
		}
		return nil, fmt.Errorf("importer: read: %w", err)
	}
	return recs, errors.Join(errs...)
}
