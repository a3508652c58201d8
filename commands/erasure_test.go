package commands_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// recordingEraser records the keys the erase commands destroy.
type recordingEraser struct {
	mu       sync.Mutex
	accounts []uuid.UUID
	children []uuid.UUID
}

func (r *recordingEraser) EraseAccount(_ context.Context, id uuid.UUID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accounts = append(r.accounts, id)
	return nil
}

func (r *recordingEraser) EraseChild(_ context.Context, id uuid.UUID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.children = append(r.children, id)
	return nil
}

func withEraser(er commands.Eraser) option {
	return func(c *commands.Config, _ *commands.Store) { c.Eraser = er }
}

// TestRule_R22_TheDPOErasesAnAccountAndAChild: the dpo erases with a
// reason; the erasure event is recorded once and the subject's key
// destroyed; nothing personal can be recorded of the subject afterwards;
// others may not erase.
func TestRule_R22_TheDPOErasesAnAccountAndAChild(t *testing.T) {
	t.Parallel()
	er := &recordingEraser{}
	e := newEnv(t, memory, withEraser(er))
	ctx := context.Background()
	dpo := e.actor(domain.RoleDPO)
	w := e.worker()
	child := e.child(t, w)
	carer := e.active(t, domain.KindFosterCarer)
	e.place(t, w, child, carer.id, t0.Add(-time.Hour))

	for _, role := range []domain.Role{domain.RoleWorker, domain.RoleManager, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleService} {
		meta := as(e.actor(role))
		e.refused(t, meta, commands.CommandEraseAccount, "account/"+carer.id.String(), domain.ErrRoleNotAllowed, func(m commands.Meta) error {
			_, err := e.svc.EraseAccount(ctx, m, commands.EraseAccount{AccountID: carer.id, Reason: "asked"})
			return err
		})
		e.refused(t, meta, commands.CommandEraseChild, "child/"+child.String(), domain.ErrRoleNotAllowed, func(m commands.Meta) error {
			_, err := e.svc.EraseChild(ctx, m, commands.EraseChild{ChildID: child, Reason: "asked"})
			return err
		})
	}
	e.refused(t, as(dpo), commands.CommandEraseAccount, "account/"+carer.id.String(), domain.ErrInvalid, func(m commands.Meta) error {
		_, err := e.svc.EraseAccount(ctx, m, commands.EraseAccount{AccountID: carer.id})
		return err
	})
	unknown := uuid.New()
	e.refused(t, as(dpo), commands.CommandEraseAccount, "account/"+unknown.String(), domain.ErrAccountNotFound, func(m commands.Meta) error {
		_, err := e.svc.EraseAccount(ctx, m, commands.EraseAccount{AccountID: unknown, Reason: "asked"})
		return err
	})
	require.Empty(t, er.accounts, "no key destroyed by a refused erasure")

	res, err := e.svc.EraseAccount(ctx, as(dpo), commands.EraseAccount{AccountID: carer.id, Reason: "Art. 17 request DPO-117"})
	require.NoError(t, err)
	envs := e.stream(t, domain.AccountStream(carer.id))
	last := envs[len(envs)-1]
	require.Equal(t, domain.TypeAccountErased, last.Type)
	require.Equal(t, "Art. 17 request DPO-117", last.Reason)
	require.Equal(t, res.Position, last.Position)
	require.Equal(t, []uuid.UUID{carer.id}, er.accounts)

	again, err := e.svc.EraseAccount(ctx, as(dpo), commands.EraseAccount{AccountID: carer.id, Reason: "again"})
	require.NoError(t, err)
	require.Len(t, e.stream(t, domain.AccountStream(carer.id)), len(envs), "erased once")
	require.Equal(t, res.Position, again.Position)

	e.refused(t, as(e.actor(domain.RolePortalsTeam)), commands.CommandCloseAccount, "account/"+carer.id.String(), domain.ErrErased,
		func(m commands.Meta) error {
			_, err := e.svc.CloseAccount(ctx, m, commands.CloseAccount{AccountID: carer.id, Reason: "left"})
			return err
		})
	e.refused(t, as(w), commands.CommandInvite, "account/"+carer.id.String(), domain.ErrErased, func(m commands.Meta) error {
		_, err := e.svc.Invite(ctx, m, commands.Invite{Email: carer.email, Kind: string(domain.KindFosterCarer)})
		return err
	})

	_, err = e.svc.EraseChild(ctx, as(dpo), commands.EraseChild{ChildID: child, Reason: "retention ended"})
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{child}, er.children)
	other := e.active(t, domain.KindFosterCarer)
	e.refused(t, as(w), commands.CommandStartPlacement, "child/"+child.String(), domain.ErrErased, func(m commands.Meta) error {
		_, err := e.svc.StartPlacement(ctx, m, commands.StartPlacement{ChildID: child, CarerAccountID: other.id, StartedAt: t0})
		return err
	})
}

func TestEraseWithoutAnEraserFailsAndAppendsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, memory)
	carer := e.active(t, domain.KindFosterCarer)
	before := e.head(t)
	_, err := e.svc.EraseAccount(context.Background(), as(e.actor(domain.RoleDPO)), commands.EraseAccount{AccountID: carer.id, Reason: "asked"})
	require.ErrorContains(t, err, "not configured")
	require.Equal(t, before, e.head(t))
}
