package main

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

// token checks an optional position token flag.
func (c *checker) token(name, s string) Position {
	if strings.ContainsFunc(s, isSpaceOrControl) {
		c.fail("--%s %q: want a position token from an earlier answer", name, s)
	}
	return Position(s)
}

// anchor parses an optional SEQ:HASH flag.
func (c *checker) anchor(name, s string) *Anchor {
	if s == "" {
		return nil
	}
	seqText, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		c.fail("--%s %q: want SEQ:HASH, an entry number and its 64 lower-case hex digit hash, as verify prints them", name, s)
		return nil
	}
	return &Anchor{Seq: seq, Hash: hash}
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

// answer is any typed answer: its bytes are in Raw.
type answer interface{ raw() []byte }

func (r rawAnswer) raw() []byte { return r.Raw }

func (r rawAnswer) replayed() bool { return r.Replayed }

// print writes a in the chosen format: the server's JSON, or table(w).
func (inv *invocation) print(a answer, table func(w io.Writer) error) error {
	if r, ok := a.(interface{ replayed() bool }); ok && r.replayed() {
		fmt.Fprintf(inv.stderr, "accessctl: the server had already carried out this command (Idempotency-Key %s): "+
			"this is its first answer, nothing was changed now\n", inv.key)
	}
	if inv.json {
		return writeJSON(inv.stdout, a.raw())
	}
	return table(inv.stdout)
}

// call runs one request bounded by --timeout, connecting the client
// first (resolving the token) when it is the first.
func call[A any](ctx context.Context, inv *invocation, f func(ctx context.Context) (A, error)) (A, error) {
	if inv.client == nil {
		c, err := inv.connect()
		if err != nil {
			var zero A
			return zero, err
		}
		inv.client = c
	}
	ctx, cancel := inv.requestCtx(ctx)
	defer cancel()
	return f(ctx)
}

// printPosition prints a command's answer that carries only its position.
func (inv *invocation) printPosition(r *CommandResult) error {
	return inv.print(r, func(w io.Writer) error { return keyValues(w, kv("position", string(r.Position))) })
}

