package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// readBody reads the request body, at most MaxBodyBytes (else an
// *http.MaxBytesError: 413), after checking the Content-Type is JSON
// (application/json, charset utf-8 if any; else 415).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return readBodyMax(w, r, MaxBodyBytes)
}

// readBodyMax is readBody with a bound of max bytes.
func readBodyMax(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		// Read nothing: a refused body is not worth reading.
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, errInvalid("cannot read the body: %v", err)
	}
	return body, nil
}

func checkJSONContentType(ct string) error {
	if ct == "" {
		return errUnsupportedMediaType
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errUnsupportedMediaType
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return errUnsupportedMediaType
		}
	}
	return nil
}

// decodeBody decodes body, a JSON object, into dst, a pointer to a struct
// whose fields are strings or string slices with json tags. It refuses, with
// 400 "invalid":
//
//   - bytes that are not valid UTF-8;
//   - anything but exactly one JSON object (no trailing value);
//   - duplicate keys, at any depth;
//   - a key that is not exactly one of dst's json names (encoding/json would
//     match keys case-insensitively; this does not);
//   - a missing or null field, unless its tag has ",omitempty";
//   - a value of the wrong type;
//   - text with control characters (except tab and line feed in free text),
//     bidirectional formatting characters (e.g. U+202E RIGHT-TO-LEFT
//     OVERRIDE), or U+FFFD (what a lone surrogate escape decodes to).
func decodeBody(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return errInvalid("the body is not valid UTF-8")
	}
	keys, err := scanObject(body)
	if err != nil {
		return err
	}
	fields := jsonFields(dst)
	for k := range keys {
		if _, ok := fields[k]; !ok {
			return errInvalid("unknown field %q", k)
		}
	}
	for name, f := range fields {
		if !f.optional && !keys[name] {
			return errInvalid("%s: required", name)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errInvalid("%s: must be %s", te.Field, jsonTypeName(te.Type))
		}
		return errInvalid("malformed JSON: %v", err)
	}
	return checkStrings(dst, fields)
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of strings"
	}
	return t.String()
}

// scanObject checks that body is exactly one JSON object without duplicate
// keys at any depth, and returns its top-level keys whose value is not null.
func scanObject(body []byte) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, errInvalid("the body is empty: send a JSON object")
	}
	if err != nil {
		return nil, errInvalid("malformed JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errInvalid("the body must be a JSON object")
	}
	keys := map[string]bool{}
	if err := scanMembers(dec, keys, 1); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errInvalid("the body must hold exactly one JSON value")
	}
	return keys, nil
}

// maxDepth bounds the nesting of a body.
const maxDepth = 32

// scanMembers reads an object's members after its '{' through its '}'.
// top, when not nil, receives the keys with a non-null value.
func scanMembers(dec *json.Decoder, top map[string]bool, depth int) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errInvalid("malformed JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return errInvalid("malformed JSON: object key expected")
		}
		if seen[key] {
			return errInvalid("duplicate field %q", key)
		}
		seen[key] = true
		isNull, err := scanValue(dec, depth)
		if err != nil {
			return err
		}
		if top != nil && !isNull {
			top[key] = true
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return errInvalid("malformed JSON: %v", err)
	}
	return nil
}

// scanValue reads one value and reports whether it was null.
func scanValue(dec *json.Decoder, depth int) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, errInvalid("malformed JSON: %v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok == nil, nil
	}
	if depth >= maxDepth {
		return false, errInvalid("the body is nested too deeply")
	}
	switch d {
	case '{':
		return false, scanMembers(dec, nil, depth+1)
	case '[':
		for dec.More() {
			if _, err := scanValue(dec, depth+1); err != nil {
				return false, err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return false, errInvalid("malformed JSON: %v", err)
		}
		return false, nil
	}
	return false, errInvalid("malformed JSON")
}

// field describes one json field of a body struct.
type field struct {
	index    int
	optional bool // json tag option ",omitempty": the field may be absent
	text     bool // tag api:"text": free text, where tab and line feed are allowed
}

// jsonFields returns the json names of the fields of *dst (a struct).
func jsonFields(dst any) map[string]field {
	t := reflect.TypeOf(dst).Elem()
	out := make(map[string]field, t.NumField())
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("json")
		if !ok || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		out[name] = field{index: i, optional: strings.Contains(opts, "omitempty"),
			text: t.Field(i).Tag.Get("api") == "text"}
	}
	return out
}

