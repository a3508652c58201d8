package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/accessledger/accessledger/adapters/exportcsv"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
	"github.com/google/uuid"
)

// The query handlers: each reads and checks its parameters, asks the
// query service (which authorizes the caller, waits for the consistency
// token and reads its read model) and answers the wire type it returns.

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// answer writes a query's answer, or returns its error for writeProblem.
func answerJSON[T any](w http.ResponseWriter, v T, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// consistency reads min_position: the caller's consistency token.
func consistency(q query) (queries.Consistency, error) {
	p, given, err := q.position("min_position")
	return queries.Consistency{Min: p, Given: given}, err
}

// check is GET /v1/check.
func (s *server) check(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var p queries.CheckParams
	var err error
	if p.Account, _, err = q.uuid("account_id", true); err != nil {
		return err
	}
	child, hasChild, err := q.uuid("child_id", false)
	if err != nil {
		return err
	}
	carer, hasCarer, err := q.uuid("carer_id", false)
	if err != nil {
		return err
	}
	if hasChild == hasCarer {
		return errInvalid("give exactly one of child_id and carer_id")
	}
	p.Child, p.Carer = child, carer
	if !q.has("permission") {
		return errInvalid("permission: required (view, record or complete_outstanding)")
	}
	if p.Permission, err = domain.ParsePermission(q.str("permission")); err != nil {
		return errInvalid("permission: must be view, record or complete_outstanding")
	}
	if p.At, err = q.optTime("at"); err != nil {
		return err
	}
	if p.Consistency, err = consistency(q); err != nil {
		return err
	}
	a, err := s.cfg.Queries.Check(r.Context(), c.caller, p)
	return answerJSON(w, a, err)
}

// atAndConsistency reads at= and min_position=.
func atAndConsistency(q query) (time.Time, queries.Consistency, error) {
	at, err := q.optTime("at")
	if err != nil {
		return at, queries.Consistency{}, err
	}
	w, err := consistency(q)
	return at, w, err
}

// accountChildren is GET /v1/accounts/{account_id}/children.
func (s *server) accountChildren(w http.ResponseWriter, r *http.Request, c call) error {
	acct, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	at, cw, err := atAndConsistency(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.AccountChildren(r.Context(), c.caller, acct, at, cw)
	return answerJSON(w, a, err)
}

// childViewers is GET /v1/children/{child_id}/viewers.
func (s *server) childViewers(w http.ResponseWriter, r *http.Request, c call) error {
	child, err := pathUUID(r, "child_id")
	if err != nil {
		return err
	}
	at, cw, err := atAndConsistency(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.ChildViewers(r.Context(), c.caller, child, at, cw)
	return answerJSON(w, a, err)
}

// historyParams reads at=, as_of=, known_at= and min_position= of a
// history query.
func historyParams(q query) (p queries.HistoryParams, err error) {
	if p.At, err = q.optTime("at"); err != nil {
		return p, err
	}
	if p.Consistency, err = consistency(q); err != nil {
		return p, err
	}
	if p.AsOf, p.HasAs, err = q.position("as_of"); err != nil {
		return p, err
	}
	if p.KnownAt, err = q.optTime("known_at"); err != nil {
		return p, err
	}
	if p.HasAs && !p.KnownAt.IsZero() {
		return p, errInvalid("as_of and known_at: give one of them")
	}
	return p, nil
}

// childHistory is GET /v1/children/{child_id}/history (R15).
func (s *server) childHistory(w http.ResponseWriter, r *http.Request, c call) error {
	child, err := pathUUID(r, "child_id")
	if err != nil {
		return err
	}
	p, err := historyParams(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.ChildHistory(r.Context(), c.caller, child, p)
	return answerJSON(w, a, err)
}

// accountHistory is GET /v1/accounts/{account_id}/history.
func (s *server) accountHistory(w http.ResponseWriter, r *http.Request, c call) error {
	acct, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	p, err := historyParams(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.AccountHistory(r.Context(), c.caller, acct, p)
	return answerJSON(w, a, err)
}

// getChild is GET /v1/children/{child_id}: the child's record (R17).
func (s *server) getChild(w http.ResponseWriter, r *http.Request, c call) error {
	child, err := pathUUID(r, "child_id")
	if err != nil {
		return err
	}
	at, _, err := atAndConsistency(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.GetChild(r.Context(), c.caller, child, at)
	return answerJSON(w, a, err)
}

// getAccount is GET /v1/accounts/{account_id}.
func (s *server) getAccount(w http.ResponseWriter, r *http.Request, c call) error {
	acct, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	at, cw, err := atAndConsistency(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.GetAccount(r.Context(), c.caller, acct, at, cw)
	return answerJSON(w, a, err)
}

// listAccounts is GET /v1/accounts: one page of accounts, in account id
// order, filtered; or the account of one email or identity subject.
func (s *server) listAccounts(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var p queries.ListAccountsParams
	var err error
	if p.Filter.At, err = q.optTime("at"); err != nil {
		return err
	}
	if q.has("status") {
		switch st := domain.AccountStatus(q.str("status")); st {
		case domain.StatusInvited, domain.StatusActive, domain.StatusExpired, domain.StatusClosed:
			p.Filter.Status = st
		default:
			return errInvalid("status: must be invited, active, expired or closed")
		}
	}
	if q.has("kind") {
		k, err := domain.ParseAccountKind(q.str("kind"))
		if err != nil {
			return errInvalid("kind: must be foster_carer, parent, guardian or network_member")
		}
		p.Filter.Kind = k
	}
	if p.Filter.NeedsPhoneEnrolment, err = q.boolPtr("needs_phone_enrolment"); err != nil {
		return err
	}
	if p.Filter.PhoneResetRequested, err = q.boolPtr("phone_reset_requested"); err != nil {
		return err
	}
	if p.Filter.After, _, err = q.uuid("after", false); err != nil {
		return err
	}
	limit, err := q.int64In("limit", queries.AccountsDefaultLimit, 1, queries.AccountsMaxLimit)
	if err != nil {
		return err
	}
	p.Filter.Limit = int(limit)
	p.HasEmail, p.HasIdentity = q.has("email"), q.has("identity_subject")
	p.Email, p.IdentitySubject = q.str("email"), q.str("identity_subject")
	if p.HasEmail && p.HasIdentity {
		return errInvalid("give at most one of email and identity_subject")
	}
	if (p.HasEmail || p.HasIdentity) && len(q.v) > 1+boolInt(q.has("at"))+boolInt(q.has("min_position")) {
		return errInvalid("email and identity_subject take no other filter (only at and min_position)")
	}
	if p.Consistency, err = consistency(q); err != nil {
		return err
	}
	a, err := s.cfg.Queries.ListAccounts(r.Context(), c.caller, p)
	return answerJSON(w, a, err)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// auditList is GET /v1/audit.
func (s *server) auditList(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var err error
	var f queries.AuditFilter
	if id, ok, err := q.uuid("child_id", false); err != nil {
		return err
	} else if ok {
		f.ChildID = &id
	}
	if id, ok, err := q.uuid("account_id", false); err != nil {
		return err
	} else if ok {
		f.AccountID = &id
	}
	if q.has("actor") {
		if f.Actor = q.str("actor"); f.Actor == "" {
			return errInvalid("actor: must not be empty")
		}
	}
	var cw queries.Consistency
	if f.From, f.To, err = q.timeRange(); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return errInvalid("to: must not be before from")
	}
	if f.After, f.Limit, cw, err = q.page(queries.AuditDefaultLimit, queries.AuditMaxLimit); err != nil {
		return err
	}
	a, err := s.cfg.Queries.AuditList(r.Context(), c.caller, f, cw)
	return answerJSON(w, a, err)
}

// auditVerify is GET /v1/audit/verify: it recomputes the whole hash chain.
func (s *server) auditVerify(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var opts queries.AuditVerifyOptions
	if q.has("anchor_seq") || q.has("anchor_hash") {
		if !q.has("anchor_seq") || !q.has("anchor_hash") {
			return errInvalid("give both anchor_seq and anchor_hash, or neither")
		}
		seq, err := q.int64In("anchor_seq", 0, 1, 1<<62)
		if err != nil {
			return err
		}
		h := q.str("anchor_hash")
		if len(h) != 64 || !isLowerHex(h) {
			return errInvalid("anchor_hash: must be 64 lower-case hexadecimal digits")
		}
		opts.Anchor = &queries.AuditAnchor{Seq: seq, Hash: h}
	}
	cw, err := consistency(q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.AuditVerify(r.Context(), c.caller, opts, cw)
	return answerJSON(w, a, err)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// securityLog is GET /v1/security-log: refused commands and queries, newest
// first.
func (s *server) securityLog(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var err error
	f := queries.SecurityFilter{Actor: q.str("actor"), Command: q.str("command"), Code: q.str("code")}
	var cw queries.Consistency
	if f.From, f.To, err = q.timeRange(); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return errInvalid("to: must be after from")
	}
	if f.After, f.Limit, cw, err = q.page(queries.SecurityLogDefaultLimit, queries.SecurityLogMaxLimit); err != nil {
		return err
	}
	a, err := s.cfg.Queries.SecurityLogPage(r.Context(), c.caller, f, cw)
	return answerJSON(w, a, err)
}

// policy is GET /v1/policy (R16, R25): the policy settings, in whole
// seconds, in force now or at at=, with the event that set them.
func (s *server) policy(w http.ResponseWriter, r *http.Request, c call) error {
	at, cw, err := atAndConsistency(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.Policy(r.Context(), c.caller, cw, at)
	return answerJSON(w, a, err)
}

// healthz is GET /healthz: the process is up.
func (s *server) healthz(w http.ResponseWriter, r *http.Request, c call) error {
	return writeJSON(w, http.StatusOK, api.Status{Status: api.StatusStatusOk})
}

// readyz is GET /readyz: 200 once the read models and the index have caught
// up with the event log and the ledger (when there is one) has verified the
// log, else 503 "stale"; 503 "ledger_mismatch" naming the first bad
// position once the ledger has found the log tampered with.
func (s *server) readyz(w http.ResponseWriter, r *http.Request, c call) error {
	if err := s.ledgerFault(); err != nil {
		return err
	}
	if !s.cfg.Ready() {
		return errNotReady
	}
	return writeJSON(w, http.StatusOK, api.Status{Status: api.StatusStatusReady})
}

// timeRange reads from= and to= (zero when absent).
func (q query) timeRange() (from, to time.Time, err error) {
	if from, err = q.optTime("from"); err != nil {
		return from, to, err
	}
	to, err = q.optTime("to")
	return from, to, err
}

// page reads a list's cursor (after=, from 0), its page size (limit=, def
// when absent, 1 to max) and min_position.
func (q query) page(def, max int) (after int64, limit int, w queries.Consistency, err error) {
	if after, err = q.int64In("after", 0, 0, 1<<62); err != nil {
		return after, limit, w, err
	}
	n, err := q.int64In("limit", int64(def), 1, int64(max))
	if err != nil {
		return after, limit, w, err
	}
	w, err = consistency(q)
	return after, int(n), w, err
}

// exportFormat reads format= of an export: json (the default) or csv.
func exportFormat(q query) (csv bool, err error) {
	switch q.str("format") {
	case "", "json":
		return false, nil
	case "csv":
		return true, nil
	}
	return false, errInvalid("format: must be json or csv")
}

// writeExport answers an export as an attachment: x as JSON, or the zip
// of CSV files write makes of it.
func writeExport[T any](w http.ResponseWriter, name string, x T, asCSV bool, write func(io.Writer, T) error) error {
	if !asCSV {
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.json"`)
		return writeJSON(w, http.StatusOK, x)
	}
	body, err := exportcsv.Bytes(x, write)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.zip"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// export answers GET …/{param}/export (R21): the export ask makes of the
// id in the path, as JSON or as the zip of CSV files write makes of it,
// named "<kind>-<id>-export".
func export[T any](w http.ResponseWriter, r *http.Request, c call, param, kind string,
	ask func(ctx context.Context, c queries.Caller, id uuid.UUID, w queries.Consistency) (T, error),
	write func(io.Writer, T) error) error {
	id, err := pathUUID(r, param)
	if err != nil {
		return err
	}
	asCSV, err := exportFormat(c.q)
	if err != nil {
		return err
	}
	cw, err := consistency(c.q)
	if err != nil {
		return err
	}
	x, err := ask(r.Context(), c.caller, id, cw)
	if err != nil {
		return err
	}
	return writeExport(w, kind+"-"+id.String()+"-export", x, asCSV, write)
}

// accountExport is GET /v1/accounts/{account_id}/export (R21).
func (s *server) accountExport(w http.ResponseWriter, r *http.Request, c call) error {
	return export(w, r, c, "account_id", "account", s.cfg.Queries.AccountExport, exportcsv.AccountZip)
}

// childExport is GET /v1/children/{child_id}/export (R21).
func (s *server) childExport(w http.ResponseWriter, r *http.Request, c call) error {
	return export(w, r, c, "child_id", "child", s.cfg.Queries.ChildExport, exportcsv.ChildZip)
}

// listChildren is GET /v1/children?reference= (R17).
// listReviews is GET /v1/reviews (R19).
func (s *server) listReviews(w http.ResponseWriter, r *http.Request, c call) error {
	cw, err := consistency(c.q)
	if err != nil {
		return err
	}
	p := queries.ListReviewsParams{Consistency: cw, WorkerID: c.q.str("worker_id"), After: c.q.str("after")}
	if p.DueBefore, err = c.q.optTime("due_before"); err != nil {
		return err
	}
	limit, err := c.q.int64In("limit", queries.DefaultReviewsLimit, 1, queries.MaxReviewsLimit)
	if err != nil {
		return err
	}
	p.Limit = int(limit)
	a, err := s.cfg.Queries.ListReviews(r.Context(), c.caller, p)
	return answerJSON(w, a, err)
}

func (s *server) listChildren(w http.ResponseWriter, r *http.Request, c call) error {
	cw, err := consistency(c.q)
	if err != nil {
		return err
	}
	p := queries.ListChildrenParams{Consistency: cw}
	switch has := c.q.has("reference"); {
	case has == c.q.has("allocated_to"):
		return errInvalid("give one of reference and allocated_to")
	case has:
		if p.Reference = c.q.str("reference"); p.Reference == "" {
			return errInvalid("reference: required")
		}
	default:
		p.AllocatedTo = c.q.str("allocated_to")
		if p.After, _, err = c.q.uuid("after", false); err != nil {
			return err
		}
		limit, err := c.q.int64In("limit", queries.DefaultChildrenLimit, 1, queries.MaxChildrenLimit)
		if err != nil {
			return err
		}
		p.Limit = int(limit)
	}
	a, err := s.cfg.Queries.ListChildren(r.Context(), c.caller, p)
	return answerJSON(w, a, err)
}
