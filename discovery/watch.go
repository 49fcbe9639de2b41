package discovery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	"github.com/drover-net/drover/internal/backoff"
)

// Fetch runs one blocking query: it returns when the data's index passes
// index (or the server's wait time ends) with the data and its new index.
type Fetch[T any] func(ctx context.Context, index uint64) (T, uint64, error)

// Latest holds the newest snapshot of one watched topic. A slow reader sees
// fewer, newer snapshots, never a queue. Its zero value is not usable; make
// one with NewLatest.
type Latest[T any] struct {
	mu      sync.Mutex
	val     T
	ok      bool      // a first successful read happened
	at      time.Time // time of the last successful contact
	lastErr error
	kick    chan<- struct{}
}

// NewLatest returns an empty Latest that kicks kick (non-blocking, so kick
// should have capacity 1) whenever its value changes.
func NewLatest[T any](kick chan<- struct{}) *Latest[T] { return &Latest[T]{kick: kick} }

// Get returns the value, whether any read succeeded, and the time of the last
// successful contact (for staleness reports).
func (l *Latest[T]) Get() (T, bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.val, l.ok, l.at
}

// Err returns the error of the last failed read, or nil after a success.
func (l *Latest[T]) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

func (l *Latest[T]) set(v T) {
	l.mu.Lock()
	changed := !l.ok || !reflect.DeepEqual(l.val, v)
	l.val, l.ok, l.at, l.lastErr = v, true, time.Now(), nil
	l.mu.Unlock()
	if changed && l.kick != nil {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

func (l *Latest[T]) fail(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}

// Watch runs fetch in a loop following consul-template's rules until ctx
// ends: the index it passes is the last one seen (0, a read that answers
// at once, after an error); an index that went backwards resets to 0; a result deep-equal to the last one is dropped; at
// least minWait (plus jitter) passes between queries; errors back off
// (capped, jittered) and any success resets the backoff.
func Watch[T any](ctx context.Context, log *slog.Logger, topic string, fetch Fetch[T], out *Latest[T], minWait time.Duration) {
	var index uint64
	bo := backoff.New(250*time.Millisecond, 4*time.Second) // the local agent is cheap to ask; staleness is not
	for ctx.Err() == nil {
		begin := time.Now()
		v, next, err := fetch(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			out.fail(err)
			log.Warn("consul watch failed", "topic", topic, "err", err)
			if ACLDenied(err) {
				// A refused token is retried every second, so that a
				// replaced token file is used within seconds.
				bo.Sleep(ctx, time.Second)
			} else {
				bo.Wait(ctx)
			}
			// The next read must not block: it answers at once when Consul
			// is back, which is what clears the error (staleness) for
			// consumers.
			index = 0
			continue
		}
		bo.Reset()
		switch {
		case next < index:
			index = 0 // the index went backwards (snapshot restore): start over
		case next == 0:
			index = 1 // never block on 0
		default:
			index = next
		}
		out.set(v)
		rest := minWait + time.Duration(rand.Int64N(int64(minWait)/2+1)) - time.Since(begin)
		if rest > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(rest):
			}
		}
	}
}

// ACLDenied reports whether err is, or wraps, a refusal by Consul's ACLs:
// the Consul adapter's errors say so with an ACLDenied() bool method. Loops
// retry those every second (a new token file must work within seconds) and
// never treat them as an answer about the data.
func ACLDenied(err error) bool {
	var d interface{ ACLDenied() bool }
	return errors.As(err, &d) && d.ACLDenied()
}
