package commands_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/syncbuf"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  commands.Config
		want []string // substrings of the error; none: valid
	}{
		{"zero: every default", commands.Config{}, nil},
		{"explicit", commands.Config{Policy: domain.DefaultPolicy, Clock: time.Now, NewID: uuid.New, MaxRetries: 1, Logger: slog.Default(), KeptChildren: 1}, nil},
		{"negative grace period", commands.Config{Policy: domain.Policy{GracePeriod: -time.Hour}}, []string{"grace period"}},
		{"negative max retries", commands.Config{MaxRetries: -1}, []string{"max retries -1"}},
		{"negative kept children", commands.Config{KeptChildren: -1}, []string{"kept children -1"}},
		{"session warning after the timeout", commands.Config{Policy: domain.Policy{SessionIdleTimeout: time.Minute, SessionWarningAfter: time.Hour}},
			[]string{"session_warning_after"}},
		{"every problem at once", commands.Config{Policy: domain.Policy{GracePeriod: -1, InvitationTTL: -1}, MaxRetries: -2},
			[]string{"grace period", "invitation TTL", "max retries -2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestNew(t *testing.T) {
	_, err := commands.New(nil, nil, commands.Config{MaxRetries: -1})
	require.ErrorContains(t, err, "store is nil")
	require.ErrorContains(t, err, "refusals is nil")
	require.ErrorContains(t, err, "max retries")

	e := newEnv(t, memory)
	require.Equal(t, domain.DefaultPolicy, e.svc.Policy())

	// A policy with only a grace period keeps the other defaults, and the
	// handlers decide with it.
	svc, err := commands.New(e.store, e.refusals, commands.Config{Policy: domain.Policy{GracePeriod: 48 * time.Hour}, Clock: e.clock.Now})
	require.NoError(t, err)
	require.Equal(t, 48*time.Hour, svc.Policy().GracePeriod)
	require.Equal(t, domain.DefaultPolicy.InvitationTTL, svc.Policy().InvitationTTL)
	w := e.worker()
	child, carer := e.child(t, w), e.active(t, domain.KindFosterCarer)
	p := e.place(t, w, child, carer.id, t0.Add(-day))
	ended, err := svc.EndPlacement(context.Background(), as(w), commands.EndPlacement{ChildID: child, PlacementID: p, EndedAt: t0, Reason: "r"})
	require.NoError(t, err)
	require.Equal(t, t0.Add(48*time.Hour), ended.GraceUntil)
}

func TestNewIDsAreUsed(t *testing.T) {
	fixed := uuid.MustParse("01234567-89ab-7def-8123-456789abcdef")
	e := newEnv(t, memory)
	svc, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, NewID: func() uuid.UUID { return fixed }})
	require.NoError(t, err)
	r, err := svc.RegisterChild(context.Background(), as(e.worker()), commands.RegisterChild{Reference: "C"})
	require.NoError(t, err)
	require.Equal(t, domain.ChildIDForReference("C"), r.ChildID, "a child's id comes from its reference (R17)")
	recs, err := e.store.ReadStream(context.Background(), domain.ChildStream(r.ChildID), 1, 0)
	require.NoError(t, err)
	require.Equal(t, fixed, recs[0].ID, "the event's id is new")
}

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{domain.ErrInvalid, "invalid"},
		{&domain.FieldError{Field: "f", Problem: "p"}, "invalid"},
		{fmt.Errorf("x: %w", domain.ErrChildNotFound), "not_found"},
		{fmt.Errorf("x: %w", domain.ErrNotAllocated), "forbidden"},
		{domain.ErrSelfAccess, "forbidden"},
		{domain.ErrRoleNotAllowed, "forbidden"},
		{domain.ErrAlreadyInvited, "conflict"},
		{domain.ErrNotDue, "conflict"},
		{fmt.Errorf("x: %w", domain.ErrAlreadyRegistered), "already_registered"},
		{fmt.Errorf("x: %w: %w", commands.ErrConflictRetries, eventlog.ErrConflict), "conflict"},
		{&eventlog.ConflictError{Stream: "s"}, "conflict"},
		{fmt.Errorf("x: %w", eventlog.ErrDuplicateEventID), "conflict"},
		{eventlog.ErrInvalidAppend, "internal"},
		{context.Canceled, "internal"},
		{errors.New("boom"), "internal"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, commands.Code(tt.err), "%v", tt.err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer = syncbuf.Buffer

// TestRefusalRecordFailureIsLogged: when the security log cannot record a
// refusal the command still answers its refusal, and the failure is logged.
func TestRefusalRecordFailureIsLogged(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, memory, func(c *commands.Config, _ *commands.Store) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	e.refusals.fail.Store(true)
	_, err := e.svc.RegisterChild(context.Background(), as(e.actor(domain.RoleAuditor)), commands.RegisterChild{Reference: "C"})
	require.ErrorIs(t, err, domain.ErrRoleNotAllowed)
	require.Len(t, e.refusals.All(), 1, "recording was attempted")
	require.Contains(t, logs.String(), "cannot record a refused command")
	require.Contains(t, logs.String(), "security log unavailable")
	require.Contains(t, logs.String(), "command=register_child")
}

// TestRefusalOutlivesCancellation: the security log write does not use the
// request's cancelled context.
func TestRefusalOutlivesCancellation(t *testing.T) {
	e := newEnv(t, memory)
	rec := &ctxRefusals{}
	svc, err := commands.New(e.store, rec, commands.Config{Clock: e.clock.Now})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Meta is checked before anything is read: the refusal needs no store.
	_, err = svc.Grant(ctx, as(domain.Actor{ID: "x", Role: "admin"}), commands.Grant{})
	require.ErrorIs(t, err, domain.ErrInvalid)
	require.NoError(t, rec.err, "the refusal's context was not cancelled")
}

type ctxRefusals struct{ err error }

func (r *ctxRefusals) RecordRefusal(ctx context.Context, _ commands.Refusal) error {
	r.err = ctx.Err()
	return nil
}

// TestInvalidMeta: a command without a valid actor is refused as invalid
// before anything is read or appended; the refusal is recorded.
func TestInvalidMeta(t *testing.T) {
	e := newEnv(t, memory)
	for _, a := range []domain.Actor{{}, {ID: "x"}, {ID: "x", Role: "admin"}, {ID: strings.Repeat("x", 201), Role: domain.RoleWorker}} {
		e.refused(t, as(a), "register_child", "", domain.ErrInvalid, func(m commands.Meta) error {
			_, err := e.svc.RegisterChild(context.Background(), m, commands.RegisterChild{Reference: "C"})
			return err
		})
	}
	// The system actor is valid, and refused where it has no business.
	w := e.worker()
	child := e.child(t, w)
	e.refused(t, as(domain.System), "allocate_worker", childT(child), domain.ErrRoleNotAllowed, func(m commands.Meta) error {
		_, err := e.svc.AllocateWorker(context.Background(), m, commands.AllocateWorker{ChildID: child, WorkerID: "w"})
		return err
	})
}

// TestCorruptStreamIsInternal: a stored event that does not load is an
// internal error, never a refusal (even though the decoder's error is a
// domain "invalid" one).
func TestCorruptStreamIsInternal(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memory)
	child := uuid.New()
	_, err := e.store.Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{{
		ID: uuid.New(), Type: domain.TypeChildRegistered, Data: []byte(`{"unexpected":true}`),
		Meta: eventlog.Meta{ActorID: "a", ActorRole: "worker", EffectiveAt: t0},
	}})
	require.NoError(t, err)
	before := e.head(t)
	_, err = e.svc.Revoke(ctx, as(e.worker()), commands.Revoke{ChildID: child, AccountID: uuid.New(), Reason: "r"})
	require.Error(t, err)
	require.Equal(t, "internal", commands.Code(err))
	require.Equal(t, domain.KindInternal, domain.KindOf(err))
	require.Empty(t, e.refusals.All())
	require.Equal(t, before, e.head(t))
}

