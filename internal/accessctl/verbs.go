package accessctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// verb is one subcommand.
type verb struct {
	name     string
	synopsis string // the flags, for the usage line
	summary  string
	help     string // more, optional
	endpoint string // method and path, for the help
	query    bool
	// ledger marks the ledger's verbs ("ledger verify", ...): queries that
	// take no --min-position, listed apart.
	ledger bool
	// flags registers the verb's flags on fs and returns its action,
	// which reads them when it runs.
	flags func(fs *flag.FlagSet) action
}

// action validates the verb's flags (returning *usageError when they are
// wrong, before sending anything), calls the server and prints the answer.
type action func(ctx context.Context, inv *invocation) error

func findVerb(name string) (verb, bool) {
	for _, v := range verbs() {
		if v.name == name {
			return v, true
		}
	}
	return verb{}, false
}

// isGroup reports whether name is the first word of verbs of two words
// (e.g. "ledger").
func isGroup(name string) bool {
	for _, v := range verbs() {
		if strings.HasPrefix(v.name, name+" ") {
			return true
		}
	}
	return false
}

// Names the API accepts (api.md); TestNamesMatchDomain keeps them in step
// with the domain.
var (
	accountKinds      = []string{"foster_carer", "parent", "guardian", "network_member"}
	relationships     = []string{"parent", "guardian", "network_member"}
	grantPermissions  = []string{"view", "record"}
	checkPermissions  = []string{"view", "record", "complete_outstanding"}
	exampleUUID       = "3f2b8c1e-9d4a-4c6b-8e2f-1a7d5c9b0e34"
	exampleTime       = "2026-01-05T09:30:00Z"
	maxReasonBytes    = 2000
	maxReferenceBytes = 200
)

// checker validates flag values, collecting every mistake.
type checker struct{ errs []string }

func (c *checker) fail(format string, a ...any) { c.errs = append(c.errs, fmt.Sprintf(format, a...)) }

func (c *checker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return &usageError{strings.Join(c.errs, "\n  ")}
}

// id parses a required UUID flag.
func (c *checker) id(name, s string) uuid.UUID {
	if s == "" {
		c.fail("--%s is required", name)
		return uuid.Nil
	}
	return c.optID(name, s)
}

// optID parses an optional UUID flag ("" is uuid.Nil).
func (c *checker) optID(name, s string) uuid.UUID {
	if s == "" {
		return uuid.Nil
	}
	u, err := uuid.Parse(s)
	if err != nil || u == uuid.Nil {
		c.fail("--%s %q is not an id: want a UUID such as %s", name, s, exampleUUID)
		return uuid.Nil
	}
	return u
}

// time parses a required RFC 3339 time flag.
func (c *checker) time(name, s string) time.Time {
	if s == "" {
		c.fail("--%s is required", name)
		return time.Time{}
	}
	return c.optTime(name, s)
}

// timeOrNow parses an optional RFC 3339 time flag whose default is now:
// this machine's clock, to the microsecond as the engine keeps times (sent
// in UTC, as every time), so that "now" is not a moment before what the
// engine recorded a moment ago.
func (c *checker) timeOrNow(name, s string) time.Time {
	if s == "" {
		return time.Now().UTC().Truncate(time.Microsecond)
	}
	return c.optTime(name, s)
}

// optTime parses an optional RFC 3339 time flag ("" is the zero time).
func (c *checker) optTime(name, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		c.fail("--%s %q is not an RFC 3339 time: want e.g. %s or 2026-01-05T09:30:00+01:00", name, s, exampleTime)
		return time.Time{}
	}
	return t
}

// text checks a required free-text flag: not blank, at most maxBytes.
func (c *checker) text(name, s string, maxBytes int) string {
	switch {
	case strings.TrimSpace(s) == "":
		c.fail("--%s is required", name)
	case len(s) > maxBytes:
		c.fail("--%s is longer than %d bytes", name, maxBytes)
	}
	return s
}

// optText checks an optional free-text flag: when given, not blank and at
// most maxBytes.
func (c *checker) optText(name, s string, maxBytes int) string {
	if s == "" {
		return s
	}
	if strings.TrimSpace(s) == "" {
		c.fail("--%s is blank: leave it out, or say why", name)
		return s
	}
	return c.text(name, s, maxBytes)
}

// email checks a required email address flag (the server normalizes it).
func (c *checker) email(name, s string) string {
	if c.text(name, s, 320); s != "" && (!strings.Contains(s, "@") || strings.ContainsFunc(s, isSpaceOrControl)) {
		c.fail("--%s %q is not an email address", name, s)
	}
	return s
}

// token checks an optional position token flag.
func (c *checker) token(name, s string) string {
	if strings.ContainsFunc(s, isSpaceOrControl) {
		c.fail("--%s %q: want a position token from an earlier answer", name, s)
	}
	return s
}