func verbs() []verb {
	return []verb{
		{
			name: "register-child", synopsis: "--reference R", summary: "register a child (a worker becomes its allocated worker)",
			endpoint: "POST /v1/children",
			flags: func(fs *flag.FlagSet) action {
				ref := fs.String("reference", "", "the council's reference of the child (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					c.text("reference", *ref, maxReferenceBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*ChildRegistered, error) {
						return inv.client.RegisterChild(ctx, inv.key, *ref)
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						return keyValues(w, kv("child_id", r.ChildID.String()), kv("position", string(r.Position)))
					})
				}
			},
		},
		{
			name: "allocate", synopsis: "--child ID --worker W", summary: "allocate a child to a worker (managers)",
			endpoint: "POST /v1/children/{child_id}/allocation",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child's id (required)")
				worker := fs.String("worker", "", "the worker's id, the sub of their token (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id := c.id("child", *child)
					c.text("worker", *worker, 255)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.AllocateWorker(ctx, inv.key, id, *worker)
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},
		{
			name: "invite", synopsis: "--email E --kind K", summary: "invite an email address to open a portal account",
			help:     "K is one of " + strings.Join(accountKinds, ", ") + ". The answer names the new account and when the invitation expires.",
			endpoint: "POST /v1/invitations",
			flags: func(fs *flag.FlagSet) action {
				email := fs.String("email", "", "the invitee's email address (required)")
				kind := fs.String("kind", "", "the account's kind: "+strings.Join(accountKinds, ", ")+" (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					if c.text("email", *email, 320); *email != "" && (!strings.Contains(*email, "@") || strings.ContainsFunc(*email, isSpaceOrControl)) {
						c.fail("--email %q is not an email address", *email)
					}
					c.oneOf("kind", *kind, accountKinds)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*Invited, error) {
						return inv.client.Invite(ctx, inv.key, Invitation{Email: *email, Kind: *kind})
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						return keyValues(w, kv("account_id", r.AccountID.String()), kv("expires_at", humanTime(r.ExpiresAt)),
							kv("position", string(r.Position)))
					})
				}
			},
		},
		{
			name: "place", synopsis: "--child ID --carer ACCOUNT --started-at RFC3339",
			summary: "start a placement of a child with a foster carer", endpoint: "POST /v1/children/{child_id}/placements",
			help: "--started-at may be in the past (a backdated placement).",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child's id (required)")
				carer := fs.String("carer", "", "the foster carer's account id (required)")
				started := fs.String("started-at", "", "when the placement started, RFC 3339 (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					childID, carerID, at := c.id("child", *child), c.id("carer", *carer), c.time("started-at", *started)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*PlacementStarted, error) {
						return inv.client.StartPlacement(ctx, inv.key, childID, Placement{CarerAccountID: carerID, StartedAt: at})
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						return keyValues(w, kv("placement_id", r.PlacementID.String()), kv("position", string(r.Position)))
					})
				}
			},
		},
		{
			name: "end-placement", synopsis: "--child ID --placement ID --ended-at RFC3339 --reason R",
			summary:  "end a placement; the carer keeps limited access for the grace period",
			help:     "--ended-at may be in the past (recorded late) or in the future (a planned move). The answer says when the grace period ends.",
			endpoint: "POST /v1/children/{child_id}/placements/{placement_id}/end",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child's id (required)")
				placement := fs.String("placement", "", "the placement's id (required)")
				ended := fs.String("ended-at", "", "when the placement ended, RFC 3339 (required)")
				reason := fs.String("reason", "", "why (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					childID, placementID, at := c.id("child", *child), c.id("placement", *placement), c.time("ended-at", *ended)
					c.text("reason", *reason, maxReasonBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*PlacementEnded, error) {
						return inv.client.EndPlacement(ctx, inv.key, childID, placementID, PlacementEnd{EndedAt: at, Reason: *reason})
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						return keyValues(w, kv("grace_until", humanTime(r.GraceUntil)), kv("position", string(r.Position)))
					})
				}
			},
		},
		{
			name: "end-grace", synopsis: "--child ID --placement ID --reason R",
			summary:  "end a carer's grace period early (e.g. a safeguarding concern)",
			endpoint: "POST /v1/children/{child_id}/placements/{placement_id}/end-grace",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child's id (required)")
				placement := fs.String("placement", "", "the ended placement's id (required)")
				reason := fs.String("reason", "", "why (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					childID, placementID := c.id("child", *child), c.id("placement", *placement)
					c.text("reason", *reason, maxReasonBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.EndGrace(ctx, inv.key, childID, placementID, *reason)
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},
		{
			name: "grant", synopsis: "--child ID --account ID --relationship REL --permissions view[,record] --reason R",
			summary:  "let a parent, guardian or network member see a child's record",
			help:     "REL is one of " + strings.Join(relationships, ", ") + "; --permissions lists some of " + strings.Join(grantPermissions, ", ") + ".",
			endpoint: "POST /v1/children/{child_id}/grants",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child's id (required)")
				account := fs.String("account", "", "the account to grant access to (required)")
				rel := fs.String("relationship", "", "the account's relationship to the child: "+strings.Join(relationships, ", ")+" (required)")
				perms := fs.String("permissions", "", "comma-separated: "+strings.Join(grantPermissions, ", ")+" (required)")
				reason := fs.String("reason", "", "why (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					childID, accountID := c.id("child", *child), c.id("account", *account)
					c.oneOf("relationship", *rel, relationships)
					ps := c.list("permissions", *perms, grantPermissions)
					c.text("reason", *reason, maxReasonBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.Grant(ctx, inv.key, childID, GrantRequest{AccountID: accountID, Relationship: *rel,
							Permissions: ps, Reason: *reason})
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},
		{
			name: "revoke", synopsis: "--child ID --account ID --reason R", summary: "revoke an account's grant on a child's record",
			endpoint: "POST /v1/children/{child_id}/grants/{account_id}/revoke",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child's id (required)")
				account := fs.String("account", "", "the account whose grant to revoke (required)")
				reason := fs.String("reason", "", "why (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					childID, accountID := c.id("child", *child), c.id("account", *account)
					c.text("reason", *reason, maxReasonBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.Revoke(ctx, inv.key, childID, accountID, *reason)
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},
		{
			name: "phone-reset", synopsis: "--account ID --reason R",
			summary:  "file a request to reset an account's 2FA phone number (workers)",
			endpoint: "POST /v1/accounts/{account_id}/phone-reset-requests",
			flags: func(fs *flag.FlagSet) action {
				account := fs.String("account", "", "the account (required)")
				reason := fs.String("reason", "", "why (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id := c.id("account", *account)
					c.text("reason", *reason, maxReasonBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.RequestPhoneReset(ctx, inv.key, id, *reason)
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},
		{
			name: "clear-phone", synopsis: "--account ID",
			summary:  "clear an account's 2FA phone number after a reset request (portals team)",
			endpoint: "POST /v1/accounts/{account_id}/phone/clear",
			flags: func(fs *flag.FlagSet) action {
				account := fs.String("account", "", "the account (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id := c.id("account", *account)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.ClearPhone(ctx, inv.key, id)
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},
		{
			name: "close-account", synopsis: "--account ID --reason R", summary: "close an account, ending all its access (portals team)",
			endpoint: "POST /v1/accounts/{account_id}/close",
			flags: func(fs *flag.FlagSet) action {
				account := fs.String("account", "", "the account (required)")
				reason := fs.String("reason", "", "why (required)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id := c.id("account", *account)
					c.text("reason", *reason, maxReasonBytes)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CommandResult, error) {
						return inv.client.CloseAccount(ctx, inv.key, id, *reason)
					})
					if err != nil {
						return err
					}
					return inv.printPosition(r)
				}
			},
		},

		// Queries.
		{
			name: "check", synopsis: "--account ID (--child ID | --carer ID) --permission P [--at RFC3339]", query: true,
			summary: "ask whether an account may do P on a child's record (or a carer record)",
			help: "P is one of " + strings.Join(checkPermissions, ", ") + ". Exits 0 when allowed and 3 when denied,\n" +
				"so scripts can test it: if accessctl check ... >/dev/null; then ...",
			endpoint: "GET /v1/check",
			flags: func(fs *flag.FlagSet) action {
				account := fs.String("account", "", "the account asking (required)")
				child := fs.String("child", "", "the child whose record (this or --carer)")
				carer := fs.String("carer", "", "the carer whose own carer record (this or --child)")
				perm := fs.String("permission", "", "one of "+strings.Join(checkPermissions, ", ")+" (required)")
				at := fs.String("at", "", "answer as of this time, RFC 3339 (default now)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					q := CheckQuery{AccountID: c.id("account", *account), MinPosition: inv.minPosition}
					switch {
					case *child != "" && *carer != "":
						c.fail("give --child or --carer, not both")
					case *child == "" && *carer == "":
						c.fail("--child or --carer is required")
					case *child != "":
						q.ChildID = c.id("child", *child)
					default:
						q.CarerID = c.id("carer", *carer)
					}
					q.Permission = c.oneOf("permission", *perm, checkPermissions)
					q.At = c.optTime("at", *at)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*CheckResult, error) { return inv.client.Check(ctx, q) })
					if err != nil {
						return err
					}
					if err := inv.print(r, func(w io.Writer) error {
						allowed := "no"
						if r.Allowed {
							allowed = "yes"
						}
						return keyValues(w, kv("allowed", allowed), kv("permissions", permissions(r.Permissions)),
							kv("reason", r.Reason), kv("until", humanTimePtr(r.Until)),
							kv("position", string(r.Position)))
					}); err != nil {
						return err
					}
					if !r.Allowed {
						return &exitCodeError{code: exitDenied}
					}
					return nil
				}
			},
		},
		{
			name: "children", synopsis: "--account ID [--at RFC3339]", query: true,
			summary: "list the children whose records an account may see", endpoint: "GET /v1/accounts/{account_id}/children",
			flags: func(fs *flag.FlagSet) action {
				account := fs.String("account", "", "the account (required)")
				at := fs.String("at", "", "as of this time, RFC 3339 (default now)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id, t := c.id("account", *account), c.optTime("at", *at)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*ChildrenResult, error) {
						return inv.client.Children(ctx, id, t, inv.minPosition)
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						t := newTable(w)
						t.row("CHILD", "PERMISSIONS", "REASON", "UNTIL")
						for _, ch := range r.Children {
							t.row(ch.ChildID.String(), permissions(ch.Permissions), ch.Reason, humanTimePtr(ch.Until))
						}
						if err := t.flush(); err != nil {
							return err
						}
						positionLine(w, r.Position)
						return nil
					})
				}
			},
		},
		{
			name: "viewers", synopsis: "--child ID [--at RFC3339]", query: true,
			summary: "list the accounts that may see a child's record", endpoint: "GET /v1/children/{child_id}/viewers",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child (required)")
				at := fs.String("at", "", "as of this time, RFC 3339 (default now)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id, t := c.id("child", *child), c.optTime("at", *at)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*ViewersResult, error) {
						return inv.client.Viewers(ctx, id, t, inv.minPosition)
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						t := newTable(w)
						t.row("ACCOUNT", "PERMISSIONS", "REASON", "UNTIL")
						for _, v := range r.Viewers {
							t.row(v.AccountID.String(), permissions(v.Permissions), v.Reason, humanTimePtr(v.Until))
						}
						if err := t.flush(); err != nil {
							return err
						}
						positionLine(w, r.Position)
						return nil
					})
				}
			},
		},
		{
			name: "history", synopsis: "--child ID [--at RFC3339] [--as-of POSITION]", query: true,
			summary: "list every interval in which someone could see a child's record, and the events behind it (auditors)",
			help: "With --at, only the intervals that contain that time: who could see the child then, and\n" +
				"why. With --as-of, the history as the engine knew it at that position (before\n" +
				"later corrections such as a backdated placement end).",
			endpoint: "GET /v1/children/{child_id}/history",
			flags: func(fs *flag.FlagSet) action {
				child := fs.String("child", "", "the child (required)")
				at := fs.String("at", "", "only the intervals that contain this time, RFC 3339")
				asOf := fs.String("as-of", "", "as known at this `POSITION` (a position token)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					q := HistoryQuery{ChildID: c.id("child", *child), At: c.optTime("at", *at), AsOf: c.token("as-of", *asOf),
						MinPosition: inv.minPosition}
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*HistoryResult, error) {
						return inv.client.History(ctx, q)
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						t := newTable(w)
						t.row("ACCOUNT", "PERMISSIONS", "REASON", "FROM", "TO", "OPENED BY", "CLOSED BY")
						for _, in := range r.Intervals {
							t.row(in.AccountID.String(), permissions(in.Permissions), in.Reason, humanTime(in.From),
								humanTimePtr(in.To), shortEvent(in.OpenedBy), shortEvent(in.ClosedBy))
						}
						if err := t.flush(); err != nil {
							return err
						}
						positionLine(w, r.Position)
						return nil
					})
				}
			},
		},
		{
			name: "account", synopsis: "--account ID [--at RFC3339]", query: true,
			summary: "show an account: kind, status, whether it must enrol a phone", endpoint: "GET /v1/accounts/{account_id}",
			flags: func(fs *flag.FlagSet) action {
				account := fs.String("account", "", "the account (required)")
				at := fs.String("at", "", "as of this time, RFC 3339 (default now)")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					id, t := c.id("account", *account), c.optTime("at", *at)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*Account, error) {
						return inv.client.GetAccount(ctx, id, t, inv.minPosition)
					})
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						return keyValues(w, kv("account_id", r.AccountID.String()), kv("kind", r.Kind), kv("status", r.Status),
							kv("needs_phone_enrolment", yesNo(r.NeedsPhoneEnrolment)), kv("phone_hint", r.PhoneHint),
							kv("position", string(r.Position)))
					})
				}
			},
		},
		auditVerb(),
		{
			name: "verify", synopsis: "[--anchor SEQ:HASH]", query: true,
			summary: "recompute the audit trail's hash chain (auditors); exits 1 when it is broken",
			help: "Prints the number of intact entries and the head hash. Keep them: a later\n" +
				"verify --anchor SEQ:HASH also checks that entry SEQ still has that hash, so even a\n" +
				"rewrite of the whole chain after it is detected.",
			endpoint: "GET /v1/audit/verify",
			flags: func(fs *flag.FlagSet) action {
				anchor := fs.String("anchor", "", "an entry's `SEQ:HASH` from an earlier verify")
				return func(ctx context.Context, inv *invocation) error {
					var c checker
					a := c.anchor("anchor", *anchor)
					if err := c.err(); err != nil {
						return err
					}
					r, err := call(ctx, inv, func(ctx context.Context) (*VerifyResult, error) {
						return inv.client.VerifyAudit(ctx, a, inv.minPosition)
					})
					if err != nil {
						return err
					}
					if err := inv.print(r, func(w io.Writer) error {
						if r.OK {
							fmt.Fprintf(w, "audit trail OK: %d entries, head %s\n", r.Entries, cell(r.HeadHash))
						} else {
							fmt.Fprintf(w, "audit trail BROKEN at %s; %d entries intact before it, last intact hash %s\n",
								brokenText(r.FirstBroken), r.Entries, cell(r.HeadHash))
						}
						positionLine(w, r.Position)
						return nil
					}); err != nil {
						return err
					}
					if !r.OK {
						return &exitCodeError{code: exitError, msg: "audit trail broken at " + brokenText(r.FirstBroken)}
					}
					return nil
				}
			},
		},
		securityLogVerb(),
		ledgerCheckpointVerb(),
		ledgerPublicKeyVerb(),
		ledgerVerifyVerb(),
		ledgerProveVerb(),
		{
			name: "policy", synopsis: "", query: true,
			summary:  "show the policy: grace period, invitation lifetime, session timeouts",
			endpoint: "GET /v1/policy",
			flags: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, inv *invocation) error {
					r, err := call(ctx, inv, func(ctx context.Context) (*Policy, error) { return inv.client.Policy(ctx, inv.minPosition) })
					if err != nil {
						return err
					}
					return inv.print(r, func(w io.Writer) error {
						pairs := [][2]string{
							kv("grace_period", humanDuration(time.Duration(r.GracePeriod))),
							kv("invitation_ttl", humanDuration(time.Duration(r.InvitationTTL))),
							kv("session_idle_timeout", humanDuration(time.Duration(r.SessionIdleTimeout))),
							kv("session_warning_after", humanDuration(time.Duration(r.SessionWarningAfter))),
						}
						if r.Position != "" {
							pairs = append(pairs, kv("position", string(r.Position)))
						}
						return keyValues(w, pairs...)
					})
				}
			},
		},
	}
}

func brokenText(b *Broken) string {
	switch {
	case b == nil:
		return "an unnamed entry"
	case b.Reason != "":
		return "entry " + strconv.FormatInt(b.Seq, 10) + ": " + cell(b.Reason)
	default:
		return "entry " + strconv.FormatInt(b.Seq, 10)
	}
}
