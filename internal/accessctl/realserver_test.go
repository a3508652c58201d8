package accessctl

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/apitest"
	"github.com/accessledger/accessledger/projections/ledger"
)

// realServer is the engine's HTTP API (internal/apitest: the real command
// and query services, access index and ledger, signing a checkpoint
// whenever asked), so that the ledger's verbs are tested against real
// checkpoints and proofs.
type realServer struct {
	*apitest.Server
	url    string
	ledger *ledger.Ledger
	key    *ledger.Key // the ledger's signing key
}

func newRealServer(t *testing.T) *realServer {
	t.Helper()
	s := apitest.Start(t, nil)
	return &realServer{Server: s, url: s.URL, ledger: s.Ledger, key: s.Key}
}

// env is the environment of a run as role.
func (s *realServer) env(t *testing.T, role domain.Role) map[string]string {
	t.Helper()
	return map[string]string{envServer: s.url, envToken: s.Token(t, role, string(role)+"-1")}
}

// registerChildren registers n children through accessctl and waits until
// the ledger's tree has every event; it returns the log's records.
func (s *realServer) registerChildren(t *testing.T, n int) []eventlog.Record {
	t.Helper()
	for i := 0; i < n; i++ {
		res := runCLI(t, s.env(t, domain.RoleWorker), "register-child", "--reference", "NCC-"+time.Now().Format("150405.000000000"))
		require.Equal(t, exitOK, res.code, res.stderr)
	}
	s.CaughtUp(t)
	return s.Log(t)
}
