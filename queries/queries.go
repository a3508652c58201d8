// Package queries is the read side's application layer, beside commands:
// every question the API answers (checks, lists, histories, accounts, the
// audit trail, the security log, a child's record, the policy and the
// watch feed) is a method of Service that
//
//   - decides who may ask it (the roles of docs/openapi.yaml, owned here,
//     not by the transport): a caller whose role may not ask gets an error
//     wrapping ErrForbidden, and the refusal goes to the security log
//     through the same port as refused commands (commands.Refusals);
//   - waits, bounded, for the read model it reads to reach the caller's
//     consistency token (MinPosition), else fails with an error wrapping
//     ErrStale;
//   - reads through the read-model interface it declares (Index, History,
//     Accounts, Audit, SecurityLog, ChildRecords), never a database
//     handle;
//   - answers the API's wire type (package api), ready to encode.
//
// Transports (adapters/httpapi) parse and check their input, call a method
// and turn its error into their own answer; they hold no role rule and no
// read model.
package queries

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
)

// Name names a query: its operationId in docs/openapi.yaml, and, prefixed
// with "query_", the command name of a refusal in the security log.
type Name string

// The queries.
const (
	QueryCheck                  Name = "check"
	QueryChecks                 Name = "checks"
	QueryAccountChildren        Name = "account_children"
	QueryChildViewers           Name = "child_viewers"
	QueryWatch                  Name = "watch"
	QueryChildHistory           Name = "child_history"
	QueryAccountHistory         Name = "account_history"
	QueryGetChild               Name = "get_child"
	QueryGetAccount             Name = "get_account"
	QueryListAccounts           Name = "list_accounts"
	QueryAuditList              Name = "audit_list"
	QueryAuditVerify            Name = "audit_verify"
	QuerySecurityLog            Name = "security_log"
	QueryPolicy                 Name = "policy"
	QueryLedgerCheckpoint       Name = "ledger_checkpoint"
	QueryLedgerPublicKey        Name = "ledger_public_key"
	QueryLedgerInclusionProof   Name = "ledger_inclusion_proof"
	QueryLedgerConsistencyProof Name = "ledger_consistency_proof"
	QueryAccountExport          Name = "account_export"
	QueryChildExport            Name = "child_export"
	QueryListChildren           Name = "list_children"
	QueryListReviews            Name = "list_reviews"
	QueryRecordViews            Name = "record_views"
	QueryChildViews             Name = "child_views"
	QueryAccountViews           Name = "account_views"
	QueryAlerts                 Name = "alerts"
)

// anyone marks a query every authenticated caller may ask.
var anyone []domain.Role

// roles says who may ask each query (api.md); anyone for every
// authenticated caller.
var roles = map[Name][]domain.Role{
	QueryCheck:                  {domain.RoleService, domain.RoleWorker, domain.RoleAuditor},
	QueryChecks:                 {domain.RoleService, domain.RoleWorker, domain.RoleAuditor},
	QueryAccountChildren:        {domain.RoleService, domain.RoleWorker, domain.RoleAuditor},
	QueryChildViewers:           {domain.RoleWorker, domain.RoleAuditor},
	QueryWatch:                  {domain.RoleService, domain.RoleAuditor}, // auditors follow the alerts (R20)
	QueryChildHistory:           {domain.RoleAuditor},
	QueryAccountHistory:         {domain.RoleAuditor},
	QueryGetChild:               {domain.RoleWorker, domain.RoleManager, domain.RoleAuditor, domain.RoleDPO},
	QueryGetAccount:             {domain.RoleService, domain.RoleWorker, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleDPO},
	QueryListAccounts:           {domain.RoleService, domain.RoleWorker, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleDPO},
	QueryAuditList:              {domain.RoleAuditor},
	QueryAuditVerify:            {domain.RoleAuditor},
	QuerySecurityLog:            {domain.RoleAuditor},
	QueryPolicy:                 anyone,
	QueryLedgerCheckpoint:       {domain.RoleAuditor, domain.RoleService},
	QueryLedgerPublicKey:        anyone,
	QueryLedgerInclusionProof:   {domain.RoleAuditor},
	QueryLedgerConsistencyProof: {domain.RoleAuditor},
	QueryAccountExport:          {domain.RoleAuditor, domain.RoleDPO},
	QueryChildExport:            {domain.RoleAuditor, domain.RoleDPO},
	QueryListChildren:           {domain.RoleWorker, domain.RoleManager, domain.RoleAuditor, domain.RoleDPO},
	QueryListReviews:            {domain.RoleWorker, domain.RoleManager, domain.RoleAuditor},
	QueryRecordViews:            {domain.RoleService},
	QueryChildViews:             {domain.RoleAuditor},
	QueryAccountViews:           {domain.RoleAuditor},
	QueryAlerts:                 {domain.RoleAuditor},
}

