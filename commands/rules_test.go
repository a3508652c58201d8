package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// TestRule_R8_RefusedCommandsChangeNothing runs every command as an actor
// R8 refuses, on every backend: each returns the domain's sentinel, appends
// nothing (the log's head does not move) and is recorded once in the
// security log with the command's name, its target and the code.
func TestRule_R8_RefusedCommandsChangeNothing(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)

		// The world: worker w is allocated to child c; other is a worker
		// allocated elsewhere. carer has a current placement pc; leaver had
		// placement pl, ended yesterday (grace running). parent has a grant
		// and a phone; invitee is invited. selfW is a worker whose id is
		// self's identity subject, allocated to child sc; byID is a worker
		// whose id is the account id of idAcct, allocated to child ic.
		w, other := e.worker(), e.worker()
		manager, portals := e.actor(domain.RoleManager), e.actor(domain.RolePortalsTeam)
		service, auditor := e.actor(domain.RoleService), e.actor(domain.RoleAuditor)
		c := e.child(t, w)
		e.child(t, other)
		carer, leaver := e.active(t, domain.KindFosterCarer), e.active(t, domain.KindFosterCarer)
		pc := e.place(t, w, c, carer.id, t0.Add(-30*day))
		pl := e.place(t, w, c, leaver.id, t0.Add(-30*day))
		e.end(t, w, c, pl, t0.Add(-day))
		parent := e.withPhone(t, domain.KindParent)
		e.grant(t, w, c, parent.id)
		invitee := e.invited(t, domain.KindGuardian)
		self := e.withPhone(t, domain.KindFosterCarer)
		selfW := domain.Actor{ID: self.subject, Role: domain.RoleWorker}
		sc := e.child(t, selfW)
		idAcct := e.active(t, domain.KindParent)
		byID := domain.Actor{ID: idAcct.id.String(), Role: domain.RoleWorker}
		ic := e.child(t, byID)
		// Reallocation: w registered moved, then a manager allocated it to
		// other; w may no longer grant on it.
		moved := e.child(t, w)
		_, err := e.svc.AllocateWorker(ctx, as(manager), commands.AllocateWorker{ChildID: moved, WorkerID: other.ID})
		require.NoError(t, err)
		require.Empty(t, e.refusals.All())

		grant := func(child, acct uuid.UUID) func(commands.Meta) error {
			return func(m commands.Meta) error {
				_, err := e.svc.Grant(ctx, m, commands.Grant{ChildID: child, AccountID: acct, Relationship: "guardian",
					Permissions: []string{"view"}, Reason: "asked nicely"})
				return err
			}
		}
		place := func(child, acct uuid.UUID) func(commands.Meta) error {
			return func(m commands.Meta) error {
				_, err := e.svc.StartPlacement(ctx, m, commands.StartPlacement{ChildID: child, CarerAccountID: acct, StartedAt: t0})
				return err
			}
		}
		register := func(m commands.Meta) error {
			_, err := e.svc.RegisterChild(ctx, m, commands.RegisterChild{Reference: "C-x"})
			return err
		}
		allocate := func(m commands.Meta) error {
			_, err := e.svc.AllocateWorker(ctx, m, commands.AllocateWorker{ChildID: c, WorkerID: "someone"})
			return err
		}
		invite := func(m commands.Meta) error {
			_, err := e.svc.Invite(ctx, m, commands.Invite{Email: "r8@example.org", Kind: "parent"})
			return err
		}
		activate := func(m commands.Meta) error {
			_, err := e.svc.Activate(ctx, m, commands.Activate{AccountID: invitee.id, IdentitySubject: invitee.subject, Email: invitee.email})
			return err
		}
		closeAcct := func(m commands.Meta) error {
			_, err := e.svc.CloseAccount(ctx, m, commands.CloseAccount{AccountID: parent.id, Reason: "because"})
			return err
		}
		endPlacement := func(m commands.Meta) error {
			_, err := e.svc.EndPlacement(ctx, m, commands.EndPlacement{ChildID: c, PlacementID: pc, EndedAt: t0, Reason: "moved"})
			return err
		}
		endGrace := func(m commands.Meta) error {
			_, err := e.svc.EndGrace(ctx, m, commands.EndGrace{ChildID: c, PlacementID: pl, Reason: "concern"})
			return err
		}
		revoke := func(m commands.Meta) error {
			_, err := e.svc.Revoke(ctx, m, commands.Revoke{ChildID: c, AccountID: parent.id, Reason: "ended"})
			return err
		}
		requestReset := func(acct uuid.UUID) func(commands.Meta) error {
			return func(m commands.Meta) error {
				_, err := e.svc.RequestPhoneReset(ctx, m, commands.RequestPhoneReset{AccountID: acct, Reason: "lost it"})
				return err
			}
		}
		clearPhone := func(m commands.Meta) error {
			_, err := e.svc.ClearPhone(ctx, m, commands.ClearPhone{AccountID: parent.id})
			return err
		}
		enrol := func(m commands.Meta) error {
			_, err := e.svc.EnrolPhone(ctx, m, commands.EnrolPhone{AccountID: carer.id, Phone: "07700 900111"})
			return err
		}
		expireCarer := func(m commands.Meta) error {
			_, err := e.svc.ExpireCarerAccess(ctx, m, commands.ExpireCarerAccess{ChildID: c, PlacementID: pl})
			return err
		}
		expireInvitation := func(m commands.Meta) error {
			_, err := e.svc.ExpireInvitation(ctx, m, commands.ExpireInvitation{AccountID: invitee.id})
			return err
		}

		tests := []struct {
			name     string
			actor    domain.Actor
			command  string
			target   string
			sentinel error
			run      func(commands.Meta) error
		}{
			{"register_child by an auditor", auditor, "register_child", "", domain.ErrRoleNotAllowed, register},
			{"register_child by the portals team", portals, "register_child", "", domain.ErrRoleNotAllowed, register},
			{"register_child by the service", service, "register_child", "", domain.ErrRoleNotAllowed, register},
			{"allocate_worker by a worker", w, "allocate_worker", childT(c), domain.ErrRoleNotAllowed, allocate},
			{"allocate_worker by an auditor", auditor, "allocate_worker", childT(c), domain.ErrRoleNotAllowed, allocate},
			{"invite by a manager", manager, "invite", accountT(domain.AccountIDForEmail("r8@example.org")), domain.ErrRoleNotAllowed, invite},
			{"invite by the service", service, "invite", accountT(domain.AccountIDForEmail("r8@example.org")), domain.ErrRoleNotAllowed, invite},
			{"activate by a worker", w, "activate", accountT(invitee.id), domain.ErrRoleNotAllowed, activate},
			{"activate by the portals team", portals, "activate", accountT(invitee.id), domain.ErrRoleNotAllowed, activate},
			{"close_account by a worker", w, "close_account", accountT(parent.id), domain.ErrRoleNotAllowed, closeAcct},
			{"close_account by a manager", manager, "close_account", accountT(parent.id), domain.ErrRoleNotAllowed, closeAcct},
			{"start_placement by a worker not allocated", other, "start_placement", childT(c), domain.ErrNotAllocated, place(c, carer.id)},
			{"start_placement by a manager", manager, "start_placement", childT(c), domain.ErrRoleNotAllowed, place(c, carer.id)},
			{"start_placement of the worker themselves", selfW, "start_placement", childT(sc), domain.ErrSelfAccess, place(sc, self.id)},
			{"end_placement by a worker not allocated", other, "end_placement", placementT(c, pc), domain.ErrNotAllocated, endPlacement},
			{"end_placement by the service", service, "end_placement", placementT(c, pc), domain.ErrRoleNotAllowed, endPlacement},
			{"end_grace by a worker not allocated", other, "end_grace", placementT(c, pl), domain.ErrNotAllocated, endGrace},
			{"end_grace by a manager", manager, "end_grace", placementT(c, pl), domain.ErrRoleNotAllowed, endGrace},
			{"grant by a worker not allocated", other, "grant", grantT(c, invitee.id), domain.ErrNotAllocated, grant(c, invitee.id)},
			{"grant by the previously allocated worker", w, "grant", grantT(moved, invitee.id), domain.ErrNotAllocated, grant(moved, invitee.id)},
			{"grant by a manager", manager, "grant", grantT(c, invitee.id), domain.ErrRoleNotAllowed, grant(c, invitee.id)},
			{"grant by the service", service, "grant", grantT(c, invitee.id), domain.ErrRoleNotAllowed, grant(c, invitee.id)},
			{"grant to the worker's own identity", selfW, "grant", grantT(sc, self.id), domain.ErrSelfAccess, grant(sc, self.id)},
			{"grant to the worker's own account id", byID, "grant", grantT(ic, idAcct.id), domain.ErrSelfAccess, grant(ic, idAcct.id)},
			{"revoke by a worker not allocated", other, "revoke", grantT(c, parent.id), domain.ErrNotAllocated, revoke},
			{"revoke by an auditor", auditor, "revoke", grantT(c, parent.id), domain.ErrRoleNotAllowed, revoke},
			{"request_phone_reset by the portals team", portals, "request_phone_reset", accountT(parent.id), domain.ErrRoleNotAllowed, requestReset(parent.id)},
			{"request_phone_reset by the service", service, "request_phone_reset", accountT(parent.id), domain.ErrRoleNotAllowed, requestReset(parent.id)},
			{"request_phone_reset for the worker's own account", selfW, "request_phone_reset", accountT(self.id), domain.ErrSelfAccess, requestReset(self.id)},
			{"clear_phone by a worker", w, "clear_phone", accountT(parent.id), domain.ErrRoleNotAllowed, clearPhone},
			{"clear_phone by a manager", manager, "clear_phone", accountT(parent.id), domain.ErrRoleNotAllowed, clearPhone},
			{"enrol_phone by a worker", w, "enrol_phone", accountT(carer.id), domain.ErrRoleNotAllowed, enrol},
			{"enrol_phone by the portals team", portals, "enrol_phone", accountT(carer.id), domain.ErrRoleNotAllowed, enrol},
			{"expire_carer_access by a worker", w, "expire_carer_access", placementT(c, pl), domain.ErrRoleNotAllowed, expireCarer},
			{"expire_carer_access by the service", service, "expire_carer_access", placementT(c, pl), domain.ErrRoleNotAllowed, expireCarer},
			{"expire_invitation by a worker", w, "expire_invitation", accountT(invitee.id), domain.ErrRoleNotAllowed, expireInvitation},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				meta := commands.Meta{Actor: tt.actor, RequestID: e.uniq("req"), CorrelationID: uuid.New()}
				e.refused(t, meta, tt.command, tt.target, tt.sentinel, tt.run)
			})
		}

		// The same commands by the allowed actors succeed (the refusals
		// above were the actors', not the world's).
		_, err = e.svc.EndGrace(ctx, as(w), commands.EndGrace{ChildID: c, PlacementID: pl, Reason: "concern"})
		require.NoError(t, err)
		require.NoError(t, grant(c, invitee.id)(as(w)))
		require.NoError(t, grant(moved, invitee.id)(as(other)))
		require.NoError(t, requestReset(self.id)(as(w)))
		require.NoError(t, revoke(as(w)))
	})
}

