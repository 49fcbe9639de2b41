package main

import (
	"flag"
	"log/slog"
	"os"
	"strings"

	"github.com/drover-net/drover/discovery/consul"
)

// consulFlags are the Consul client settings every command that talks to
// Consul takes (agent, services, confgen, acl-policy has none): one set of
// flags, one DROVER_* variable each, and the usual CONSUL_* variables
// underneath. The token itself is never a flag (it would show in ps); it
// comes from --consul-token-file, CONSUL_HTTP_TOKEN_FILE or
// CONSUL_HTTP_TOKEN, taken out of the environment by takeConsulSecrets.
type consulFlags struct {
	Addr          string
	TokenFile     string
	CA            string
	ClientCert    string
	ClientKey     string
	TLSServerName string
	Token         secret // CONSUL_HTTP_TOKEN, taken from the environment; never a flag
}

// secret is a string that prints, logs and marshals as "<redacted>".
type secret string

func (s secret) String() string               { return "<redacted>" }
func (s secret) GoString() string             { return `"<redacted>"` }
func (s secret) LogValue() slog.Value         { return slog.StringValue("<redacted>") }
func (s secret) MarshalText() ([]byte, error) { return []byte("<redacted>"), nil }
func (s secret) MarshalJSON() ([]byte, error) { return []byte(`"<redacted>"`), nil }

// consulFlagNames are the flags bind defines.
var consulFlagNames = []string{"consul-addr", "consul-token-file", "consul-ca", "consul-client-cert", "consul-client-key", "consul-tls-server-name"}

// bind defines the Consul flags on fs.
func (f *consulFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.Addr, "consul-addr", f.Addr, "local Consul agent HTTP API: host:port, http://host:port, https://host:port or unix:///path (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)")
	fs.StringVar(&f.TokenFile, "consul-token-file", f.TokenFile, "file holding the Consul ACL token, re-read when it changes (default: CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN)")
	fs.StringVar(&f.CA, "consul-ca", f.CA, "CA certificate verifying the Consul agent's HTTPS API; implies https (default: CONSUL_CACERT)")
	fs.StringVar(&f.ClientCert, "consul-client-cert", f.ClientCert, "client certificate for the Consul HTTPS API (default: CONSUL_CLIENT_CERT)")
	fs.StringVar(&f.ClientKey, "consul-client-key", f.ClientKey, "key of --consul-client-cert (default: CONSUL_CLIENT_KEY)")
	fs.StringVar(&f.TLSServerName, "consul-tls-server-name", f.TLSServerName, "name checked in the Consul agent's certificate (default: CONSUL_TLS_SERVER_NAME, else the address's host)")
}

// loadEnv gives every Consul flag not set on the command line its DROVER_*
// variable (for commands whose other flags take no environment).
func loadConsulEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, n := range consulFlagNames {
		if v := getenv(envName(n)); v != "" && !set[n] {
			if err := fs.Set(n, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// options returns the adapter's options.
func (f consulFlags) options() consul.Options {
	return consul.Options{Addr: f.Addr, Token: string(f.Token), TokenFile: f.TokenFile, CAFile: f.CA,
		CertFile: f.ClientCert, KeyFile: f.ClientKey, TLSServerName: f.TLSServerName}
}

// secretEnv are the variables that may hold a Consul token or say where it
// is: read once, then removed from the process environment so that no child
// (HAProxy, the wireguard-go engine, check_cmd, reload_cmd) and no template
// (getenv) sees them.
var secretEnv = []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "DROVER_CONSUL_TOKEN", "DROVER_CONSUL_TOKEN_FILE"}

// takeConsulSecrets moves the token variables into f (a flag or DROVER_*
// value already set wins) and removes them from the environment of the
// process and of c.
func (c *cli) takeConsulSecrets(f *consulFlags) {
	if f.TokenFile == "" {
		f.TokenFile = c.getenv("CONSUL_HTTP_TOKEN_FILE")
	}
	if f.Token = secret(c.getenv("DROVER_CONSUL_TOKEN")); f.Token == "" {
		f.Token = secret(c.getenv("CONSUL_HTTP_TOKEN"))
	}
	for _, k := range secretEnv {
		_ = os.Unsetenv(k)
	}
	kept := c.environ[:0:0]
	for _, kv := range c.environ {
		k, _, _ := strings.Cut(kv, "=")
		if !contains(secretEnv, k) {
			kept = append(kept, kv)
		}
	}
	c.environ = kept
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// consulClient completes f from the environment (DROVER_* for flags not
// given, then the token variables, which leave the environment) and opens
// the client: the one way every command gets its Consul client.
func (c *cli) consulClient(fs *flag.FlagSet, f *consulFlags) (*consul.Client, error) {
	if err := loadConsulEnv(fs, c.getenv); err != nil {
		return nil, err
	}
	c.takeConsulSecrets(f)
	return consul.New(f.options())
}
