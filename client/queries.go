package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
)

// The queries (docs/openapi.yaml, tag queries). Each sends the client's
// consistency token as min_position (see the package documentation), or
// the one given with MinPosition.

func (c *Client) query(ctx context.Context, path string, v url.Values, out any, opts []CallOption) error {
	return c.do(ctx, request{method: http.MethodGet, path: path, query: v, query_: true}, out, opts)
}

func setTime(v url.Values, name string, t time.Time) {
	if !t.IsZero() {
		v.Set(name, rfc3339(t))
	}
}

func setID(v url.Values, name string, id uuid.UUID) {
	if id != uuid.Nil {
		v.Set(name, id.String())
	}
}

func setText(v url.Values, name, s string) {
	if s != "" {
		v.Set(name, s)
	}
}

func setLimit(v url.Values, n int) {
	if n > 0 {
		v.Set("limit", strconv.Itoa(n))
	}
}

// CheckQuery asks whether Account may do Permission on Child's record, or
// on the carer record of Carer (exactly one of them is set), at At (zero:
// now).
type CheckQuery struct {
	Account    uuid.UUID
	Child      uuid.UUID
	Carer      uuid.UUID
	Permission api.Permission
	At         time.Time
}

// Check is GET /v1/check.
func (c *Client) Check(ctx context.Context, q CheckQuery, opts ...CallOption) (api.CheckAnswer, error) {
	v := url.Values{"account_id": {q.Account.String()}, "permission": {string(q.Permission)}}
	if q.Carer != uuid.Nil {
		v.Set("carer_id", q.Carer.String())
	} else {
		v.Set("child_id", q.Child.String())
	}
	setTime(v, "at", q.At)
	var a api.CheckAnswer
	return a, c.query(ctx, "/v1/check", v, &a, opts)
}

// CheckItem is one check of Checks: may Account do Permission on Child's
// record, or on the carer record of Carer (exactly one of them is set)?
type CheckItem struct {
	Account    uuid.UUID
	Child      uuid.UUID
	Carer      uuid.UUID
	Permission api.Permission
}

// MaxChecks is the most items one Checks call may send.
const MaxChecks = 1_000

// Checks is POST /v1/checks: every item answered as Check would, in
// order, all at decision time at (zero: now) and at one position (the
// answer's Position). It sends 1 to MaxChecks items (the server refuses
// other counts with ErrInvalid; split a longer list yourself, knowing each
// part has its own position). An item whose account, child or carer the
// server has never seen is answered with reason
// api.CheckResultReasonNotFound, not with ErrNotFound. The consistency
// token travels in the body, as min_position. Being a query, it is retried
// like one.
func (c *Client) Checks(ctx context.Context, items []CheckItem, at time.Time, opts ...CallOption) (api.ChecksAnswer, error) {
	body := api.ChecksRequest{Checks: make([]api.CheckItem, len(items))}
	for i, it := range items {
		ci := api.CheckItem{AccountID: it.Account.String(), Permission: it.Permission}
		if it.Carer != uuid.Nil {
			id := it.Carer.String()
			ci.CarerID = &id
		} else {
			id := it.Child.String()
			ci.ChildID = &id
		}
		body.Checks[i] = ci
	}
	if !at.IsZero() {
		t := rfc3339(at)
		body.At = &t
	}
	if min := c.minPosition(options(opts)); min != "" {
		body.MinPosition = &min
	}
	var a api.ChecksAnswer
	return a, c.do(ctx, request{method: http.MethodPost, path: "/v1/checks", body: body}, &a, opts)
}

// Children is GET /v1/accounts/{account_id}/children: the children account
// may see at at (zero: now), and why.
func (c *Client) Children(ctx context.Context, account uuid.UUID, at time.Time, opts ...CallOption) (api.ChildrenAnswer, error) {
	v := url.Values{}
	setTime(v, "at", at)
	var a api.ChildrenAnswer
	return a, c.query(ctx, "/v1/accounts/"+account.String()+"/children", v, &a, opts)
}

// Viewers is GET /v1/children/{child_id}/viewers: the accounts that may see
// child at at (zero: now), and why.
func (c *Client) Viewers(ctx context.Context, child uuid.UUID, at time.Time, opts ...CallOption) (api.ViewersAnswer, error) {
	v := url.Values{}
	setTime(v, "at", at)
	var a api.ViewersAnswer
	return a, c.query(ctx, "/v1/children/"+child.String()+"/viewers", v, &a, opts)
}

