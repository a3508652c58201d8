package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Client is a small typed client of the accessledger HTTP API
// (/work/shared/design/api.md). One method per endpoint; every method sends
// the bearer token, decodes the JSON answer into its typed result and keeps
// the answer's bytes in the result's Raw field.
//
// Errors:
//   - an answer with status >= 400 is returned as *Problem: the server's
//     application/problem+json body, or, when the body is not a problem
//     document (a proxy's HTML page), a Problem made from the status;
//   - a request that got no answer (connection refused, timeout) is returned
//     as *NetworkError;
//   - anything else (an unreadable 2xx answer) as a plain error.
//
// Retries: a request that got no answer, or got 502, 503 or 504, is sent
// again up to MaxAttempts times in all, with the same Idempotency-Key, so a
// command is never carried out twice (the server answers a retried key
// with the first answer). Retries stop when ctx is done.
//
// A Client is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client

	// MaxAttempts is how many times a request is sent at most (default 3).
	MaxAttempts int
	// RetryWait is the pause before the second attempt; it doubles for
	// each further attempt (default 250ms).
	RetryWait time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// MaxAnswerBytes bounds how much of an answer the client reads.
const MaxAnswerBytes = 64 << 20

// NewClient returns a client of the server at base (http or https, with an
// optional path prefix) that authenticates with token. httpClient may be
// nil for a default one without a timeout of its own: bound requests with
// their ctx.
func NewClient(base, token string, httpClient *http.Client) (*Client, error) {
	u, err := parseServerURL(base)
	if err != nil {
		return nil, err
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	return &Client{base: u, token: token, http: httpClient, MaxAttempts: 3,
		RetryWait: 250 * time.Millisecond, UserAgent: "accessctl"}, nil
}

// parseServerURL checks a server address: an absolute http(s) URL without
// query or fragment.
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)", redactURL(s))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server %q must not have a query or fragment", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// redactURL hides a password in a URL that may not even parse.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "xxxxx" + s[i:]
		}
	}
	return s
}

// checkToken refuses a token that cannot be a bearer token, without ever
// repeating it.
func checkToken(token string) error {
	if token == "" {
		return errors.New("the token is empty")
	}
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			return errors.New(`the token contains spaces or control characters (give the token alone, without "Bearer ")`)
		}
	}
	return nil
}

// Server is the server's address, with any password redacted.
func (c *Client) Server() string { return c.base.Redacted() }

// ---------------------------------------------------------------------------
// Errors

// Problem is an RFC 9457 problem document, the body of every error answer
// (application/problem+json). Code is one of invalid, unauthenticated,
// forbidden, not_found, conflict, already_registered, stale, too_large,
// internal, ledger_mismatch.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code,omitempty"`
	// Instance is the problem's optional instance URI.
	Instance string `json:"instance,omitempty"`
}

// Error renders the problem as "<title>: <detail> (code <code>, status
// <status>)", leaving out the parts the server did not send.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.Title)
	if p.Detail != "" && p.Detail != p.Title {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	switch {
	case p.Code != "":
		fmt.Fprintf(&b, " (code %s, status %d)", p.Code, p.Status)
	default:
		fmt.Fprintf(&b, " (status %d)", p.Status)
	}
	return b.String()
}

// NetworkError is a request that got no answer from the server.
type NetworkError struct {
	Server  string        // the server's address (redacted)
	Timeout time.Duration // the deadline that passed, when it was a timeout
	Err     error
}

