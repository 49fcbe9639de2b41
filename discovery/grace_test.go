package discovery

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestInGrace(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := Registration{Started: start, Check: Check{Kind: "http", Interval: 2 * time.Second, Fall: 3, Grace: 5 * time.Second}}
	cases := []struct {
		name     string
		r        Registration
		now      time.Time
		wantFall int
		wantEnd  time.Time
	}{
		{"during grace: fall raised by ceil(grace/interval)", base, start.Add(time.Second), 6, start.Add(5 * time.Second)},
		{"grace over", base, start.Add(5 * time.Second), 3, time.Time{}},
		{"no grace", func() Registration { r := base; r.Check.Grace = 0; return r }(), start, 3, time.Time{}},
		{"unknown start", func() Registration { r := base; r.Started = time.Time{}; return r }(), start, 3, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, end := tc.r.InGrace(tc.now)
			if got.Check.Fall != tc.wantFall || !end.Equal(tc.wantEnd) {
				t.Errorf("fall %d end %v, want %d %v", got.Check.Fall, end, tc.wantFall, tc.wantEnd)
			}
			if tc.r.Check.Fall != 3 {
				t.Error("InGrace changed its receiver")
			}
		})
	}
}

func TestGraceLabel(t *testing.T) {
	c := Container{ID: "abcdefabcdef0000", Name: "web", Image: "web:1", Running: true, Exposed: []int{8080},
		Labels: map[string]string{"drover.check.grace": "30s"}, Networks: map[string]netip.Addr{"drover": netip.MustParseAddr("10.42.0.5")}}
	regs, probs := Registrations("h1", "drover", []Container{c})
	if len(probs) != 0 || len(regs) != 1 || regs[0].Check.Grace != 30*time.Second {
		t.Fatalf("regs %+v problems %+v", regs, probs)
	}
	c.Labels["drover.check.grace"] = "2h"
	_, probs = Registrations("h1", "drover", []Container{c})
	if len(probs) != 1 || !strings.Contains(probs[0].Reason, `drover.check.grace "2h": want a duration between 0s and 1h`) {
		t.Errorf("problems %+v", probs)
	}
}
