package commands_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R22_AnErasureDropsTheKeptStateOnEveryReplica: replica B keeps an account's state
// (its email in plain text) and a child's after its commands; replica A
// erases both. B, following the log (ForgetErased, as accessd serve runs
// it), drops them: it keeps no personal data of an erased aggregate,
// whoever erased it. Found by a review: without ForgetErased, B kept them
// until it loaded them again or 4,096 others pushed them out.
func TestRule_R22_AnErasureDropsTheKeptStateOnEveryReplica(t *testing.T) {
	for _, url := range []string{memory, sqltest.SQLiteFile(t)} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			e := newEnv(t, url, withEraser(&recordingEraser{}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			followed := make(chan error, 1)
			go func() { followed <- other.ForgetErased(ctx, e.store) }()
			worker, dpo := e.worker(), e.actor(domain.RoleDPO)
			m := e.withPhone(t, domain.KindParent)
			child := e.child(t, worker)

			// Replica B (other) grants: it loads the account and the child and
			// keeps them. (Until its subscription runs, it may forget them;
			// a grant again keeps them: refused as made already, it loads
			// both all the same.)
			require.Eventually(t, func() bool {
				_, err := other.Grant(ctx, as(worker), commands.Grant{ChildID: child, AccountID: m.id, Relationship: "parent",
					Permissions: []string{"view"}, Reason: "agreed"})
				if !errors.Is(err, domain.ErrAlreadyGranted) {
					require.NoError(t, err)
				}
				a, okA := other.KeptAccount(m.id)
				_, okC := other.KeptChild(child)
				return okA && okC && a.Email() != ""
			}, 10*time.Second, 20*time.Millisecond)

			// Replica A erases them.
			_, err = e.svc.EraseAccount(ctx, as(dpo), commands.EraseAccount{AccountID: m.id, Reason: "asked to"})
			require.NoError(t, err)
			_, err = e.svc.EraseChild(ctx, as(dpo), commands.EraseChild{ChildID: child, Reason: "asked to"})
			require.NoError(t, err)
			_, ok := e.svc.KeptAccount(m.id)
			require.False(t, ok, "A dropped the account")

			require.Eventually(t, func() bool {
				_, okA := other.KeptAccount(m.id)
				_, okC := other.KeptChild(child)
				return !okA && !okC
			}, 10*time.Second, 10*time.Millisecond, "B keeps an erased aggregate's personal data in memory")
			cancel()
			require.NoError(t, <-followed)
		})
	}
}
