package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// stub is a resolver on loopback that answers every A question with
// 192.0.2.1, standing for the host's resolver.
func stub(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

func TestHandle(t *testing.T) {
	up := stub(t)
	dead := func() string { // a UDP port nothing answers on
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.LocalAddr().String()
	}()
	ctr := netip.MustParseAddr("10.42.1.5")
	allow := []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")}
	s := NewServer(ServerOptions{Domain: "Service.Consul", TTL: 5 * time.Second, Upstreams: []string{dead, up}, Timeout: 300 * time.Millisecond, Allow: allow})
	ctx := context.Background()

	if m := s.Handle(ctx, query("web.service.consul.", mdns.TypeA), false, ctr); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("before the first index: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	s.SetIndex(NewIndex(testSnapshot), time.Now())
	if m := s.Handle(ctx, query("web.service.consul.", mdns.TypeA), false, ctr); m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 2 {
		t.Errorf("in the domain: %s with %d answers, want NOERROR with 2", mdns.RcodeToString[m.Rcode], len(m.Answer))
	}
	start := time.Now()
	req := query("example.invalid.", mdns.TypeA)
	m := s.Handle(ctx, req, false, ctr)
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "192.0.2.1" || m.Id != req.Id {
		t.Errorf("forwarded past a dead upstream: %v", m)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("forwarding took %v: the dead upstream's deadline did not hold", d)
	}
	if m := s.Handle(ctx, query("example.invalid.", mdns.TypeA), true, ctr); len(m.Answer) != 1 {
		t.Errorf("forwarded over TCP: %v", m)
	}
	if m := s.Handle(ctx, query("example.invalid.", mdns.TypeA), false, netip.MustParseAddr("10.99.0.12")); m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 {
		t.Errorf("from the underlay: %s, want REFUSED", mdns.RcodeToString[m.Rcode])
	}
	only := NewServer(ServerOptions{Domain: "service.consul", Upstreams: []string{dead}, Timeout: 200 * time.Millisecond})
	if m := only.Handle(ctx, query("example.invalid.", mdns.TypeA), false, ctr); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("no upstream answers: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}

	st := s.Status().Stats
	want := map[string]uint64{"SERVFAIL": 1, "NOERROR": 3, "REFUSED": 1}
	for k, v := range want {
		if st.Queries[k] != v {
			t.Errorf("queries %s = %d, want %d (all %v)", k, st.Queries[k], v, st.Queries)
		}
	}
	if st.Forwarded != 2 || st.Refused != 1 || st.ForwardErrors != 0 || st.LatencyCount != 5 {
		t.Errorf("stats %+v", st)
	}
	if b := st.Buckets[len(st.Buckets)-1]; b != 5 {
		t.Errorf("last latency bucket %d, want 5", b)
	}
}

func TestRunServesUDPAndTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	s := NewServer(ServerOptions{Listen: addr, Domain: "service.consul", TTL: 5 * time.Second})
	s.SetIndex(NewIndex(bigSnapshot(1, 200)), time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Status().Listening {
		if time.Now().After(deadline) {
			t.Fatal("server not listening after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	udp := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := udp.Exchange(query("svc0.service.consul.", mdns.TypeA), addr.String())
	if err != nil || !r.Truncated || len(r.Answer) == 0 {
		t.Fatalf("udp: err %v, reply %v", err, r)
	}
	tcp := &mdns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err = tcp.Exchange(query("svc0.service.consul.", mdns.TypeA), addr.String())
	if err != nil || r.Truncated || len(r.Answer) != 200 {
		t.Fatalf("tcp: err %v, %d answers, tc %v", err, len(r.Answer), r != nil && r.Truncated)
	}
	// A second server on the same address fails with the reason.
	if err := NewServer(ServerOptions{Listen: addr, Domain: "service.consul"}).Run(context.Background()); err == nil {
		t.Errorf("second server on %v: no error", addr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if s.Status().Listening {
		t.Errorf("still listening after Run returned")
	}
}
