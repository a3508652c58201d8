package domain

import (
	"crypto/sha256"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Role is the role an actor acts in (from the caller's token, or System for
// the process manager).
type Role string

// The roles.
const (
	RoleWorker      Role = "worker"
	RoleManager     Role = "manager"
	RolePortalsTeam Role = "portals_team"
	RoleAuditor     Role = "auditor"
	RoleService     Role = "service"
	// RoleDPO is the data protection officer: erases data subjects (R22)
	// and reads subject access exports (R21).
	RoleDPO Role = "dpo"
	// RoleSystem is the engine itself: the process manager expiring grace
	// periods and invitations.
	RoleSystem Role = "system"
)

// ParseRole returns the role named s, or an error for any other string. The
// system role cannot be parsed: no caller can claim it.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleWorker, RoleManager, RolePortalsTeam, RoleAuditor, RoleService, RoleDPO:
		return r, nil
	}
	return "", invalid("role", "unknown role %q", s)
}

// Actor is who issues a command: an id (the token's subject) and a role.
type Actor struct {
	ID   string
	Role Role
}

// System is the actor of events the engine writes on its own.
var System = Actor{ID: "accessledger", Role: RoleSystem}

// Validate checks the actor has an id of the actor-id format (CheckActorID)
// and a known role. It runs on new input (commands, appends), never on
// stored events, so events written under older rules still load.
func (a Actor) Validate() error {
	if err := CheckActorID(a.ID); err != nil {
		return err
	}
	if a.Role == RoleSystem {
		return nil
	}
	_, err := ParseRole(string(a.Role))
	return err
}

// Policy holds the policy settings the decisions depend on.
type Policy struct {
	// GracePeriod is how long a carer keeps limited access after a
	// placement ends (R3). Default 7 days.
	GracePeriod time.Duration
	// InvitationTTL is how long an invitation stays open (R9). Default 14
	// days.
	InvitationTTL time.Duration
	// SessionIdleTimeout is how long a portal session may stay idle before
	// the portal signs the user out (R16). Default 15 minutes.
	SessionIdleTimeout time.Duration
	// SessionWarningAfter is when, in an idle session, the portal starts its
	// countdown to the timeout (R16). Default 10 minutes.
	SessionWarningAfter time.Duration
	// ClosedAccountRetention is how long a closed account's personal data
	// is kept before the engine erases it (R22). Default
	// DefaultClosedAccountRetention (six years).
	ClosedAccountRetention time.Duration
	// ReviewPeriod is how long after it was made or last reviewed an
	// open-ended grant is due for review (R19). Default
	// DefaultReviewPeriod (12 months).
	ReviewPeriod time.Duration
}

// DefaultReviewPeriod is 12 months: 365 days (R19).
const DefaultReviewPeriod = 365 * 24 * time.Hour

// DefaultPolicy is the policy of the portal's FAQ.
var DefaultPolicy = Policy{
	GracePeriod:         7 * 24 * time.Hour,
	InvitationTTL:       14 * 24 * time.Hour,
	SessionIdleTimeout:  15 * time.Minute,
	SessionWarningAfter: 10 * time.Minute,

	ClosedAccountRetention: DefaultClosedAccountRetention,
	ReviewPeriod:           DefaultReviewPeriod,
}

// Validate checks the durations: all positive, none longer than
// MaxPolicyPeriod, and the session warning before the idle timeout. Zero session settings are accepted and mean the
// defaults (see WithDefaults).
func (p Policy) Validate() error {
	switch {
	case p.GracePeriod <= 0:
		return invalid("grace_period", "must be positive")
	case p.InvitationTTL <= 0:
		return invalid("invitation_ttl", "must be positive")
	case p.SessionIdleTimeout < 0 || p.SessionWarningAfter < 0:
		return invalid("session", "durations must not be negative")
	case p.SessionIdleTimeout > 0 && p.SessionWarningAfter >= p.SessionIdleTimeout:
		return invalid("session_warning_after", "must be before the idle timeout")
	case p.ClosedAccountRetention < 0:
		return invalid("closed_account_retention", "must not be negative")
	case p.ReviewPeriod < 0:
		return invalid("review_period", "must not be negative")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"grace_period", p.GracePeriod}, {"invitation_ttl", p.InvitationTTL}, {"session_idle_timeout", p.SessionIdleTimeout},
		{"session_warning_after", p.SessionWarningAfter}, {"closed_account_retention", p.ClosedAccountRetention},
		{"review_period", p.ReviewPeriod}} {
		if d.v > MaxPolicyPeriod {
			return invalid(d.field, "longer than %d days (the engine's times must leave room for it)", MaxPolicyPeriod/(24*time.Hour))
		}
	}
	return nil
}

