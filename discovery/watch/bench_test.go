package watch

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
)

// BenchmarkPlan10000 times what one check change costs a set at 10,000
// instances in 2,000 services: converting the check answer, comparing it
// with the last one (Latest drops equal answers) and planning.
func BenchmarkPlan10000(b *testing.B) {
	var hc api.HealthChecks
	have := map[string][]discovery.Instance{}
	names := map[string][]string{}
	for i := range 2000 {
		svc := fmt.Sprintf("s%04d", i)
		names[svc] = nil
		for j := range 5 {
			node := fmt.Sprintf("n%03d", (i*5+j)%1000)
			id := fmt.Sprintf("%s-%d", svc, j)
			hc = append(hc, &api.HealthCheck{Node: node, CheckID: id, ServiceID: id, ServiceName: svc, Status: "passing", ModifyIndex: 10})
			have[svc] = append(have[svc], discovery.Instance{ID: id, Service: svc, Node: node})
		}
	}
	old := ChecksFrom(hc, 100)
	oldView := View{Index: 50, Names: names, Checks: old.Checks}
	hc[4242] = &api.HealthCheck{Node: hc[4242].Node, CheckID: hc[4242].CheckID, ServiceName: hc[4242].ServiceName, Status: "critical", ModifyIndex: 101}
	b.ResetTimer()
	for range b.N {
		cur := ChecksFrom(hc, 101)
		if reflect.DeepEqual(old, cur) {
			b.Fatal("equal")
		}
		p := PlanSet(oldView, View{Index: 50, Names: names, Checks: cur.Checks}, have)
		if len(p.Fetch) != 1 {
			b.Fatalf("plan %+v", p)
		}
	}
}
