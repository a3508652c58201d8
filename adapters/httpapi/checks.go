package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"

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
	return answerJSON(w, a, err)
}

// decodeChecks decodes and checks the body of POST /v1/checks (the
// ChecksRequest of docs/openapi.yaml) in one pass over its tokens. Like
// decodeBody it refuses, with 400 "invalid": bytes that are not valid
// UTF-8; anything but exactly one JSON object; duplicate keys; keys that
// are not exactly one of the document's names (case matters); a missing
// required field; a value of the wrong type (null included). And it
// refuses: no check or more than queries.MaxChecks; an item without
// exactly one of child_id and carer_id; ids that are not canonical UUIDs
// (parseUUID); an unknown permission; an at out of parseTime's range; a
// malformed min_position. An item's error names it: "checks[17].permission:
// ...". Every string becomes a UUID, a permission, a time or a position,
// so no text is kept.
func decodeChecks(body []byte) (queries.ChecksParams, error) {
	var p queries.ChecksParams
	if !utf8.Valid(body) {
		return p, errInvalid("the body is not valid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	tok, err := d.Token()
	if err == io.EOF {
		return p, errInvalid("the body is empty: send a JSON object")
	}
	if err != nil {
		return p, errInvalid("malformed JSON: %v", err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return p, errInvalid("the body must be a JSON object")
	}
	var hasChecks, hasAt bool
	for d.More() {
		key, err := objectKey(d)
		if err != nil {
			return p, err
		}
		switch key {
		case "checks":
			if hasChecks {
				return p, errInvalid("duplicate field %q", key)
			}
			hasChecks = true
			if p.Items, err = decodeCheckItems(d); err != nil {
				return p, err
			}
		case "at":
			if hasAt {
				return p, errInvalid("duplicate field %q", key)
			}
			hasAt = true
			s, err := stringValue(d, key)
			if err != nil {
				return p, err
			}
			if p.At, err = parseTime(key, s); err != nil {
				return p, err
			}
		case "min_position":
			if p.Given {
				return p, errInvalid("duplicate field %q", key)
			}
			s, err := stringValue(d, key)
			if err != nil {
				return p, err
			}
			if p.Min, err = parsePosition(key, s); err != nil {
				return p, err
			}
			p.Given = true
		default:
			return p, errInvalid("unknown field %q (accepted: checks, at, min_position)", key)
		}
	}
	if _, err := d.Token(); err != nil { // '}'
		return p, errInvalid("malformed JSON: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return p, errInvalid("the body must hold exactly one JSON value")
	}
	if !hasChecks {
		return p, errInvalid("checks: required (1 to %d checks)", queries.MaxChecks)
	}
	return p, nil
}

// decodeCheckItems reads the array of checks.
func decodeCheckItems(d *json.Decoder) ([]queries.CheckItem, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, errInvalid("malformed JSON: %v", err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return nil, errInvalid("checks: must be an array of 1 to %d checks", queries.MaxChecks)
	}
	items := make([]queries.CheckItem, 0, 16)
	for i := 0; d.More(); i++ {
		if i == queries.MaxChecks {
			return nil, errInvalid("checks: at most %d checks in one request", queries.MaxChecks)
		}
		it, err := decodeCheckItem(d, i)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	if _, err := d.Token(); err != nil { // ']'
		return nil, errInvalid("malformed JSON: %v", err)
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

var checkFields = map[string]int{"account_id": hasAccount, "child_id": hasChild, "carer_id": hasCarer, "permission": hasPermission}

// decodeCheckItem reads checks[i].
func decodeCheckItem(d *json.Decoder, i int) (queries.CheckItem, error) {
	var it queries.CheckItem
	tok, err := d.Token()
	if err != nil {
		return it, errInvalid("malformed JSON: %v", err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return it, errInvalid("checks[%d]: must be an object", i)
	}
	var has int
	var account, child, carer, perm string
	for d.More() {
		key, err := objectKey(d)
		if err != nil {
			return it, err
		}
		bit, ok := checkFields[key]
		switch {
		case !ok:
			return it, errInvalid("checks[%d]: unknown field %q (accepted: account_id, child_id, carer_id, permission)", i, key)
		case has&bit != 0:
			return it, errInvalid("checks[%d]: duplicate field %q", i, key)
		}
		has |= bit
		tok, err := d.Token()
		if err != nil {
			return it, errInvalid("malformed JSON: %v", err)
		}
		s, ok := tok.(string)
		if !ok {
			return it, errInvalid("%s: must be a string", itemField(i, key))
		}
		switch bit {
		case hasAccount:
			account = s
		case hasChild:
			child = s
		case hasCarer:
			carer = s
		default:
			perm = s
		}
	}
	if _, err := d.Token(); err != nil { // '}'
		return it, errInvalid("malformed JSON: %v", err)
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
	if it.Permission, err = domain.ParsePermission(perm); err != nil {
		return it, errInvalid("%s: must be view, record or complete_outstanding", itemField(i, "permission"))
	}
	return it, nil
}

// itemField names field of checks[i] in an error.
func itemField(i int, field string) string { return "checks[" + strconv.Itoa(i) + "]." + field }

// itemID is parseUUID for field of checks[i], naming it only on error.
func itemID(i int, field, s string) (uuid.UUID, error) {
	if id, err := parseUUID(field, s); err == nil {
		return id, nil
	}
	_, err := parseUUID(itemField(i, field), s)
	return uuid.Nil, err
}

// objectKey reads an object's key.
func objectKey(d *json.Decoder) (string, error) {
	tok, err := d.Token()
	if err != nil {
		return "", errInvalid("malformed JSON: %v", err)
	}
	key, ok := tok.(string)
	if !ok {
		return "", errInvalid("malformed JSON: object key expected")
	}
	return key, nil
}

// stringValue reads the string value of field name.
func stringValue(d *json.Decoder, name string) (string, error) {
	tok, err := d.Token()
	if err != nil {
		return "", errInvalid("malformed JSON: %v", err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", errInvalid("%s: must be a string", name)
	}
	return s, nil
}
