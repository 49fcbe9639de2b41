package dns

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/drover-net/drover/discovery"
)

var netipLoopback = netip.MustParseAddr("127.0.0.1")

// scripted is a Source whose snapshots the test hands over one by one.
type scripted struct {
	kick chan struct{}
	next chan func() (map[string][]discovery.Instance, error)
}

func (s scripted) Changed() <-chan struct{} { return s.kick }
func (s scripted) Snapshot() (map[string][]discovery.Instance, error) {
	return (<-s.next)()
}

func TestFeedKeepsTheLastGoodIndex(t *testing.T) {
	src := scripted{kick: make(chan struct{}), next: make(chan func() (map[string][]discovery.Instance, error))}
	srv := NewServer(ServerOptions{Domain: "service.consul", TTL: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Feed(ctx, src, srv); close(done) }()
	step := func(snap map[string][]discovery.Instance, err error) {
		src.kick <- struct{}{}
		src.next <- func() (map[string][]discovery.Instance, error) { return snap, err }
		src.kick <- struct{}{} // taken only once the step above was applied
		src.next <- func() (map[string][]discovery.Instance, error) { return snap, err }
	}
	web := func() int {
		m := srv.Handle(ctx, query("web.service.consul.", mdns.TypeA), false, netipLoopback)
		if m.Rcode == mdns.RcodeServerFailure {
			return -1
		}
		return len(m.Answer)
	}

	step(nil, errors.New("services: not read yet"))
	if st := srv.Status(); !st.IndexAt.IsZero() || st.IndexError == "" || web() != -1 {
		t.Errorf("before a first read: index at %v, error %q, web %d; want none, the reason, SERVFAIL", st.IndexAt, st.IndexError, web())
	}
	step(testSnapshot, nil)
	if st := srv.Status(); st.IndexError != "" || st.Instances != 6 || web() != 2 {
		t.Errorf("after a read: error %q, instances %d, web %d", st.IndexError, st.Instances, web())
	}
	step(nil, errors.New("reading health checks: connection refused"))
	if st := srv.Status(); st.IndexError == "" || st.Instances != 6 || web() != 2 {
		t.Errorf("Consul gone: error %q, instances %d, web %d; want the last index kept", st.IndexError, st.Instances, web())
	}
	step(map[string][]discovery.Instance{"web": {inst("web", "h2", "10.42.2.2", 8080, "passing")}}, nil)
	if st := srv.Status(); st.IndexError != "" || web() != 1 {
		t.Errorf("back: error %q, web %d", st.IndexError, web())
	}
	cancel()
	<-done
}
