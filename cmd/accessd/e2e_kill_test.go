package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

// serveHelperEnv, when set, makes TestServe_HelperProcess run accessd with
// the arguments it holds (separated by U+001F): the server the kill test
// kills.
const serveHelperEnv = "ACCESSLEDGER_TEST_SERVE_HELPER"

func TestServe_HelperProcess(t *testing.T) {
	args := os.Getenv(serveHelperEnv)
	if args == "" {
		t.Skip("the process TestServe_KilledDuringGrantsWithKeys runs and kills")
	}
	os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr, noEnv))
}

// TestServe_KilledDuringGrantsWithKeys: serve (SQLite, its read models and
// idempotency keys written without fsync, docs/performance.md) is killed
// (SIGKILL) while a worker sends grants, each with an Idempotency-Key, one
// after another. Restarted on the same data directory, it answers every
// request sent again with its key: one answered before the kill with the
// first answer, byte for byte, marked replayed; the one in flight with
// the grant made once (on SQLite its claim was in the killed process's
// memory, so the retry runs at once and finds the grant's events; a
// pending row would answer 409 until its lease ran out); one never sent
// runs. Every
// member ends with exactly one grant in the log, and the read models
// (access history) and the index agree with the log.
func TestServe_KilledDuringGrantsWithKeys(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	args := []string{"serve", "--data-dir", dir, "--addr", "127.0.0.1:0", "--log-level", "info"}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServe_HelperProcess$")
	cmd.Env = append(os.Environ(), serveHelperEnv+"="+strings.Join(args, "\x1f"))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	cmd.Stdout = nil
	require.NoError(t, cmd.Start())
	var killed sync.Once
	kill := func() { killed.Do(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() }) }
	t.Cleanup(kill)
	addr := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		for lines.Scan() {
			if m := re.FindStringSubmatch(lines.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	s := &e2eServer{t: t, dir: dir, client: &http.Client{Timeout: e2eWait}}
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-time.After(e2eWait):
		t.Fatal("the helper serve did not listen")
	}
	require.Eventually(t, func() bool {
		res, err := s.client.Get(s.url + "/readyz")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, e2eWait, 10*time.Millisecond)
	s.secret, err = auth.LoadOrCreateSecret(dir)
	require.NoError(t, err)

	const n = 40
	w := newWorld(s)
	child := w.registerChild()
	members := make([]e2eAccount, n)
	for i := range members {
		members[i] = w.account(string(domain.KindNetworkMember))
	}
	path := "/v1/children/" + child + "/grants"
	body := func(i int) []byte {
		return fmt.Appendf(nil, `{"account_id":%q,"relationship":"network_member","permissions":["view"],"reason":"grant %d"}`, members[i].id, i)
	}
	key := func(i int) string { return fmt.Sprintf("kill-test-%d", i) }

	// Grants one after another; the process is killed after the tenth
	// answer, while the next ones are sent.
	first := map[int][]byte{}
	sent := 0
	for i := range n {
		if i == 10 {
			go func() { time.Sleep(3 * time.Millisecond); kill() }()
		}
		r, err := w.worker.try("POST", path, body(i), "Idempotency-Key", key(i))
		sent = i + 1
		if err != nil {
			break // killed
		}
		require.Equal(t, http.StatusOK, r.status, r.String())
		first[i] = r.body
	}
	kill()
	require.GreaterOrEqual(t, len(first), 10)
	t.Logf("%d grants answered before the kill, %d sent", len(first), sent)

	// The same data directory, in process.
	s2 := startServerIn(t, dir)
	w2 := newWorld(s2)
	w2.worker = s2.as(domain.RoleWorker, w.worker.sub)
	for i := range n {
		var r *e2eResp
		require.Eventually(t, func() bool {
			r = w2.worker.do("POST", path, body(i), "Idempotency-Key", key(i))
			// 409: the claim of the request in flight, until its lease
			// ends; 503 stale: the ledger's whole check, which commands
			// wait for after a start from snapshots (ADR 0014).
			return r.status != http.StatusConflict && r.status != http.StatusServiceUnavailable
		}, 2*time.Minute, 200*time.Millisecond)
		require.Equal(t, http.StatusOK, r.status, r.String())
		if b, ok := first[i]; ok {
			require.Equal(t, "true", r.header.Get("Idempotent-Replayed"), "grant %d", i)
			require.True(t, bytes.Equal(b, r.body), "grant %d: the first answer %s, now %s", i, b, r.body)
		}
		w2.note(r.json())
	}

	// One grant per member in the log; the read models and the index agree.
	grants := map[string]int{}
	for _, e := range auditOf(w2.audit("child_id="+child), domain.TypeAccessGranted) {
		require.NotNil(t, e.AccountID)
		grants[e.AccountID.String()]++
	}
	for i, m := range members {
		require.Equal(t, 1, grants[m.id], "member %d granted once", i)
		requireAccess(t, w2.check(m.id, child, "view"), true, "grant")
	}
	require.Len(t, intervalsOf(w2.history("/v1/children/"+child+"/history", ""), members[n-1].id), 1)
}
