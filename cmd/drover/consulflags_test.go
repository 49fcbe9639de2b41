package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func TestConsulSecretsLeaveTheEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "s3cret-env")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "/etc/consul.token")
	c := &cli{stdout: io.Discard, stderr: io.Discard, environ: os.Environ()}
	var f consulFlags
	c.takeConsulSecrets(&f)
	for _, k := range secretEnv {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still in the process environment", k, v)
		}
		if c.getenv(k) != "" {
			t.Errorf("%s still in the cli environment", k)
		}
	}
	if o := f.options(); o.Token != "s3cret-env" || o.TokenFile != "/etc/consul.token" {
		t.Errorf("options: token %q file %q", o.Token, o.TokenFile)
	}
	b, _ := json.Marshal(f)
	for _, s := range []string{fmt.Sprint(f), fmt.Sprintf("%+v %#v", f, f), string(b)} {
		if strings.Contains(s, "s3cret-env") {
			t.Errorf("the token prints: %s", s)
		}
	}
}

func TestConsulFlagsWinOverConsulEnv(t *testing.T) {
	c := &cli{stdout: io.Discard, stderr: io.Discard, environ: []string{
		"CONSUL_HTTP_TOKEN_FILE=/env.token", "DROVER_CONSUL_CA=/env-ca.pem", "DROVER_CONSUL_ADDR=https://10.0.0.1:8501"}}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var f consulFlags
	f.bind(fs)
	if err := fs.Parse([]string{"--consul-token-file", "/flag.token", "--consul-addr", "unix:///run/consul.sock"}); err != nil {
		t.Fatal(err)
	}
	if err := loadConsulEnv(fs, c.getenv); err != nil {
		t.Fatal(err)
	}
	c.takeConsulSecrets(&f)
	if f.TokenFile != "/flag.token" || f.Addr != "unix:///run/consul.sock" || f.CA != "/env-ca.pem" {
		t.Errorf("got %+v", f)
	}
}
