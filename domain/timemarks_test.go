package domain_test

import (
	"testing"
	"time"

	"github.com/accessledger/accessledger/domain"
)

// TestTimeMarksRecordTheMomentOnce: the process manager's marks of a start
// and an end recorded ahead: not before the time, once at or after it,
// nothing for a cancelled placement.
func TestTimeMarksRecordTheMomentOnce(t *testing.T) {
	start, end := t0.Add(3*day), t0.Add(10*day)
	startMark := &domain.PlacementStartReached{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, ReachedAt: start}
	endMark := &domain.PlacementEndReached{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, ReachedAt: end}
	planned := []domain.Event{registered(), started(placement, carerID, start)}
	withEnd := append(append([]domain.Event{}, planned...), ended(placement, carerID, end))
	cancelled := append(append([]domain.Event{}, planned...),
		&domain.PlacementCancelled{ChildID: childID, PlacementID: placement, CarerAccountID: carerID, CancelledAt: t0})
	tests := []struct {
		name    string
		history []domain.Event
		end     bool
		now     time.Time
		want    []domain.Event
		wantErr error
	}{
		{"a start before it comes", planned, false, start.Add(-time.Microsecond), nil, domain.ErrNotDue},
		{"a start when it comes", planned, false, start, []domain.Event{startMark}, nil},
		{"a start late", planned, false, start.Add(day), []domain.Event{startMark}, nil},
		{"a start marked already", append(append([]domain.Event{}, planned...), startMark), false, start.Add(day), nil, nil},
		{"a cancelled placement's start", cancelled, false, start.Add(day), nil, nil},
		{"an end not recorded", planned, true, end.Add(day), nil, domain.ErrPlacementNotEnded},
		{"an end before it comes", withEnd, true, end.Add(-time.Second), nil, domain.ErrNotDue},
		{"an end when it comes", withEnd, true, end, []domain.Event{endMark}, nil},
		{"an end marked already", append(append([]domain.Event{}, withEnd...), endMark), true, end.Add(day), nil, nil},
		{"an unknown placement", []domain.Event{registered()}, false, start, nil, domain.ErrPlacementNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := givenChild(t, tc.history...)
			mark := c.MarkStartReached
			if tc.end {
				mark = c.MarkEndReached
			}
			got, err := mark(placement, tc.now)
			if tc.wantErr != nil {
				thenError(t, got, err, tc.wantErr)
				return
			}
			thenEvents(t, got, err, tc.want...)
		})
	}
}
