package bench

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/cputime"
)

// BenchmarkGrantOverHTTP is one grant command over HTTP, as the grants
// measurement of accessd bench sends it: the engine as serve wires it
// (SQLite file, WAL, synchronous=FULL; the read models, the index, the
// ledger and the messaging running beside the commands) on the small data
// set, and one client of the client package acting as the child's worker,
// with an Idempotency-Key on every command, the children's data keys made
// beforehand as the grants measurement makes them. Each operation grants a
// network member access to a child not granted to that member yet. It
// reports the p50 and p99 of one grant's latency beside ns/op, and the
// process's CPU time per grant (the engine's work for it, read models and
// messaging included, with the client's). The data
// set is generated once per run of the benchmark function (a few seconds,
// not timed).
func BenchmarkGrantOverHTTP(b *testing.B) {
	ctx := context.Background()
	bn, err := newBencher(Config{scale: "small", seed: 1, stores: "sqlite", duration: time.Second, jsonFile: "unused.json",
		workDir: b.TempDir(), cpuProfile: "none", expiries: 1, queryConc: "1", logLevel: "error", importLines: 1,
		kept: commands.DefaultKeptChildren}, Env{Stdout: io.Discard, Stderr: io.Discard})
	require.NoError(b, err)
	ds, err := bn.sqliteData(ctx)
	require.NoError(b, err)
	b.Cleanup(ds.cleanup)
	be, _, err := bn.startEngine(ctx, ds)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, be.stop()) })
	// As the grants measurement: the children's data keys made (the
	// generated log has none), not timed.
	require.NoError(b, bn.childKeys(ctx, be))

	children := be.data.Children
	var members []sampleMember
	for len(children)*len(members) < b.N {
		_, ms, err := mixAccounts(ctx, be)
		require.NoError(b, err)
		members = append(members, ms...)
	}
	clients := map[string]*client.Client{}
	for _, c := range children {
		if clients[c.Worker] != nil {
			continue
		}
		tok, err := auth.Mint(be.secret, auth.Claims{Subject: c.Worker, Role: domain.RoleWorker, TTL: 24 * time.Hour}, time.Now())
		require.NoError(b, err)
		clients[c.Worker], err = client.New(be.url, tok, client.WithHTTPClient(be.client))
		require.NoError(b, err)
	}
	type pair struct {
		child, member uuid.UUID
		c             *client.Client
		rel           api.GrantRequestRelationship
	}
	pairs := make([]pair, b.N)
	for i := range pairs {
		ch, m := children[i%len(children)], members[i/len(children)]
		pairs[i] = pair{ch.ID, m.ID, clients[ch.Worker], api.GrantRequestRelationship(relationshipOf(m.Kind))}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Process()
	for _, p := range pairs {
		start := time.Now()
		_, err := p.c.Grant(ctx, p.child, p.member, p.rel, []api.GrantRequestPermissions{api.GrantRequestPermissionsView},
			"bench: contact arranged by the worker")
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu = cputime.Process() - cpu
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
