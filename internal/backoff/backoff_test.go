package backoff

import (
	"testing"
	"time"
)

func TestNextGrowsCapsAndResets(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.Next()
		if d < w/2 || d > w {
			t.Errorf("delay %d = %s, want in [%s, %s]", i, d, w/2, w)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after Reset delay = %s, want ≤ 100ms", d)
	}
}
