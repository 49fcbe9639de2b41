package backoff

import (
	"context"
	"errors"
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

func TestRetry(t *testing.T) {
	b := New(time.Millisecond, 4*time.Millisecond)
	var waited []time.Duration
	b.Sleep = func(_ context.Context, d time.Duration) { waited = append(waited, d) }
	n := 0
	var seen []error
	err := Retry(context.Background(), b, func(context.Context) error {
		if n++; n < 4 {
			return errors.New("not yet")
		}
		return nil
	}, func(err error, wait time.Duration) time.Duration {
		seen = append(seen, err)
		return wait
	}, nil)
	if err != nil || n != 4 || len(seen) != 3 || len(waited) != 3 {
		t.Fatalf("err %v after %d attempts, %d errors seen, %d waits; want nil, 4, 3, 3", err, n, len(seen), len(waited))
	}
	if d := b.Next(); d > time.Millisecond {
		t.Errorf("backoff not reset after the success: next delay %s", d)
	}
}

func TestRetryWakesEarlyAndStopsWithContext(t *testing.T) {
	b := New(time.Hour, time.Hour)
	wake := make(chan struct{}, 1)
	n := 0
	start := time.Now()
	err := Retry(context.Background(), b, func(context.Context) error {
		if n++; n == 1 {
			wake <- struct{}{} // the token changed during the attempt
			return errors.New("denied")
		}
		return nil
	}, nil, func() <-chan struct{} { return wake })
	if err != nil || n != 2 || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %d attempts in %s; want a second attempt at once", err, n, time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Retry(ctx, New(time.Hour, time.Hour), func(context.Context) error { return errors.New("down") }, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Retry with a cancelled context = %v, want context.Canceled", err)
	}
}
