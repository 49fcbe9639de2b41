package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/healthcheck"
	"github.com/drover-net/drover/lb"
	"github.com/drover-net/drover/lb/haproxy"
	"github.com/drover-net/drover/overlay"
)

func TestRowOf(t *testing.T) {
	now := time.Unix(10000, 0)
	r := StatusReport{Node: "h1", Version: "v1",
		Overlay: overlay.Status{Subnet: "10.42.1.0/24", Endpoint: "10.99.0.11:51820", PublicKey: "PUBKEY-h1",
			Peers: []overlay.PeerStatus{
				{Node: "h2", PublicKey: "PUBKEY-h2", LastHandshake: now.Add(-5 * time.Second), RxBytes: 10, TxBytes: 20, Health: "passing"},
				{Node: "h3", PublicKey: "PUBKEY-h3"},
			}},
		Mesh: []healthcheck.PeerProbe{{Node: "h2", Reachable: true, RTT: 1500 * time.Microsecond, ProbedAt: now}, {Node: "h3"}},
		Sync: discovery.SyncStatus{Problems: []discovery.Problem{{ContainerID: "c1", ContainerName: "bad", Reason: "unknown label x"}}},
	}
	row := rowOf(r, now.Add(-time.Minute), now, nil)
	if row.UptimeS != 60 || row.Subnet != "10.42.1.0/24" || len(row.Peers) != 2 || len(row.Refused) != 1 {
		t.Fatalf("row %+v", row)
	}
	h2, h3 := row.Peers[0], row.Peers[1]
	if !h2.Probed || !h2.Reachable || h2.RTTMs != 1.5 || h2.HandshakeAgeS != 5 || h2.RxBytes != 10 {
		t.Errorf("h2 %+v", h2)
	}
	if h3.Probed || h3.HandshakeAgeS != -1 {
		t.Errorf("h3 (never probed, no handshake) %+v", h3)
	}
	b, _ := json.Marshal(row)
	if strings.Contains(string(b), "PUBKEY") {
		t.Errorf("the row carries keys: %s", b)
	}
}

func TestLBSummaryOf(t *testing.T) {
	l := &LBStatus{Reloads: 2, RuntimeOps: 5,
		Frontends: []lb.Frontend{{Name: "http_80", Mode: "http", Port: 80, Routes: []lb.Route{{Host: "web.example", PathPrefix: "/api", Backend: "web"}}}},
		Backends: []LBBackend{{Name: "web", Mode: "http", Balance: "roundrobin", Slots: 8, Servers: []LBServer{
			{Slot: "slot0", Addr: "10.42.2.2:8080", Weight: 100, Status: "UP"},
			{Slot: "slot1", Addr: "10.42.3.2:8080", Weight: 100, Status: "MAINT"},
		}}}}
	stats := []haproxy.StatRow{
		{Proxy: "http_80", Server: "FRONTEND", Status: "OPEN", Sessions: 3, Rate: 7, Requests: 100, ErrReq: 1},
		{Proxy: "web", Server: "BACKEND", Status: "UP", Sessions: 3},
		{Proxy: "web", Server: "slot0", Status: "DOWN", Sessions: 2, Rate: 4, ErrConn: 2, ErrResp: 1},
	}
	s := lbSummaryOf("h1", l, stats, nil)
	f := s.Frontends[0]
	if f.Stats.Status != "OPEN" || f.Stats.Rate != 7 || f.Stats.Errors != 1 || f.Routes[0].Host != "web.example" || f.Routes[0].Path != "/api" {
		t.Errorf("frontend %+v", f)
	}
	b := s.Backends[0]
	if b.Slots != 8 || b.Stats.Status != "UP" || len(b.Servers) != 2 {
		t.Fatalf("backend %+v", b)
	}
	if sv := b.Servers[0]; sv.Stats.Status != "DOWN" || sv.Stats.Errors != 3 || sv.Stats.Rate != 4 {
		t.Errorf("slot0 takes HAProxy's own figures: %+v", sv)
	}
	if sv := b.Servers[1]; sv.Stats.Status != "MAINT" {
		t.Errorf("slot1 without a stat row keeps the lb's status: %+v", sv)
	}
}
