package server

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live, store int64
		want        int
	}{
		{0, 0, 100},
		{100 << 20, 0, 100},       // a small heap: Go's default
		{384 << 20, 0, 100},       // the headroom is the live heap
		{768 << 20, 0, 50},        // half
		{1536 << 20, 0, 25},       // 1.5 GiB: a quarter, so at most 1.25× live
		{16 << 30, 0, 10},         // never below the floor
		{768 << 20, 1 << 30, 66},  // half the store is more than the headroom
		{3 << 30, 14 << 30, 100},  // ten million jobs: the index is far below the store
		{1536 << 20, 1 << 30, 33}, // 512 MiB, half the store, of 1.5 GiB
		{-1, 0, 100},
	} {
		if got := gcPercentFor(c.live, c.store); got != c.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", c.live, c.store, got, c.want)
		}
	}
}
