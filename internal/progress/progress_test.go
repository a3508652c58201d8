package progress

import (
	"strings"
	"testing"
	"time"

	"github.com/accessledger/accessledger/internal/syncbuf"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestPlainProgressPrintsEveryTenthOrTwoSeconds(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out strings.Builder
	report, finish := newClock(&out, false, "rebuild access_history", clock.now)

	report(0, 1000)
	clock.advance(500 * time.Millisecond)
	report(50, 1000) // less than a tenth, less than 2 s: nothing
	clock.advance(500 * time.Millisecond)
	report(100, 1000) // a tenth
	clock.advance(500 * time.Millisecond)
	report(150, 1000) // nothing
	clock.advance(1600 * time.Millisecond)
	report(190, 1000) // 2.1 s since the last line
	clock.advance(900 * time.Millisecond)
	report(1000, 1200) // more events arrived meanwhile: the total grows
	clock.advance(1900 * time.Millisecond)
	report(1200, 1200)
	finish()
	finish()           // once only
	report(1300, 1300) // after finish: ignored

	require.Equal(t, strings.Join([]string{
		"rebuild access_history: 100/1000 events (10%), 100 ev/s",
		"rebuild access_history: 190/1000 events (19%), 61 ev/s",   // 190 in 3.1 s
		"rebuild access_history: 1000/1200 events (83%), 250 ev/s", // 1000 in 4 s
		"rebuild access_history: 1200/1200 events (100%), 203 ev/s",
		"rebuild access_history: 1200/1200 events (100%) in 5.9s, 203 ev/s",
		"",
	}, "\n"), out.String())
}

func TestPlainProgressOfAnEmptyLog(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out strings.Builder
	report, finish := newClock(&out, false, "rebuild accounts", clock.now)
	report(0, 0)
	finish()
	require.Equal(t, "rebuild accounts: 0/0 events (100%) in 0s, - ev/s\n", out.String())
}

func TestPlainProgressFinishWithoutReportPrintsNothing(t *testing.T) {
	var out strings.Builder
	_, finish := New(&out, false, "rebuild accounts")
	finish()
	require.Empty(t, out.String())
}

func TestTerminalProgressDrawsABar(t *testing.T) {
	var out syncBuffer
	report, finish := New(&out, true, "rebuild audit_trail")
	report(0, 100)
	report(50, 100)
	report(100, 100)
	finish()
	s := out.String()
	require.Contains(t, s, "rebuild audit_trail")
	require.Contains(t, s, "100/100")
	require.True(t, strings.HasSuffix(s, "\n"), "the bar ends its line when done")
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer = syncbuf.Buffer
