package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadOp is one operation of a closed-loop load: worker is the client's
// number (0 to concurrency-1). It returns the operation's kind (one label
// per command of a mix, "" for a single kind) and its error.
type loadOp func(ctx context.Context, worker int) (kind string, err error)

// loadResult is what closedLoop measured: the operations started within
// the measured window, their latencies (all kinds, and by kind), and the
// failures.
type loadResult struct {
	Window     time.Duration
	Count      int64
	Errors     int64
	FirstError string
	Latencies  []time.Duration
	ByKind     map[string]*kindResult
	// Service and Late are fixedRate's: the latencies from each
	// operation's actual start, and how many started over a millisecond
	// after they were due.
	Service []time.Duration
	Late    int64
}

// kindResult is one kind's share of a load.
type kindResult struct {
	Count, Errors int64
	Latencies     []time.Duration
}

// perSecond is the operations per second of the measured window.
func (r loadResult) perSecond() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Count) / r.Window.Seconds()
}

// figure returns the load as a figure (name, store and unit to be set).
func (r loadResult) figure(name, store, unit string, concurrency int) figure {
	l := summarize(r.Latencies)
	f := figure{Name: name, Store: store, Concurrency: concurrency, Seconds: r.Window.Seconds(), Count: r.Count,
		Errors: r.Errors, Unit: unit, PerSecond: r.perSecond(), Latency: &l, FirstError: r.FirstError}
	if len(r.ByKind) > 1 || (len(r.ByKind) == 1 && r.ByKind[""] == nil) {
		for _, k := range sortedKeys(r.ByKind) {
			kr := r.ByKind[k]
			f.ByKind = append(f.ByKind, byKind{Kind: k, Count: kr.Count, Errors: kr.Errors, Latency: summarize(kr.Latencies)})
		}
	}
	return f
}

// closedLoop runs op in concurrency clients, each starting its next
// operation as soon as the last one answered (a closed loop), for warmup
// and then for window. Only the operations that start within the window
// are counted and timed; the ones in flight at its end are waited for. A
// client that has not started one operation within the window (the
// operations are slower than it) starts one after it, and the window is
// then taken to last until that operation's end. Latency is measured from
// the start to the end of op, so it includes the client's own work.
func closedLoop(ctx context.Context, concurrency int, warmup, window time.Duration, op loadOp) loadResult {
	type client struct {
		count, errors int64
		first         string
		lat           []time.Duration
		byKind        map[string]*kindResult
		lateEnd       time.Time // end of an operation started after the window
	}
	clients := make([]client, concurrency)
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+window)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &clients[w]
			c.lat = make([]time.Duration, 0, 1<<14)
			c.byKind = map[string]*kindResult{}
			for ctx.Err() == nil {
				t0 := time.Now()
				late := !t0.Before(to)
				if late && c.count > 0 {
					return
				}
				kind, err := op(ctx, w)
				d := time.Since(t0)
				if t0.Before(from) {
					continue
				}
				if late {
					c.lateEnd = t0.Add(d)
				}
				k := c.byKind[kind]
				if k == nil {
					k = &kindResult{}
					c.byKind[kind] = k
				}
				c.count++
				k.Count++
				c.lat = append(c.lat, d)
				k.Latencies = append(k.Latencies, d)
				if err != nil {
					c.errors++
					k.Errors++
					if c.first == "" {
						c.first = err.Error()
					}
				}
			}
		}()
	}
	wg.Wait()
	r := loadResult{Window: window, ByKind: map[string]*kindResult{}}
	if end := time.Now(); end.Before(to) { // cancelled
		r.Window = max(end.Sub(from), 0)
	}
	for _, c := range clients {
		if c.lateEnd.After(to) {
			r.Window = max(r.Window, c.lateEnd.Sub(from))
		}
		r.Count += c.count
		r.Errors += c.errors
		if r.FirstError == "" {
			r.FirstError = c.first
		}
		r.Latencies = append(r.Latencies, c.lat...)
		for name, k := range c.byKind {
			t := r.ByKind[name]
			if t == nil {
				t = &kindResult{}
				r.ByKind[name] = t
			}
			t.Count += k.Count
			t.Errors += k.Errors
			t.Latencies = append(t.Latencies, k.Latencies...)
		}
	}
	slices.Sort(r.Latencies)
	return r
}

// fixedRate runs op at a constant total rate (operations per second) in
// concurrency clients (an open loop, as wrk2 does): operation i is due at
// start + i/rate, and the first free client takes the next one due,
// waiting until it is due if it is early. An operation that was due
// before a client was free to take it (every client waiting for an
// answer: the server fell behind) is timed from when it was due, so its
// wait in the queue counts (no coordinated omission); one taken early is
// timed from when it is sent (a sleep's late wake-up is the client's, not
// the server's). r.Service holds the latencies from the actual start, for
// comparison.
// Operations due in the warm-up are made but not counted; counting stops
// with the last one due within the window, whose answers are waited for.
// r.Late counts the operations that started more than a millisecond
// after they were due.
func fixedRate(ctx context.Context, concurrency int, rate float64, warmup, window time.Duration, op loadOp) loadResult {
	type client struct {
		count, errors, late int64
		first               string
		lat, service        []time.Duration
	}
	interval := time.Duration(float64(time.Second) / rate)
	if interval <= 0 {
		interval = 1
	}
	clients := make([]client, concurrency)
	start := time.Now().Add(10 * time.Millisecond) // the clients' goroutines are running by then
	from, to := start.Add(warmup), start.Add(warmup+window)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &clients[w]
			c.lat = make([]time.Duration, 0, 1<<14)
			c.service = make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				due := start.Add(time.Duration(next.Add(1)-1) * interval)
				if !due.Before(to) {
					return
				}
				// An operation a client takes before it is due waits for
				// it, and is timed from when it is sent: a sleep wakes up
				// late by up to a scheduler tick, which is the client's
				// delay, not the server's. One taken after it was due (every
				// client was busy: the server fell behind) is timed from
				// when it was due, its wait in the queue included.
				from0 := due
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
					from0 = time.Now()
				}
				t0 := time.Now()
				_, err := op(ctx, w)
				end := time.Now()
				if due.Before(from) {
					continue
				}
				c.count++
				if t0.Sub(due) > time.Millisecond {
					c.late++
				}
				c.lat = append(c.lat, end.Sub(from0))
				c.service = append(c.service, end.Sub(t0))
				if err != nil {
					c.errors++
					if c.first == "" {
						c.first = err.Error()
					}
				}
			}
		}()
	}
	wg.Wait()
	// The window is the schedule's, or longer when the operations due in
	// it ended later (a server that fell behind): the rate is then what
	// was served, under the rate asked.
	r := loadResult{Window: max(window, time.Since(from)), ByKind: map[string]*kindResult{}}
	if ctx.Err() != nil {
		r.Window = max(min(time.Since(from), window), 0)
	}
	for _, c := range clients {
		r.Count += c.count
		r.Errors += c.errors
		r.Late += c.late
		if r.FirstError == "" {
			r.FirstError = c.first
		}
		r.Latencies = append(r.Latencies, c.lat...)
		r.Service = append(r.Service, c.service...)
	}
	slices.Sort(r.Latencies)
	slices.Sort(r.Service)
	return r
}
