package projections_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/projections"
)

// BenchmarkCatchUp measures how fast a runner catches up with a log of
// 20000 events, per backend; b.N counts events.
func BenchmarkCatchUp(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			e := newEnv(b, be.URL(b))
			const n = 20000
			e.appendN(b, n, 200)
			b.ResetTimer()
			for i := 0; i < b.N; i += n {
				b.StopTimer()
				_, err := e.db.ExecContext(context.Background(), "DELETE FROM projection_checkpoints")
				require.NoError(b, err)
				b.StartTimer()
				r, stop := startRunner(b, e.db.DB, e.store, []projections.Projection{newCounts(1), newWarm()})
				require.NoError(b, r.WaitCaughtUp(context.Background()))
				stop()
			}
		})
	}
}
