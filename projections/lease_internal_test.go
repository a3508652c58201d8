package projections

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLeaseExpiredCountsTheRebuildsOwnTransactions(t *testing.T) {
	start := time.Unix(1_000, 0)
	const d = 30 * time.Second
	tests := []struct {
		name      string
		holding   bool
		renewedAt time.Time // by a transaction of the rebuild
		now       time.Time
		want      bool
	}{
		{"renewed within the lease", false, time.Time{}, start.Add(d - time.Nanosecond), false},
		{"not renewed for the lease", false, time.Time{}, start.Add(d), true},
		{"a transaction renewed it since", false, start.Add(20 * time.Second), start.Add(d + 10*time.Second), false},
		{"a transaction renewed it, too long ago", false, start.Add(20 * time.Second), start.Add(20*time.Second + d), true},
		{"a transaction holds the write lock", true, time.Time{}, start.Add(10 * d), false},
		{"an older renewal by a transaction does not count", false, start.Add(-time.Hour), start.Add(d), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &lease{holding: tt.holding, renewedAt: tt.renewedAt}
			require.Equal(t, tt.want, l.expired(start, tt.now, d))
		})
	}
}
