package commands_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

func withIDs(ids *domain.KeyedIDs) option {
	return func(c *commands.Config, _ *commands.Store) { c.IDs = ids }
}

// TestRule_R22_AccountIDsAreKeyedPerDeployment: a new email's account id
// and a new subject's identity stream are derived under the deployment's
// key, not computable from the address alone; an email or subject that
// already has a name-based stream (older data) keeps it, so one email
// still has one account (R10).
func TestRule_R22_AccountIDsAreKeyedPerDeployment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ids, err := domain.NewKeyedIDs(bytes.Repeat([]byte{9}, domain.MinIDKeyBytes))
	require.NoError(t, err)

	// Older data: accounts made with name-based ids, by an engine without keys.
	legacy := newEnv(t, memory)
	old, err := legacy.svc.Invite(ctx, as(legacy.worker()), commands.Invite{Email: "old@example.org", Kind: string(domain.KindParent)})
	require.NoError(t, err)
	require.Equal(t, domain.AccountIDForEmail("old@example.org"), old.AccountID)
	_, err = legacy.svc.Activate(ctx, as(legacy.actor(domain.RoleService)),
		commands.Activate{AccountID: old.AccountID, IdentitySubject: "idp|old", Email: "old@example.org"})
	require.NoError(t, err)

	// The same log, now with keyed ids.
	e := newEnv(t, memory, withIDs(ids), withStore(func(commands.Store) commands.Store { return legacy.store }))
	e.store = legacy.store
	fresh, err := e.svc.Invite(ctx, as(e.worker()), commands.Invite{Email: "New@Example.org", Kind: string(domain.KindParent)})
	require.NoError(t, err)
	require.Equal(t, ids.AccountID("new@example.org"), fresh.AccountID)
	require.NotEqual(t, domain.AccountIDForEmail("new@example.org"), fresh.AccountID)
	_, err = e.svc.Invite(ctx, as(e.worker()), commands.Invite{Email: "new@example.org", Kind: string(domain.KindParent)})
	require.ErrorIs(t, err, domain.ErrAlreadyInvited, "one email, one account")
	_, err = e.svc.Activate(ctx, as(e.actor(domain.RoleService)),
		commands.Activate{AccountID: fresh.AccountID, IdentitySubject: "idp|new", Email: "new@example.org"})
	require.NoError(t, err)
	recs, err := e.store.ReadStream(ctx, ids.IdentityStream("idp|new"), 1, 0)
	require.NoError(t, err)
	require.Len(t, recs, 1, "the new subject's identity stream is keyed")
	recs, err = e.store.ReadStream(ctx, domain.IdentityStream("idp|new"), 1, 0)
	require.NoError(t, err)
	require.Empty(t, recs)

	// The older account keeps its id: inviting its email again meets it.
	_, err = e.svc.Invite(ctx, as(e.worker()), commands.Invite{Email: "old@example.org", Kind: string(domain.KindParent)})
	require.ErrorIs(t, err, domain.ErrAlreadyRegistered)
	// And its subject keeps its identity stream: linking it to another
	// account is refused.
	other, err := e.svc.Invite(ctx, as(e.worker()), commands.Invite{Email: "other@example.org", Kind: string(domain.KindParent)})
	require.NoError(t, err)
	_, err = e.svc.Activate(ctx, as(e.actor(domain.RoleService)),
		commands.Activate{AccountID: other.AccountID, IdentitySubject: "idp|old", Email: "other@example.org"})
	require.ErrorIs(t, err, domain.ErrAlreadyRegistered)
}
