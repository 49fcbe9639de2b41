package haproxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProcs(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      Procs
		err       bool
	}{
		{"one worker", `#<PID>          <type>          <reloads>       <uptime>        <version>
31564           master          1 [failed: 0]   0d00h00m20s     2.6.12-1+deb12u4
# workers
32103           worker          0               0d00h00m04s     2.6.12-1+deb12u4
# programs
`, Procs{Master: 31564, Reloads: 1, Worker: 32103}, false},
		{"old workers after reloads, one failed", `#<PID>          <type>          <reloads>       <uptime>        <version>
100             master          5 [failed: 2]   0d00h10m00s     2.6.12
# workers
300             worker          0               0d00h00m01s     2.6.12
# old workers
200             worker          1               0d00h01m00s     2.6.12
150             worker          2               0d00h05m00s     2.6.12
# programs
`, Procs{Master: 100, Reloads: 5, FailedReloads: 2, Worker: 300, OldWorkers: []int{200, 150}}, false},
		{"not a show proc answer", "Unknown command\n", Procs{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcs(tc.out)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseProcs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	out := `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr
http_80,FRONTEND,,,0,3,262127,60,6120,9960,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,3,,,,0,60,0,0,0,0,,0,3,60,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,
web,web-1,0,0,2,1,,30,3060,4980,,0,,0,0,0,0,UP,100,1,0,0,0,23,0,,1,3,1,,30,,2,0,,1,L4OK,,0,0,30,0,0,0,0,,,,30,0,0,,,,,1,,,0,0,0,0,,,,Layer4 check passed,,2,3,4,,,,10.42.2.2:8080
web,slot1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,100,1,0,0,0,23,23,,1,3,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:1
web,BACKEND,0,0,0,1,26213,30,3060,4980,0,0,,0,0,0,0,UP,100,1,0,,0,23,0,,1,3,0,,30,,1,0,,1,,,,0,30,0,0,0,0,,,,30,0,0,0,0,0,0,1,,,0,0,0,0,,,,,,,,,,,,,,
`
	want := []ServerStatus{
		{Backend: "web", Server: "web-1", Addr: "10.42.2.2:8080", Status: "UP", Sessions: 2, Total: 30},
		{Backend: "web", Server: "slot1", Addr: "127.0.0.1:1", Status: "MAINT"},
	}
	if diff := cmp.Diff(want, ParseStat(out)); diff != "" {
		t.Errorf("ParseStat (-want +got):\n%s", diff)
	}
}

// A kill -9 while staging leaves stage and check files; the next start
// removes them (issue 12, T2) and keeps everything else.
func TestNewRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".haproxy.cfg.drover-stage-123", ".haproxy.cfg.check-456", ".running.json.drover-stage-7", "haproxy.cfg", "keep.me"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(Options{Mode: ModeManaged, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	got := strings.Join(left, " ")
	if got != "certs haproxy.cfg keep.me" {
		t.Errorf("left %q, want the leftovers gone and the rest kept", got)
	}
}

// client-native gives certificate answers as text; cliError is the one
// place that reads it, and the errors it returns keep the original.
func TestCLIError(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{errors.New("[1] Certificate '/x.pem' already exists [new ssl cert /x.pem] general error"), errCertExists},
		{errors.New("can't find certificate: not found"), errCertNotFound},
		{errors.New("permission denied"), nil},
	} {
		got := cliError(tc.in)
		if !errors.Is(got, tc.in) {
			t.Errorf("cliError(%q) = %v: lost the original error", tc.in, got)
		}
		for _, s := range []error{errCertExists, errCertNotFound} {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("cliError(%q) = %v: errors.Is %v = %v", tc.in, got, s, !(s == tc.want))
			}
		}
	}
	if cliError(nil) != nil {
		t.Error("cliError(nil) != nil")
	}
}

// A config the binary refuses is an ErrInvalid, whatever the text.
func TestValidateRefusalIsErrInvalid(t *testing.T) {
	h, err := New(Options{Mode: ModeManaged, Bin: "false", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(t.Context(), []byte("global\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Validate with a refusing binary = %v, want ErrInvalid", err)
	}
}
