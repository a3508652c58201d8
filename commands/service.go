package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The stable command names written to the security log (Refusal.Command).
// They are part of the stored data and of the security log's filter: never
// rename one.
const (
	CommandRegisterChild     = "register_child"
	CommandAllocateWorker    = "allocate_worker"
	CommandInvite            = "invite"
	CommandActivate          = "activate"
	CommandCloseAccount      = "close_account"
	CommandEraseAccount      = "erase_account"
	CommandEraseChild        = "erase_child"
	CommandStartPlacement    = "start_placement"
	CommandEndPlacement      = "end_placement"
	CommandEndGrace          = "end_grace"
	CommandGrant             = "grant"
	CommandRevoke            = "revoke"
	CommandRequestPhoneReset = "request_phone_reset"
	CommandClearPhone        = "clear_phone"
	CommandEnrolPhone        = "enrol_phone"
	CommandExpireCarerAccess = "expire_carer_access"
	CommandExpireInvitation  = "expire_invitation"
	CommandSetRetention      = "set_retention"
	CommandCancelInvitation  = "cancel_invitation"
	CommandRetainAccount     = "erase_account_at_retention"
	CommandRetainChild       = "erase_child_at_retention"
	CommandCancelPlacement   = "cancel_placement"
	CommandReopenAccount     = "reopen_account"
	CommandRequestEmail      = "request_email_change"
	CommandChangeEmail       = "change_email"
	// The process manager's time marks.
	CommandMarkPlacementStart = "mark_placement_start"
	CommandMarkPlacementEnd   = "mark_placement_end"
	CommandReviewGrant        = "review_grant"
	CommandExpireGrant        = "expire_grant"
)

// DefaultMaxRetries is the number of retries after a concurrency conflict
// when Config.MaxRetries is zero.
const DefaultMaxRetries = 5

// MaxIdempotencyKey is the longest Meta.IdempotencyKey accepted, in bytes.
const MaxIdempotencyKey = 255

// Config configures a Service. Zero fields take their defaults (see each
// field); Validate reports what defaults cannot fix.
type Config struct {
	// Policy is the initial policy (R25): what RecordInitialPolicy records
	// when the policy stream is empty, and what the decisions use until a
	// policy is recorded there; from then on they use the recorded one in
	// force at the time each decision concerns. Zero durations mean
	// domain.DefaultPolicy's.
	Policy domain.Policy
	// Clock is the decision time of every command. Default time.Now.
	Clock func() time.Time
	// NewID returns new ids (child, placement and event ids) for commands
	// without an idempotency key, and new correlation ids. Default: a
	// version 7 (time-ordered) UUID.
	NewID func() uuid.UUID
	// MaxRetries is how many times a command is retried after a concurrency
	// conflict, reloading its aggregates each time. 0 means
	// DefaultMaxRetries; negative is invalid.
	MaxRetries int
	// IDs derives account ids and identity streams under the deployment's
	// key (R22). Nil: the name-based ids anybody can compute
	// (domain.AccountIDForEmail), for tests. With it, an email or subject
	// that already has a name-based stream keeps it (older data).
	IDs *domain.KeyedIDs
	// Eraser destroys erased subjects' keys (adapters/personaldata); the
	// erase commands fail without it.
	Eraser Eraser
	// Logger receives conflict retries (debug), commands that give up
	// after the last retry (warn) and failures to record a refusal
	// (error). Default slog.Default().
	Logger *slog.Logger
	// KeptSnapshots configures the snapshot of the kept state
	// (keptsnapshot.go); a zero Dir turns it off.
	KeptSnapshots KeptSnapshotConfig
	// KeptChildren is how many children's state the service keeps between
	// commands (the oldest out first), so that a command or a deadline on
	// a kept child reads only its stream's end: about 8 KB each for a
	// child of the county data set (86 events). 0 means
	// DefaultKeptChildren; negative is invalid.
	KeptChildren int
}

