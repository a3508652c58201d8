package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// MaxChecksBodyBytes is the largest body of POST /v1/checks (256 KiB; 1,000
// checks written compactly take about 125 KiB); a larger one is answered
// 413 "too_large".
const MaxChecksBodyBytes = 256 << 10

// checks is POST /v1/checks: a query with a body. The whole body is
// checked before the query service answers anything.
func (s *server) checks(w http.ResponseWriter, r *http.Request, c call) error {
	body, err := readBodyLimit(w, r, MaxChecksBodyBytes)
	if err != nil {
		return err
	}
	p, err := decodeChecks(body)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.Checks(r.Context(), c.caller, p)
	if err != nil {
		return err
	}
	return writeChecks(w, a)
}

// writeChecks answers a as writeJSON does, with the bytes json.Marshal
// would write (TestWriteChecks), appended without reflection: most of a
// large answer is the same few enum strings. A string that would need
// escaping (none does: enums, a position, times) falls back to writeJSON.
func writeChecks(w http.ResponseWriter, a api.ChecksAnswer) error {
	if !plain(a.Position) {
		return writeJSON(w, http.StatusOK, a)
	}
	buf := make([]byte, 0, 96+len(a.Results)*72)
	buf = append(buf, `{"at":"`...)
	buf = a.At.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","position":"`...)
	buf = append(buf, a.Position...)
	buf = append(buf, `","results":[`...)
	for i, r := range a.Results {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"allowed":`...)
		buf = strconv.AppendBool(buf, r.Allowed)
		if r.ExpiresAt != nil {
			buf = append(buf, `,"expires_at":"`...)
			buf = r.ExpiresAt.AppendFormat(buf, time.RFC3339Nano)
			buf = append(buf, '"')
		}
		buf = append(buf, `,"permissions":[`...)
		for j, p := range r.Permissions {
			if !plain(string(p)) {
				return writeJSON(w, http.StatusOK, a)
			}
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '"')
			buf = append(buf, p...)
			buf = append(buf, '"')
		}
		if !plain(string(r.Reason)) {
			return writeJSON(w, http.StatusOK, a)
		}
		buf = append(buf, ']')
		if r.PlacementEndedAt != nil {
			buf = append(buf, `,"placement_ended_at":"`...)
			buf = r.PlacementEndedAt.AppendFormat(buf, time.RFC3339Nano)
			buf = append(buf, '"')
		}
		buf = append(buf, `,"reason":"`...)
		buf = append(buf, r.Reason...)
		buf = append(buf, `","until":`...)
		if r.Until == nil {
			buf = append(buf, "null"...)
		} else {
			buf = append(buf, '"')
			buf = r.Until.AppendFormat(buf, time.RFC3339Nano)
			buf = append(buf, '"')
		}
		buf = append(buf, '}')
	}
	buf = append(buf, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
	return nil
}