// WithDefaults returns p with every zero setting replaced by DefaultPolicy's.
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy
	if p.GracePeriod == 0 {
		p.GracePeriod = d.GracePeriod
	}
	if p.InvitationTTL == 0 {
		p.InvitationTTL = d.InvitationTTL
	}
	if p.SessionIdleTimeout == 0 {
		p.SessionIdleTimeout = d.SessionIdleTimeout
	}
	if p.SessionWarningAfter == 0 {
		p.SessionWarningAfter = d.SessionWarningAfter
	}
	if p.ClosedAccountRetention == 0 {
		p.ClosedAccountRetention = d.ClosedAccountRetention
	}
	if p.ReviewPeriod == 0 {
		p.ReviewPeriod = d.ReviewPeriod
	}
	return p
}

// Stream name prefixes: one stream per aggregate instance.
const (
	ChildStreamPrefix    = "child-"
	AccountStreamPrefix  = "account-"
	IdentityStreamPrefix = "identity-"
)

// ChildStream is the stream of child id.
func ChildStream(id uuid.UUID) string { return ChildStreamPrefix + id.String() }

// AccountStream is the stream of account id.
func AccountStream(id uuid.UUID) string { return AccountStreamPrefix + id.String() }

// IdentityStream is the stream that links identity subject to one account.
func IdentityStream(subject string) string {
	return IdentityStreamPrefix + uuid.NewHash(sha256.New(), identityNamespace, []byte(subject), 8).String()
}

var (
	accountNamespace  = uuid.MustParse("6f1a3c52-5b2e-4d0e-9d8a-0b4f61c7e2a1")
	identityNamespace = uuid.MustParse("0c9e7d34-2a61-4f58-8b1e-5d3a9f6c4b27")
)

// AccountIDForEmail returns the account id an email address had before ids
// were keyed (KeyedIDs): a name-based UUID of the normalized address, which
// anyone can compute. The command layer still uses it for accounts that
// exist under it, so that old data directories keep working. One email therefore has exactly one account
// stream, which is how R10 ("one email, one portal account") holds under
// concurrent invitations: the second one meets an existing stream.
func AccountIDForEmail(email string) uuid.UUID {
	return uuid.NewHash(sha256.New(), accountNamespace, []byte(NormalizeEmail(email)), 8)
}

// NormalizeEmail trims and lower-cases an address.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// normTime is how every time enters an event: UTC, microseconds.
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// checkText validates a free-text or id field: present, valid UTF-8, at most
// max bytes, no control characters.
func checkText(field, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return invalid(field, "required")
	}
	if len(s) > max {
		return invalid(field, "longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return invalid(field, "contains a control character")
		}
	}
	return nil
}

// checkReason validates a reason that a rule requires (R6, R7, R11, R13):
// free text (checkFreeText) of at most 2,000 bytes.
func checkReason(reason string) error { return checkFreeText("reason", reason, 2000) }

func checkTime(field string, t time.Time) error {
	if t.IsZero() {
		return invalid(field, "required")
	}
	if y := t.UTC().Year(); y < 1900 || y > 9999 {
		return invalid(field, "out of range")
	}
	return nil
}

// checkEventTime validates a time carried by a stored event: besides the
// checks of checkTime it must be in UTC and whole microseconds, the form every
// decision writes (see normTime), so an event decodes and re-encodes to the
// same bytes on every store.
func checkEventTime(field string, t time.Time) error {
	if err := checkTime(field, t); err != nil {
		return err
	}
	if t.Location() != time.UTC {
		return invalid(field, "not in UTC")
	}
	if t.Nanosecond()%int(time.Microsecond) != 0 {
		return invalid(field, "finer than a microsecond")
	}
	return nil
}
