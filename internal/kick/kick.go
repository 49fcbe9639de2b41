// Package kick is the one coalescing trigger of the tree: a kick is a
// struct{} sent without blocking on a channel of capacity 1, so that any
// number of kicks before the receiver looks collapse into one (style R3).
// Send, Forward and Merge are the only places that write that select.
//
// It carries no data and no ordering: a kicked loop re-reads the latest
// state itself.
package kick

import "context"

// New returns a kick channel (capacity 1).
func New() chan struct{} { return make(chan struct{}, 1) }

// Send kicks ch without blocking: when ch already holds a kick, this one
// merges with it.
func Send(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Forward passes every kick on in to out (coalesced with Send) until ctx
// ends. Run it in its own goroutine.
func Forward(ctx context.Context, in <-chan struct{}, out chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-in:
			Send(out)
		}
	}
}

// Merge returns one kick channel that is kicked whenever any of ins is,
// until ctx ends (one forwarding goroutine per input, all ending with ctx).
func Merge(ctx context.Context, ins ...<-chan struct{}) <-chan struct{} {
	out := New()
	for _, in := range ins {
		go Forward(ctx, in, out)
	}
	return out
}