// checkStrings checks every string of *dst with checkText.
func checkStrings(dst any, fields map[string]field) error {
	v := reflect.ValueOf(dst).Elem()
	for name, f := range fields {
		fv := v.Field(f.index)
		switch fv.Kind() {
		case reflect.String:
			if err := checkText(name, fv.String(), f.text); err != nil {
				return err
			}
		case reflect.Slice:
			for i := range fv.Len() {
				if fv.Index(i).Kind() != reflect.String {
					continue
				}
				if err := checkText(fmt.Sprintf("%s[%d]", name, i), fv.Index(i).String(), false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkText refuses text the engine should never store or show: invalid
// UTF-8, U+FFFD (the decoding of invalid input), control characters (tab
// and line feed are allowed in free text), and bidirectional formatting
// characters, which can make text display differently from what it is
// (CVE-2021-42574, "Trojan Source").
func checkText(name, s string, freeText bool) error {
	if !utf8.ValidString(s) {
		return errInvalid("%s: not valid UTF-8", name)
	}
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			return errInvalid("%s: contains U+FFFD (invalid text or a lone surrogate escape)", name)
		case freeText && (r == '\n' || r == '\t'):
		case unicode.IsControl(r):
			return errInvalid("%s: contains a control character", name)
		case domain.IsBidiControl(r):
			return errInvalid("%s: contains a bidirectional formatting character (U+%04X)", name, r)
		}
	}
	return nil
}

// parseUUID parses an id: the canonical 36-character form only (no braces,
// urn prefix or bare hex), either case, not the nil UUID.
func parseUUID(name, s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, errInvalid("%s: must be a UUID like 123e4567-e89b-12d3-a456-426614174000", name)
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, errInvalid("%s: must be a UUID like 123e4567-e89b-12d3-a456-426614174000", name)
	}
	if id == uuid.Nil {
		return uuid.Nil, errInvalid("%s: must not be the nil UUID", name)
	}
	return id, nil
}

// rfc3339 is the grammar of RFC 3339's date-time, with upper-case "T" and
// "Z" (time.Parse alone also accepts a comma before the fraction).
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// parseTime parses an RFC 3339 time (with a "T", an explicit offset or "Z",
// optional fractional seconds up to nanoseconds), between years 1900 and
// 9999, and returns it in UTC.
func parseTime(name, s string) (time.Time, error) {
	if !rfc3339.MatchString(s) {
		return time.Time{}, errInvalid("%s: must be an RFC 3339 time like 2026-03-02T09:00:00Z", name)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errInvalid("%s: must be an RFC 3339 time like 2026-03-02T09:00:00Z", name)
	}
	if y := t.UTC().Year(); y < 1900 || y > 9999 {
		return time.Time{}, errInvalid("%s: out of range (years 1900 to 9999)", name)
	}
	return t.UTC(), nil
}

// parsePosition parses a consistency token.
func parsePosition(name, s string) (eventlog.Position, error) {
	if s == "" {
		return eventlog.Start, errInvalid("%s: empty position token", name)
	}
	p, err := eventlog.ParsePosition(s)
	if err != nil {
		return eventlog.Start, errInvalid("%s: invalid position token", name)
	}
	return p, nil
}

// query is a request's query parameters, checked against the route's list.
type query struct{ v url.Values }

// parseQuery refuses unknown and repeated parameters, and values that are
// not clean text.
func parseQuery(r *http.Request, allowed []string) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, errInvalid("malformed query string")
	}
	for k, vals := range v {
		if !contains(allowed, k) {
			if len(allowed) == 0 {
				return query{}, errInvalid("unknown query parameter %q: this route takes none", k)
			}
			return query{}, errInvalid("unknown query parameter %q (accepted: %s)", k, strings.Join(allowed, ", "))
		}
		if len(vals) > 1 {
			return query{}, errInvalid("query parameter %q given more than once", k)
		}
		if err := checkText(k, vals[0], false); err != nil {
			return query{}, err
		}
	}
	return query{v}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (q query) has(name string) bool { return q.v.Has(name) }

func (q query) str(name string) string { return q.v.Get(name) }

func (q query) uuid(name string, required bool) (uuid.UUID, bool, error) {
	if !q.v.Has(name) {
		if required {
			return uuid.Nil, false, errInvalid("%s: required", name)
		}
		return uuid.Nil, false, nil
	}
	id, err := parseUUID(name, q.v.Get(name))
	return id, err == nil, err
}

// timeOr returns the time parameter name, or def when absent.
func (q query) timeOr(name string, def time.Time) (time.Time, error) {
	if !q.v.Has(name) {
		return def, nil
	}
	return parseTime(name, q.v.Get(name))
}

// optTime returns the time parameter name, or the zero time when absent.
func (q query) optTime(name string) (time.Time, error) { return q.timeOr(name, time.Time{}) }

// position returns the position parameter name and whether it was given.
func (q query) position(name string) (eventlog.Position, bool, error) {
	if !q.v.Has(name) {
		return eventlog.Start, false, nil
	}
	p, err := parsePosition(name, q.v.Get(name))
	return p, err == nil, err
}

// int64In returns the integer parameter name in [min, max], or def.
func (q query) int64In(name string, def, min, max int64) (int64, error) {
	if !q.v.Has(name) {
		return def, nil
	}
	n, err := strconv.ParseInt(q.v.Get(name), 10, 64)
	if err != nil || n < min || n > max {
		return 0, errInvalid("%s: must be an integer from %d to %d", name, min, max)
	}
	return n, nil
}

// boolPtr returns the boolean parameter name ("true" or "false"), or nil.
func (q query) boolPtr(name string) (*bool, error) {
	if !q.v.Has(name) {
		return nil, nil
	}
	switch q.v.Get(name) {
	case "true":
		b := true
		return &b, nil
	case "false":
		b := false
		return &b, nil
	}
	return nil, errInvalid("%s: must be true or false", name)
}

// pathUUID returns the path value name as a UUID.
func pathUUID(r *http.Request, name string) (uuid.UUID, error) {
	return parseUUID(name, r.PathValue(name))
}
