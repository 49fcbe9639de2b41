package aclpolicy

import (
	"strings"
	"testing"
)

func TestHCLHasEveryRuleWithItsReason(t *testing.T) {
	got := HCL(Options{Node: "h1", ConfgenPrefixes: []string{"/app", "drover/v1/x", "motd"}})
	for _, want := range []string{
		"agent \"h1\" {\n  policy = \"read\"\n}",
		"node \"h1\" {\n  policy = \"write\"\n}",
		"node_prefix \"\" {\n  policy = \"read\"\n}",
		"service_prefix \"\" {\n  policy = \"write\"\n}",
		"key_prefix \"drover/v1/leases/\" {\n  policy = \"write\"\n}",
		"key_prefix \"drover/v1/\" {\n  policy = \"read\"\n}",
		"key_prefix \"app\" {\n  policy = \"read\"\n}",
		"key_prefix \"motd\" {\n  policy = \"read\"\n}",
		"key \"drover/v1/mesh/h1\" {\n  policy = \"write\"\n}",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("policy lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "drover/v1/lb/") {
		t.Errorf("a host without --lb may not write an lb summary:\n%s", got)
	}
	if strings.Count(got, "key_prefix") != 5 {
		t.Errorf("drover/v1/x is already readable; want 5 key rules:\n%s", got)
	}
	if n := strings.Count(got, "\n# "); n != len(Rules(Options{Node: "h1", ConfgenPrefixes: []string{"app", "motd"}})) {
		t.Errorf("want one reason per rule, got %d:\n%s", n, got)
	}
}

func TestOnlyLBHostsReadCertificates(t *testing.T) {
	deny := "key_prefix \"drover/v1/certs/\" {\n  policy = \"deny\"\n}"
	read := "key_prefix \"drover/v1/certs/\" {\n  policy = \"read\"\n}"
	if got := HCL(Options{Node: "h2"}); !strings.Contains(got, deny) || strings.Contains(got, read) {
		t.Errorf("a host without --lb must be denied the certificates:\n%s", got)
	}
	if got := HCL(Options{Node: "h1", LB: true}); !strings.Contains(got, read) || strings.Contains(got, deny) {
		t.Errorf("an lb host must read the certificates:\n%s", got)
	}
}

func TestSharedPolicyUsesPrefixes(t *testing.T) {
	got := HCL(Options{})
	if !strings.Contains(got, "agent_prefix \"\"") || !strings.Contains(got, "node_prefix \"\" {\n  policy = \"write\"") {
		t.Errorf("shared policy:\n%s", got)
	}
}

func TestClusterViewKeysAreTheHostsOwn(t *testing.T) {
	got := HCL(Options{Node: "h1", LB: true})
	for _, want := range []string{
		"key \"drover/v1/mesh/h1\" {\n  policy = \"write\"\n}",
		"key \"drover/v1/lb/h1\" {\n  policy = \"write\"\n}",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lb host policy lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "key_prefix \"drover/v1/mesh/\"") || strings.Contains(got, "key_prefix \"drover/v1/lb/\"") {
		t.Errorf("a per-node policy writes other hosts' rows:\n%s", got)
	}
	shared := HCL(Options{LB: true})
	if !strings.Contains(shared, "key_prefix \"drover/v1/mesh/\" {\n  policy = \"write\"") || !strings.Contains(shared, "key_prefix \"drover/v1/lb/\" {\n  policy = \"write\"") {
		t.Errorf("shared policy:\n%s", shared)
	}
}
