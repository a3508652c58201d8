package esdbtest

import (
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/stretchr/testify/require"
)

func TestServerFeatures(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want esdb.ServerVersion
	}{
		{name: "default", want: esdb.ServerVersion{Major: 24, Minor: 10, Patch: 0}},
		{name: "configured", opts: []Option{WithServerVersion("23.10.1")}, want: esdb.ServerVersion{Major: 23, Minor: 10, Patch: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := Start(t, tt.opts...)
			got, err := newClient(t, srv.URL()).GetServerVersion()
			require.NoError(t, err)
			require.Equal(t, tt.want, *got)
		})
	}
}

// TestDiscoverConnectionString checks that gossip answers for a one-node
// cluster, so "esdb+discover://" works as well as "esdb://".
func TestDiscoverConnectionString(t *testing.T) {
	srv := Start(t)
	url := strings.Replace(srv.URL(), "esdb://", "esdb+discover://", 1)
	c := newClient(t, url)
	res := appendOK(t, c, "acc-1", esdb.NoStream{}, jsonEvent("E", `{}`))
	require.Equal(t, uint64(0), res.NextExpectedVersion)
}
