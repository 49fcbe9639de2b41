package sandbox

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		opt  Options
		want []string // substrings of the error; none means valid
	}{
		{"defaults", Options{}, nil},
		{"three servers", Options{ConsulServers: 3, Hosts: 5}, nil},
		{"bad prefix", Options{Prefix: "Drv-1"}, []string{`prefix "Drv-1"`}},
		{"too many hosts and two servers", Options{Hosts: 51, ConsulServers: 2},
			[]string{"hosts 51: want 1..50", "consul servers 2: want 1 or 3"}},
		{"negative hosts", Options{Hosts: -1}, []string{"hosts -1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Dir, tc.opt.RunDir, tc.opt.BinDir = dir, dir, dir
			_, err := New(tc.opt)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New: no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestNamesAndAddresses(t *testing.T) {
	sb, err := New(Options{Prefix: "drvx", Hosts: 2, ConsulServers: 3, Dir: "/d", RunDir: "/r", BinDir: "/b"})
	if err != nil {
		t.Fatal(err)
	}
	h := sb.Host(2)
	if h.NetNS != "drvx-h2" || h.Addr.String() != "10.99.0.12" || h.DockerSock != "/r/h2/docker.sock" || h.MountNS != "/r/mnt/h2" {
		t.Errorf("host 2 = %+v", h)
	}
	if sv := sb.Server(3); sv.NetNS != "drvx-c3" || sv.Addr.String() != "10.99.0.4" {
		t.Errorf("server 3 = %+v", sv)
	}
	if got := sb.retryJoin(); got != `["10.99.0.2", "10.99.0.3", "10.99.0.4"]` {
		t.Errorf("retryJoin = %s", got)
	}
	if _, err := sb.HostByName("h3"); err == nil || !strings.Contains(err.Error(), "h1..h2") {
		t.Errorf("HostByName(h3) = %v, want an error naming h1..h2", err)
	}
	cfg := sb.consulConfig("h1", "10.99.0.11", "/d/h1/consul", false)
	for _, w := range []string{`node_name = "h1"`, `bind_addr = "10.99.0.11"`, `client_addr = "127.0.0.1"`, "enable_script_checks = false", `node_id = "`} {
		if !strings.Contains(cfg, w) {
			t.Errorf("client config lacks %q:\n%s", w, cfg)
		}
	}
	if id := sb.NodeID("h1"); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(id) ||
		id != sb.NodeID("h1") || id == sb.NodeID("h2") {
		t.Errorf("nodeID(h1) = %q: want a stable UUID, unlike h2's %q", id, sb.NodeID("h2"))
	}
	if strings.Contains(cfg, "server = true") {
		t.Errorf("client config is a server:\n%s", cfg)
	}
	if cfg := sb.consulConfig("c1", "10.99.0.2", "/d", true); !strings.Contains(cfg, "bootstrap_expect = 3") {
		t.Errorf("server config lacks bootstrap_expect = 3:\n%s", cfg)
	}
}

func TestImageArchive(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "drover-demo")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := ImageArchive(bin, "drover-demo:latest")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ImageArchive(bin, "drover-demo:latest")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("archive is not deterministic")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[hdr.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if len(manifest) != 1 || manifest[0].RepoTags[0] != "drover-demo:latest" || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest = %+v", manifest)
	}
	var cfg imageConfig
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Config.Entrypoint[0] != "/drover-demo" || cfg.Config.Healthcheck == nil {
		t.Errorf("config = %+v", cfg.Config)
	}
	lr := tar.NewReader(bytes.NewReader(files[manifest[0].Layers[0]]))
	hdr, err := lr.Next()
	if err != nil || hdr.Name != "drover-demo" || hdr.Mode != 0o755 {
		t.Errorf("layer entry = %+v, %v", hdr, err)
	}
}

func TestLinkInode(t *testing.T) {
	for in, want := range map[string]string{"net:[4026531840]": "4026531840", "mnt:[1]": "1", "junk": ""} {
		if got := linkInode(in); got != want {
			t.Errorf("linkInode(%q) = %q, want %q", in, got, want)
		}
	}
}
