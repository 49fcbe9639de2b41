package kick

import (
	"context"
	"testing"
	"time"
)

func TestSendCoalesces(t *testing.T) {
	ch := New()
	Send(ch)
	Send(ch) // must not block
	<-ch
	select {
	case <-ch:
		t.Fatal("two kicks before a read gave two")
	default:
	}
}

func TestMerge(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := New(), New()
	out := Merge(ctx, a, b)
	for _, in := range []chan struct{}{a, b} {
		Send(in)
		select {
		case <-out:
		case <-time.After(5 * time.Second):
			t.Fatal("a kick was not forwarded")
		}
	}
}
