// Package backoff is drover's one retry delay: exponential from a base to a
// cap, with full jitter, reset on success, and aware of contexts. It owns no
// retry loop; callers call Wait at the bottom of theirs.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff computes retry delays. It is not safe for concurrent use.
type Backoff struct {
	base, max time.Duration
	n         int
	// Sleep waits d or until ctx ends; tests replace it.
	Sleep func(ctx context.Context, d time.Duration)
}

// New returns a Backoff from base to max (for example 250 ms and 30 s).
func New(base, max time.Duration) *Backoff {
	return &Backoff{base: base, max: max, Sleep: sleep}
}

// Next returns the next delay: a random duration in [d/2, d] where d doubles
// from base up to max.
func (b *Backoff) Next() time.Duration {
	d := b.base << min(b.n, 30)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Wait sleeps the next delay, or less if ctx ends.
func (b *Backoff) Wait(ctx context.Context) { b.Sleep(ctx, b.Next()) }

// Reset starts the delays from base again; call it after any success.
func (b *Backoff) Reset() { b.n = 0 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Retry calls op until it succeeds or ctx ends (then it returns ctx's
// error), waiting b's next delay between attempts. It is drover's one retry
// loop; b is reset after a success so that it can be reused.
//
// onErr, if not nil, is told every failure with the delay about to be
// waited and returns the delay to wait instead (a caller retries an ACL
// refusal every second, say, whatever the backoff has reached). wake, if
// not nil, is called before every attempt and returns a channel that ends
// the wait after that attempt early (a replaced token file): taking it
// before the attempt means a change during the attempt is not missed.
func Retry(ctx context.Context, b *Backoff, op func(context.Context) error,
	onErr func(err error, wait time.Duration) time.Duration, wake func() <-chan struct{}) error {
	for {
		var early <-chan struct{}
		if wake != nil {
			early = wake()
		}
		err := op(ctx)
		if err == nil {
			b.Reset()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := b.Next()
		if onErr != nil {
			wait = onErr(err, wait)
		}
		if early == nil {
			b.Sleep(ctx, wait)
		} else {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-early:
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