// DefaultKeptChildren is Config.KeptChildren's default: a county's
// children (10,000 in the generated county) all fit, about 80 MB, so the
// process manager's batches of expiries and the commands read only the
// ends of their streams (docs/performance.md, "Expiries on kept state").
const DefaultKeptChildren = 16384

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	c.Policy = c.Policy.WithDefaults()
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.NewID == nil {
		c.NewID = newV7
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.KeptChildren == 0 {
		c.KeptChildren = DefaultKeptChildren
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func newV7() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}

// Validate reports every problem of the configuration, joined: a policy
// that is invalid once its zero durations take their defaults, and a
// negative MaxRetries. Nil funcs and a nil logger are not problems: they
// take their defaults.
func (c Config) Validate() error {
	var problems []error
	p := c.Policy.WithDefaults()
	if p.GracePeriod <= 0 {
		problems = append(problems, fmt.Errorf("policy: grace period %s is not positive", p.GracePeriod))
	}
	if p.InvitationTTL <= 0 {
		problems = append(problems, fmt.Errorf("policy: invitation TTL %s is not positive", p.InvitationTTL))
	}
	if p.GracePeriod > 0 && p.InvitationTTL > 0 {
		if err := p.Validate(); err != nil {
			problems = append(problems, fmt.Errorf("policy: %w", err))
		}
	}
	if c.MaxRetries < 0 {
		problems = append(problems, fmt.Errorf("max retries %d is negative", c.MaxRetries))
	}
	if c.KeptChildren < 0 {
		problems = append(problems, fmt.Errorf("kept children %d is negative", c.KeptChildren))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("commands: invalid config: %w", err)
	}
	return nil
}

// Service carries out the commands. Every command reads what it needs from
// the store; the only state it keeps is the fold of the policy stream,
// which each command brings up to date first. Safe for concurrent use.
type Service struct {
	store    Store
	refusals Refusals
	cfg      Config
	pol      *policyCache
	// noBatch is set once the store answered eventlog.ErrBatchUnsupported:
	// FireDeadlines appends one stream at a time from then on.
	noBatch atomic.Bool
	// noMultiRead: the same for eventlog.StreamsReader.
	noMultiRead atomic.Bool
	// noTailRead: the same for eventlog.StreamTailsReader.
	noTailRead atomic.Bool
	// children and accounts keep their aggregates' state between commands
	// (statecache.go).
	children *stateCache[*domain.Child]
	accounts *stateCache[*domain.Account]
	// keptGen counts the erasures that removed the kept-state snapshot;
	// keptFileMu is held while the snapshot file is written or removed
	// (keptsnapshot.go).
	keptGen    atomic.Uint64
	keptFileMu sync.Mutex
	// keptLoadedChanges is keptChanges after LoadKeptSnapshot.
	keptLoadedChanges atomic.Uint64
	// follow is ForgetErased's progress (erasure.go).
	follow erasureFollow
}

// New returns a Service on store that writes refused commands to refusals.
// It fails when store or refusals is nil or cfg is invalid (every problem
// joined).
func New(store Store, refusals Refusals, cfg Config) (*Service, error) {
	var problems []error
	if store == nil {
		problems = append(problems, errors.New("commands: store is nil"))
	}
	if refusals == nil {
		problems = append(problems, errors.New("commands: refusals is nil"))
	}
	if err := cfg.Validate(); err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Service{store: store, refusals: refusals, cfg: cfg, pol: &policyCache{h: domain.NewPolicyHistory(cfg.Policy)},
		children: newChildCache(cfg.KeptChildren), accounts: newAccountCache()}, nil
}

// Policy returns the initial policy, Config.Policy with its defaults (R25:
// the decisions use the recorded policy; see PolicyAt).
func (s *Service) Policy() domain.Policy { return s.cfg.Policy }

// Code returns the API problem code (api.md) of an error returned by a
// Service method: the domain kind's code (invalid, not_found, forbidden,
// conflict, already_registered) for a domain error; conflict for
// ErrConflictRetries, eventlog.ErrConflict and eventlog.ErrDuplicateEventID;
// internal for anything else; "" for nil.
func Code(err error) string {
	if err == nil {
		return ""
	}
	if k := domain.KindOf(err); k != domain.KindInternal {
		return k.String()
	}
	if errors.Is(err, ErrConflictRetries) || errors.Is(err, eventlog.ErrConflict) || errors.Is(err, eventlog.ErrDuplicateEventID) {
		return domain.KindConflict.String()
	}
	return domain.KindInternal.String()
}

// errCorruptStream marks a stored stream that does not load: an event that
// does not decode or apply, or a gap in its versions. It is an internal
// error, never a refusal, whatever domain error caused it.
var errCorruptStream = errors.New("commands: stored stream does not load")

// attempt is one try of a command at decision time now. It returns a
// domain error to refuse, an error wrapping eventlog.ErrConflict to be
// retried, or any other error to fail.
type attempt func(ctx context.Context, now time.Time) error

// execute runs a command: it checks meta, then runs try until it succeeds,
// fails, is refused (recorded in the security log) or has conflicted
// MaxRetries+1 times.
func (s *Service) execute(ctx context.Context, meta *Meta, command, target string, try attempt) error {
	if meta.CorrelationID == uuid.Nil {
		meta.CorrelationID = s.cfg.NewID()
	}
	if err := checkMeta(*meta); err != nil {
		s.refuse(ctx, *meta, command, target, err)
		return err
	}
	for i := 0; ; i++ {
		err := try(ctx, s.cfg.Clock())
		switch {
		case err == nil:
			return nil
		case domain.KindOf(err) != domain.KindInternal:
			s.refuse(ctx, *meta, command, target, err)
			return err
		case !errors.Is(err, eventlog.ErrConflict):
			return fmt.Errorf("commands: %s on %s: %w", command, target, err)
		case i >= s.cfg.MaxRetries:
			s.cfg.Logger.WarnContext(ctx, "commands: conflict after the last retry, giving up",
				"command", command, "target", target, "attempts", i+1, "error", err)
			return &retriesError{command: command, target: target, attempts: i + 1, last: err}
		}
		s.cfg.Logger.DebugContext(ctx, "commands: conflict, retrying",
			"command", command, "target", target, "attempt", i+1, "error", err)
		if err := backoff(ctx, i); err != nil {
			return fmt.Errorf("commands: %s on %s: %w", command, target, err)
		}
	}
}

// retriesError is a command that still conflicted after its last retry.
// Its message names the command, not the store's details (it is shown to
// callers); errors.Is finds ErrConflictRetries and the last conflict
// (eventlog.ErrConflict) in it.
type retriesError struct {
	command, target string
	attempts        int
	last            error
}

func (e *retriesError) Error() string {
	return fmt.Sprintf("%s on %s: the record kept changing (%d attempts); try again", e.command, e.target, e.attempts)
}

func (e *retriesError) Unwrap() []error { return []error{ErrConflictRetries, e.last} }

// backoff waits a random time that grows with the attempt (at most about
// 32ms), so that writers that conflicted do not collide again in lockstep.
func backoff(ctx context.Context, attempt int) error {
	max := 2 * time.Millisecond << min(attempt, 5)
	t := time.NewTimer(rand.N(max) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func checkMeta(m Meta) error {
	if err := m.Actor.Validate(); err != nil {
		return err
	}
	if k := m.IdempotencyKey; k != "" {
		switch {
		case len(k) > MaxIdempotencyKey:
			return &domain.FieldError{Field: "idempotency_key", Problem: fmt.Sprintf("longer than %d bytes", MaxIdempotencyKey)}
		case !utf8.ValidString(k) || strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			return &domain.FieldError{Field: "idempotency_key", Problem: "must be printable text"}
		}
	}
	return nil
}

// refuse writes a refusal to the security log. A failure is logged, not
// returned; the write outlives the request's cancellation.
func (s *Service) refuse(ctx context.Context, meta Meta, command, target string, err error) {
	r := Refusal{
		At:            s.cfg.Clock().UTC(),
		Actor:         meta.Actor,
		Command:       command,
		Target:        target,
		Code:          Code(err),
		Detail:        truncate(err.Error(), 2000),
		RequestID:     meta.RequestID,
		CorrelationID: meta.CorrelationID,
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := s.refusals.RecordRefusal(rctx, r); rerr != nil {
		s.cfg.Logger.ErrorContext(ctx, "commands: cannot record a refused command in the security log",
			"command", command, "target", target, "actor", meta.Actor.ID, "role", string(meta.Actor.Role),
			"code", r.Code, "refusal", err, "error", rerr)
	}
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ---- ids ----

// idNamespace is the namespace of ids derived from idempotency keys.
var idNamespace = uuid.MustParse("3d1f6b0e-8c2a-4e57-9a41-7b5c0d2e9f63")

// ids hands out the ids of one command: derived from (actor, key, command,
// target, item) when the command has an idempotency key, else new ones. An
// item asked for twice gets the same id, so retries after a conflict reuse
// their ids.
type ids struct {
	derive bool
	prefix string // actor id \0 key \0 command \0 target \0
	newID  func() uuid.UUID
	cache  map[string]uuid.UUID
}

func (s *Service) ids(meta Meta, command, target string) *ids {
	return &ids{
		derive: meta.IdempotencyKey != "",
		prefix: meta.Actor.ID + "\x00" + meta.IdempotencyKey + "\x00" + command + "\x00" + target + "\x00",
		newID:  s.cfg.NewID,
		cache:  map[string]uuid.UUID{},
	}
}

func (d *ids) id(item string) uuid.UUID {
	if id, ok := d.cache[item]; ok {
		return id
	}
	var id uuid.UUID
	if d.derive {
		id = uuid.NewSHA1(idNamespace, []byte(d.prefix+item))
	} else {
		id = d.newID()
	}
	d.cache[item] = id
	return id
}

// maxBatch bounds the events one command appends to one stream (EndPlacement
// appends two).
const maxBatch = 4

// event returns the id of the i-th event a command appends to the stream
// of group ("event" for the command's main stream).
func (d *ids) event(group string, i int) uuid.UUID { return d.id(group + "/" + strconv.Itoa(i)) }

// watch returns the event ids whose records a load must keep to answer a
// retried request, or nil without an idempotency key.
func (d *ids) watch(group string) map[uuid.UUID]bool {
	if !d.derive {
		return nil
	}
	w := make(map[uuid.UUID]bool, maxBatch)
	for i := range maxBatch {
		w[d.event(group, i)] = true
	}
	return w
}

// ---- loading and appending ----

// readPage is the page size of stream reads.
const readPage = 500

// loaded is what loading a stream found: its version, the position of its
// last event (Start when it is empty), and the watched events.
type loaded struct {
	stream  string
	version uint64
	last    eventlog.Position
	lastID  uuid.UUID // the id of the record at last
	found   map[uuid.UUID]domain.Envelope
	// ids, when collect is set, are the keys (idKey) of the ids of the
	// events applied: of the stream's events up to version when the load
	// started from nothing or from a kept child's.
	ids     []uint64
	collect bool
}

// load reads stream fully, in pages, and applies every event to the
// aggregate through apply. It keeps the envelopes of the watched ids. A
// stream that does not load is an internal error (errCorruptStream).
func (s *Service) load(ctx context.Context, stream string, apply func(domain.Event) error, watch map[uuid.UUID]bool) (loaded, error) {
	return s.loadAfter(ctx, loaded{stream: stream}, apply, watch)
}

// loadAfter is load of the events after those l has loaded.
func (s *Service) loadAfter(ctx context.Context, l loaded, apply func(domain.Event) error, watch map[uuid.UUID]bool) (loaded, error) {
	stream := l.stream
	for {
		recs, err := s.store.ReadStream(ctx, stream, l.version+1, readPage)
		if err != nil {
			return l, fmt.Errorf("read stream %q: %w", stream, err)
		}
		if err := l.apply(recs, apply, watch); err != nil {
			return l, err
		}
		if len(recs) < readPage {
			return l, nil
		}
	}
}

// apply applies the records that follow the loaded ones, as load does.
func (l *loaded) apply(recs []eventlog.Record, apply func(domain.Event) error, watch map[uuid.UUID]bool) error {
	for _, r := range recs {
		if r.Version != l.version+1 {
			return fmt.Errorf("%w: stream %q: version %d after %d", errCorruptStream, l.stream, r.Version, l.version)
		}
		env, err := domain.DecodeRecord(r)
		if err != nil {
			return fmt.Errorf("%w: stream %q: %v", errCorruptStream, l.stream, err)
		}
		if err := apply(env.Event); err != nil {
			return fmt.Errorf("%w: stream %q, version %d: %v", errCorruptStream, l.stream, r.Version, err)
		}
		if watch[r.ID] {
			if l.found == nil {
				l.found = map[uuid.UUID]domain.Envelope{}
			}
			l.found[r.ID] = env
		}
		if l.collect {
			l.ids = append(l.ids, idKey(r.ID))
		}
		l.version, l.last, l.lastID = r.Version, r.Position, r.ID
	}
	return nil
}

// replay returns the events the first request with this idempotency key
// appended to the loaded stream (group's ids event/0, event/1, ...), or
// false when it appended none.
func (l loaded) replay(d *ids, group string) ([]domain.Envelope, bool) {
	if len(l.found) == 0 {
		return nil, false
	}
	var envs []domain.Envelope
	for i := range maxBatch {
		env, ok := l.found[d.event(group, i)]
		if !ok {
			break
		}
		envs = append(envs, env)
	}
	return envs, len(envs) > 0
}

// lastPosition is the position of the last of envs.
func lastPosition(envs []domain.Envelope) eventlog.Position { return envs[len(envs)-1].Position }

// cause is the metadata of the events a command decides at now.
func cause(meta Meta, reason string, now time.Time) domain.Cause {
	return domain.Cause{Actor: meta.Actor, Reason: reason, RecordedAt: now,
		CorrelationID: meta.CorrelationID, CausationID: meta.CausationID}
}

// appendTo appends events to the loaded stream, expecting its loaded
// version, with the group's ids. With no events it appends nothing and
// returns false.
func (s *Service) appendTo(ctx context.Context, l loaded, c domain.Cause, d *ids, group string, events []domain.Event) (eventlog.AppendResult, bool, error) {
	if len(events) == 0 {
		return eventlog.AppendResult{}, false, nil
	}
	data, err := encode(l, c, d, group, events)
	if err != nil {
		return eventlog.AppendResult{}, false, err
	}
	res, err := s.store.Append(ctx, l.stream, eventlog.Exactly(l.version), data)
	if err != nil {
		return eventlog.AppendResult{}, false, err
	}
	return res, true, nil
}

// encode encodes the events decided on the loaded stream with the group's
// ids (event/0, event/1, ...) and the cause's metadata.
func encode(l loaded, c domain.Cause, d *ids, group string, events []domain.Event) ([]eventlog.EventData, error) {
	if len(events) > maxBatch {
		return nil, fmt.Errorf("%d events decided for %q, more than %d", len(events), l.stream, maxBatch)
	}
	data := make([]eventlog.EventData, len(events))
	for i, e := range events {
		ec := c
		if ec.Reason == "" {
			ec.Reason = DefaultReason(e.EventType())
		}
		ed, err := ec.EventData(d.event(group, i), e)
		if err != nil {
			// The aggregate decided an event that does not encode: a bug,
			// not the caller's fault.
			return nil, fmt.Errorf("encode %T for %q: %v", e, l.stream, err)
		}
		data[i] = ed
	}
	return data, nil
}

// latest returns the later of two positions.
func latest(a, b eventlog.Position) eventlog.Position {
	if a.Before(b) {
		return b
	}
	return a
}

// defaultReasons are the reasons recorded for events whose command takes no
// reason (R14: every change carries a reason).
var defaultReasons = map[string]string{
	domain.TypeChildRegistered:     "child registered",
	domain.TypeWorkerAllocated:     "worker allocated",
	domain.TypePlacementStarted:    "placement started",
	domain.TypePlacementEnded:      "placement ended",
	domain.TypeGraceEndedEarly:     "grace period ended early",
	domain.TypeGraceExpired:        "grace period ran out",
	domain.TypeAccessGranted:       "access granted",
	domain.TypeAccessRevoked:       "access revoked",
	domain.TypeAccountInvited:      "invitation sent",
	domain.TypeInvitationExpired:   "invitation ran out",
	domain.TypeAccountActivated:    "first sign-in with the identity provider, reported by the service",
	domain.TypeAccountClosed:       "account closed",
	domain.TypePhoneResetRequested: "phone reset requested",
	domain.TypePhoneCleared:        "phone number cleared after a reset request",
	domain.TypePhoneEnrolled:       "phone enrolled at sign-in, reported by the service",
	domain.TypeIdentityLinked:      "identity linked at first sign-in",
	domain.TypeAccountErased:       "personal data erased",
	domain.TypeChildErased:         "personal data erased",
	domain.TypeChildRetentionSet:   "retention date set",

	domain.TypePlacementCancelled:    "planned placement cancelled",
	domain.TypeAccountReopened:       "account reopened",
	domain.TypeEmailChangeRequested:  "email change requested",
	domain.TypeEmailChanged:          "email changed after a request",
	domain.TypeEmailClaimed:          "email given to the account",
	domain.TypeEmailReleased:         "email freed: the account's email changed",
	domain.TypePlacementStartReached: reasonStartReached,
	domain.TypePlacementEndReached:   reasonEndReached,
	domain.TypePolicySet:             "policy set",

	domain.TypeGrantReviewed: "grant reviewed and confirmed",
	domain.TypeGrantExpired:  "time-limited grant ran out",
}

// DefaultReason is the reason recorded for an event of type typ when its
// command gave none.
func DefaultReason(typ string) string {
	if r, ok := defaultReasons[typ]; ok {
		return r
	}
	return typ
}
