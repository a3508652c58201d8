package commands_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// keptBenchChildren is the pool of children BenchmarkCommandAfterRestart
// acts on, round robin; keptBenchPairs the grant and revoke pairs of each
// child's history (about 100 events, a county child's length).
const (
	keptBenchChildren = 256
	keptBenchPairs    = 48
)

// BenchmarkCommandAfterRestart is a command (a grant, or a revoke, of a
// network member) on a child whose stream holds about 100 events, right
// after a restart: state=cold starts with nothing kept (every command
// reads the child's whole stream), state=restored from the kept-state
// snapshot the service before the restart wrote (a command reads the
// stream's end). In both the commands go round a pool of children, in
// state=cold with one child kept (each command's child is not), so that
// every command is its child's first after the restart, as seen by the
// cache.
func BenchmarkCommandAfterRestart(b *testing.B) {
	for _, be := range benchStores {
		b.Run("store="+be.Name, func(b *testing.B) {
			f := newCmdFixture(b, be.URL(b))
			pool := make([]child, keptBenchChildren)
			started := f.w.Now.Add(-20 * 24 * time.Hour)
			for i := range pool {
				c := child{id: f.w.RegisterChild(), carer: f.carers[i%len(f.carers)], member: f.members[i%len(f.members)]}
				f.w.Place(c.id, c.carer, started)
				for range keptBenchPairs {
					f.w.Grant(c.id, c.member, domain.PermView)
					f.w.Revoke(c.id, c.member)
				}
				pool[i] = c
			}
			f.flush(b)
			dir := b.TempDir()
			ctx := context.Background()
			newService := func(kept int) *commands.Service {
				svc, err := commands.New(f.store, &recordingRefusals{}, commands.Config{Clock: func() time.Time { return f.now },
					Logger: slog.New(slog.DiscardHandler), KeptChildren: kept, KeptSnapshots: commands.KeptSnapshotConfig{Dir: dir}})
				require.NoError(b, err)
				return svc
			}
			// granted tracks each child's member's grant across rounds.
			granted := map[uuid.UUID]bool{}
			op := func(svc *commands.Service, c child) error {
				var err error
				if granted[c.id] {
					_, err = svc.Revoke(ctx, benchWorker, commands.Revoke{ChildID: c.id, AccountID: c.member, Reason: "ended"})
				} else {
					_, err = svc.Grant(ctx, benchWorker, commands.Grant{ChildID: c.id, AccountID: c.member,
						Relationship: string(domain.RelNetworkMember), Permissions: []string{domain.PermView}, Reason: "agreed"})
				}
				granted[c.id] = !granted[c.id]
				return err
			}
			// restarted is the service after a restart: before it, a service
			// kept every child (a refused command loads it: a grant of the
			// granted, a revoke of the revoked) and wrote its snapshot at
			// the head.
			restarted := func() *commands.Service {
				before := newService(0)
				for _, c := range pool {
					var err error
					if granted[c.id] {
						_, err = before.Grant(ctx, benchWorker, commands.Grant{ChildID: c.id, AccountID: c.member,
							Relationship: string(domain.RelNetworkMember), Permissions: []string{domain.PermView}, Reason: "agreed"})
					} else {
						_, err = before.Revoke(ctx, benchWorker, commands.Revoke{ChildID: c.id, AccountID: c.member, Reason: "ended"})
					}
					require.Error(b, err)
				}
				info, err := before.WriteKeptSnapshot(ctx)
				require.NoError(b, err)
				require.Equal(b, keptBenchChildren, info.Children)
				svc := newService(0)
				_, err = svc.LoadKeptSnapshot(ctx, f.store)
				require.NoError(b, err)
				return svc
			}
			for _, state := range []string{"cold", "restored"} {
				b.Run("state="+state, func(b *testing.B) {
					svc := newService(1)
					if state == "restored" {
						svc = restarted()
					}
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						if err := op(svc, pool[i%len(pool)]); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkLoadKeptSnapshot is a start's load of a kept-state snapshot
// of keptBenchChildren children of about 100 events each (read, decode,
// check against the log, restore); ns/child is per child.
func BenchmarkLoadKeptSnapshot(b *testing.B) {
	f := newCmdFixture(b, benchStores[0].URL(b))
	ids := make([]uuid.UUID, keptBenchChildren)
	for i := range ids {
		ids[i] = f.w.RegisterChild()
		f.w.Place(ids[i], f.carers[i%len(f.carers)], f.w.Now.Add(-20*24*time.Hour))
		for range keptBenchPairs {
			f.w.Grant(ids[i], f.members[0], domain.PermView)
			f.w.Revoke(ids[i], f.members[0])
		}
	}
	f.flush(b)
	dir := b.TempDir()
	ctx := context.Background()
	cfg := commands.Config{Logger: slog.New(slog.DiscardHandler), KeptSnapshots: commands.KeptSnapshotConfig{Dir: dir}}
	before, err := commands.New(f.store, &recordingRefusals{}, cfg)
	require.NoError(b, err)
	for _, id := range ids {
		_, err := before.Revoke(ctx, benchWorker, commands.Revoke{ChildID: id, AccountID: f.members[0], Reason: "ended"})
		require.Error(b, err)
	}
	info, err := before.WriteKeptSnapshot(ctx)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		svc, err := commands.New(f.store, &recordingRefusals{}, cfg)
		require.NoError(b, err)
		if _, err := svc.LoadKeptSnapshot(ctx, f.store); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keptBenchChildren, "ns/child")
	b.ReportMetric(float64(info.Bytes)/keptBenchChildren, "bytes/child")
}
