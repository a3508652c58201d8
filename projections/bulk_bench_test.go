package projections_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/projections"
)

// BenchmarkInsertRows measures InsertRows of 10,000 rows of 18 columns
// (the shape of an audit entry: 8 integers, 10 texts, one of 400 bytes)
// in one transaction into a table with a primary key only; b.N counts
// rows.
func BenchmarkInsertRows(b *testing.B) {
	const rows, width = 10_000, 18
	cols := make([]projections.Column, width)
	ddl := make([]string, width)
	for i := range cols {
		cols[i] = projections.Column{Name: fmt.Sprintf("c%d", i), PGType: "text"}
		ddl[i] = fmt.Sprintf("c%d TEXT", i)
		if i < 8 {
			cols[i].PGType = "bigint"
			ddl[i] = fmt.Sprintf("c%d BIGINT", i)
		}
	}
	ddl[0] += " PRIMARY KEY"
	data := strings.Repeat("x", 400)
	for _, be := range sqltest.Backends() {
		if be.Name == "sqlite-memory" {
			continue
		}
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			db := sqltest.Open(b, be.URL(b))
			next := int64(0)
			var cpu time.Duration
			for i := 0; i < b.N; i += rows {
				b.StopTimer()
				table := fmt.Sprintf("bench_%d", i)
				_, err := db.ExecContext(ctx, "CREATE TABLE "+table+" ("+strings.Join(ddl, ", ")+")")
				require.NoError(b, err)
				b.StartTimer()
				before := cputime.Process()
				tx, err := db.BeginTx(ctx, nil)
				require.NoError(b, err)
				require.NoError(b, projections.InsertRows(ctx, tx, table, cols, rows, func(i int, dst []any) []any {
					next++
					for c := range width {
						switch {
						case c < 8:
							dst = append(dst, next*int64(c+1))
						case c == 8:
							dst = append(dst, data)
						default:
							dst = append(dst, "0123456789abcdef0123456789abcdef")
						}
					}
					return dst
				}))
				require.NoError(b, tx.Commit())
				cpu += cputime.Process() - before
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/row")
		})
	}
}