// Roles returns the roles that may ask q, or nil when every authenticated
// caller may (and for an unknown query).
func Roles(q Name) []domain.Role { return slices.Clone(roles[q]) }

// Known reports whether q is one of the queries.
func Known(q Name) bool {
	_, ok := roles[q]
	return ok
}

// Errors of the queries; match them with errors.Is.
var (
	// ErrForbidden: the caller's role may not ask this query. It wraps
	// domain.ErrRoleNotAllowed, so its kind is forbidden.
	ErrForbidden = fmt.Errorf("queries: %w", domain.ErrRoleNotAllowed)
	// ErrStale: the read model has not reached the caller's MinPosition in
	// time (accessindex.ErrStale, the same sentinel).
	ErrStale = accessindex.ErrStale
	// ErrNotReady: the read model cannot answer yet (the audit trail is
	// being rebuilt for a new version).
	ErrNotReady = errors.New("queries: the read model is not ready")
	// ErrTooOld: a watch after a position the change feed no longer holds
	// (accessindex.ErrTooOld).
	ErrTooOld = accessindex.ErrTooOld
)

// Forbidden is the error of a query refused for the caller's role; it
// wraps ErrForbidden. Its text is safe to show the caller.
type Forbidden struct {
	Role  domain.Role
	Query Name
	// Label is how the caller named the query (e.g. "GET /v1/check").
	Label string
	// Detail, when set, says why instead of the role (a role that may
	// call the query but not with these parameters).
	Detail string
}

func (e *Forbidden) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	return fmt.Sprintf("role %s may not call %s", e.Role, e.Label)
}

func (e *Forbidden) Unwrap() error { return ErrForbidden }

// Invalid is the error of a query whose parameters the read model refuses
// (a filter or option out of range); it wraps domain.ErrInvalid and its
// text is safe to show the caller.
type Invalid struct{ Detail string }

func (e *Invalid) Error() string { return e.Detail }

func (e *Invalid) Unwrap() error { return domain.ErrInvalid }

// Stale is the error of a read model that has not reached the caller's
// MinPosition within the wait; it wraps ErrStale, and its text is for
// people.
type Stale struct {
	What string // "the access index", "the read model audit"
	Min  eventlog.Position
	Wait time.Duration
	Err  error
}

func (e *Stale) Error() string {
	return fmt.Sprintf("%s of this replica has not reached position %s within %s; retry later", e.What, e.Min, e.Wait)
}

func (e *Stale) Unwrap() error { return e.Err }

// Caller is who asks a query, and what for the security log.
type Caller struct {
	Actor domain.Actor
	// RequestID ties a refusal in the security log to the transport's log.
	RequestID string
	// Target is what was asked for (the request path), for the security
	// log.
	Target string
	// Label names the query in a refusal's text (e.g. "GET /v1/check");
	// empty for the query's Name.
	Label string
}

// Consistency is the caller's consistency token: when Given, the answer
// reflects at least every event up to Min, or the query fails with ErrStale.
type Consistency struct {
	Min   eventlog.Position
	Given bool
}

// After returns the token of position p.
func After(p eventlog.Position) Consistency { return Consistency{Min: p, Given: true} }

// Defaults of Config.
const (
	// DefaultMinPositionWait is how long a query waits for its
	// consistency token (architecture decision 6).
	DefaultMinPositionWait = 2 * time.Second
	// projectionPoll is how often a query waiting for a SQL read model
	// looks at the runner's status (the runner offers no notification; the
	// index is waited for first, without polling).
	projectionPoll = 5 * time.Millisecond
)

