package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/queries"
)

// The problem codes of api.md, and ledger_mismatch (R23).
const (
	codeInvalid           = "invalid"
	codeUnauthenticated   = "unauthenticated"
	codeForbidden         = "forbidden"
	codeNotFound          = "not_found"
	codeConflict          = "conflict"
	codeAlreadyRegistered = "already_registered"
	codeStale             = "stale"
	codeTooLarge          = "too_large"
	codeInternal          = "internal"
	// codeLedgerMismatch: the ledger found the stored event log changed
	// after it was recorded; the server answers no decisions (503).
	codeLedgerMismatch = "ledger_mismatch"
)

// problemTypePrefix prefixes a problem's code to make its "type" URI.
const problemTypePrefix = "urn:accessledger:problem:"

// problemContentType is the media type of problem answers (RFC 9457).
const problemContentType = "application/problem+json"

// Problem is an RFC 9457 problem answer (the wire's api.Problem). Code is
// one of api.md's codes.
type Problem = api.Problem

// httpError is an error raised by the HTTP layer itself, with its status and
// code. Detail is shown to the caller.
type httpError struct {
	status int
	code   string
	detail string
	err    error // wrapped cause, for errors.Is and the log; never shown
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.detail + ": " + e.err.Error()
	}
	return e.detail
}

func (e *httpError) Unwrap() error { return e.err }

func errInvalid(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, code: codeInvalid, detail: fmt.Sprintf(format, args...)}
}

var (
	errNotFound = &httpError{status: http.StatusNotFound, code: codeNotFound,
		detail: "no such resource"}
	errNotReady = &httpError{status: http.StatusServiceUnavailable, code: codeStale,
		detail: "not ready: the read models and the access index have not caught up with the event log yet"}
	errUnsupportedMediaType = &httpError{status: http.StatusUnsupportedMediaType, code: codeInvalid,
		detail: "the body must be JSON: send Content-Type: application/json"}
	errLedgerOff = &httpError{status: http.StatusServiceUnavailable, code: codeInternal,
		detail: "this server runs without the ledger: it has no signed checkpoints or proofs to give"}
	errLedgerNotVerified = &httpError{status: http.StatusServiceUnavailable, code: codeStale, err: queries.ErrLedgerNotVerified,
		detail: "not ready: the ledger has not finished verifying the event log against its published checkpoints; retry later"}
)

// errMethodNotAllowed is a 405 naming the allowed methods.
type errMethodNotAllowed struct{ allow string }

func (e errMethodNotAllowed) Error() string { return "method not allowed; allowed: " + e.allow }

// titles of the codes.
var titles = map[string]string{
	codeInvalid:           "Invalid request",
	codeUnauthenticated:   "Unauthenticated",
	codeForbidden:         "Forbidden",
	codeNotFound:          "Not found",
	codeConflict:          "Conflict",
	codeAlreadyRegistered: "Already registered",
	codeStale:             "Stale",
	codeTooLarge:          "Request too large",
	codeInternal:          "Internal error",
	codeLedgerMismatch:    "Event log tampered with",
}

// statusOfCode is the status of each code of the command service
// (commands.Code).
var statusOfCode = map[string]int{
	codeInvalid:           http.StatusBadRequest,
	codeNotFound:          http.StatusNotFound,
	codeForbidden:         http.StatusForbidden,
	codeConflict:          http.StatusConflict,
	codeAlreadyRegistered: http.StatusConflict,
}

