package commands_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// requireAppended checks what a successful command appended after before:
// the event types in order, every event's metadata (actor, role, reason,
// recording time, correlation and causation ids), and that the answer's
// position is the last appended event's and the log's head.
func requireAppended(t *testing.T, e *env, before, answer eventlog.Position, meta commands.Meta, reason string, want ...string) []domain.Envelope {
	t.Helper()
	got := e.since(t, before)
	require.Equal(t, want, types(got))
	for _, g := range got {
		require.Equal(t, meta.Actor.ID, g.ActorID)
		require.Equal(t, meta.Actor.Role, g.ActorRole)
		if reason == "" {
			// The command takes no reason: the event type's default (R14).
			require.Equal(t, commands.DefaultReason(g.Type), g.Reason)
		} else {
			require.Equal(t, reason, g.Reason)
		}
		require.Equal(t, e.clock.Now().UTC().Truncate(time.Microsecond), g.RecordedAt)
		require.Equal(t, meta.CorrelationID, g.CorrelationID)
		require.Equal(t, meta.CausationID, g.CausationID)
	}
	require.Equal(t, got[len(got)-1].Position, answer)
	require.Equal(t, e.head(t), answer)
	return got
}

// TestHappyPaths runs every command as the actor api.md allows, on every
// backend, and checks its answer and the events it appended.
func TestHappyPaths(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		meta := func(a domain.Actor) commands.Meta {
			return commands.Meta{Actor: a, RequestID: e.uniq("req"), CorrelationID: uuid.New(), CausationID: uuid.New()}
		}
		tests := []struct {
			name string
			run  func(t *testing.T)
		}{
			{"register_child by a worker", func(t *testing.T) {
				m, before := meta(e.worker()), e.head(t)
				r, err := e.svc.RegisterChild(ctx, m, commands.RegisterChild{Reference: "C-1"})
				require.NoError(t, err)
				require.NotEqual(t, uuid.Nil, r.ChildID)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypeChildRegistered)
				require.Equal(t, domain.ChildStream(r.ChildID), got[0].Stream)
				require.Equal(t, &domain.ChildRegistered{ChildID: r.ChildID, Reference: "C-1", WorkerID: m.Actor.ID, RegisteredAt: t0}, got[0].Event)
			}},
			{"register_child by a manager allocates nobody", func(t *testing.T) {
				m, before := meta(e.actor(domain.RoleManager)), e.head(t)
				r, err := e.svc.RegisterChild(ctx, m, commands.RegisterChild{Reference: "C-2"})
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypeChildRegistered)
				require.Empty(t, got[0].Event.(*domain.ChildRegistered).WorkerID)
			}},
			{"allocate_worker", func(t *testing.T) {
				w := e.worker()
				child := e.child(t, w)
				m, before := meta(e.actor(domain.RoleManager)), e.head(t)
				r, err := e.svc.AllocateWorker(ctx, m, commands.AllocateWorker{ChildID: child, WorkerID: "worker-new"})
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypeWorkerAllocated)
				require.Equal(t, &domain.WorkerAllocated{ChildID: child, WorkerID: "worker-new", PreviousWorkerID: w.ID, AllocatedAt: t0}, got[0].Event)
			}},
			{"invite", func(t *testing.T) {
				m, before := meta(e.worker()), e.head(t)
				r, err := e.svc.Invite(ctx, m, commands.Invite{Email: "New.Carer@Example.org", Kind: "foster_carer"})
				require.NoError(t, err)
				require.Equal(t, domain.AccountIDForEmail("new.carer@example.org"), r.AccountID)
				require.Equal(t, t0.Add(domain.DefaultPolicy.InvitationTTL), r.ExpiresAt)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypeEmailClaimed, domain.TypeAccountInvited)
				require.Equal(t, domain.EmailStream("new.carer@example.org"), got[0].Stream)
				require.Equal(t, r.AccountID, got[0].Event.(*domain.EmailClaimed).AccountID)
				require.Equal(t, domain.AccountStream(r.AccountID), got[1].Stream)
				require.Equal(t, "new.carer@example.org", got[1].Event.(*domain.AccountInvited).Email)
			}},
			{"activate links the identity, then activates; again changes nothing", func(t *testing.T) {
				a := e.invited(t, domain.KindParent)
				m, before := meta(e.actor(domain.RoleService)), e.head(t)
				cmd := commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: a.email}
				r, err := e.svc.Activate(ctx, m, cmd)
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypeIdentityLinked, domain.TypeAccountActivated)
				require.Equal(t, domain.IdentityStream(a.subject), got[0].Stream)
				require.Equal(t, a.id, got[0].Event.(*domain.IdentityLinked).AccountID)
				require.Equal(t, domain.AccountStream(a.id), got[1].Stream)

				again, err := e.svc.Activate(ctx, meta(e.actor(domain.RoleService)), cmd)
				require.NoError(t, err)
				require.Equal(t, r.Position, again.Position, "no events: the latest position of the streams read")
				require.Equal(t, r.Position, e.head(t))
			}},
			{"close_account", func(t *testing.T) {
				a := e.active(t, domain.KindNetworkMember)
				m, before := meta(e.actor(domain.RolePortalsTeam)), e.head(t)
				r, err := e.svc.CloseAccount(ctx, m, commands.CloseAccount{AccountID: a.id, Reason: "left the network"})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "left the network", domain.TypeAccountClosed)
			}},
			{"start_placement", func(t *testing.T) {
				w := e.worker()
				child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
				m, before := meta(w), e.head(t)
				started := t0.Add(-30 * day)
				r, err := e.svc.StartPlacement(ctx, m, commands.StartPlacement{ChildID: child, CarerAccountID: carer.id, StartedAt: started})
				require.NoError(t, err)
				require.NotEqual(t, uuid.Nil, r.PlacementID)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypePlacementStarted)
				require.Equal(t, &domain.PlacementStarted{ChildID: child, PlacementID: r.PlacementID, CarerAccountID: carer.id, StartedAt: started}, got[0].Event)
			}},
			{"end_placement", func(t *testing.T) {
				w := e.worker()
				child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
				p := e.place(t, w, child, carer.id, t0.Add(-30*day))
				m, before := meta(w), e.head(t)
				r, err := e.svc.EndPlacement(ctx, m, commands.EndPlacement{ChildID: child, PlacementID: p, EndedAt: t0.Add(-day), Reason: "moved to kin"})
				require.NoError(t, err)
				require.Equal(t, t0.Add(-day).Add(domain.DefaultPolicy.GracePeriod), r.GraceUntil)
				requireAppended(t, e, before, r.Position, m, "moved to kin", domain.TypePlacementEnded)
			}},
			{"end_placement backdated past its grace expires at once (R4)", func(t *testing.T) {
				w := e.worker()
				child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
				p := e.place(t, w, child, carer.id, t0.Add(-30*day))
				m, before := meta(w), e.head(t)
				r, err := e.svc.EndPlacement(ctx, m, commands.EndPlacement{ChildID: child, PlacementID: p, EndedAt: t0.Add(-8 * day), Reason: "recorded late"})
				require.NoError(t, err)
				require.Equal(t, t0.Add(-day), r.GraceUntil)
				requireAppended(t, e, before, r.Position, m, "recorded late", domain.TypePlacementEnded, domain.TypeGraceExpired)
			}},
			{"end_grace", func(t *testing.T) {
				w := e.worker()
				child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
				p := e.place(t, w, child, carer.id, t0.Add(-30*day))
				e.end(t, w, child, p, t0.Add(-day))
				m, before := meta(w), e.head(t)
				r, err := e.svc.EndGrace(ctx, m, commands.EndGrace{ChildID: child, PlacementID: p, Reason: "safeguarding concern"})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "safeguarding concern", domain.TypeGraceEndedEarly)
			}},
			{"grant and revoke", func(t *testing.T) {
				w := e.worker()
				child, parent := e.child(t, w), e.active(t, domain.KindParent)
				m, before := meta(w), e.head(t)
				r, err := e.svc.Grant(ctx, m, commands.Grant{ChildID: child, AccountID: parent.id, Relationship: "parent",
					Permissions: []string{"view", "record"}, Reason: "agreed at review"})
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "agreed at review", domain.TypeAccessGranted)
				require.Equal(t, &domain.AccessGranted{ChildID: child, AccountID: parent.id, Relationship: domain.RelParent,
					Permissions: []string{"view", "record"}, GrantedAt: t0, ReviewBy: t0.Add(domain.DefaultReviewPeriod)}, got[0].Event)
				require.Equal(t, t0.Add(domain.DefaultReviewPeriod), r.ReviewBy)

				m, before = meta(w), e.head(t)
				rv, err := e.svc.Revoke(ctx, m, commands.Revoke{ChildID: child, AccountID: parent.id, Reason: "court order"})
				require.NoError(t, err)
				requireAppended(t, e, before, rv.Position, m, "court order", domain.TypeAccessRevoked)
			}},
			{"enrol_phone, request_phone_reset, clear_phone, enrol again (R11)", func(t *testing.T) {
				a := e.active(t, domain.KindFosterCarer)
				m, before := meta(e.actor(domain.RoleService)), e.head(t)
				r, err := e.svc.EnrolPhone(ctx, m, commands.EnrolPhone{AccountID: a.id, Phone: "+44 7700 900456"})
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypePhoneEnrolled)
				require.Equal(t, "***456", got[0].Event.(*domain.PhoneEnrolled).PhoneHint)

				m, before = meta(e.worker()), e.head(t)
				r, err = e.svc.RequestPhoneReset(ctx, m, commands.RequestPhoneReset{AccountID: a.id, Reason: "lost phone"})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "lost phone", domain.TypePhoneResetRequested)

				m, before = meta(e.actor(domain.RolePortalsTeam)), e.head(t)
				r, err = e.svc.ClearPhone(ctx, m, commands.ClearPhone{AccountID: a.id})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "", domain.TypePhoneCleared)

				m, before = meta(e.actor(domain.RoleService)), e.head(t)
				r, err = e.svc.EnrolPhone(ctx, m, commands.EnrolPhone{AccountID: a.id, Phone: "07700 900789"})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "", domain.TypePhoneEnrolled)
			}},
			{"expire_invitation", func(t *testing.T) {
				a := e.invited(t, domain.KindGuardian)
				e.clock.Advance(domain.DefaultPolicy.InvitationTTL)
				defer e.clock.Set(t0)
				m, before := meta(domain.System), e.head(t)
				r, err := e.svc.ExpireInvitation(ctx, m, commands.ExpireInvitation{AccountID: a.id})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "invitation ran out unaccepted", domain.TypeInvitationExpired)
			}},
			{"cancel_placement", func(t *testing.T) {
				w := e.worker()
				child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
				p := e.place(t, w, child, carer.id, t0.Add(30*day))
				m, before := meta(w), e.head(t)
				r, err := e.svc.CancelPlacement(ctx, m, commands.CancelPlacement{ChildID: child, PlacementID: p, Reason: "the carer withdrew"})
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "the carer withdrew", domain.TypePlacementCancelled)
				require.Equal(t, &domain.PlacementCancelled{ChildID: child, PlacementID: p, CarerAccountID: carer.id, CancelledAt: t0}, got[0].Event)
			}},
			{"reopen_account", func(t *testing.T) {
				a := e.active(t, domain.KindParent)
				_, err := e.svc.CloseAccount(ctx, meta(e.actor(domain.RolePortalsTeam)), commands.CloseAccount{AccountID: a.id, Reason: "by mistake"})
				require.NoError(t, err)
				e.clock.Advance(time.Hour)
				defer e.clock.Set(t0)
				m, before := meta(e.actor(domain.RolePortalsTeam)), e.head(t)
				r, err := e.svc.ReopenAccount(ctx, m, commands.ReopenAccount{AccountID: a.id, Reason: "closed the wrong account"})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "closed the wrong account", domain.TypeAccountReopened)
			}},
			{"request_email_change and change_email", func(t *testing.T) {
				a := e.active(t, domain.KindParent)
				newEmail := e.uniq("moved") + "@example.org"
				m, before := meta(e.worker()), e.head(t)
				r, err := e.svc.RequestEmailChange(ctx, m, commands.RequestEmailChange{AccountID: a.id, Email: newEmail, Reason: "new address"})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "new address", domain.TypeEmailChangeRequested)
				m, before = meta(e.actor(domain.RolePortalsTeam)), e.head(t)
				r, err = e.svc.ChangeEmail(ctx, m, commands.ChangeEmail{AccountID: a.id, Email: newEmail})
				require.NoError(t, err)
				got := requireAppended(t, e, before, r.Position, m, "", domain.TypeEmailClaimed, domain.TypeEmailChanged, domain.TypeEmailReleased)
				require.Equal(t, domain.EmailStream(newEmail), got[0].Stream)
				require.Equal(t, domain.AccountStream(a.id), got[1].Stream)
				require.Equal(t, domain.EmailStream(a.email), got[2].Stream)
			}},
			{"expire_carer_access", func(t *testing.T) {
				w := e.worker()
				child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
				p := e.place(t, w, child, carer.id, t0.Add(-30*day))
				e.end(t, w, child, p, t0)
				e.clock.Advance(domain.DefaultPolicy.GracePeriod)
				defer e.clock.Set(t0)
				m, before := meta(domain.System), e.head(t)
				r, err := e.svc.ExpireCarerAccess(ctx, m, commands.ExpireCarerAccess{ChildID: child, PlacementID: p})
				require.NoError(t, err)
				requireAppended(t, e, before, r.Position, m, "grace period ran out", domain.TypeGraceExpired)
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, tt.run)
		}
		require.Empty(t, e.refusals.All(), "no happy path is refused")
	})
}

// TestCorrelationIDDefault: a command without a correlation id gets a new
// one, the same on all its events.
func TestCorrelationIDDefault(t *testing.T) {
	e := newEnv(t, memory)
	a := e.invited(t, domain.KindParent)
	before := e.head(t)
	_, err := e.svc.Activate(context.Background(), as(e.actor(domain.RoleService)),
		commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: a.email})
	require.NoError(t, err)
	got := e.since(t, before)
	require.Len(t, got, 2)
	require.NotEqual(t, uuid.Nil, got[0].CorrelationID)
	require.Equal(t, got[0].CorrelationID, got[1].CorrelationID)
	require.Equal(t, uuid.Nil, got[0].CausationID)
}
