package accessmodel

import (
	"slices"
	"time"

	"github.com/accessledger/accessledger/domain"
)

// Segment is a maximal interval of effective time [From, To) in which a
// pair's access is the same and not empty. A zero To means open-ended: no
// fact known so far ends it.
type Segment struct {
	From        time.Time
	To          time.Time
	Permissions domain.PermissionSet
	Reason      domain.Reason
}

// Contains reports whether t lies in the segment.
func (s Segment) Contains(t time.Time) bool {
	return !t.Before(s.From) && (s.To.IsZero() || t.Before(s.To))
}

// Timeline returns the segments of the pair's access over all effective
// time, in order: the policy's answers between consecutive fact times. The
// access can only change at a time that appears in the facts, so evaluating
// the policy once per such time is exact.
func (f *Facts) Timeline() []Segment { return f.AppendTimeline(nil) }

// AppendTimeline appends Timeline's segments to dst and returns the
// extended slice: for a caller that reuses one slice for many timelines.
func (f *Facts) AppendTimeline(dst []Segment) []Segment {
	var room [32]time.Time
	times := f.breakpoints(room[:0])
	first := len(dst)
	for i, t := range times {
		// The answer at t without its Until: the segments' ends are the
		// next fact times, so the policy need not look ahead itself.
		a := domain.ChildAccessAt(f.Account, f.Placements, f.Grants, t)
		if a.Permissions == 0 {
			continue
		}
		var to time.Time
		if i+1 < len(times) {
			to = times[i+1]
		}
		if n := len(dst); n > first && dst[n-1].To.Equal(t) && dst[n-1].Permissions == a.Permissions && dst[n-1].Reason == a.Reason {
			dst[n-1].To = to
			continue
		}
		dst = append(dst, Segment{From: t, To: to, Permissions: a.Permissions, Reason: a.Reason})
	}
	return dst
}

// breakpoints appends every distinct non-zero time of the facts to ts,
// sorted, and returns the extended slice.
func (f *Facts) breakpoints(ts []time.Time) []time.Time {
	add := func(t time.Time) {
		if !t.IsZero() {
			ts = append(ts, t)
		}
	}
	add(f.Account.ActivatedAt)
	add(f.Account.ClosedAt)
	for _, l := range f.Account.Lapses {
		add(l.ClosedAt)
		add(l.ReopenedAt)
	}
	for _, p := range f.Placements {
		add(p.Start)
		add(p.End)
		add(p.GraceEnd)
	}
	for _, g := range f.Grants {
		add(g.From)
		add(g.To)
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(ts, func(a, b time.Time) bool { return a.Equal(b) })
}