func (e *NetworkError) Error() string {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		if e.Timeout > 0 {
			return fmt.Sprintf("no answer from %s within %s (see --timeout)", e.Server, e.Timeout)
		}
		return fmt.Sprintf("no answer from %s in time", e.Server)
	}
	if errors.Is(e.Err, context.Canceled) {
		return fmt.Sprintf("request to %s cancelled", e.Server)
	}
	err := e.Err
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Sprintf("cannot reach the server at %s: %v", e.Server, err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// ---------------------------------------------------------------------------
// Answer types

// Position is a consistency token: every command answers with the position
// of its last event, every query with the position it was computed at.
// Queries accept one as min_position. It is opaque; the server may send it
// as a JSON string or number.
type Position string

// UnmarshalJSON accepts a string, a number or null.
func (p *Position) UnmarshalJSON(b []byte) error {
	s, err := tokenString(b)
	*p = Position(s)
	return err
}

// Cursor is the audit trail's paging cursor (GET /v1/audit's "next", sent
// back as after=); empty when there are no more entries.
type Cursor string

// UnmarshalJSON accepts a string, a number or null.
func (c *Cursor) UnmarshalJSON(b []byte) error {
	s, err := tokenString(b)
	*c = Cursor(s)
	return err
}

func tokenString(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		return "", nil
	case len(b) > 0 && b[0] == '"':
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return "", fmt.Errorf("token %s is neither a string nor a number", b)
	}
	return n.String(), nil
}

// rawAnswer keeps an answer's JSON exactly as the server sent it, in the
// field Raw of every answer type.
type rawAnswer struct {
	Raw json.RawMessage `json:"-"`
	// Replayed is set when the server answered a command with the stored
	// answer of an earlier request with the same Idempotency-Key (header
	// Idempotent-Replayed: true): the command was not carried out again.
	Replayed bool `json:"-"`
}

func (r *rawAnswer) setRaw(b []byte, replayed bool) { r.Raw, r.Replayed = b, replayed }

// CommandResult answers every command that reports only its position.
type CommandResult struct {
	rawAnswer
	Position Position `json:"position"`
}

// ChildRegistered answers RegisterChild.
type ChildRegistered struct {
	rawAnswer
	ChildID  uuid.UUID `json:"child_id"`
	Position Position  `json:"position"`
}

// Invited answers Invite.
type Invited struct {
	rawAnswer
	AccountID uuid.UUID `json:"account_id"`
	ExpiresAt time.Time `json:"expires_at"`
	Position  Position  `json:"position"`
}

// PlacementStarted answers StartPlacement.
type PlacementStarted struct {
	rawAnswer
	PlacementID uuid.UUID `json:"placement_id"`
	Position    Position  `json:"position"`
}

// PlacementEnded answers EndPlacement.
type PlacementEnded struct {
	rawAnswer
	GraceUntil time.Time `json:"grace_until"`
	Position   Position  `json:"position"`
}

// CheckResult answers Check. Until is when the access ends (nil: no end
// known).
type CheckResult struct {
	rawAnswer
	Allowed bool `json:"allowed"`
	// Permissions are all the account holds on the record (the server
	// may leave them out).
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
	Position    Position   `json:"position"`
}

// ChildAccess is one child an account may see.
type ChildAccess struct {
	ChildID     uuid.UUID  `json:"child_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
}

// ChildrenResult answers Children.
type ChildrenResult struct {
	rawAnswer
	Children []ChildAccess `json:"children"`
	Position Position      `json:"position"`
}

// Viewer is one account that may see a child.
type Viewer struct {
	AccountID   uuid.UUID  `json:"account_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	Until       *time.Time `json:"until"`
}

// ViewersResult answers Viewers.
type ViewersResult struct {
	rawAnswer
	Viewers  []Viewer `json:"viewers"`
	Position Position `json:"position"`
}

// EventRef names the event that opened or closed a history interval. The
// server may send an event id alone (a string) or an object; the known
// fields of an object are kept.
type EventRef struct {
	EventID   string `json:"event_id"`
	Type      string `json:"type"`
	Actor     string `json:"actor"`
	ActorRole string `json:"actor_role"`
}

