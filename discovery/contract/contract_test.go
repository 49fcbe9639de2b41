package contract

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	ck := Check{Kind: "http", Path: "/healthz", Interval: 1500 * time.Millisecond, Timeout: 700 * time.Millisecond, Rise: 2, Fall: 4}
	for _, l := range []LB{
		{Mode: "http", Weight: 100},
		{Mode: "http", Port: 8080, Host: "web.example", Path: "/api", Balance: "leastconn", Weight: 0},
		{Mode: "tcp", Port: 5432, Balance: "source", Weight: 256, ProxyProtocol: "v2", TunnelTimeout: 90 * time.Minute},
		{Mode: "http", Sticky: true, ProxyProtocol: "v1", TunnelTimeout: 1500 * time.Millisecond, Weight: 1},
	} {
		m := map[string]string{}
		Encode(m, &l, ck)
		got, err := DecodeLB(m)
		if err != nil {
			t.Fatalf("DecodeLB(%v): %v", m, err)
		}
		w, err := DecodeWeight(m, 100)
		if err != nil {
			t.Fatal(err)
		}
		got.Weight = w
		if diff := cmp.Diff(l, got); diff != "" {
			t.Errorf("LB round trip (-want +got):\n%s", diff)
		}
		c, errs := DecodeCheck(m, Check{Kind: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 1, Fall: 1})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if diff := cmp.Diff(ck, c); diff != "" {
			t.Errorf("check round trip (-want +got):\n%s", diff)
		}
	}
}

func TestEncodeNothingWithoutLB(t *testing.T) {
	m := map[string]string{"drover_node": "h1"}
	Encode(m, nil, Check{Kind: "tcp", Interval: time.Second})
	if len(m) != 1 || AsksForLB(m) {
		t.Errorf("meta = %v, want it unchanged", m)
	}
}

func TestEncodeNoCheckTimings(t *testing.T) {
	m := map[string]string{}
	Encode(m, &LB{Mode: "http", Weight: 100}, Check{Kind: "none", Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1})
	want := map[string]string{KeyLBMode: "http", KeyWeight: "100", KeyCheckKind: "none"}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("meta (-want +got):\n%s", diff)
	}
}

func TestDecodeRefuses(t *testing.T) {
	def := Check{Kind: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	lbCases := map[string]string{
		`lb_mode "udp": want http or tcp`:          KeyLBMode + "=udp",
		`lb_mode tcp needs lb_port`:                KeyLBMode + "=tcp",
		`lb_port "0": want a port 1-65535`:         KeyLBMode + "=http," + KeyLBPort + "=0",
		`lb_host "A.example": want a lower-case`:   KeyLBMode + "=http," + KeyLBHost + "=A.example",
		`lb_path "/a b": want a path`:              KeyLBMode + "=http," + KeyLBPath + "=/a b",
		`lb_host and lb_path need lb_mode http`:    KeyLBMode + "=tcp," + KeyLBPort + "=1," + KeyLBPath + "=/x",
		`lb_balance "random": want roundrobin`:     KeyLBMode + "=http," + KeyLBBalance + "=random",
		`check_kind "udp": want http, tcp or none`: KeyCheckKind + "=udp",
		`lb_sticky "yes": want true or false`:      KeyLBMode + "=http," + KeyLBSticky + "=yes",
		`lb_proxy_protocol "v3": want v1 or v2`:    KeyLBMode + "=http," + KeyLBProxy + "=v3",
		`lb_tunnel_timeout "2d": want a duration`:  KeyLBMode + "=http," + KeyLBTunnel + "=2d",
		`check_path "x": want a path`:              KeyCheckKind + "=http," + KeyCheckPath + "=x",
	}
	for want, kv := range lbCases {
		m := metaOf(kv)
		var err error
		if AsksForLB(m) {
			_, err = DecodeLB(m)
		} else {
			_, _, err = DecodeCheckKind(m, def)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", kv, err, want)
		}
	}
	c, errs := DecodeCheck(metaOf(KeyCheckInterval+"=soon,"+KeyCheckRise+"=0,"+KeyCheckTimeout+"=5s"), def)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		`check_interval "soon": want a duration of whole milliseconds, 1ms to 1h; using 2s`,
		`check_rise "0": want 1-1000; using 2`,
		`check_timeout 5s exceeds check_interval 2s; using 2s`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if c.Interval != def.Interval || c.Rise != def.Rise || c.Timeout != def.Interval {
		t.Errorf("check = %+v, want the defaults kept and the timeout clamped", c)
	}
	if w, err := DecodeWeight(metaOf(KeyWeight+"=257"), 100); w != 100 || err == nil {
		t.Errorf("weight 257: %d, %v; want 100 and an error", w, err)
	}
}

func metaOf(kv string) map[string]string {
	m := map[string]string{}
	for _, p := range strings.Split(kv, ",") {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return m
}

// TestNoKeyOutsideTheCodec fails when a Go file outside this package
// spells a contract key: code must use the constants (or Encode/Decode),
// so that the writer and the reader cannot drift apart. Tests may spell a
// key inside an expected message, never as a whole literal.
func TestNoKeyOutsideTheCodec(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{KeyLBMode, KeyLBPort, KeyLBHost, KeyLBPath, KeyLBBalance, KeyLBSticky, KeyLBProxy, KeyLBTunnel,
		KeyCheckKind, KeyCheckPath, KeyCheckInterval, KeyCheckTimeout, KeyCheckRise, KeyCheckFall}
	alt := strings.Join(keys, "|")
	inCode := regexp.MustCompile("[\"`](lb_[a-z]|(" + alt + ")\\b)")
	wholeKey := regexp.MustCompile("\"(" + alt + ")\"")
	self, _ := filepath.Abs(".")
	checked := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == self || strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		checked++
		re := inCode
		if strings.HasSuffix(p, "_test.go") {
			re = wholeKey
		}
		for i, line := range strings.Split(string(b), "\n") {
			if re.MatchString(line) {
				rel, _ := filepath.Rel(root, p)
				t.Errorf("%s:%d spells a contract key; use discovery/contract: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d Go files under %s", checked, root)
	}
}