// plain reports whether json.Marshal writes s as is between quotes:
// printable ASCII without '"', '\\' and the HTML characters it escapes.
func plain(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// decodeChecks decodes and checks the body of POST /v1/checks (the
// ChecksRequest of docs/openapi.yaml) in one pass over its bytes. Like
// decodeBody it refuses, with 400 "invalid": bytes that are not valid
// UTF-8; anything but exactly one JSON object; duplicate keys; keys that
// are not exactly one of the document's names (case matters); a missing
// required field; a value of the wrong type (null included). And it
// refuses: no check or more than queries.MaxChecks; an item without
// exactly one of child_id and carer_id; ids that are not canonical UUIDs
// (as parseUUID); an unknown permission; an at out of parseTime's range; a
// malformed min_position. An item's error names it: "checks[17].permission:
// ...". Nothing else is accepted, so no value is kept as text.
//
// It is a scanner of this one grammar rather than encoding/json's Token
// API, which allocates several times per token: a check costs no
// allocation (strings without escapes are read in place; FuzzChecksBody
// holds it to encoding/json's reading of the same body).
func decodeChecks(body []byte) (queries.ChecksParams, error) {
	var p queries.ChecksParams
	if !utf8.Valid(body) {
		return p, errInvalid("the body is not valid UTF-8")
	}
	s := &jsonScanner{b: body}
	s.ws()
	switch {
	case s.i == len(s.b):
		return p, errInvalid("the body is empty: send a JSON object")
	case s.b[s.i] != '{':
		return p, errInvalid("the body must be a JSON object")
	}
	var hasChecks, hasAt bool
	err := s.object(func(key []byte) error {
		var err error
		switch {
		case string(key) == "checks":
			if hasChecks {
				return errInvalid("duplicate field %q", key)
			}
			hasChecks = true
			p.Items, err = s.checkItems()
			return err
		case string(key) == "at":
			if hasAt {
				return errInvalid("duplicate field %q", key)
			}
			hasAt = true
			v, err := s.stringValue(func() string { return "at" })
			if err != nil {
				return err
			}
			p.At, err = parseTime("at", string(v))
			return err
		case string(key) == "min_position":
			if p.Given {
				return errInvalid("duplicate field %q", key)
			}
			v, err := s.stringValue(func() string { return "min_position" })
			if err != nil {
				return err
			}
			p.Min, err = parsePosition("min_position", string(v))
			p.Given = err == nil
			return err
		}
		return errInvalid("unknown field %q (accepted: checks, at, min_position)", key)
	})
	if err != nil {
		return p, err
	}
	s.ws()
	if s.i != len(s.b) {
		return p, errInvalid("the body must hold exactly one JSON value")
	}
	if !hasChecks {
		return p, errInvalid("checks: required (1 to %d checks)", queries.MaxChecks)
	}
	return p, nil
}

// checkItems reads the array of checks.
func (s *jsonScanner) checkItems() ([]queries.CheckItem, error) {
	s.ws()
	if !s.next('[') {
		return nil, errInvalid("checks: must be an array of 1 to %d checks", queries.MaxChecks)
	}
	items := make([]queries.CheckItem, 0, 16)
	s.ws()
	if !s.next(']') {
		for {
			if len(items) == queries.MaxChecks {
				return nil, errInvalid("checks: at most %d checks in one request", queries.MaxChecks)
			}
			it, err := s.checkItem(len(items))
			if err != nil {
				return nil, err
			}
			items = append(items, it)
			s.ws()
			if s.next(']') {
				break
			}
			if !s.next(',') {
				return nil, errMalformed("',' or ']' expected after checks[%d]", len(items)-1)
			}
			if s.ws(); s.i == len(s.b) || s.b[s.i] == ']' {
				return nil, errMalformed("a check expected after ',' at offset %d", s.i)
			}
		}
	}
	if len(items) == 0 {
		return nil, errInvalid("checks: give at least one check (at most %d)", queries.MaxChecks)
	}
	return items, nil
}

// The fields of a check, as bits of what an item has.
const (
	hasAccount = 1 << iota
	hasChild
	hasCarer
	hasPermission
)

// checkField is the bit of a check's field, 0 for none.
func checkField(key []byte) int {
	switch {
	case string(key) == "account_id":
		return hasAccount
	case string(key) == "child_id":
		return hasChild
	case string(key) == "carer_id":
		return hasCarer
	case string(key) == "permission":
		return hasPermission
	}
	return 0
}

// checkItem reads checks[i].
func (s *jsonScanner) checkItem(i int) (queries.CheckItem, error) {
	var it queries.CheckItem
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return it, errInvalid("checks[%d]: must be an object", i)
	}
	var has int
	var account, child, carer, perm []byte
	err := s.object(func(key []byte) error {
		bit := checkField(key)
		switch {
		case bit == 0:
			return errInvalid("checks[%d]: unknown field %q (accepted: account_id, child_id, carer_id, permission)", i, key)
		case has&bit != 0:
			return errInvalid("checks[%d]: duplicate field %q", i, key)
		}
		has |= bit
		v, err := s.stringValue(func() string { return itemField(i, string(key)) })
		switch bit {
		case hasAccount:
			account = v
		case hasChild:
			child = v
		case hasCarer:
			carer = v
		default:
			perm = v
		}
		return err
	})
	if err != nil {
		return it, err
	}
	switch {
	case has&hasAccount == 0:
		return it, errInvalid("%s: required", itemField(i, "account_id"))
	case has&hasPermission == 0:
		return it, errInvalid("%s: required (view, record or complete_outstanding)", itemField(i, "permission"))
	case has&(hasChild|hasCarer) == 0 || has&(hasChild|hasCarer) == hasChild|hasCarer:
		return it, errInvalid("checks[%d]: give exactly one of child_id and carer_id", i)
	}
	if it.Account, err = itemID(i, "account_id", account); err != nil {
		return it, err
	}
	if has&hasChild != 0 {
		it.Child, err = itemID(i, "child_id", child)
	} else {
		it.Carer, err = itemID(i, "carer_id", carer)
	}
	if err != nil {
		return it, err
	}
	switch {
	case string(perm) == domain.PermView:
		it.Permission = domain.View
	case string(perm) == domain.PermRecord:
		it.Permission = domain.Record
	case string(perm) == domain.PermCompleteOutstanding:
		it.Permission = domain.CompleteOutstanding
	default:
		return it, errInvalid("%s: must be view, record or complete_outstanding", itemField(i, "permission"))
	}
	return it, nil
}