// HistoryQuery narrows a history (R15): At keeps the intervals that
// contain that effective time; AsOf (a position token) asks for the
// history as the engine knew it once that event had been recorded.
//
// KnownAt (not with AsOf) asks for the history as the engine knew it at
// that recorded time.
type HistoryQuery struct {
	At      time.Time
	AsOf    string
	KnownAt time.Time
}

func (q HistoryQuery) values() url.Values {
	v := url.Values{}
	setTime(v, "at", q.At)
	setText(v, "as_of", q.AsOf)
	setTime(v, "known_at", q.KnownAt)
	return v
}

// ChildHistory is GET /v1/children/{child_id}/history: every interval in
// which someone could see the child, with the events behind it.
func (c *Client) ChildHistory(ctx context.Context, child uuid.UUID, q HistoryQuery, opts ...CallOption) (api.ChildHistory, error) {
	var a api.ChildHistory
	return a, c.query(ctx, "/v1/children/"+child.String()+"/history", q.values(), &a, opts)
}

// AccountHistory is GET /v1/accounts/{account_id}/history: every interval
// in which the account could see a child's record.
func (c *Client) AccountHistory(ctx context.Context, account uuid.UUID, q HistoryQuery, opts ...CallOption) (api.AccountHistory, error) {
	var a api.AccountHistory
	return a, c.query(ctx, "/v1/accounts/"+account.String()+"/history", q.values(), &a, opts)
}

// AccountExport is GET /v1/accounts/{account_id}/export: everything the
// engine holds about the account, for a subject access request (auditor,
// dpo; R21). An id never seen is ErrNotFound.
func (c *Client) AccountExport(ctx context.Context, account uuid.UUID, opts ...CallOption) (api.AccountExport, error) {
	var a api.AccountExport
	return a, c.query(ctx, "/v1/accounts/"+account.String()+"/export", nil, &a, opts)
}

// ChildExport is GET /v1/children/{child_id}/export: everything the engine
// holds about the child (R21).
func (c *Client) ChildExport(ctx context.Context, child uuid.UUID, opts ...CallOption) (api.ChildExport, error) {
	var a api.ChildExport
	return a, c.query(ctx, "/v1/children/"+child.String()+"/export", nil, &a, opts)
}

// AccountExportCSV is the account's export with format=csv: a zip of CSV
// files, as sent.
func (c *Client) AccountExportCSV(ctx context.Context, account uuid.UUID, opts ...CallOption) ([]byte, error) {
	return c.exportCSV(ctx, "/v1/accounts/"+account.String()+"/export", opts)
}

// ChildExportCSV is the child's export with format=csv: a zip of CSV
// files, as sent.
func (c *Client) ChildExportCSV(ctx context.Context, child uuid.UUID, opts ...CallOption) ([]byte, error) {
	return c.exportCSV(ctx, "/v1/children/"+child.String()+"/export", opts)
}

func (c *Client) exportCSV(ctx context.Context, path string, opts []CallOption) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, request{method: http.MethodGet, path: path, query: url.Values{"format": {"csv"}}, query_: true,
		raw: "application/zip"}, &b, opts)
}

// ChildByReference is GET /v1/children?reference=: the child registered
// with reference (R17), in a list of one, or none.
func (c *Client) ChildByReference(ctx context.Context, reference string, opts ...CallOption) (api.ChildList, error) {
	var a api.ChildList
	return a, c.query(ctx, "/v1/children", url.Values{"reference": {reference}}, &a, opts)
}

// ChildrenAllocatedTo is GET /v1/children?allocated_to=: one page of the
// children allocated to worker (R17), in id order, from after (uuid.Nil:
// the first page); limit 0 is the server's default page size.
func (c *Client) ChildrenAllocatedTo(ctx context.Context, worker string, after uuid.UUID, limit int, opts ...CallOption) (api.ChildList, error) {
	v := url.Values{"allocated_to": {worker}}
	setID(v, "after", after)
	setLimit(v, limit)
	var a api.ChildList
	return a, c.query(ctx, "/v1/children", v, &a, opts)
}

