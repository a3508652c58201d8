package sqlmigrations

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestSplit(t *testing.T) {
	fsys := fstest.MapFS{
		"migrations/postgres/1_a.up.sql": {Data: []byte("pg")},
		"migrations/sqlite/1_a.up.sql":   {Data: []byte("lite")},
	}
	pg, lite := Split(fsys)
	b, err := fs.ReadFile(pg, "1_a.up.sql")
	require.NoError(t, err)
	require.Equal(t, "pg", string(b))
	b, err = fs.ReadFile(lite, "1_a.up.sql")
	require.NoError(t, err)
	require.Equal(t, "lite", string(b))

	require.Panics(t, func() { Split(fstest.MapFS{"migrations/postgres/x": {}}) }, "no sqlite directory")
}
