package scheduler

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt     int
		base, limit time.Duration
		want        time.Duration
	}{
		{0, time.Second, time.Minute, time.Second},
		{1, time.Second, time.Minute, time.Second},
		{2, time.Second, time.Minute, 2 * time.Second},
		{3, time.Second, time.Minute, 4 * time.Second},
		{6, time.Second, time.Minute, 32 * time.Second},
		{7, time.Second, time.Minute, time.Minute},
		{1000, time.Second, time.Minute, time.Minute},
		{3, time.Second, 0, time.Second}, // limit below base
		{5, 0, time.Minute, 0},
	} {
		if got := Backoff(tc.attempt, tc.base, tc.limit); got != tc.want {
			t.Errorf("Backoff(%d, %v, %v) = %v, want %v", tc.attempt, tc.base, tc.limit, got, tc.want)
		}
	}
}
