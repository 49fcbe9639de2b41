package haproxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAccessLine(t *testing.T) {
	got, ok := ParseAccessLine("10.99.0.5 https_443~ web drover_h2_abc_8080 200 1234 0 1 3 5 -- GET /api/x?y=1\n")
	want := AccessEntry{Client: "10.99.0.5", Frontend: "https_443", Backend: "web", Server: "drover_h2_abc_8080", Status: 200,
		Bytes: 1234, QueueMs: 0, ConnectMs: 1, ResponseMs: 3, TotalMs: 5, Termination: "--", Method: "GET", Path: "/api/x?y=1"}
	if !ok || !cmp.Equal(got, want) {
		t.Errorf("http line: %v %s", ok, cmp.Diff(want, got))
	}
	got, ok = ParseAccessLine("10.99.0.5 tcp_5432 pg slot3 - 889 0 2 - 60000 -- - -")
	if !ok || got.Status != 0 || got.ResponseMs != -1 || got.TotalMs != 60000 || got.Method != "" || got.Server != "slot3" {
		t.Errorf("tcp line: %v %+v", ok, got)
	}
	if _, ok := ParseAccessLine("<134>Dec  4 haproxy[1]: something else"); ok {
		t.Error("a line of another format parsed")
	}
}