// UnmarshalJSON accepts null, an event id string, or an object with
// event_id (or id), type, actor (or actor_id) and actor_role.
func (e *EventRef) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*e = EventRef{}
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		*e = EventRef{}
		return json.Unmarshal(b, &e.EventID)
	}
	var o struct {
		EventID   string `json:"event_id"`
		ID        string `json:"id"`
		Type      string `json:"type"`
		Actor     string `json:"actor"`
		ActorID   string `json:"actor_id"`
		ActorRole string `json:"actor_role"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*e = EventRef{EventID: firstNonEmpty(o.EventID, o.ID), Type: o.Type,
		Actor: firstNonEmpty(o.Actor, o.ActorID), ActorRole: o.ActorRole}
	return nil
}

// Interval is one interval in which an account could see a child.
type Interval struct {
	AccountID   uuid.UUID  `json:"account_id"`
	Permissions []string   `json:"permissions"`
	Reason      string     `json:"reason"`
	From        time.Time  `json:"from"`
	To          *time.Time `json:"to"`
	OpenedBy    *EventRef  `json:"opened_by_event"`
	ClosedBy    *EventRef  `json:"closed_by_event"`
}

// HistoryResult answers History.
type HistoryResult struct {
	rawAnswer
	Intervals []Interval `json:"intervals"`
	Position  Position   `json:"position"`
}

// Account answers GetAccount. Status is invited, active, expired or closed.
type Account struct {
	rawAnswer
	AccountID           uuid.UUID `json:"account_id"`
	Kind                string    `json:"kind"`
	Status              string    `json:"status"`
	NeedsPhoneEnrolment bool      `json:"needs_phone_enrolment"`
	PhoneHint           string    `json:"phone_hint"`
	Position            Position  `json:"position"`
}

// AuditEntry is one entry of the hash-chained audit trail.
type AuditEntry struct {
	Seq         int64           `json:"seq"`
	EventID     string          `json:"event_id"`
	Type        string          `json:"type"`
	Stream      string          `json:"stream"`
	Actor       string          `json:"actor"`
	ActorRole   string          `json:"actor_role"`
	Reason      string          `json:"reason"`
	EffectiveAt time.Time       `json:"effective_at"`
	RecordedAt  time.Time       `json:"recorded_at"`
	Data        json.RawMessage `json:"data"`
	PrevHash    string          `json:"prev_hash"`
	Hash        string          `json:"hash"`
}

// AuditPage answers Audit: one page of entries, and the cursor of the next
// page (empty on the last one).
type AuditPage struct {
	rawAnswer
	Entries  []AuditEntry `json:"entries"`
	Next     Cursor       `json:"next"`
	Position Position     `json:"position"`
}

// Broken names the first entry of the audit trail that failed a check.
type Broken struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// UnmarshalJSON accepts an object {seq, reason} or a bare seq number.
func (b *Broken) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] != '{' {
		*b = Broken{}
		return json.Unmarshal(data, &b.Seq)
	}
	type plain Broken
	return json.Unmarshal(data, (*plain)(b))
}

// VerifyResult answers VerifyAudit. Entries counts the intact entries;
// FirstBroken is nil when OK.
type VerifyResult struct {
	rawAnswer
	OK          bool     `json:"ok"`
	Entries     int64    `json:"entries"`
	HeadHash    string   `json:"head_hash"`
	FirstBroken *Broken  `json:"first_broken"`
	Position    Position `json:"position"`
}

// SecurityEntry is one refused command of the security log. api.md names
// its content (who, what, why refused, when) but not its fields; the
// client reads the server's (at, actor_id, actor_role, command, target,
// code, detail) and accepts likely alternatives.
type SecurityEntry struct {
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	ActorRole string    `json:"actor_role"`
	Command   string    `json:"command"`
	Target    string    `json:"target"`
	Code      string    `json:"code"`
	Detail    string    `json:"detail"`
}

// UnmarshalJSON reads at (or when), actor (or actor_id), actor_role,
// command, target, code and detail (or reason).
func (s *SecurityEntry) UnmarshalJSON(b []byte) error {
	var o struct {
		At        *time.Time `json:"at"`
		When      *time.Time `json:"when"`
		Actor     string     `json:"actor"`
		ActorID   string     `json:"actor_id"`
		ActorRole string     `json:"actor_role"`
		Command   string     `json:"command"`
		Target    string     `json:"target"`
		Code      string     `json:"code"`
		Detail    string     `json:"detail"`
		Reason    string     `json:"reason"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*s = SecurityEntry{Actor: firstNonEmpty(o.Actor, o.ActorID), ActorRole: o.ActorRole,
		Command: o.Command, Target: o.Target, Code: o.Code, Detail: firstNonEmpty(o.Detail, o.Reason)}
	switch {
	case o.At != nil:
		s.At = *o.At
	case o.When != nil:
		s.At = *o.When
	}
	return nil
}