// Config configures a Service. Index, History, Accounts, Audit,
// SecurityLog, Views, ChildRecords, Refusals and Progress are required;
// Ledger is optional.
type Config struct {
	Index       Index
	History     History
	Accounts    Accounts
	Audit       Audit
	SecurityLog SecurityLog
	// Views keeps the record views and their alerts (R20).
	Views        Views
	ChildRecords ChildRecords
	// ChildIDFor is the id of the child with a reference (R17): the
	// command service's ChildIDFor, keyed by the deployment. Default
	// domain.ChildIDForReference (name-based: services without keyed ids).
	ChildIDFor func(reference string) uuid.UUID
	// Ledger, when set, answers the ledger's queries and LedgerHealth;
	// LedgerLog is required with it. Nil: the engine runs without the
	// ledger and its queries fail with ErrLedgerOff.
	Ledger    Ledger
	LedgerLog LedgerLog
	// Refusals records refused queries: the security log, the port
	// refused commands go through.
	Refusals commands.Refusals
	// Progress returns the SQL read models' state (the projection runner's
	// Status): their positions answer the SQL-backed queries' "position"
	// and their consistency tokens.
	Progress func() []projections.Status
	// Policies, when set, answers the recorded policy (R25):
	// commands.Service, which reads it from the event log.
	Policies Policies
	// Policy is answered by Policy without Policies, or while no policy is
	// recorded (the start-up flags'). Zero durations take
	// domain.DefaultPolicy's.
	Policy domain.Policy
	// Clock is the decision time of queries without one. Default time.Now.
	Clock func() time.Time
	// MinPositionWait bounds the wait for a consistency token. Default
	// DefaultMinPositionWait.
	MinPositionWait time.Duration
	// Logger receives failures to record a refusal. Default slog.Default().
	Logger *slog.Logger
}

// Policies answers the recorded policy in force at a time, with the event
// that set it (R25).
type Policies interface {
	PolicyAt(ctx context.Context, t time.Time) (domain.PolicyRecord, error)
}

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var problems []error
	missing := func(name string, isNil bool) {
		if isNil {
			problems = append(problems, fmt.Errorf("%s is nil", name))
		}
	}
	missing("Index", c.Index == nil)
	missing("History", c.History == nil)
	missing("Accounts", c.Accounts == nil)
	missing("Audit", c.Audit == nil)
	missing("SecurityLog", c.SecurityLog == nil)
	missing("Views", c.Views == nil)
	missing("ChildRecords", c.ChildRecords == nil)
	missing("Refusals", c.Refusals == nil)
	missing("Progress", c.Progress == nil)
	if c.Ledger != nil && c.LedgerLog == nil {
		problems = append(problems, errors.New("LedgerLog is nil (required with Ledger)"))
	}
	if err := c.Policy.WithDefaults().Validate(); err != nil {
		problems = append(problems, fmt.Errorf("policy: %w", err))
	}
	if c.MinPositionWait < 0 {
		problems = append(problems, fmt.Errorf("MinPositionWait %s is negative", c.MinPositionWait))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("queries: invalid config: %w", err)
	}
	return nil
}

// Service answers the queries. It is safe for concurrent use.
type Service struct {
	cfg Config
}

// New returns the query service, or the problems of cfg.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Policy = cfg.Policy.WithDefaults()
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MinPositionWait == 0 {
		cfg.MinPositionWait = DefaultMinPositionWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ChildIDFor == nil {
		cfg.ChildIDFor = domain.ChildIDForReference
	}
	return &Service{cfg: cfg}, nil
}

// Now is the default decision time: the clock, in UTC, to the microsecond
// (the precision of every stored time).
func (s *Service) Now() time.Time { return s.cfg.Clock().UTC().Truncate(time.Microsecond) }

// MinPositionWait is how long a query waits for its consistency token.
func (s *Service) MinPositionWait() time.Duration { return s.cfg.MinPositionWait }

// Authorize decides whether c may ask q; when not, it records the refusal
// in the security log (a failure to record is logged, not returned) and
// returns a *Forbidden. Every query method authorizes its caller itself; a
// transport calls Authorize first only to refuse before it reads the
// request's parameters.
// Allows reports whether role may ask query q, without recording
// anything (Authorize records refusals).
func Allows(q Name, role domain.Role) bool {
	allowed, ok := roles[q]
	return ok && (allowed == nil || slices.Contains(allowed, role))
}

