package watch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/internal/backoff"
)

// Fetch runs one blocking query: it returns when the data's index passes
// index (or the server's wait time ends) with the data and its new index.
type Fetch[T any] func(ctx context.Context, index uint64) (T, uint64, error)

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
			if discovery.ACLDenied(err) {
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