// SecurityLog answers SecurityLog.
type SecurityLog struct {
	rawAnswer
	Entries  []SecurityEntry `json:"entries"`
	Next     Cursor          `json:"next"`
	Position Position        `json:"position"`
}

// Duration is a policy duration. The server sends whole seconds (a
// number); a Go duration string ("168h0m0s") or an ISO 8601 duration
// ("P7D", "PT15M") is accepted too.
type Duration time.Duration

// UnmarshalJSON accepts the forms Duration lists.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*d = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := parseDuration(s)
		*d = Duration(v)
		return err
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s is neither a string nor a number of seconds", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// parseDuration parses a Go duration or an ISO 8601 duration of days,
// hours, minutes and seconds (PnDTnHnMnS, PnW).
func parseDuration(s string) (time.Duration, error) {
	if v, err := time.ParseDuration(s); err == nil {
		return v, nil
	}
	bad := fmt.Errorf("duration %q is neither a Go nor an ISO 8601 duration", s)
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok || rest == "" {
		return 0, bad
	}
	var total time.Duration
	inTime, parts, timeParts := false, 0, 0
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, bad
			}
			inTime, rest = true, rest[1:]
			continue
		}
		i := strings.IndexAny(rest, "WDHMS")
		if i <= 0 {
			return 0, bad
		}
		num := rest[:i]
		if strings.Trim(num, "0123456789.") != "" {
			return 0, bad
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, bad
		}
		var unit time.Duration
		switch {
		case rest[i] == 'W' && !inTime:
			unit = 7 * 24 * time.Hour
		case rest[i] == 'D' && !inTime:
			unit = 24 * time.Hour
		case rest[i] == 'H' && inTime:
			unit = time.Hour
		case rest[i] == 'M' && inTime:
			unit = time.Minute
		case rest[i] == 'S' && inTime:
			unit = time.Second
		default:
			return 0, bad
		}
		total += time.Duration(n * float64(unit))
		rest = rest[i+1:]
		parts++
		if inTime {
			timeParts++
		}
	}
	if parts == 0 || (inTime && timeParts == 0) {
		return 0, bad
	}
	return total, nil
}

// TextAnswer is a text/plain answer (the ledger's checkpoint and public
// key): Raw holds its bytes as the server sent them.
type TextAnswer struct{ rawAnswer }

func (*TextAnswer) plainText() {}

// InclusionProof answers InclusionProof: the proof that the leaf of event
// EventID, at LeafIndex, is in the ledger's tree of TreeSize leaves, and the
// leaf's bytes (LeafData, whose RFC 6962 leaf hash is LeafHash). Hashes are
// in standard base64, as tlog.ParseHash reads them.
type InclusionProof struct {
	rawAnswer
	LeafIndex int64     `json:"leaf_index"`
	TreeSize  int64     `json:"tree_size"`
	LeafHash  string    `json:"leaf_hash"`
	Hashes    []string  `json:"hashes"`
	Position  Position  `json:"position"`
	EventID   uuid.UUID `json:"event_id"`
	LeafData  []byte    `json:"leaf_data"`
}

// ConsistencyProof answers ConsistencyProof: the proof that the ledger's
// tree of FromSize leaves is a prefix of its tree of ToSize leaves.
type ConsistencyProof struct {
	rawAnswer
	FromSize int64    `json:"from_size"`
	ToSize   int64    `json:"to_size"`
	Hashes   []string `json:"hashes"`
}

// Policy answers Policy (R16).
type Policy struct {
	rawAnswer
	GracePeriod         Duration `json:"grace_period"`
	InvitationTTL       Duration `json:"invitation_ttl"`
	SessionIdleTimeout  Duration `json:"session_idle_timeout"`
	SessionWarningAfter Duration `json:"session_warning_after"`
	Position            Position `json:"position"`
}

// ---------------------------------------------------------------------------
// Requests

// Invitation is the body of Invite. Kind is foster_carer, parent, guardian
// or network_member.
type Invitation struct {
	Email string `json:"email"`
	Kind  string `json:"kind"`
}

