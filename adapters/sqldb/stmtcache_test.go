package sqldb

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkQueryWithArgs: one indexed read with bound arguments on an
// SQLite file, as the event store reads a stream: kept prepared by the
// statement cache (cache=on) or compiled each time (cache=off: the text
// differs each time, as bun's queries do).
func BenchmarkQueryWithArgs(b *testing.B) {
	ctx := context.Background()
	db := openFile(b, filepath.Join(b.TempDir(), "q.db"), true)
	_, err := db.ExecContext(ctx, "CREATE TABLE ev (stream TEXT NOT NULL, version INTEGER NOT NULL, data BLOB, PRIMARY KEY (stream, version))")
	require.NoError(b, err)
	for i := range 200 {
		_, err := db.ExecContext(ctx, "INSERT INTO ev VALUES (?, ?, ?)", "s"+string(rune('a'+i%20)), i, []byte("x"))
		require.NoError(b, err)
	}
	raw := db.DB.DB // database/sql itself: bun would write the values into the text
	for _, on := range []bool{true, false} {
		name := "cache=on"
		if !on {
			name = "cache=off"
		}
		b.Run(name+"/limit=literal", func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				q := "SELECT version, data FROM ev WHERE stream = ? AND version >= ? ORDER BY version LIMIT 500"
				if !on {
					q += " -- " + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
				}
				rows, err := raw.QueryContext(ctx, q, "sc", i%3)
				require.NoError(b, err)
				for rows.Next() {
				}
				require.NoError(b, rows.Close())
			}
		})
		b.Run(name+"/limit=bound", func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				q := "SELECT version, data FROM ev WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?"
				if !on {
					q += " -- " + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
				}
				rows, err := raw.QueryContext(ctx, q, "sc", 0, 500+i%2)
				require.NoError(b, err)
				n := 0
				for rows.Next() {
					n++
				}
				require.NoError(b, rows.Close())
				require.Equal(b, 10, n)
			}
		})
	}
}
