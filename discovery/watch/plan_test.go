package watch

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/drover-net/drover/discovery"
)

func TestPlanSet(t *testing.T) {
	chk := func(svc, status string, mod uint64) Check { return Check{Service: svc, Status: status, Modify: mod} }
	have := map[string][]discovery.Instance{
		"web": {{ID: "w1", Node: "n1"}, {ID: "w2", Node: "n2"}},
		"api": {{ID: "a1", Node: "n2"}},
		"db":  {{ID: "d1", Node: "n3"}},
	}
	base := View{Index: 10,
		Names: map[string][]string{"web": nil, "api": {"v1"}, "db": nil},
		Checks: map[CheckKey]Check{
			{"n1", "serfHealth"}: chk("", "passing", 2), {"n2", "serfHealth"}: chk("", "passing", 2),
			{"n1", "w1"}: chk("web", "passing", 5), {"n2", "w2"}: chk("web", "passing", 6),
			{"n2", "a1"}: chk("api", "passing", 7), {"n3", "d1"}: chk("db", "passing", 8),
		}}
	with := func(f func(v *View)) View {
		v := View{Index: base.Index, Names: map[string][]string{}, Checks: map[CheckKey]Check{}}
		for k, x := range base.Names {
			v.Names[k] = x
		}
		for k, x := range base.Checks {
			v.Checks[k] = x
		}
		f(&v)
		return v
	}
	for _, tc := range []struct {
		name string
		old  View
		cur  View
		want Plan
	}{
		{"first pass fetches every wanted service", View{}, base, Plan{Fetch: []string{"api", "db", "web"}}},
		{"nothing moved", base, base, Plan{}},
		{"a service check went critical", base, with(func(v *View) { v.Checks[CheckKey{"n2", "a1"}] = chk("api", "critical", 11) }),
			Plan{Fetch: []string{"api"}}},
		{"a node check fails: every service with an instance there", base, with(func(v *View) { v.Checks[CheckKey{"n2", "serfHealth"}] = chk("", "critical", 11) }),
			Plan{Fetch: []string{"api", "web"}}},
		{"a new instance with its check", base, with(func(v *View) {
			v.Index = 12
			v.Checks[CheckKey{"n4", "w3"}] = chk("web", "passing", 12)
		}), Plan{Fetch: []string{"web"}}},
		{"an instance deregistered with its check", base, with(func(v *View) {
			v.Index = 12
			delete(v.Checks, CheckKey{"n1", "w1"})
		}), Plan{Fetch: []string{"web"}}},
		{"a service gone", base, with(func(v *View) {
			v.Index = 12
			delete(v.Names, "db")
			delete(v.Checks, CheckKey{"n3", "d1"})
		}), Plan{Drop: []string{"db"}}},
		{"a new service", base, with(func(v *View) {
			v.Index = 12
			v.Names["cache"] = nil
			v.Checks[CheckKey{"n5", "c1"}] = chk("cache", "passing", 12)
		}), Plan{Fetch: []string{"cache"}}},
		{"tags changed", base, with(func(v *View) { v.Index = 12; v.Names["api"] = []string{"v2"} }), Plan{Fetch: []string{"api"}}},
		{"a service outside the set registered (its check explains the move)", base, with(func(v *View) {
			v.Index = 12
			v.Checks[CheckKey{"n9", "other"}] = chk("other", "passing", 12)
		}), Plan{}},
		{"catalog moved, no check: address/port/meta change, fetch all", base, with(func(v *View) { v.Index = 12 }),
			Plan{Fetch: []string{"api", "db", "web"}, All: true}},
		{"a check output update long ago does not explain a new move", base, with(func(v *View) {
			v.Index = 20
			v.Checks[CheckKey{"n9", "other"}] = chk("other", "passing", 9)
		}), Plan{Fetch: []string{"api", "db", "web"}, All: true}},
		{"a check outside the set changed status: nothing to fetch", base, with(func(v *View) {
			v.Checks[CheckKey{"n9", "other"}] = chk("other", "critical", 11)
		}), Plan{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := have
			if tc.old.Names == nil {
				h = nil
			}
			got := PlanSet(tc.old, tc.cur, h)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanDropsContentOutsideTheNames(t *testing.T) {
	old := View{Index: 5, Names: map[string][]string{"web": nil}}
	got := PlanSet(old, old, map[string][]discovery.Instance{"web": nil, "stale": nil})
	if diff := cmp.Diff(Plan{Drop: []string{"stale"}}, got); diff != "" {
		t.Error(diff)
	}
}
