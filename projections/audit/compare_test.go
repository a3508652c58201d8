package audit

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/projections/ledger"
)

// TestCompareWithLogCatchesARechainedEdit: an entry's copy of its event
// edited and the chain recomputed after it passes the chain check; the
// comparison with the (verified) log names the entry and the field.
func TestCompareWithLogCatchesARechainedEdit(t *testing.T) {
	cases := []struct{ field, query string }{
		{"reason", "UPDATE TABLE SET reason = 'moved by mistake' WHERE seq = 4"},
		{"data", `UPDATE TABLE SET data = '{"x":1}' WHERE seq = 4`},
		{"actor", "UPDATE TABLE SET actor = 'worker-eve' WHERE seq = 4"},
		{"recorded_at", "UPDATE TABLE SET recorded_at = recorded_at + 1 WHERE seq = 4"},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
				ctx := context.Background()
				store := newStore(t, db)
				migrateRunner(t, db)
				recs := history(t, store, 2)
				runProjections(t, db, store, New(), ledger.New())
				m, n, err := CompareWithLog(ctx, db, store, 3)
				require.NoError(t, err)
				require.Nil(t, m)
				require.EqualValues(t, len(recs), n)

				tx, err := db.BeginTx(ctx, nil)
				require.NoError(t, err)
				tm := &tamperer{t: t, tx: tx, table: physicalOf(t, tx)}
				tm.exec(c.query)
				tm.rechain(4)
				require.NoError(t, tx.Commit())

				res, err := Verify(ctx, db, VerifyOptions{})
				require.NoError(t, err)
				require.True(t, res.OK, "a consistent re-chain passes the chain check: %s", VerifyReport(res))
				m, _, err = CompareWithLog(ctx, db, store, 3)
				require.NoError(t, err)
				require.NotNil(t, m)
				require.EqualValues(t, 4, m.Seq)
				require.Equal(t, c.field, m.Field)
				require.Equal(t, recs[3].Position, m.Position)
			})
		})
	}
}

// physicalOf returns the physical table the audit_entries view reads.
func physicalOf(t *testing.T, db bun.IDB) string {
	t.Helper()
	var gen int64
	require.NoError(t, db.NewSelect().Table("projection_checkpoints").Column("generation").
		Where("name = ?", Name).Scan(context.Background(), &gen))
	return Table + "_g" + itoa(gen)
}
