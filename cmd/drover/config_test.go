package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// loadFrom runs the agent's flag, environment and file handling.
func loadFrom(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := agentFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if err := load(fs, func(k string) string { return env[k] }, file); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "drover.toml")
	if err := os.WriteFile(file, []byte("cluster-cidr = \"10.50.0.0/16\"\nsubnet-size = 26\nlog-format = \"json\"\nkeepalive = \"10s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		mutate func(*Config)
	}{
		{"defaults", nil, nil, func(*Config) {}},
		{"flag", []string{"--listen-port", "51999", "--wg-mode", "userspace"}, nil, func(c *Config) {
			c.ListenPort, c.WGMode = 51999, "userspace"
		}},
		{"env", nil, map[string]string{"DROVER_CLUSTER_CIDR": "10.60.0.0/16", "DROVER_PEER_TIMEOUT": "1h"}, func(c *Config) {
			c.ClusterCIDR, c.PeerTimeout = "10.60.0.0/16", time.Hour
		}},
		{"file", []string{"--config", file}, nil, func(c *Config) {
			c.ClusterCIDR, c.SubnetSize, c.LogFormat, c.Keepalive = "10.50.0.0/16", 26, "json", 10*time.Second
		}},
		{"file via env", nil, map[string]string{"DROVER_CONFIG": file}, func(c *Config) {
			c.ClusterCIDR, c.SubnetSize, c.LogFormat, c.Keepalive = "10.50.0.0/16", 26, "json", 10*time.Second
		}},
		{"dns", []string{"--dns-addr", "169.254.53.54:5353", "--dns-upstream", "10.99.0.2,10.99.0.3:5353"}, map[string]string{"DROVER_DNS_TTL": "30s", "DROVER_DNS_ADDR": "10.1.1.1"},
			func(c *Config) {
				c.DNSAddr, c.DNSUpstream, c.DNSTTL = "169.254.53.54:5353", "10.99.0.2,10.99.0.3:5353", 30*time.Second
			}},
		{"dns off", []string{"--dns-addr", ""}, nil, func(c *Config) { c.DNSAddr = "" }},
		{"flag > env > file > default", []string{"--config", file, "--subnet-size", "25"},
			map[string]string{"DROVER_SUBNET_SIZE": "28", "DROVER_LOG_FORMAT": "text", "DROVER_MTU": "1400"}, func(c *Config) {
				c.ClusterCIDR, c.SubnetSize, c.LogFormat, c.Keepalive, c.MTU = "10.50.0.0/16", 25, "text", 10*time.Second, 1400
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadFrom(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			tc.mutate(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("clustr-cidr = \"x\"\nmtu = \"big\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"every problem at once", []string{"--wg-mode", "fast", "--listen-port", "0", "--cluster-cidr", "nope",
			"--mtu", "100", "--log-format", "xml", "--log-level", "loud", "--interface", "a-very-long-name0", "--endpoint", "x:y",
			"--metrics-addr", "nocolon", "--bridge", ""},
			nil, []string{`--wg-mode "fast": want auto, kernel or userspace`, "--listen-port 0: want 1..65535",
				`--cluster-cidr "nope"`, "--mtu 100", `--log-format "xml": want text or json`,
				`--log-level "loud": want debug, info, warn or error`, `--interface "a-very-long-name0"`, `--endpoint "x:y"`,
				`--metrics-addr "nocolon"`, "--bridge 1-15 characters"}},
		{"subnet size outside the CIDR", []string{"--cluster-cidr", "10.42.0.0/16", "--subnet-size", "8"}, nil,
			[]string{"--subnet-size 8: want 16..29"}},
		{"bad env value", nil, map[string]string{"DROVER_LISTEN_PORT": "many"}, []string{`DROVER_LISTEN_PORT="many"`}},
		{"bad file", []string{"--config", bad}, nil, []string{`unknown key "clustr-cidr"`, "mtu = big"}},
		{"missing file", []string{"--config", filepath.Join(dir, "none.toml")}, nil, []string{"reading config file"}},
		{"dns", []string{"--dns-addr", "0.0.0.0", "--dns-domain", "a..b", "--dns-ttl", "1500ms", "--dns-upstream", "10.0.0.1:x", "--dns-allow", "nope"}, nil,
			[]string{`--dns-addr "0.0.0.0": want one address`, `--dns-domain "a..b"`, "--dns-ttl 1.5s: want whole seconds",
				`--dns-upstream "10.0.0.1:x"`, `--dns-allow "nope"`}},
		{"negative durations", []string{"--keepalive", "-1s", "--resync", "0s"}, nil, []string{"--resync > 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFrom(t, tc.args, tc.env)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestConfigurationReference checks docs/configuration.md against the
// agent's flags in both directions.
func TestConfigurationReference(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	agentFlags(fs, &cfg)
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("\\| `--([a-z-]+)` \\| `(DROVER_[A-Z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
		if m[2] != envName(m[1]) {
			t.Errorf("docs: --%s is documented with %s, want %s", m[1], m[2], envName(m[1]))
		}
		if fs.Lookup(m[1]) == nil {
			t.Errorf("docs/configuration.md documents --%s, which `drover agent` does not have", m[1])
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("flag --%s is missing from docs/configuration.md", f.Name)
		}
	})
}

func TestUIListenerNeedsATokenOffLoopback(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		err  string // "" valid
		on   string // UIListen
	}{
		{"default: on the loopback metrics listener", nil, nil, "", "127.0.0.1:9714"},
		{"own loopback listener", []string{"--ui", "127.0.0.1:9716"}, nil, "", "127.0.0.1:9716"},
		{"localhost", []string{"--ui", "localhost:9716"}, nil, "", "localhost:9716"},
		{"off", []string{"--ui", "off", "--metrics-addr", "0.0.0.0:9714"}, nil, "", ""},
		{"no metrics listener, no UI", []string{"--metrics-addr", ""}, nil, "", ""},
		{"all addresses without a token", []string{"--ui", ":9716"}, nil, "--ui :9716 is not a loopback address: give --ui-token-file", ""},
		{"an underlay address without a token", nil, map[string]string{"DROVER_UI": "10.99.0.11:9716"}, "--ui 10.99.0.11:9716 is not a loopback address", ""},
		{"public metrics listener carries the UI", []string{"--metrics-addr", "0.0.0.0:9714"}, nil, "served on --metrics-addr 0.0.0.0:9714, which is not a loopback address", ""},
		{"with a token", []string{"--ui", "0.0.0.0:9716", "--ui-token-file", "/etc/drover/ui-token"}, nil, "", "0.0.0.0:9716"},
		{"not an address", []string{"--ui", "yes"}, nil, `--ui "yes": want host:port`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadFrom(t, c.args, c.env)
			if c.err == "" {
				if err != nil {
					t.Fatalf("want valid: %v", err)
				}
				if got := cfg.UIListen(); got != c.on {
					t.Errorf("UIListen %q, want %q", got, c.on)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
}