// Placement is the body of StartPlacement.
type Placement struct {
	CarerAccountID uuid.UUID `json:"carer_account_id"`
	StartedAt      time.Time `json:"started_at"`
}

// PlacementEnd is the body of EndPlacement.
type PlacementEnd struct {
	EndedAt time.Time `json:"ended_at"`
	Reason  string    `json:"reason"`
}

// GrantRequest is the body of Grant. Relationship is parent, guardian or
// network_member; Permissions a subset of view, record.
type GrantRequest struct {
	AccountID    uuid.UUID `json:"account_id"`
	Relationship string    `json:"relationship"`
	Permissions  []string  `json:"permissions"`
	Reason       string    `json:"reason"`
}

// reasonBody is the body of every command that carries only a reason.
type reasonBody struct {
	Reason string `json:"reason"`
}

// CheckQuery asks whether AccountID has Permission on ChildID's record, or
// on the carer record of CarerID (exactly one of them is set), at At (zero:
// now), once the server has caught up with MinPosition (empty: no wait).
type CheckQuery struct {
	AccountID   uuid.UUID
	ChildID     uuid.UUID
	CarerID     uuid.UUID
	Permission  string
	At          time.Time
	MinPosition Position
}

// AuditFilter selects audit entries; zero fields do not filter. After is
// the cursor of the page to read (a previous page's Next); Limit the page
// size (0: the server's default).
type AuditFilter struct {
	ChildID     uuid.UUID
	AccountID   uuid.UUID
	Actor       string
	From, To    time.Time
	After       Cursor
	Limit       int
	MinPosition Position
}

// HistoryQuery asks for a child's access history: every interval, or with
// At those that contain that effective time (who could see the child then,
// R15); with AsOf, as the engine knew it at that position.
type HistoryQuery struct {
	ChildID     uuid.UUID
	At          time.Time
	AsOf        Position
	MinPosition Position
}

// Anchor is an audit entry's hash kept from an earlier verify.
type Anchor struct {
	Seq  int64
	Hash string // 64 lower-case hex digits
}

// InclusionQuery names the event whose inclusion to prove: by EventID or
// by Position (exactly one), in the tree of TreeSize leaves (0: the
// current checkpoint's).
type InclusionQuery struct {
	EventID  uuid.UUID
	Position Position
	TreeSize int64
}

// SecurityFilter selects security log entries; zero fields do not filter.
type SecurityFilter struct {
	Actor, Command, Code string
	From, To             time.Time
	After                Cursor
	Limit                int
	MinPosition          Position
}

// ---------------------------------------------------------------------------
// Commands. key is the Idempotency-Key ("" sends none).

// RegisterChild is POST /v1/children.
func (c *Client) RegisterChild(ctx context.Context, key, reference string) (*ChildRegistered, error) {
	var a ChildRegistered
	return &a, c.do(ctx, http.MethodPost, "/v1/children", nil, key, map[string]string{"reference": reference}, &a)
}

// AllocateWorker is POST /v1/children/{child_id}/allocation.
func (c *Client) AllocateWorker(ctx context.Context, key string, child uuid.UUID, workerID string) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/children/"+child.String()+"/allocation", nil, key,
		map[string]string{"worker_id": workerID}, &a)
}

// Invite is POST /v1/invitations.
func (c *Client) Invite(ctx context.Context, key string, inv Invitation) (*Invited, error) {
	var a Invited
	return &a, c.do(ctx, http.MethodPost, "/v1/invitations", nil, key, inv, &a)
}

// StartPlacement is POST /v1/children/{child_id}/placements.
func (c *Client) StartPlacement(ctx context.Context, key string, child uuid.UUID, p Placement) (*PlacementStarted, error) {
	var a PlacementStarted
	p.StartedAt = p.StartedAt.UTC()
	return &a, c.do(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements", nil, key, p, &a)
}

// EndPlacement is POST /v1/children/{child_id}/placements/{placement_id}/end.
func (c *Client) EndPlacement(ctx context.Context, key string, child, placement uuid.UUID, e PlacementEnd) (*PlacementEnded, error) {
	var a PlacementEnded
	e.EndedAt = e.EndedAt.UTC()
	return &a, c.do(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements/"+placement.String()+"/end",
		nil, key, e, &a)
}

// EndGrace is POST /v1/children/{child_id}/placements/{placement_id}/end-grace.
func (c *Client) EndGrace(ctx context.Context, key string, child, placement uuid.UUID, reason string) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements/"+placement.String()+"/end-grace",
		nil, key, reasonBody{reason}, &a)
}

