package healthcheck

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// responder answers probes as node name on a loopback port.
func responder(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "drover %s\n", name)
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestMeshRoundsBounded: with 40 peers and a budget of 8 probes a round,
// each round probes 8, the check does not call unprobed peers down, and
// after 6 rounds (8 + 5×7 idle + the active one) every peer has been probed and answers; a peer with
// traffic is probed every round.
func TestMeshRoundsBounded(t *testing.T) {
	var targets []Target
	for i := 0; i < 40; i++ {
		n := fmt.Sprintf("p%02d", i)
		targets = append(targets, Target{Node: n, Addr: responder(t, n)})
	}
	var reports []string
	m := NewMesh(MeshOptions{Self: "me", Targets: func() []Target { return targets }, MaxProbes: 8, Timeout: time.Second,
		Report: func(_ context.Context, status, output string) error {
			reports = append(reports, status+": "+output)
			return nil
		}, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	probed := func() (n int) {
		for _, p := range m.Status() {
			if !p.ProbedAt.IsZero() {
				n++
			}
		}
		return n
	}
	m.round(ctx)
	if n := probed(); n != 8 {
		t.Fatalf("after one round %d peers probed, want 8", n)
	}
	if last := reports[len(reports)-1]; !strings.HasPrefix(last, "passing: all 8 peers answer") || !strings.Contains(last, "32 not probed yet") {
		t.Errorf("report after one round: %q", last)
	}
	// p39 starts talking to this host: it is probed in every round from now.
	var p39 []time.Time
	for r := 0; r < 5; r++ {
		targets[39].Bytes += 1 << 20
		m.round(ctx)
		for _, p := range m.Status() {
			if p.Node == "p39" {
				p39 = append(p39, p.ProbedAt)
			}
		}
	}
	if n := probed(); n != 40 {
		t.Errorf("after 6 rounds %d of 40 peers probed", n)
	}
	for i := 1; i < len(p39); i++ {
		if !p39[i].After(p39[i-1]) {
			t.Errorf("the active peer was not probed in round %d: %v", i+2, p39)
		}
	}
	if last := reports[len(reports)-1]; last != "passing: all 40 peers answer through the tunnel" {
		t.Errorf("last report %q", last)
	}
}
