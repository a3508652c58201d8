package commands_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// countingStore counts the records ReadStream returns from children's
// and accounts' streams.
type countingStore struct {
	commands.Store
	childRecords   atomic.Int64
	accountRecords atomic.Int64
}

func (s *countingStore) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	recs, err := s.Store.ReadStream(ctx, stream, from, limit)
	switch {
	case strings.HasPrefix(stream, "child-"):
		s.childRecords.Add(int64(len(recs)))
	case strings.HasPrefix(stream, "account-"):
		s.accountRecords.Add(int64(len(recs)))
	}
	return recs, err
}

// TestChildStateKeptBetweenCommands: a command on a child reads only the
// events appended since the service last loaded it, its own or another
// replica's, and decides as on the whole stream; a retried request still
// finds its events and appends nothing.
func TestChildStateKeptBetweenCommands(t *testing.T) {
	var counted *countingStore
	e := newEnv(t, memory, withStore(func(s commands.Store) commands.Store {
		counted = &countingStore{Store: s}
		return counted
	}))
	ctx := context.Background()
	other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)

	worker := e.worker()
	child := e.child(t, worker)
	m1, m2 := e.active(t, domain.KindParent), e.active(t, domain.KindParent)
	for range 10 {
		e.grant(t, worker, child, m1.id)
		_, err := e.svc.Revoke(ctx, as(worker), commands.Revoke{ChildID: child, AccountID: m1.id, Reason: "ended"})
		require.NoError(t, err)
	}
	length := uint64(len(e.stream(t, domain.ChildStream(child))))
	require.Greater(t, length, uint64(20))

	counted.childRecords.Store(0)
	e.grant(t, worker, child, m1.id)
	require.LessOrEqual(t, counted.childRecords.Load(), int64(1), "only the events since the last load (the last revoke)")

	// Another replica grants m2: this one sees it in the tail and can
	// revoke it (a revoke of no grant would be refused).
	_, err = other.Grant(ctx, as(worker), commands.Grant{ChildID: child, AccountID: m2.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed"})
	require.NoError(t, err)
	counted.childRecords.Store(0)
	_, err = e.svc.Revoke(ctx, as(worker), commands.Revoke{ChildID: child, AccountID: m2.id, Reason: "ended"})
	require.NoError(t, err)
	require.Equal(t, int64(2), counted.childRecords.Load(), "this replica's grant of m1 and the other's of m2")

	// A retried request finds its events (the whole stream is read) and
	// appends nothing.
	key := commands.Meta{Actor: worker, IdempotencyKey: "grant-m2-again"}
	first, err := e.svc.Grant(ctx, key, commands.Grant{ChildID: child, AccountID: m2.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed again"})
	require.NoError(t, err)
	head := e.head(t)
	again, err := e.svc.Grant(ctx, key, commands.Grant{ChildID: child, AccountID: m2.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed again"})
	require.NoError(t, err)
	require.Equal(t, first.Position, again.Position)
	require.Equal(t, head, e.head(t), "the retry appended nothing")

	// Deciding on the kept state does not change it: a refused command
	// (m2 is granted already) leaves the next one deciding as before.
	_, err = e.svc.Grant(ctx, as(worker), commands.Grant{ChildID: child, AccountID: m2.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "twice"})
	require.Error(t, err)
	_, err = e.svc.Revoke(ctx, as(worker), commands.Revoke{ChildID: child, AccountID: m2.id, Reason: "ended"})
	require.NoError(t, err)
	_, err = e.svc.Revoke(ctx, as(worker), commands.Revoke{ChildID: child, AccountID: m1.id, Reason: "ended"})
	require.NoError(t, err)
	require.Equal(t, length+6, uint64(len(e.stream(t, domain.ChildStream(child)))))
}

// TestAccountStateKeptBetweenCommands: a command that loads an account
// reads only the events appended to its stream since the service last
// loaded it, its own or another replica's, and decides as on the whole
// stream; a retried request finds its events and appends nothing; a
// refused command leaves the kept state as it was; an erased account is
// not kept.
func TestAccountStateKeptBetweenCommands(t *testing.T) {
	var counted *countingStore
	e := newEnv(t, memory, withStore(func(s commands.Store) commands.Store {
		counted = &countingStore{Store: s}
		return counted
	}), withEraser(&recordingEraser{}))
	ctx := context.Background()
	other, err := commands.New(e.store, e.refusals, commands.Config{Clock: e.clock.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	portals, dpo := e.actor(domain.RolePortalsTeam), e.actor(domain.RoleDPO)

	worker := e.worker()
	m := e.withPhone(t, domain.KindParent)
	children := []uuid.UUID{e.child(t, worker), e.child(t, worker), e.child(t, worker)}
	e.grant(t, worker, children[0], m.id)
	length := int64(len(e.stream(t, domain.AccountStream(m.id))))
	require.GreaterOrEqual(t, length, int64(3), "invited, activated, phone enrolled")

	counted.accountRecords.Store(0)
	e.grant(t, worker, children[1], m.id)
	require.Zero(t, counted.accountRecords.Load(), "the grantee's state kept: nothing appended to its stream since")

	// Another replica closes the account: this one sees it in the tail
	// and refuses the grant.
	_, err = other.CloseAccount(ctx, as(portals), commands.CloseAccount{AccountID: m.id, Reason: "left the service"})
	require.NoError(t, err)
	counted.accountRecords.Store(0)
	_, err = e.svc.Grant(ctx, as(worker), commands.Grant{ChildID: children[2], AccountID: m.id, Relationship: "parent",
		Permissions: []string{"view"}, Reason: "agreed"})
	require.ErrorIs(t, err, domain.ErrAccountClosed)
	require.Equal(t, int64(1), counted.accountRecords.Load(), "only the other replica's closure")

	// A refused command (closed twice) leaves the kept state deciding as
	// before: the account reopens once.
	_, err = e.svc.CloseAccount(ctx, as(portals), commands.CloseAccount{AccountID: m.id, Reason: "again"})
	require.Error(t, err)
	e.clock.Advance(time.Hour)
	key := commands.Meta{Actor: portals, IdempotencyKey: "reopen-once"}
	first, err := e.svc.ReopenAccount(ctx, key, commands.ReopenAccount{AccountID: m.id, Reason: "came back"})
	require.NoError(t, err)
	// A grant loads the account after the reopening: the kept state holds
	// its event. A retry of the reopening then finds it (the whole stream
	// is read) and appends nothing.
	e.grant(t, worker, children[2], m.id)
	head := e.head(t)
	counted.accountRecords.Store(0)
	again, err := e.svc.ReopenAccount(ctx, key, commands.ReopenAccount{AccountID: m.id, Reason: "came back"})
	require.NoError(t, err)
	require.Equal(t, first.Position, again.Position)
	require.Equal(t, head, e.head(t), "the retry appended nothing")
	require.Equal(t, length+2, counted.accountRecords.Load(), "the retry read the whole stream")

	// Erased: not kept, so the next load reads the whole stream.
	_, err = e.svc.EraseAccount(ctx, as(dpo), commands.EraseAccount{AccountID: m.id, Reason: "asked to"})
	require.NoError(t, err)
	all := int64(len(e.stream(t, domain.AccountStream(m.id))))
	counted.accountRecords.Store(0)
	head = e.head(t)
	_, err = e.svc.EraseAccount(ctx, as(dpo), commands.EraseAccount{AccountID: m.id, Reason: "asked again"})
	require.NoError(t, err)
	require.Equal(t, head, e.head(t), "erased once")
	require.Equal(t, all, counted.accountRecords.Load(), "the erased account was read whole")
}