// Reviews is GET /v1/reviews (R19): one page of the grants due for review,
// or ending, before dueBefore (zero: now), of the children allocated to
// worker ("": the caller's, for a worker; everyone's, for a manager or an
// auditor), from the cursor after ("": the first page); limit 0 is the
// server's default page size.
func (c *Client) Reviews(ctx context.Context, dueBefore time.Time, worker, after string, limit int, opts ...CallOption) (api.ReviewList, error) {
	v := url.Values{}
	setTime(v, "due_before", dueBefore)
	if worker != "" {
		v.Set("worker_id", worker)
	}
	if after != "" {
		v.Set("after", after)
	}
	setLimit(v, limit)
	var a api.ReviewList
	return a, c.query(ctx, "/v1/reviews", v, &a, opts)
}

// Child is GET /v1/children/{child_id}: the child's record, with its
// placements' statuses at at (zero: now). An id never seen is ErrNotFound.
func (c *Client) Child(ctx context.Context, child uuid.UUID, at time.Time, opts ...CallOption) (api.ChildRecord, error) {
	v := url.Values{}
	setTime(v, "at", at)
	var a api.ChildRecord
	return a, c.query(ctx, "/v1/children/"+child.String(), v, &a, opts)
}

// Account is GET /v1/accounts/{account_id}: the account as it stands at at
// (zero: now).
func (c *Client) Account(ctx context.Context, account uuid.UUID, at time.Time, opts ...CallOption) (api.Account, error) {
	v := url.Values{}
	setTime(v, "at", at)
	var a api.Account
	return a, c.query(ctx, "/v1/accounts/"+account.String(), v, &a, opts)
}

// AccountFilter selects accounts for Accounts: Email or IdentitySubject
// finds one account (and takes no other filter); else the other fields
// filter a page, after the account id After (a previous page's Next).
type AccountFilter struct {
	Email, IdentitySubject string
	Status                 api.AccountStatus
	Kind                   api.AccountKind
	NeedsPhoneEnrolment    *bool
	PhoneResetRequested    *bool
	At                     time.Time
	After                  uuid.UUID
	Limit                  int
}

// Accounts is GET /v1/accounts: one page of accounts, or the account of an
// email or identity subject.
func (c *Client) Accounts(ctx context.Context, f AccountFilter, opts ...CallOption) (api.AccountList, error) {
	v := url.Values{}
	setText(v, "email", f.Email)
	setText(v, "identity_subject", f.IdentitySubject)
	setText(v, "status", string(f.Status))
	setText(v, "kind", string(f.Kind))
	for name, b := range map[string]*bool{"needs_phone_enrolment": f.NeedsPhoneEnrolment, "phone_reset_requested": f.PhoneResetRequested} {
		if b != nil {
			v.Set(name, strconv.FormatBool(*b))
		}
	}
	setTime(v, "at", f.At)
	setID(v, "after", f.After)
	setLimit(v, f.Limit)
	var a api.AccountList
	return a, c.query(ctx, "/v1/accounts", v, &a, opts)
}

// AuditFilter selects audit entries; zero fields do not filter. From and
// To bound the recorded time; After is the cursor of the page to read (a
// previous page's Next); Limit the page size (0: the server's default).
type AuditFilter struct {
	Child, Account uuid.UUID
	Actor          string
	From, To       time.Time
	After          string
	Limit          int
}

// Audit is GET /v1/audit: one page of the hash-chained audit trail (R14).
func (c *Client) Audit(ctx context.Context, f AuditFilter, opts ...CallOption) (api.AuditPage, error) {
	v := url.Values{}
	setID(v, "child_id", f.Child)
	setID(v, "account_id", f.Account)
	setText(v, "actor", f.Actor)
	setTime(v, "from", f.From)
	setTime(v, "to", f.To)
	setText(v, "after", f.After)
	setLimit(v, f.Limit)
	var a api.AuditPage
	return a, c.query(ctx, "/v1/audit", v, &a, opts)
}

// Anchor is an audit entry's hash kept from an earlier verify.
type Anchor struct {
	Seq  int64
	Hash string // 64 lower-case hex digits
}