// problemFor maps any error to its problem. It is the only place that
// decides the status and code of an error; an internal error's detail never
// includes the error's text.
func problemFor(err error) Problem {
	status, code, detail := http.StatusInternalServerError, codeInternal, "internal error"
	var he *httpError
	var mbe *http.MaxBytesError
	var mna errMethodNotAllowed
	var mismatch *queries.Mismatch
	var notFound *queries.NotFound
	switch {
	case errors.As(err, &he):
		status, code, detail = he.status, he.code, he.detail
	case errors.As(err, &mismatch):
		status, code, detail = http.StatusServiceUnavailable, codeLedgerMismatch, mismatch.Error()
	case errors.As(err, &notFound):
		status, code, detail = http.StatusNotFound, codeNotFound, notFound.Error()
	case errors.Is(err, queries.ErrLedgerOff):
		status, code, detail = errLedgerOff.status, errLedgerOff.code, errLedgerOff.detail
	case errors.As(err, &mna):
		status, code, detail = http.StatusMethodNotAllowed, codeInvalid, mna.Error()
	case errors.As(err, &mbe):
		status, code, detail = http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, auth.ErrUnauthenticated):
		status, code, detail = http.StatusUnauthorized, codeUnauthenticated, err.Error()
	case errors.Is(err, queries.ErrStale):
		status, code, detail = http.StatusServiceUnavailable, codeStale, err.Error()
	case errors.Is(err, queries.ErrNotReady):
		status, code, detail = errNotReady.status, errNotReady.code, errNotReady.detail
	case errors.Is(err, eventlog.ErrInvalidPosition):
		status, code, detail = http.StatusBadRequest, codeInvalid, "invalid position token"
	case errors.Is(err, idempotency.ErrKeyReused):
		status, code, detail = http.StatusUnprocessableEntity, codeInvalid,
			"this Idempotency-Key was used for a different request"
	case errors.Is(err, idempotency.ErrInProgress):
		status, code, detail = http.StatusConflict, codeConflict,
			"a request with this Idempotency-Key is still in progress; retry later"
	case errors.Is(err, idempotency.ErrInvalidKey):
		status, code, detail = http.StatusBadRequest, codeInvalid,
			fmt.Sprintf("invalid Idempotency-Key: 1 to %d visible ASCII characters", idempotency.MaxKeyBytes)
	case errors.Is(err, eventlog.ErrUnavailable):
		status, code, detail = http.StatusServiceUnavailable, codeInternal,
			"the event store is unavailable; retry later (with the same Idempotency-Key)"
	case errors.Is(err, queries.ErrLedgerMismatch):
		status, code, detail = http.StatusServiceUnavailable, codeLedgerMismatch,
			"the stored event log disagrees with the ledger; this server answers no decisions until the log is investigated (accessd ledger verify)"
	case errors.Is(err, queries.ErrLedgerNotVerified):
		status, code, detail = errLedgerNotVerified.status, errLedgerNotVerified.code, errLedgerNotVerified.detail
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status, code, detail = http.StatusServiceUnavailable, codeInternal, "the request was cancelled or timed out"
	default:
		if c := commands.Code(err); c != codeInternal {
			if st, ok := statusOfCode[c]; ok {
				status, code, detail = st, c, err.Error()
			}
		}
	}
	p := Problem{Type: problemTypePrefix + code, Title: titles[code], Status: status, Detail: detail, Code: api.ProblemCode(code)}
	var taken *domain.AlreadyRegistered
	if code == codeAlreadyRegistered && errors.As(err, &taken) {
		p.ChildID = &taken.ChildID
	}
	return p
}

// writeProblem answers err as a problem and returns its status and body.
// Errors with a 5xx status are logged with their full text.
func (s *server) writeProblem(w http.ResponseWriter, r *http.Request, err error) (int, []byte) {
	p := problemFor(err)
	h := w.Header()
	switch p.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="accessledger"`)
	case http.StatusMethodNotAllowed:
		var mna errMethodNotAllowed
		if errors.As(err, &mna) {
			h.Set("Allow", mna.allow)
		}
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", strconv.Itoa(1))
	}
	if ri := info(r.Context()); ri != nil {
		ri.code = string(p.Code)
	}
	if p.Status >= 500 && p.Status != http.StatusServiceUnavailable {
		logger(r.Context(), s.log).ErrorContext(r.Context(), "request failed",
			"status", p.Status, "code", p.Code, "error", err.Error())
	}
	body, merr := json.Marshal(p)
	if merr != nil { // cannot happen: a Problem is plain strings and an int
		body = []byte(`{"type":"urn:accessledger:problem:internal","title":"Internal error","status":500,"detail":"internal error","code":"internal"}`)
	}
	h.Set("Content-Type", problemContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	body = append(body, '\n')
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
	return p.Status, body
}
