package commands_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// countingStore counts the records ReadStream returns from children's
// streams.
type countingStore struct {
	commands.Store
	childRecords atomic.Int64
}

func (s *countingStore) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	recs, err := s.Store.ReadStream(ctx, stream, from, limit)
	if strings.HasPrefix(stream, "child-") {
		s.childRecords.Add(int64(len(recs)))
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
