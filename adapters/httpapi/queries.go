package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/securitylog"
)

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

// optTime is a time that is null when zero.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func permissionNames(p domain.PermissionSet) []string { return p.Names() }

// now is the default decision time: the clock, in UTC, to the microsecond
// (the precision of every stored time).
func (s *server) now() time.Time { return s.cfg.Clock().UTC().Truncate(time.Microsecond) }

// ---- index queries ----

type checkAnswer struct {
	Allowed     bool       `json:"allowed"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
	At          time.Time  `json:"at"`
	Position    string     `json:"position"`
}

// check is GET /v1/check.
func (s *server) check(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	acct, _, err := q.uuid("account_id", true)
	if err != nil {
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
	if !q.has("permission") {
		return errInvalid("permission: required (view, record or complete_outstanding)")
	}
	perm, err := domain.ParsePermission(q.str("permission"))
	if err != nil {
		return errInvalid("permission: must be view, record or complete_outstanding")
	}
	at, err := q.timeOr("at", s.now())
	if err != nil {
		return err
	}
	if err := s.waitIndex(r.Context(), q); err != nil {
		return err
	}
	var a accessindex.Answer
	if hasChild {
		a = s.cfg.Index.Check(acct, child, perm, at)
	} else {
		a = s.cfg.Index.CheckCarer(acct, carer, perm, at)
	}
	return writeJSON(w, http.StatusOK, checkAnswer{Allowed: a.Allowed, Permissions: permissionNames(a.Permissions),
		Reason: string(a.Reason), Until: optTime(a.Until), At: at.UTC(), Position: a.Position.String()})
}

type childEntry struct {
	ChildID     uuid.UUID  `json:"child_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
}

type childrenAnswer struct {
	AccountID uuid.UUID    `json:"account_id"`
	At        time.Time    `json:"at"`
	Children  []childEntry `json:"children"`
	Position  string       `json:"position"`
}

// accountChildren is GET /v1/accounts/{account_id}/children.
func (s *server) accountChildren(w http.ResponseWriter, r *http.Request, c call) error {
	acct, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	q := c.q
	at, err := q.timeOr("at", s.now())
	if err != nil {
		return err
	}
	if err := s.waitIndex(r.Context(), q); err != nil {
		return err
	}
	entries, pos := s.cfg.Index.ChildrenOf(acct, at)
	out := childrenAnswer{AccountID: acct, At: at.UTC(), Children: make([]childEntry, 0, len(entries)), Position: pos.String()}
	for _, e := range entries {
		out.Children = append(out.Children, childEntry{ChildID: e.Child, Permissions: permissionNames(e.Permissions),
			Reason: string(e.Reason), Until: optTime(e.Until)})
	}
	return writeJSON(w, http.StatusOK, out)
}