// TestStoreFailureIsInternal: a failing store is an internal error, not
// retried, not a refusal.
func TestStoreFailureIsInternal(t *testing.T) {
	e := newEnv(t, memory, withStore(func(s commands.Store) commands.Store { return failingStore{s} }))
	_, err := e.svc.RegisterChild(context.Background(), as(e.worker()), commands.RegisterChild{Reference: "C"})
	require.ErrorIs(t, err, errDisk)
	require.Equal(t, "internal", commands.Code(err))
	require.Empty(t, e.refusals.All())
}

var errDisk = errors.New("disk on fire")

type failingStore struct{ commands.Store }

func (failingStore) Append(context.Context, string, eventlog.ExpectedVersion, []eventlog.EventData) (eventlog.AppendResult, error) {
	return eventlog.AppendResult{}, errDisk
}

// TestNotFound: commands on what does not exist are refused as not_found
// (and recorded), nothing appended.
func TestNotFound(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memory)
	w := e.worker()
	child := e.child(t, w)
	unknown := uuid.New()
	tests := []struct {
		name     string
		actor    domain.Actor
		command  string
		target   string
		sentinel error
		run      func(commands.Meta) error
	}{
		{"grant on an unknown child", w, "grant", grantT(unknown, unknown), domain.ErrChildNotFound, func(m commands.Meta) error {
			_, err := e.svc.Grant(ctx, m, commands.Grant{ChildID: unknown, AccountID: unknown, Relationship: "parent", Permissions: []string{"view"}, Reason: "r"})
			return err
		}},
		{"grant to an unknown account", w, "grant", grantT(child, unknown), domain.ErrAccountNotFound, func(m commands.Meta) error {
			_, err := e.svc.Grant(ctx, m, commands.Grant{ChildID: child, AccountID: unknown, Relationship: "parent", Permissions: []string{"view"}, Reason: "r"})
			return err
		}},
		{"grant to no account", w, "grant", grantT(child, uuid.Nil), domain.ErrAccountNotFound, func(m commands.Meta) error {
			_, err := e.svc.Grant(ctx, m, commands.Grant{ChildID: child, Relationship: "parent", Permissions: []string{"view"}, Reason: "r"})
			return err
		}},
		{"place with no carer", w, "start_placement", childT(child), domain.ErrAccountNotFound, func(m commands.Meta) error {
			_, err := e.svc.StartPlacement(ctx, m, commands.StartPlacement{ChildID: child, StartedAt: t0})
			return err
		}},
		{"end an unknown placement", w, "end_placement", placementT(child, unknown), domain.ErrPlacementNotFound, func(m commands.Meta) error {
			_, err := e.svc.EndPlacement(ctx, m, commands.EndPlacement{ChildID: child, PlacementID: unknown, EndedAt: t0})
			return err
		}},
		{"revoke what was never granted", w, "revoke", grantT(child, unknown), domain.ErrGrantNotFound, func(m commands.Meta) error {
			_, err := e.svc.Revoke(ctx, m, commands.Revoke{ChildID: child, AccountID: unknown, Reason: "r"})
			return err
		}},
		{"close an unknown account", e.actor(domain.RolePortalsTeam), "close_account", accountT(unknown), domain.ErrAccountNotFound, func(m commands.Meta) error {
			_, err := e.svc.CloseAccount(ctx, m, commands.CloseAccount{AccountID: unknown, Reason: "r"})
			return err
		}},
		{"activate an unknown account", e.actor(domain.RoleService), "activate", accountT(unknown), domain.ErrAccountNotFound, func(m commands.Meta) error {
			_, err := e.svc.Activate(ctx, m, commands.Activate{AccountID: unknown, IdentitySubject: "idp|x", Email: "x@example.org"})
			return err
		}},
		{"allocate on an unknown child", e.actor(domain.RoleManager), "allocate_worker", childT(unknown), domain.ErrChildNotFound, func(m commands.Meta) error {
			_, err := e.svc.AllocateWorker(ctx, m, commands.AllocateWorker{ChildID: unknown, WorkerID: "w"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.refused(t, as(tt.actor), tt.command, tt.target, tt.sentinel, tt.run)
		})
	}
}

// TestRefusalDetailIsBounded: a refusal's detail is cut to 2000 bytes for
// the security log; the error returned is whole.
func TestRefusalDetailIsBounded(t *testing.T) {
	e := newEnv(t, memory)
	kind := strings.Repeat("é", 3000)
	_, err := e.svc.Invite(context.Background(), as(e.worker()), commands.Invite{Email: "long@example.org", Kind: kind})
	require.ErrorIs(t, err, domain.ErrInvalid)
	require.Greater(t, len(err.Error()), 2000)
	all := e.refusals.All()
	require.Len(t, all, 1)
	require.LessOrEqual(t, len(all[0].Detail), 2000)
	require.True(t, strings.HasPrefix(err.Error(), all[0].Detail))
	require.True(t, utf8.ValidString(all[0].Detail))
}
