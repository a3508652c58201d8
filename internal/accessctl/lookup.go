package accessctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// maxLookups bounds the requests one run makes to name the ids of a table.
const maxLookups = 100

// lookupHelp is the help of the verbs whose tables name ids.
const lookupHelp = "The table looks up what it shows beside each id (GET /v1/children/{child_id} for a\n" +
	"child's reference and grants, GET /v1/accounts/{account_id} for an account's kind), at most\n" +
	"100 requests; what the token's role may not read shows as -. --output json prints the\n" +
	"server's answer alone, without lookups."

// lookups names the ids of a table: a child's reference and the grants of
// its record, an account's kind. It asks the server once per id, at most
// maxLookups times per run, each request bounded by --timeout and sent
// with --min-position. A lookup that fails gives nil (the table shows "-"):
// the first failure of each kind is noted on stderr and ends the lookups of
// that kind, since the next ones would fail alike (a role that may not
// read children's records, a server that stopped answering).
type lookups struct {
	inv      *invocation
	children map[uuid.UUID]*api.ChildRecord
	accounts map[uuid.UUID]*api.Account
	stopped  map[string]bool // "child", "account"
	n        int
	capped   bool
}

func newLookups(inv *invocation) *lookups {
	return &lookups{inv: inv, children: map[uuid.UUID]*api.ChildRecord{}, accounts: map[uuid.UUID]*api.Account{},
		stopped: map[string]bool{}}
}

// child returns the child's record, or nil when it could not be read.
func (l *lookups) child(ctx context.Context, id uuid.UUID) *api.ChildRecord {
	if r, ok := l.children[id]; ok {
		return r
	}
	r := lookup(ctx, l, "child", func(ctx context.Context, o ...client.CallOption) (api.ChildRecord, error) {
		return l.inv.client.Child(ctx, id, time.Time{}, o...)
	})
	l.children[id] = r
	return r
}

// account returns the account, or nil when it could not be read.
func (l *lookups) account(ctx context.Context, id uuid.UUID) *api.Account {
	if r, ok := l.accounts[id]; ok {
		return r
	}
	r := lookup(ctx, l, "account", func(ctx context.Context, o ...client.CallOption) (api.Account, error) {
		return l.inv.client.Account(ctx, id, time.Time{}, o...)
	})
	l.accounts[id] = r
	return r
}

func lookup[T any](ctx context.Context, l *lookups, kind string, get func(ctx context.Context, o ...client.CallOption) (T, error)) *T {
	switch {
	case l.stopped[kind]:
		return nil
	case l.n >= maxLookups:
		if !l.capped {
			l.capped = true
			fmt.Fprintf(l.inv.stderr, "accessctl: looked up %d ids; the rest show as - (use --output json for the answer alone)\n", maxLookups)
		}
		return nil
	}
	l.n++
	v, _, err := call(ctx, l.inv, get)
	if err == nil {
		return &v
	}
	if errors.Is(err, client.ErrNotFound) {
		return nil // an id the server does not know: nothing to name
	}
	l.stopped[kind] = true
	what := map[string]string{"child": "children's references", "account": "accounts' kinds"}[kind]
	fmt.Fprintf(l.inv.stderr, "accessctl: %s not shown: %v\n", what, err)
	return nil
}

// reference is a child's reference for a table: "-" when unknown,
// "[erased]" once erased.
func (l *lookups) reference(ctx context.Context, id uuid.UUID) string {
	r := l.child(ctx, id)
	if r == nil {
		return "-"
	}
	return erasedText(r.Reference)
}

// kind is an account's kind for a table, "-" when unknown.
func (l *lookups) kind(ctx context.Context, id uuid.UUID) string {
	if a := l.account(ctx, id); a != nil {
		return string(a.Kind)
	}
	return "-"
}

// relationship names how account relates to child for an access with
// reason: a placement (or its grace period) is a foster carer's; a grant
// has the relationship the child's record gives it; "-" otherwise.
func (l *lookups) relationship(ctx context.Context, child, account uuid.UUID, reason api.Reason) string {
	switch reason {
	case api.ReasonPlacement, api.ReasonGracePeriod:
		return string(api.AccountKindFosterCarer)
	case api.ReasonGrant:
		r := l.child(ctx, child)
		if r == nil {
			return "-"
		}
		rel := "-"
		for _, g := range r.Grants {
			if g.AccountID == account {
				rel = string(g.Relationship) // the last grant to the account is the one in force
			}
		}
		return rel
	}
	return "-"
}