// itemField names field of checks[i] in an error.
func itemField(i int, field string) string { return "checks[" + strconv.Itoa(i) + "]." + field }

// itemID is parseUUID for field of checks[i], without allocating unless
// it fails.
func itemID(i int, field string, b []byte) (uuid.UUID, error) {
	if len(b) == 36 {
		if id, err := uuid.ParseBytes(b); err == nil && id != uuid.Nil {
			return id, nil
		}
	}
	_, err := parseUUID(itemField(i, field), string(b))
	return uuid.Nil, err
}

// errMalformed is the 400 of a body that is not JSON.
func errMalformed(format string, args ...any) error {
	return errInvalid("malformed JSON: "+format, args...)
}

// jsonScanner reads a JSON text of valid UTF-8 (checked before), for
// decodeChecks: objects, arrays and strings only.
type jsonScanner struct {
	b []byte
	i int
}

// ws skips white space.
func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c when it is the next byte.
func (s *jsonScanner) next(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// object reads an object from its '{' through its '}', calling member
// after each key's ':' to read the value.
func (s *jsonScanner) object(member func(key []byte) error) error {
	s.i++ // '{'
	s.ws()
	if s.next('}') {
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errMalformed("object key expected at offset %d", s.i)
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		s.ws()
		if !s.next(':') {
			return errMalformed("':' expected after key %q", key)
		}
		if err := member(key); err != nil {
			return err
		}
		s.ws()
		if s.next('}') {
			return nil
		}
		if !s.next(',') {
			return errMalformed("',' or '}' expected at offset %d", s.i)
		}
	}
}

// stringValue reads a value that must be a string; name names it in the
// error.
func (s *jsonScanner) stringValue(name func() string) ([]byte, error) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, errInvalid("%s: must be a string", name())
	}
	return s.str()
}

// str reads a string from its opening quote: the bytes in place when it
// has no escape, else its decoding (by encoding/json).
func (s *jsonScanner) str() ([]byte, error) {
	start := s.i
	for j := start + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start+1 : j], nil
		case c == '\\':
			return s.escaped(start)
		case c < 0x20:
			return nil, errMalformed("control character in a string at offset %d", j)
		}
	}
	return nil, errMalformed("unterminated string")
}

// escaped reads a string with escapes from its opening quote at start.
func (s *jsonScanner) escaped(start int) ([]byte, error) {
	for j := start + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			var out string
			if err := json.Unmarshal(s.b[start:j+1], &out); err != nil {
				return nil, errMalformed("%v", err)
			}
			s.i = j + 1
			return []byte(out), nil
		}
	}
	return nil, errMalformed("unterminated string")
}
