package server

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live int64
		want int
	}{
		{0, 100},
		{100 << 20, 100}, // a small store: Go's default
		{384 << 20, 100}, // the headroom is the live heap
		{768 << 20, 50},  // half
		{1536 << 20, 25}, // 1.5 GiB: a quarter, so at most 1.25× live
		{16 << 30, 10},   // never below the floor
		{-1, 100},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}
