package overlay

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery"
)

func TestDescribeLeasesAndCheckRelease(t *testing.T) {
	kv := newFakeKV()
	kv.putLease(pfx("10.42.1.0/24"), Lease{Node: "b", PublicKey: "kb"})
	kv.putLease(pfx("10.42.0.0/24"), Lease{Node: "a", PublicKey: "ka"})
	kv.putLease(pfx("10.42.2.0/24"), Lease{Node: "c", PublicKey: "kc"})
	kv.putLease(pfx("10.42.3.0/24"), Lease{Node: "d", PublicKey: "kd"})
	kv.put(LeasePrefix+"10.42.4.0_24", []byte("garbage"))
	nodes := []discovery.Node{
		{Name: "a", PublicKey: "ka", ConsulNode: "ca"},
		{Name: "b", PublicKey: "kb", ConsulNode: "cb"},
		{Name: "d", PublicKey: "other", ConsulNode: "cd"}, // not the lease's key
	}
	serf := map[string]string{"ca": "passing", "cb": "critical", "cd": "passing"}
	entries, _ := kv.List(t.Context(), LeasePrefix)
	got := DescribeLeases(entries, nodes, serf)
	type row struct {
		Subnet, Node, Serf string
		Alive              bool
		Problem            bool
	}
	var rows []row
	for _, l := range got {
		rows = append(rows, row{l.Subnet, l.Node, l.Serf, l.Alive(), l.Problem != ""})
	}
	want := []row{
		{"10.42.0.0/24", "a", "passing", true, false},
		{"10.42.1.0/24", "b", "critical", false, false},
		{"10.42.2.0/24", "c", SerfAbsent, false, false},
		{"10.42.3.0/24", "d", SerfAbsent, false, false},
		{"10.42.4.0/24", "", SerfAbsent, false, true},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if err := CheckRelease(got[0], false); err == nil || !strings.Contains(err.Error(), "alive") {
		t.Errorf("releasing a live node's lease: %v", err)
	}
	if err := CheckRelease(got[0], true); err != nil {
		t.Errorf("--force refused: %v", err)
	}
	for _, l := range got[1:] {
		if err := CheckRelease(l, false); err != nil {
			t.Errorf("releasing %s (node gone): %v", l.Subnet, err)
		}
	}
}