type viewerEntry struct {
	AccountID   uuid.UUID  `json:"account_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
}

type viewersAnswer struct {
	ChildID  uuid.UUID     `json:"child_id"`
	At       time.Time     `json:"at"`
	Viewers  []viewerEntry `json:"viewers"`
	Position string        `json:"position"`
}

// childViewers is GET /v1/children/{child_id}/viewers.
func (s *server) childViewers(w http.ResponseWriter, r *http.Request, c call) error {
	child, err := pathUUID(r, "child_id")
	if err != nil {
		return err
	}
	q := c.q
	at, err := q.timeOr("at", s.now())
	if err != nil {
		return err
	}
	if err := s.waitIndex(r.Context(), q); err != nil {
		return err
	}
	entries, pos := s.cfg.Index.ViewersOf(child, at)
	out := viewersAnswer{ChildID: child, At: at.UTC(), Viewers: make([]viewerEntry, 0, len(entries)), Position: pos.String()}
	for _, e := range entries {
		out.Viewers = append(out.Viewers, viewerEntry{AccountID: e.Account, Permissions: permissionNames(e.Permissions),
			Reason: string(e.Reason), Until: optTime(e.Until)})
	}
	return writeJSON(w, http.StatusOK, out)
}

// ---- access history ----

type eventRef struct {
	EventID   uuid.UUID `json:"event_id"`
	Type      string    `json:"type"`
	Actor     string    `json:"actor"`
	ActorRole string    `json:"actor_role"`
	Position  string    `json:"position"`
}

func refOf(e *accesshistory.EventRef) *eventRef {
	if e == nil {
		return nil
	}
	return &eventRef{EventID: e.ID, Type: e.Type, Actor: e.ActorID, ActorRole: e.ActorRole, Position: e.Position.String()}
}

type intervalJSON struct {
	AccountID          uuid.UUID  `json:"account_id"`
	ChildID            uuid.UUID  `json:"child_id"`
	Permissions        []string   `json:"permissions"`
	Reason             string     `json:"reason"`
	From               time.Time  `json:"from"`
	To                 *time.Time `json:"to"`
	OpenedByEvent      *eventRef  `json:"opened_by_event"`
	ClosedByEvent      *eventRef  `json:"closed_by_event"`
	RecordedPosition   string     `json:"recorded_position"`
	SupersededPosition *string    `json:"superseded_position"`
}

func intervalsJSON(in []accesshistory.Interval) []intervalJSON {
	out := make([]intervalJSON, 0, len(in))
	for _, iv := range in {
		j := intervalJSON{AccountID: iv.AccountID, ChildID: iv.ChildID, Permissions: permissionNames(iv.Permissions),
			Reason: string(iv.Reason), From: iv.From.UTC(), To: optTime(iv.To),
			OpenedByEvent: refOf(iv.OpenedBy), ClosedByEvent: refOf(iv.ClosedBy), RecordedPosition: iv.RecordedAt.String()}
		if iv.SupersededAt != nil {
			p := iv.SupersededAt.String()
			j.SupersededPosition = &p
		}
		out = append(out, j)
	}
	return out
}

type historyAnswer struct {
	ChildID   *uuid.UUID     `json:"child_id,omitempty"`
	AccountID *uuid.UUID     `json:"account_id,omitempty"`
	At        *time.Time     `json:"at"`
	AsOf      *string        `json:"as_of"`
	Intervals []intervalJSON `json:"intervals"`
	Position  string         `json:"position"`
}

// historyParams reads at=, as_of= and min_position= of a history query and
// waits for the access history read model: as_of implies min_position, as
// the knowledge at a position is complete only once the read model has
// applied it.
func (s *server) historyParams(r *http.Request, c call) (at time.Time, known accesshistory.Known, pos eventlog.Position, err error) {
	q := c.q
	if at, err = q.optTime("at"); err != nil {
		return
	}
	min, given, err := minPosition(q)
	if err != nil {
		return
	}
	asOf, hasAsOf, err := q.position("as_of")
	if err != nil {
		return
	}
	if hasAsOf {
		known = accesshistory.AsOf(asOf)
		if !given || min.Before(asOf) {
			min, given = asOf, true
		}
	}
	pos, err = s.waitProjection(r.Context(), accesshistory.Name, min, given)
	return
}

func historyAnswerOf(at time.Time, known accesshistory.Known, ivs []accesshistory.Interval, pos eventlog.Position) historyAnswer {
	h := historyAnswer{At: optTime(at), Intervals: intervalsJSON(ivs), Position: pos.String()}
	if known.AsOf != nil {
		p := known.AsOf.String()
		h.AsOf = &p
	}
	return h
}

// childHistory is GET /v1/children/{child_id}/history: every interval in
// which someone could see the child (R15), or, with at=, the intervals that
// contain that effective time; with as_of=, as known at that position.
func (s *server) childHistory(w http.ResponseWriter, r *http.Request, c call) error {
	child, err := pathUUID(r, "child_id")
	if err != nil {
		return err
	}
	at, known, pos, err := s.historyParams(r, c)
	if err != nil {
		return err
	}
	var ivs []accesshistory.Interval
	if at.IsZero() {
		ivs, err = accesshistory.ChildHistory(r.Context(), s.cfg.ReadDB, child, known)
	} else {
		ivs, err = accesshistory.WhoCouldSee(r.Context(), s.cfg.ReadDB, child, at, known)
	}
	if err != nil {
		return err
	}
	h := historyAnswerOf(at, known, ivs, pos)
	h.ChildID = &child
	return writeJSON(w, http.StatusOK, h)
}

// accountHistory is GET /v1/accounts/{account_id}/history: every interval
// in which the account could see a child's record, or with at= those that
// contain that effective time; with as_of=, as known at that position.
func (s *server) accountHistory(w http.ResponseWriter, r *http.Request, c call) error {
	acct, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	at, known, pos, err := s.historyParams(r, c)
	if err != nil {
		return err
	}
	var ivs []accesshistory.Interval
	if at.IsZero() {
		ivs, err = accesshistory.AccountHistory(r.Context(), s.cfg.ReadDB, acct, known)
	} else {
		ivs, err = accesshistory.WhatCouldSee(r.Context(), s.cfg.ReadDB, acct, at, known)
	}
	if err != nil {
		return err
	}
	h := historyAnswerOf(at, known, ivs, pos)
	h.AccountID = &acct
	return writeJSON(w, http.StatusOK, h)
}

// ---- accounts ----

type accountAnswer struct {
	AccountID           uuid.UUID  `json:"account_id"`
	Kind                string     `json:"kind"`
	Status              string     `json:"status"`
	NeedsPhoneEnrolment bool       `json:"needs_phone_enrolment"`
	PhoneHint           *string    `json:"phone_hint"`
	InvitedAt           time.Time  `json:"invited_at"`
	ExpiresAt           time.Time  `json:"expires_at"`
	ActivatedAt         *time.Time `json:"activated_at"`
	ClosedAt            *time.Time `json:"closed_at"`
	At                  time.Time  `json:"at"`
	Position            string     `json:"position"`
}

func accountOf(v accounts.View, at time.Time, pos eventlog.Position) accountAnswer {
	a := accountAnswer{AccountID: v.AccountID, Kind: string(v.Kind), Status: string(v.Status),
		NeedsPhoneEnrolment: v.NeedsPhoneEnrolment, InvitedAt: v.InvitedAt.UTC(), ExpiresAt: v.ExpiresAt.UTC(),
		ActivatedAt: optTime(v.ActivatedAt), ClosedAt: optTime(v.ClosedAt), At: at.UTC(), Position: pos.String()}
	if v.PhoneHint != "" {
		h := v.PhoneHint
		a.PhoneHint = &h
	}
	return a
}

// getAccount is GET /v1/accounts/{account_id}.
func (s *server) getAccount(w http.ResponseWriter, r *http.Request, c call) error {
	acct, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	q := c.q
	at, err := q.timeOr("at", s.now())
	if err != nil {
		return err
	}
	min, given, err := minPosition(q)
	if err != nil {
		return err
	}
	pos, err := s.waitProjection(r.Context(), accounts.ProjectionName, min, given)
	if err != nil {
		return err
	}
	v, err := accounts.Get(r.Context(), s.cfg.ReadDB, acct, at)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, accountOf(v, at, pos))
}

type accountListItem struct {
	accountAnswer
	Email               string `json:"email"`
	PhoneResetRequested bool   `json:"phone_reset_requested"`
}

type accountList struct {
	Accounts []accountListItem `json:"accounts"`
	Next     *string           `json:"next"`
	At       time.Time         `json:"at"`
	Position string            `json:"position"`
}

// listAccounts is GET /v1/accounts: one page of accounts, in account id
// order, filtered; or the account of one email or identity subject.
func (s *server) listAccounts(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	at, err := q.timeOr("at", s.now())
	if err != nil {
		return err
	}
	f := accounts.Filter{At: at}
	if q.has("status") {
		switch st := domain.AccountStatus(q.str("status")); st {
		case domain.StatusInvited, domain.StatusActive, domain.StatusExpired, domain.StatusClosed:
			f.Status = st
		default:
			return errInvalid("status: must be invited, active, expired or closed")
		}
	}
	if q.has("kind") {
		k, err := domain.ParseAccountKind(q.str("kind"))
		if err != nil {
			return errInvalid("kind: must be foster_carer, parent, guardian or network_member")
		}
		f.Kind = k
	}
	if f.NeedsPhoneEnrolment, err = q.boolPtr("needs_phone_enrolment"); err != nil {
		return err
	}
	if f.PhoneResetRequested, err = q.boolPtr("phone_reset_requested"); err != nil {
		return err
	}
	if f.After, _, err = q.uuid("after", false); err != nil {
		return err
	}
	limit, err := q.int64In("limit", accounts.DefaultLimit, 1, accounts.MaxLimit)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	byEmail, byIdentity := q.has("email"), q.has("identity_subject")
	if byEmail && byIdentity {
		return errInvalid("give at most one of email and identity_subject")
	}
	if (byEmail || byIdentity) && len(q.v) > 1+boolInt(q.has("at"))+boolInt(q.has("min_position")) {
		return errInvalid("email and identity_subject take no other filter (only at and min_position)")
	}
	min, given, err := minPosition(q)
	if err != nil {
		return err
	}
	pos, err := s.waitProjection(r.Context(), accounts.ProjectionName, min, given)
	if err != nil {
		return err
	}
	out := accountList{Accounts: []accountListItem{}, At: at.UTC(), Position: pos.String()}
	var views []accounts.View
	switch {
	case byEmail || byIdentity:
		var v accounts.View
		if byEmail {
			v, err = accounts.ByEmail(r.Context(), s.cfg.ReadDB, q.str("email"), at)
		} else {
			v, err = accounts.ByIdentity(r.Context(), s.cfg.ReadDB, q.str("identity_subject"), at)
		}
		switch {
		case errors.Is(err, accounts.ErrNotFound):
		case err != nil:
			return err
		default:
			views = append(views, v)
		}
	default:
		var next uuid.UUID
		views, next, err = accounts.List(r.Context(), s.cfg.ReadDB, f)
		if err != nil {
			return err
		}
		if next != uuid.Nil {
			n := next.String()
			out.Next = &n
		}
	}
	for _, v := range views {
		out.Accounts = append(out.Accounts, accountListItem{accountAnswer: accountOf(v, at, pos),
			Email: v.Email, PhoneResetRequested: v.PhoneResetRequested})
	}
	return writeJSON(w, http.StatusOK, out)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- audit trail ----

type auditEntry struct {
	Seq         int64           `json:"seq"`
	EventID     uuid.UUID       `json:"event_id"`
	Type        string          `json:"type"`
	Stream      string          `json:"stream"`
	ChildID     *uuid.UUID      `json:"child_id"`
	AccountID   *uuid.UUID      `json:"account_id"`
	Actor       string          `json:"actor"`
	ActorRole   string          `json:"actor_role"`
	Reason      string          `json:"reason"`
	EffectiveAt time.Time       `json:"effective_at"`
	RecordedAt  time.Time       `json:"recorded_at"`
	Data        json.RawMessage `json:"data"`
	LeafIndex   int64           `json:"leaf_index"`
	LeafHash    string          `json:"leaf_hash"`
	PrevHash    string          `json:"prev_hash"`
	Hash        string          `json:"hash"`
	Position    string          `json:"position"`
}

type auditAnswer struct {
	Entries  []auditEntry `json:"entries"`
	Next     *string      `json:"next"`
	Position string       `json:"position"`
}

func cursor(n int64) *string {
	if n == 0 {
		return nil
	}
	c := strconv.FormatInt(n, 10)
	return &c
}

// auditList is GET /v1/audit.
func (s *server) auditList(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var err error
	var f audit.Filter
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
	if f.From, err = q.optTime("from"); err != nil {
		return err
	}
	if f.To, err = q.optTime("to"); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return errInvalid("to: must not be before from")
	}
	if f.After, err = q.int64In("after", 0, 0, 1<<62); err != nil {
		return err
	}
	limit, err := q.int64In("limit", audit.DefaultLimit, 1, audit.MaxLimit)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	min, given, err := minPosition(q)
	if err != nil {
		return err
	}
	pos, err := s.waitProjection(r.Context(), audit.Name, min, given)
	if err != nil {
		return err
	}
	entries, next, err := audit.List(r.Context(), s.cfg.ReadDB, f)
	if errors.Is(err, audit.ErrInvalidFilter) {
		return errInvalid("%v", err)
	}
	if err != nil {
		return err
	}
	out := auditAnswer{Entries: make([]auditEntry, 0, len(entries)), Next: cursor(next), Position: pos.String()}
	for _, e := range entries {
		out.Entries = append(out.Entries, auditEntry{Seq: e.Seq, EventID: e.EventID, Type: e.Type, Stream: e.Stream,
			ChildID: e.ChildID, AccountID: e.AccountID, Actor: e.Actor, ActorRole: e.ActorRole, Reason: e.Reason,
			EffectiveAt: e.EffectiveAt.UTC(), RecordedAt: e.RecordedAt.UTC(), Data: e.Data, LeafIndex: e.LeafIndex, LeafHash: e.LeafHash, PrevHash: e.PrevHash,
			Hash: e.Hash, Position: e.Position.String()})
	}
	return writeJSON(w, http.StatusOK, out)
}

type verifyAnswer struct {
	audit.Result
	Position string `json:"position"`
}

// auditVerify is GET /v1/audit/verify: it recomputes the whole hash chain.
func (s *server) auditVerify(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var opts audit.VerifyOptions
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
		opts.Anchor = &audit.Anchor{Seq: seq, Hash: h}
	}
	min, given, err := minPosition(q)
	if err != nil {
		return err
	}
	pos, err := s.waitProjection(r.Context(), audit.Name, min, given)
	if err != nil {
		return err
	}
	res, err := audit.Verify(r.Context(), s.cfg.ReadDB, opts)
	if errors.Is(err, audit.ErrInvalidOptions) {
		return errInvalid("%v", err)
	}
	if errors.Is(err, audit.ErrVersion) {
		return errNotReady // the trail is being rebuilt for a new version
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, verifyAnswer{Result: res, Position: pos.String()})
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

// ---- security log ----

type securityEntry struct {
	ID            int64      `json:"id"`
	At            time.Time  `json:"at"`
	ActorID       string     `json:"actor_id"`
	ActorRole     string     `json:"actor_role"`
	Command       string     `json:"command"`
	Target        string     `json:"target"`
	Code          string     `json:"code"`
	Detail        string     `json:"detail"`
	RequestID     string     `json:"request_id"`
	CorrelationID *uuid.UUID `json:"correlation_id"`
}

type securityAnswer struct {
	Entries  []securityEntry `json:"entries"`
	Next     *string         `json:"next"`
	Position string          `json:"position"`
}

// securityLog is GET /v1/security-log: refused commands and queries, newest
// first. The log is not derived from the event log; its "position" is the
// access index's, and min_position waits for the index.
func (s *server) securityLog(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	var err error
	f := securitylog.Filter{Actor: q.str("actor"), Command: q.str("command"), Code: q.str("code")}
	if f.From, err = q.optTime("from"); err != nil {
		return err
	}
	if f.To, err = q.optTime("to"); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return errInvalid("to: must be after from")
	}
	if f.After, err = q.int64In("after", 0, 0, 1<<62); err != nil {
		return err
	}
	limit, err := q.int64In("limit", securitylog.DefaultLimit, 1, securitylog.MaxLimit)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	if err := s.waitIndex(r.Context(), q); err != nil {
		return err
	}
	pos := s.cfg.Index.Position()
	entries, next, err := s.seclog.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := securityAnswer{Entries: make([]securityEntry, 0, len(entries)), Next: cursor(next), Position: pos.String()}
	for _, e := range entries {
		se := securityEntry{ID: e.ID, At: e.At.UTC(), ActorID: e.ActorID, ActorRole: e.ActorRole, Command: e.Command,
			Target: e.Target, Code: e.Code, Detail: e.Detail, RequestID: e.RequestID}
		if e.CorrelationID != uuid.Nil {
			c := e.CorrelationID
			se.CorrelationID = &c
		}
		out.Entries = append(out.Entries, se)
	}
	return writeJSON(w, http.StatusOK, out)
}

// ---- policy and operations ----

type policyAnswer struct {
	GracePeriod         int64  `json:"grace_period"`
	InvitationTTL       int64  `json:"invitation_ttl"`
	SessionIdleTimeout  int64  `json:"session_idle_timeout"`
	SessionWarningAfter int64  `json:"session_warning_after"`
	Position            string `json:"position"`
}

// policy is GET /v1/policy (R16): the policy settings, in whole seconds.
func (s *server) policy(w http.ResponseWriter, r *http.Request, c call) error {
	q := c.q
	if err := s.waitIndex(r.Context(), q); err != nil {
		return err
	}
	p := s.cfg.Policy
	return writeJSON(w, http.StatusOK, policyAnswer{
		GracePeriod: seconds(p.GracePeriod), InvitationTTL: seconds(p.InvitationTTL),
		SessionIdleTimeout: seconds(p.SessionIdleTimeout), SessionWarningAfter: seconds(p.SessionWarningAfter),
		Position: s.cfg.Index.Position().String()})
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

type statusAnswer struct {
	Status string `json:"status"`
}

// healthz is GET /healthz: the process is up.
func (s *server) healthz(w http.ResponseWriter, r *http.Request, c call) error {
	return writeJSON(w, http.StatusOK, statusAnswer{Status: "ok"})
}

// readyz is GET /readyz: 200 once the read models and the index have caught
// up with the event log and the ledger (when there is one) has verified the
// log, else 503 "stale"; 503 "ledger_mismatch" naming the first bad
// position once the ledger has found the log tampered with.
func (s *server) readyz(w http.ResponseWriter, r *http.Request, c call) error {
	if err := s.ledgerErr(); err != nil {
		return s.ledgerError(err)
	}
	if !s.cfg.Ready() {
		return errNotReady
	}
	return writeJSON(w, http.StatusOK, statusAnswer{Status: "ready"})
}
