package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/domain"
)

// grantsOverHTTP measures single grant commands through the HTTP API with
// one client, as a portal's worker sends them: POST
// /v1/children/{child_id}/grants, each granting a network member the bench
// invited (mixAccounts) access to a child not granted to that member yet,
// as the child's worker with a token of its own, through the real client
// package. It runs last: the grants stay (a revoke would be another
// command to measure).
func (b *bencher) grantsOverHTTP(ctx context.Context, be *benchEngine, store string) error {
	children := be.data.Children
	if len(children) == 0 {
		return fmt.Errorf("grants: the data set has no sampled children")
	}
	// Enough fresh (child, member) pairs for twice the goal's rate over
	// the warm-up and the window.
	want := 2 * targetGrantRate * (b.warmup() + b.cfg.duration).Seconds()
	rounds := max(1, int(math.Ceil(want/float64(len(children)*mixMembers))))
	var members []sampleMember
	for range rounds {
		_, ms, err := mixAccounts(ctx, be)
		if err != nil {
			return fmt.Errorf("grants setup: %w", err)
		}
		members = append(members, ms...)
	}
	clients := map[string]*client.Client{}
	clientOf := func(worker string) (*client.Client, error) {
		if c, ok := clients[worker]; ok {
			return c, nil
		}
		tok, err := auth.Mint(be.secret, auth.Claims{Subject: worker, Role: domain.RoleWorker, TTL: 24 * time.Hour}, time.Now())
		if err != nil {
			return nil, err
		}
		c, err := client.New(be.url, tok, client.WithHTTPClient(be.client))
		if err != nil {
			return nil, err
		}
		clients[worker] = c
		return c, nil
	}
	next := 0
	op := func(ctx context.Context, _ int) (string, error) {
		if next >= len(children)*len(members) {
			return kindGrant, fmt.Errorf("grants: every (child, member) pair of the bench granted already")
		}
		child, member := children[next%len(children)], members[next/len(children)]
		next++
		c, err := clientOf(child.Worker)
		if err != nil {
			return kindGrant, err
		}
		_, err = c.Grant(ctx, child.ID, member.ID, api.GrantRequestRelationship(relationshipOf(member.Kind)),
			[]api.GrantRequestPermissions{api.GrantRequestPermissionsView}, "bench: contact arranged by the worker")
		return kindGrant, err
	}
	if err := b.settle(ctx, be, "the grants"); err != nil {
		return err
	}
	var r loadResult
	_ = b.profiled("grants-http", store, func() error {
		r = closedLoop(ctx, 1, b.warmup(), b.cfg.duration, op)
		return nil
	})
	f := r.figure("grants.http", store, "grants", 1)
	f.Fsync = b.fsync[store]
	f.Values = append(f.Values, value{"members", float64(len(members))}, value{"children", float64(len(children))})
	f.Note = "POST /v1/children/{id}/grants through the client package, one client in the engine's process, as the child's worker"
	f.met(fmt.Sprintf("≥ %d/s, p99 < %.0f ms", targetGrantRate, targetGrantP99/1000),
		f.Count > 0 && f.Errors == 0 && f.PerSecond >= targetGrantRate && f.Latency.P99 < targetGrantP99)
	b.add(f)
	return nil
}