// TestRule_R10_OneEmailOneIdentityOneAccount: inviting an email twice, or
// after its account is active, and activating with an identity linked to
// another account are refused as the domain says, appending nothing.
func TestRule_R10_OneEmailOneIdentityOneAccount(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		w, svc := e.worker(), e.actor(domain.RoleService)
		invite := func(email string) func(commands.Meta) error {
			return func(m commands.Meta) error {
				_, err := e.svc.Invite(ctx, m, commands.Invite{Email: email, Kind: "parent"})
				return err
			}
		}
		activate := func(a account, subject string) func(commands.Meta) error {
			return func(m commands.Meta) error {
				_, err := e.svc.Activate(ctx, m, commands.Activate{AccountID: a.id, IdentitySubject: subject, Email: a.email})
				return err
			}
		}

		t.Run("invite an email with an open invitation: already invited (conflict)", func(t *testing.T) {
			a := e.invited(t, domain.KindParent)
			e.refused(t, as(w), "invite", accountT(a.id), domain.ErrAlreadyInvited, invite(a.email))
			e.refused(t, as(w), "invite", accountT(a.id), domain.ErrAlreadyInvited, invite(strings.ToUpper(a.email)))
		})
		t.Run("invite an email whose account is active: already registered", func(t *testing.T) {
			a := e.active(t, domain.KindParent)
			e.refused(t, as(w), "invite", accountT(a.id), domain.ErrAlreadyRegistered, invite(a.email))
		})
		t.Run("invite an email whose account is closed: conflict", func(t *testing.T) {
			a := e.active(t, domain.KindParent)
			_, err := e.svc.CloseAccount(ctx, as(e.actor(domain.RolePortalsTeam)), commands.CloseAccount{AccountID: a.id, Reason: "gone"})
			require.NoError(t, err)
			e.refused(t, as(w), "invite", accountT(a.id), domain.ErrAccountClosed, invite(a.email))
		})
		t.Run("activate with an identity linked to another account: already registered", func(t *testing.T) {
			first, second := e.active(t, domain.KindParent), e.invited(t, domain.KindGuardian)
			e.refused(t, as(svc), "activate", accountT(second.id), domain.ErrAlreadyRegistered, activate(second, first.subject))
			require.Len(t, e.stream(t, domain.AccountStream(second.id)), 1, "still only invited")
			require.Len(t, e.stream(t, domain.IdentityStream(first.subject)), 1, "still linked once")
			// With its own identity it activates.
			require.NoError(t, activate(second, second.subject)(as(svc)))
		})
		t.Run("activate an active account with another identity: already registered", func(t *testing.T) {
			a := e.active(t, domain.KindParent)
			e.refused(t, as(svc), "activate", accountT(a.id), domain.ErrAlreadyRegistered, activate(a, "idp|somebody-else"))
			require.Empty(t, e.stream(t, domain.IdentityStream("idp|somebody-else")), "the other identity is not linked")
		})
		t.Run("activate with the identity's email not the invited one: conflict, nothing linked", func(t *testing.T) {
			a := e.invited(t, domain.KindParent)
			e.refused(t, as(svc), "activate", accountT(a.id), domain.ErrEmailMismatch, func(m commands.Meta) error {
				_, err := e.svc.Activate(ctx, m, commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: "other@example.org"})
				return err
			})
			require.Empty(t, e.stream(t, domain.IdentityStream(a.subject)))
		})
	})
}
