package personaldata_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// BenchmarkOpen is the cost the layer adds to reading one event: kind=plain
// has no personal data, kind=reason a sealed reason (most events: every
// command records one), kind=sealed a reason and a personal field in the
// payload (the subject's cipher cached, as in a replay).
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	child := uuid.New()
	sealed := func(reason string, ev domain.Event) eventlog.Record {
		c := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, Reason: reason, RecordedAt: at}
		d, err := c.EventData(uuid.New(), ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.store.Append(ctx, domain.ChildStream(child), eventlog.Any, []eventlog.EventData{d}); err != nil {
			b.Fatal(err)
		}
		recs, err := e.raw.ReadStream(ctx, domain.ChildStream(child), 1, 0)
		if err != nil {
			b.Fatal(err)
		}
		return recs[len(recs)-1]
	}
	withData := sealed(reason, &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at})
	reasonOnly := sealed(reason, &domain.AccessRevoked{ChildID: child, AccountID: uuid.New(), RevokedAt: at})
	plain := withData
	plain.Type, plain.Data, plain.Meta.Reason = domain.TypeAccessRevoked, []byte(`{"child_id":"`+child.String()+`"}`), ""
	legacy := plain // written before sealing: a plain reason, looked up in the erased set
	legacy.Meta.Reason = reason
	for _, bc := range []struct {
		name string
		rec  eventlog.Record
	}{{"kind=plain", plain}, {"kind=legacy", legacy}, {"kind=reason", reasonOnly}, {"kind=sealed", withData}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.store.Open(ctx, bc.rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppend is the cost the layer adds to appending one event with a
// reason and a personal field, over an in-memory store (kind=sealed), and
// the same append straight to the store (kind=plain).
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	c := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, Reason: reason, RecordedAt: at}
	for _, bc := range []struct {
		name  string
		store eventlog.Store
	}{{"kind=plain", e.raw}, {"kind=sealed", e.store}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				child := uuid.New()
				d, err := c.EventData(uuid.New(), &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bc.store.Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{d}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