// VerifyAudit is GET /v1/audit/verify. A broken trail is an answer (Ok
// false), not an error. With an anchor (a head hash kept from an earlier
// verify), the server also checks that entry anchor.Seq still has that
// hash, so a rewrite of the whole chain is found too.
func (c *Client) VerifyAudit(ctx context.Context, anchor *Anchor, opts ...CallOption) (api.VerifyResult, error) {
	v := url.Values{}
	if anchor != nil {
		v.Set("anchor_seq", strconv.FormatInt(anchor.Seq, 10))
		v.Set("anchor_hash", anchor.Hash)
	}
	var a api.VerifyResult
	return a, c.query(ctx, "/v1/audit/verify", v, &a, opts)
}

// SecurityFilter selects security log entries; zero fields do not filter.
type SecurityFilter struct {
	Actor, Command, Code string
	From, To             time.Time
	After                string
	Limit                int
}

// SecurityLog is GET /v1/security-log: one page of refused commands and
// queries, newest first (R8).
func (c *Client) SecurityLog(ctx context.Context, f SecurityFilter, opts ...CallOption) (api.SecurityLogPage, error) {
	v := url.Values{}
	setText(v, "actor", f.Actor)
	setText(v, "command", f.Command)
	setText(v, "code", f.Code)
	setText(v, "after", f.After)
	setTime(v, "from", f.From)
	setTime(v, "to", f.To)
	setLimit(v, f.Limit)
	var a api.SecurityLogPage
	return a, c.query(ctx, "/v1/security-log", v, &a, opts)
}

// Policy is GET /v1/policy: the policy settings in force now, in seconds
// (R16), with the event that set them (R25).
func (c *Client) Policy(ctx context.Context, opts ...CallOption) (api.Policy, error) {
	return c.PolicyAt(ctx, time.Time{}, opts...)
}

// PolicyAt is GET /v1/policy?at=: the policy in force at at (zero: now),
// with the event that set it (R25).
func (c *Client) PolicyAt(ctx context.Context, at time.Time, opts ...CallOption) (api.Policy, error) {
	v := url.Values{}
	setTime(v, "at", at)
	var a api.Policy
	return a, c.query(ctx, "/v1/policy", v, &a, opts)
}

// ViewsFilter selects a page of views or alerts (R20): From and To bound
// viewed_at (for alerts, at), After is the "next" of the previous page,
// Limit the page size (0: the server's default).
type ViewsFilter struct {
	From, To time.Time
	After    string
	Limit    int
}

func (f ViewsFilter) values() url.Values {
	v := url.Values{}
	setTime(v, "from", f.From)
	setTime(v, "to", f.To)
	setText(v, "after", f.After)
	setLimit(v, f.Limit)
	return v
}

// RecordViews is POST /v1/views (R20, the service): keeps each view with
// the access decision at its viewed_at, and answers them in order (1 to
// 1,000 views). Views are not idempotent: a request retried after a lost
// answer may keep its views twice, under new ids.
func (c *Client) RecordViews(ctx context.Context, views []api.RecordView, opts ...CallOption) (api.RecordViewsAnswer, error) {
	var a api.RecordViewsAnswer
	return a, c.do(ctx, request{method: http.MethodPost, path: "/v1/views", body: api.RecordViews{Views: views}, query_: true}, &a, opts)
}

// ChildViews is GET /v1/children/{child_id}/views: one page of the views
// of the child's record, oldest first (R20).
func (c *Client) ChildViews(ctx context.Context, child uuid.UUID, f ViewsFilter, opts ...CallOption) (api.ViewPage, error) {
	var a api.ViewPage
	return a, c.query(ctx, "/v1/children/"+child.String()+"/views", f.values(), &a, opts)
}

// AccountViews is GET /v1/accounts/{account_id}/views: one page of the
// views the account made, oldest first (R20).
func (c *Client) AccountViews(ctx context.Context, account uuid.UUID, f ViewsFilter, opts ...CallOption) (api.ViewPage, error) {
	var a api.ViewPage
	return a, c.query(ctx, "/v1/accounts/"+account.String()+"/views", f.values(), &a, opts)
}

// Alerts is GET /v1/alerts: one page of the alerts (views without access),
// oldest first (R20).
func (c *Client) Alerts(ctx context.Context, f ViewsFilter, opts ...CallOption) (api.AlertPage, error) {
	var a api.AlertPage
	return a, c.query(ctx, "/v1/alerts", f.values(), &a, opts)
}