// Grant is POST /v1/children/{child_id}/grants.
func (c *Client) Grant(ctx context.Context, key string, child uuid.UUID, g GrantRequest) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/children/"+child.String()+"/grants", nil, key, g, &a)
}

// Revoke is POST /v1/children/{child_id}/grants/{account_id}/revoke.
func (c *Client) Revoke(ctx context.Context, key string, child, account uuid.UUID, reason string) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/children/"+child.String()+"/grants/"+account.String()+"/revoke",
		nil, key, reasonBody{reason}, &a)
}

// RequestPhoneReset is POST /v1/accounts/{account_id}/phone-reset-requests.
func (c *Client) RequestPhoneReset(ctx context.Context, key string, account uuid.UUID, reason string) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/phone-reset-requests", nil, key,
		reasonBody{reason}, &a)
}

// ClearPhone is POST /v1/accounts/{account_id}/phone/clear.
func (c *Client) ClearPhone(ctx context.Context, key string, account uuid.UUID) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/phone/clear", nil, key, struct{}{}, &a)
}

// CloseAccount is POST /v1/accounts/{account_id}/close.
func (c *Client) CloseAccount(ctx context.Context, key string, account uuid.UUID, reason string) (*CommandResult, error) {
	var a CommandResult
	return &a, c.do(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/close", nil, key, reasonBody{reason}, &a)
}

// ---------------------------------------------------------------------------
// Queries

// Check is GET /v1/check.
func (c *Client) Check(ctx context.Context, q CheckQuery) (*CheckResult, error) {
	v := url.Values{"account_id": {q.AccountID.String()}, "permission": {q.Permission}}
	if q.CarerID != uuid.Nil {
		v.Set("carer_id", q.CarerID.String())
	} else {
		v.Set("child_id", q.ChildID.String())
	}
	setTime(v, "at", q.At)
	setMin(v, q.MinPosition)
	var a CheckResult
	return &a, c.do(ctx, http.MethodGet, "/v1/check", v, "", nil, &a)
}

// Children is GET /v1/accounts/{account_id}/children: the children account
// may see at at (zero: now).
func (c *Client) Children(ctx context.Context, account uuid.UUID, at time.Time, minPosition Position) (*ChildrenResult, error) {
	v := url.Values{}
	setTime(v, "at", at)
	setMin(v, minPosition)
	var a ChildrenResult
	return &a, c.do(ctx, http.MethodGet, "/v1/accounts/"+account.String()+"/children", v, "", nil, &a)
}

// Viewers is GET /v1/children/{child_id}/viewers: who may see child at at
// (zero: now).
func (c *Client) Viewers(ctx context.Context, child uuid.UUID, at time.Time, minPosition Position) (*ViewersResult, error) {
	v := url.Values{}
	setTime(v, "at", at)
	setMin(v, minPosition)
	var a ViewersResult
	return &a, c.do(ctx, http.MethodGet, "/v1/children/"+child.String()+"/viewers", v, "", nil, &a)
}

// History is GET /v1/children/{child_id}/history.
func (c *Client) History(ctx context.Context, q HistoryQuery) (*HistoryResult, error) {
	v := url.Values{}
	setTime(v, "at", q.At)
	if q.AsOf != "" {
		v.Set("as_of", string(q.AsOf))
	}
	setMin(v, q.MinPosition)
	var a HistoryResult
	return &a, c.do(ctx, http.MethodGet, "/v1/children/"+q.ChildID.String()+"/history", v, "", nil, &a)
}

// GetAccount is GET /v1/accounts/{account_id}: the account as of at (zero:
// now).
func (c *Client) GetAccount(ctx context.Context, account uuid.UUID, at time.Time, minPosition Position) (*Account, error) {
	v := url.Values{}
	setTime(v, "at", at)
	setMin(v, minPosition)
	var a Account
	return &a, c.do(ctx, http.MethodGet, "/v1/accounts/"+account.String(), v, "", nil, &a)
}

// Audit is GET /v1/audit: one page of the audit trail.
func (c *Client) Audit(ctx context.Context, f AuditFilter) (*AuditPage, error) {
	v := url.Values{}
	if f.ChildID != uuid.Nil {
		v.Set("child_id", f.ChildID.String())
	}
	if f.AccountID != uuid.Nil {
		v.Set("account_id", f.AccountID.String())
	}
	if f.Actor != "" {
		v.Set("actor", f.Actor)
	}
	setTime(v, "from", f.From)
	setTime(v, "to", f.To)
	if f.After != "" {
		v.Set("after", string(f.After))
	}
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	setMin(v, f.MinPosition)
	var a AuditPage
	return &a, c.do(ctx, http.MethodGet, "/v1/audit", v, "", nil, &a)
}

// VerifyAudit is GET /v1/audit/verify. A broken trail is an answer (OK
// false), not an error. With an anchor (a head hash kept from an earlier
// verify), the server also checks that entry anchor.Seq still has that
// hash, so a rewrite of the whole chain is detected too.
func (c *Client) VerifyAudit(ctx context.Context, anchor *Anchor, minPosition Position) (*VerifyResult, error) {
	v := url.Values{}
	if anchor != nil {
		v.Set("anchor_seq", strconv.FormatInt(anchor.Seq, 10))
		v.Set("anchor_hash", anchor.Hash)
	}
	setMin(v, minPosition)
	var a VerifyResult
	return &a, c.do(ctx, http.MethodGet, "/v1/audit/verify", v, "", nil, &a)
}

// SecurityLog is GET /v1/security-log: one page of refused commands.
func (c *Client) SecurityLog(ctx context.Context, f SecurityFilter) (*SecurityLog, error) {
	v := url.Values{}
	for name, val := range map[string]string{"actor": f.Actor, "command": f.Command, "code": f.Code, "after": string(f.After)} {
		if val != "" {
			v.Set(name, val)
		}
	}
	setTime(v, "from", f.From)
	setTime(v, "to", f.To)
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	setMin(v, f.MinPosition)
	var a SecurityLog
	return &a, c.do(ctx, http.MethodGet, "/v1/security-log", v, "", nil, &a)
}

// Policy is GET /v1/policy.
func (c *Client) Policy(ctx context.Context, minPosition Position) (*Policy, error) {
	v := url.Values{}
	setMin(v, minPosition)
	var a Policy
	return &a, c.do(ctx, http.MethodGet, "/v1/policy", v, "", nil, &a)
}

// LedgerCheckpoint is GET /v1/ledger/checkpoint: the ledger's current
// signed checkpoint, a signed note (open it with the ledger's key).
func (c *Client) LedgerCheckpoint(ctx context.Context) (*TextAnswer, error) {
	var a TextAnswer
	return &a, c.do(ctx, http.MethodGet, "/v1/ledger/checkpoint", nil, "", nil, &a)
}

// LedgerPublicKey is GET /v1/ledger/public-key: the verifier key of the
// ledger's checkpoints, one line.
func (c *Client) LedgerPublicKey(ctx context.Context) (*TextAnswer, error) {
	var a TextAnswer
	return &a, c.do(ctx, http.MethodGet, "/v1/ledger/public-key", nil, "", nil, &a)
}

// InclusionProof is GET /v1/ledger/proof/inclusion.
func (c *Client) InclusionProof(ctx context.Context, q InclusionQuery) (*InclusionProof, error) {
	v := url.Values{}
	if q.EventID != uuid.Nil {
		v.Set("event_id", q.EventID.String())
	} else {
		v.Set("position", string(q.Position))
	}
	if q.TreeSize > 0 {
		v.Set("tree_size", strconv.FormatInt(q.TreeSize, 10))
	}
	var a InclusionProof
	return &a, c.do(ctx, http.MethodGet, "/v1/ledger/proof/inclusion", v, "", nil, &a)
}

// ConsistencyProof is GET /v1/ledger/proof/consistency from the tree of from
// leaves to the tree of to leaves (0: the current checkpoint's size).
func (c *Client) ConsistencyProof(ctx context.Context, from, to int64) (*ConsistencyProof, error) {
	v := url.Values{"from_size": {strconv.FormatInt(from, 10)}}
	if to > 0 {
		v.Set("to_size", strconv.FormatInt(to, 10))
	}
	var a ConsistencyProof
	return &a, c.do(ctx, http.MethodGet, "/v1/ledger/proof/consistency", v, "", nil, &a)
}

func setTime(v url.Values, name string, t time.Time) {
	if !t.IsZero() {
		v.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
}

func setMin(v url.Values, p Position) {
	if p != "" {
		v.Set("min_position", string(p))
	}
}

// ---------------------------------------------------------------------------
// Transport

type rawSetter interface{ setRaw(b []byte, replayed bool) }

// plainText marks an answer that is text/plain, kept as sent, not JSON.
type plainText interface{ plainText() }

// do sends one request (retrying as the Client doc says) and decodes a 2xx
// JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, key string, body any, out rawSetter) error {
	u := *c.base
	u.Path = c.base.Path + path
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode the request: %w", err)
		}
	}
	attempts := max(c.MaxAttempts, 1)
	wait := c.RetryWait
	var err error
	for attempt := 1; ; attempt++ {
		var retry bool
		retry, err = c.once(ctx, method, u.String(), key, payload, out)
		if !retry || attempt >= attempts || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait *= 2
	}
}

