package processmanager

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
)

// TestScheduledWakesForNearerDeadlinesOnly: a deadline recorded due before
// the scheduler's next wake wakes it; one due after does not (the
// scheduler reads the table then), and both are noted for a scheduler
// reading the table meanwhile, the earliest kept.
func TestScheduledWakesForNearerDeadlinesOnly(t *testing.T) {
	woken := func(pm *ProcessManager) bool {
		select {
		case <-pm.poke:
			return true
		default:
			return false
		}
	}
	pm := &ProcessManager{poke: make(chan struct{}, 1)}
	pm.scheduled(t0.Add(time.Hour))
	require.True(t, woken(pm), "no wake set yet: wake")
	require.Equal(t, t0.Add(time.Hour), pm.recorded)

	pm.nextWake = t0.Add(time.Hour)
	pm.scheduled(t0.Add(2 * time.Hour))
	require.False(t, woken(pm), "due after the next wake")
	require.Equal(t, t0.Add(time.Hour), pm.recorded, "the earliest noted stays")
	pm.scheduled(t0.Add(time.Hour))
	require.False(t, woken(pm), "due at the next wake")
	pm.scheduled(t0.Add(30 * time.Minute))
	require.True(t, woken(pm), "due before the next wake")
	require.Equal(t, t0.Add(30*time.Minute), pm.recorded)
}

// TestSchedulerSleepsThroughLaterDeadlines: with the scheduler asleep until
// a deadline, recording one due later leaves it asleep; recording one due
// sooner wakes it to sleep until that one, which then fires first; the
// later ones fire in their turn.
func TestSchedulerSleepsThroughLaterDeadlines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		p := e.start(t, nil)
		first := e.place(t, t0.Add(-30*day))
		dueFirst := e.end(t, first, t0.Add(-2*day))
		e.relay(t)
		p.idle.waitWake(t, 0, dueFirst)
		// A wake asked for while the scheduler was busy (the poke is
		// buffered) may still come: count from when it sleeps undisturbed.
		n := p.idle.quiet(t, 100*time.Millisecond)
		require.Equal(t, dueFirst, p.idle.last(), "asleep until the first deadline")

		later := e.place(t, t0.Add(-30*day))
		dueLater := e.end(t, later, t0) // ended before now: no time mark
		e.relay(t)
		require.Equal(t, StatePending, p.deadline(t, GraceID(later.placeID)).State)
		// The condition reads a copy: Never may return while a last check
		// still runs, and n is set again below.
		asleep := n
		require.Never(t, func() bool { return p.idle.count() > asleep }, 200*time.Millisecond, 10*time.Millisecond,
			"a deadline due after the next wake does not wake the scheduler")

		sooner := e.place(t, t0.Add(-30*day))
		dueSooner := e.end(t, sooner, t0.Add(-4*day))
		e.relay(t)
		n = p.idle.waitWake(t, n, dueSooner)

		e.clock.Set(dueSooner)
		p.waitSettled(t, GraceID(sooner.placeID))
		e.relay(t)
		n = p.idle.waitWake(t, n, dueFirst)
		e.clock.Set(dueFirst)
		p.waitSettled(t, GraceID(first.placeID))
		e.relay(t)
		p.idle.waitWake(t, n, dueLater)
		e.clock.Set(dueLater)
		p.waitSettled(t, GraceID(later.placeID))
		calls := p.spy.Calls()
		require.Len(t, calls, 3)
		for i, want := range []placement{sooner, first, later} {
			require.Equal(t, commands.ExpireCarerAccess{ChildID: want.child, PlacementID: want.placeID}, calls[i].Command, "firing %d", i)
		}
	})
}

// quiet waits until the scheduler has not gone to sleep again for d, and
// returns the number of sleeps so far.
func (l *idleLog) quiet(t testing.TB, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	n := l.count()
	for {
		time.Sleep(d)
		m := l.count()
		if m == n {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scheduler kept waking for %s", waitFor)
		}
		n = m
	}
}

// last returns the time the scheduler last went to sleep until.
func (l *idleLog) last() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.wakes) == 0 {
		return time.Time{}
	}
	return l.wakes[len(l.wakes)-1]
}