// anchor parses an optional SEQ:HASH flag.
func (c *checker) anchor(name, s string) *client.Anchor {
	if s == "" {
		return nil
	}
	seqText, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		c.fail("--%s %q: want SEQ:HASH, an entry number and its 64 lower-case hex digit hash, as verify prints them", name, s)
		return nil
	}
	return &client.Anchor{Seq: seq, Hash: hash}
}

// oneOf checks a required flag against the allowed names.
func (c *checker) oneOf(name, s string, allowed []string) string {
	switch {
	case s == "":
		c.fail("--%s is required: one of %s", name, strings.Join(allowed, ", "))
	case !slices.Contains(allowed, s):
		c.fail("--%s %q: want one of %s", name, s, strings.Join(allowed, ", "))
	}
	return s
}

// list checks a required comma-separated list of allowed names, without
// duplicates.
func (c *checker) list(name, s string, allowed []string) []string {
	if strings.TrimSpace(s) == "" {
		c.fail("--%s is required: some of %s, comma-separated", name, strings.Join(allowed, ", "))
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		switch {
		case !slices.Contains(allowed, p):
			c.fail("--%s: %q is not one of %s", name, p, strings.Join(allowed, ", "))
		case slices.Contains(out, p):
			c.fail("--%s: %q is listed twice", name, p)
		default:
			out = append(out, p)
		}
	}
	return out
}

// answer is what the server sent for one call: its bytes, and whether it
// was the stored answer of an earlier request with the same
// Idempotency-Key.
type answer struct {
	raw      []byte
	replayed bool
}

// print writes the answer in the chosen format: the server's JSON, or
// table(w).
func (inv *invocation) print(a answer, table func(w io.Writer) error) error {
	if a.replayed {
		fmt.Fprintf(inv.stderr, "accessctl: the server had already carried out this command (Idempotency-Key %s): "+
			"this is its first answer, nothing was changed now\n", inv.key)
	}
	if inv.json {
		return writeJSON(inv.stdout, a.raw)
	}
	return table(inv.stdout)
}

// call runs one request bounded by --timeout, connecting the client first
// (resolving the token) when it is the first. f gets the call's options:
// the command's Idempotency-Key, the query's --min-position (the only
// token accessctl sends), and where to keep the answer's bytes.
func call[A any](ctx context.Context, inv *invocation, f func(ctx context.Context, opts ...client.CallOption) (A, error)) (A, answer, error) {
	var a answer
	if inv.client == nil {
		c, err := inv.connect()
		if err != nil {
			var zero A
			return zero, a, err
		}
		inv.client = c
	}
	ctx, cancel := inv.requestCtx(ctx)
	defer cancel()
	opts := []client.CallOption{client.Raw(&a.raw), client.Replayed(&a.replayed), client.Timeout(inv.timeout),
		client.MinPosition(inv.minPosition)}
	if inv.isCommand {
		opts = append(opts, client.IdempotencyKey(inv.key))
	}
	v, err := f(ctx, opts...)
	return v, a, err
}

// printPosition prints a command's answer that carries only its position.
func (inv *invocation) printPosition(r api.PositionAnswer, a answer) error {
	return inv.print(a, func(w io.Writer) error { return keyValues(w, kv("position", r.Position)) })
}

func verbs() []verb {
	return []verb{
		registerChildVerb(),
		allocateVerb(),
		inviteVerb(),
		activateVerb(),
		placeVerb(),
		endPlacementVerb(),
		endGraceVerb(),
		cancelPlacementVerb(),
		grantVerb(),
		revokeVerb(),
		reviewVerb(),
		phoneResetVerb(),
		clearPhoneVerb(),
		enrolPhoneVerb(),
		closeAccountVerb(),
		cancelInvitationVerb(),
		reopenAccountVerb(),
		requestEmailChangeVerb(),
		changeEmailVerb(),
		eraseAccountVerb(),
		eraseChildVerb(),
		setRetentionVerb(),
		setPolicyVerb(),
		// Queries.
		checkVerb(),
		checksVerb(),
		childrenVerb(),
		viewersVerb(),
		historyVerb(),
		childVerb(),
		caseloadVerb(),
		reviewsVerb(),
		accountVerb(),
		accountsVerb(),
		auditVerb(),
		verifyVerb(),
		securityLogVerb(),
		viewVerb(),
		viewsVerb(),
		alertsVerb(),
		exportVerb(),
		ledgerCheckpointVerb(),
		ledgerPublicKeyVerb(),
		ledgerVerifyVerb(),
		ledgerProveVerb(),
		policyVerb(),
		watchVerb(),
	}
}

// typed converts checked names to the wire's typed strings.
func typed[T ~string](names []string) []T {
	out := make([]T, len(names))
	for i, n := range names {
		out[i] = T(n)
	}
	return out
}

// deref is *s, or "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