// once sends one attempt; retry reports whether another attempt may help.
func (c *Client) once(ctx context.Context, method, target, key string, payload []byte, out rawSetter) (retry bool, err error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return false, fmt.Errorf("build the request: %w", err)
	}
	_, text := out.(plainText)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if text {
		req.Header.Set("Accept", "text/plain, application/problem+json")
	} else {
		req.Header.Set("Accept", "application/json, application/problem+json")
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		d, _ := ctx.Value(timeoutKey{}).(time.Duration)
		return true, &NetworkError{Server: c.Server(), Timeout: d, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return true, &NetworkError{Server: c.Server(), Err: err}
	}
	if len(data) > MaxAnswerBytes {
		return false, fmt.Errorf("the answer of %s %s is larger than %d bytes", method, redactURL(target), MaxAnswerBytes)
	}
	if resp.StatusCode >= 400 {
		p := problemOf(resp, data)
		retry = resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
			resp.StatusCode == http.StatusGatewayTimeout
		// A tampered log does not heal by retrying.
		return retry && p.Code != "ledger_mismatch", p
	}
	if text {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/plain" {
			return false, fmt.Errorf("unreadable answer from %s %s (status %d): %s, not text/plain", method, redactURL(target), resp.StatusCode,
				firstNonEmpty(mt, "no content type"))
		}
		out.setRaw(data, false)
		return false, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("unreadable answer from %s %s (status %d): %w", method, redactURL(target), resp.StatusCode, err)
	}
	out.setRaw(data, strings.EqualFold(resp.Header.Get("Idempotent-Replayed"), "true"))
	return false, nil
}

// timeoutKey carries the --timeout of a context made by withTimeout, so a
// NetworkError can name it.
type timeoutKey struct{}

// withTimeout is context.WithTimeout that remembers d for error messages.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.WithValue(ctx, timeoutKey{}, d), d)
}

// problemOf reads an error answer: the problem document when the body is
// one, else a Problem made from the status and the start of the body.
func problemOf(resp *http.Response, data []byte) *Problem {
	var p Problem
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(data, &p) == nil && p.Title != "" {
		if p.Status == 0 {
			p.Status = resp.StatusCode
		}
		return &p
	}
	p = Problem{Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode}
	if p.Title == "" {
		p.Title = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	detail := strings.TrimSpace(string(data))
	if i := strings.IndexByte(detail, '\n'); i >= 0 {
		detail = strings.TrimSpace(detail[:i])
	}
	if len(detail) > 200 {
		detail = detail[:200] + "…"
	}
	if mt != "" && mt != "text/plain" {
		detail = "" // an HTML page says nothing useful on one line
	}
	p.Detail = detail
	return &p
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