func (s *Service) Authorize(ctx context.Context, q Name, c Caller) error {
	allowed, ok := roles[q]
	if !ok {
		return fmt.Errorf("queries: unknown query %q", q)
	}
	if allowed == nil || slices.Contains(allowed, c.Actor.Role) {
		return nil
	}
	label := c.Label
	if label == "" {
		label = string(q)
	}
	return s.refuse(ctx, q, c, &Forbidden{Role: c.Actor.Role, Query: q, Label: label})
}

// refuse records the refusal err of q in the security log (a failure to
// record is logged, not returned) and returns err.
func (s *Service) refuse(ctx context.Context, q Name, c Caller, err *Forbidden) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := s.cfg.Refusals.RecordRefusal(rctx, commands.Refusal{
		At: s.cfg.Clock().UTC(), Actor: c.Actor, Command: "query_" + string(q), Target: c.Target,
		Code: domain.KindForbidden.String(), Detail: err.Error(), RequestID: c.RequestID,
	}); rerr != nil {
		s.cfg.Logger.ErrorContext(ctx, "cannot record a refused query in the security log", "query", q, "error", rerr)
	}
	return err
}

// waitIndex waits, bounded by MinPositionWait, until the access index has
// applied the caller's token (when given).
func (s *Service) waitIndex(ctx context.Context, c Consistency) error {
	if !c.Given {
		return nil
	}
	_, err := s.cfg.Index.WaitFor(ctx, c.Min, s.cfg.MinPositionWait)
	return s.stale(err, "the access index", c.Min)
}

// stale wraps the index's ErrStale as a *Stale; other errors pass.
func (s *Service) stale(err error, what string, min eventlog.Position) error {
	if err == nil || !errors.Is(err, ErrStale) {
		return err
	}
	return &Stale{What: what, Min: min, Wait: s.cfg.MinPositionWait, Err: err}
}

// progress returns the position the runner reports for read model name
// (Start when it does not report it).
func (s *Service) progress(name string) eventlog.Position {
	for _, st := range s.cfg.Progress() {
		if st.Name == name {
			return st.Position
		}
	}
	return eventlog.Start
}

// waitReadModel waits, bounded by MinPositionWait, until SQL read model
// name has applied the caller's token (when given), and returns the read
// model's position: an answer read after it reflects at least every event
// up to that position.
func (s *Service) waitReadModel(ctx context.Context, name string, c Consistency) (eventlog.Position, error) {
	pos := s.progress(name)
	if !c.Given || !pos.Before(c.Min) {
		return pos, nil
	}
	deadline := time.Now().Add(s.cfg.MinPositionWait)
	if _, err := s.cfg.Index.WaitFor(ctx, c.Min, s.cfg.MinPositionWait); err != nil {
		return pos, s.stale(err, "the read model "+name, c.Min)
	}
	t := time.NewTicker(projectionPoll)
	defer t.Stop()
	for {
		if pos = s.progress(name); !pos.Before(c.Min) {
			return pos, nil
		}
		if !time.Now().Before(deadline) {
			return pos, s.stale(fmt.Errorf("%w: read model %s is at position %s, asked for %s",
				ErrStale, name, pos, c.Min), "the read model "+name, c.Min)
		}
		select {
		case <-ctx.Done():
			return pos, ctx.Err()
		case <-t.C:
		}
	}
}

// optTime is a time that is null when zero, in UTC.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// The parameter types of the read models the queries take, under the
// queries' names, so that transports need not import the read models.
type (
	// AccountFilter selects a page of accounts (ListAccountsParams.Filter).
	AccountFilter = accounts.Filter
	// AuditFilter selects a page of audit entries (AuditList).
	AuditFilter = audit.Filter
	// AuditVerifyOptions are AuditVerify's options.
	AuditVerifyOptions = audit.VerifyOptions
	// AuditAnchor is a trusted (seq, hash) to verify the trail from.
	AuditAnchor = audit.Anchor
	// SecurityFilter selects a page of the security log.
	SecurityFilter = securitylog.Filter
)

// Page sizes of the lists: the default and the largest a caller may ask.
const (
	AccountsDefaultLimit    = accounts.DefaultLimit
	AccountsMaxLimit        = accounts.MaxLimit
	AuditDefaultLimit       = audit.DefaultLimit
	AuditMaxLimit           = audit.MaxLimit
	SecurityLogDefaultLimit = securitylog.DefaultLimit
	SecurityLogMaxLimit     = securitylog.MaxLimit
)
