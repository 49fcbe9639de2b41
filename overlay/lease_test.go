package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/drover-net/drover/discovery"
)

// fakeKV is an in-memory KV with Consul's check-and-set semantics. Before a
// CAS of a key listed in steal, it lets "another writer" take that key first
// (once), so the CAS loses.
type fakeKV struct {
	mu      sync.Mutex
	data    map[string]KVEntry
	index   uint64
	steal   map[string]Lease // key → lease another host writes just before our CAS
	cas     []string         // keys CAS was called with, in order
	deletes []string         // keys DeleteCAS removed
	listErr error
}

func newFakeKV() *fakeKV {
	return &fakeKV{data: map[string]KVEntry{}, steal: map[string]Lease{}}
}

func (f *fakeKV) put(key string, value []byte) {
	f.index++
	f.data[key] = KVEntry{Value: value, Index: f.index}
}

func (f *fakeKV) putLease(p netip.Prefix, l Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, _ := json.Marshal(l)
	f.put(LeaseKey(p), v)
}

func (f *fakeKV) List(_ context.Context, prefix string) (map[string]KVEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	out := map[string]KVEntry{}
	for k, e := range f.data {
		if strings.HasPrefix(k, prefix) {
			out[k] = KVEntry{Value: append([]byte(nil), e.Value...), Index: e.Index}
		}
	}
	return out, nil
}

func (f *fakeKV) CAS(_ context.Context, key string, value []byte, index uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cas = append(f.cas, key)
	if l, ok := f.steal[key]; ok {
		delete(f.steal, key)
		v, _ := json.Marshal(l)
		f.put(key, v)
	}
	cur, exists := f.data[key]
	switch {
	case index == 0 && exists:
		return false, nil
	case index != 0 && (!exists || cur.Index != index):
		return false, nil
	}
	f.put(key, append([]byte(nil), value...))
	return true, nil
}

func (f *fakeKV) DeleteCAS(_ context.Context, key string, index uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, exists := f.data[key]
	if !exists || cur.Index != index {
		return false, nil
	}
	delete(f.data, key)
	f.deletes = append(f.deletes, key)
	return true, nil
}

func (f *fakeKV) leases(t *testing.T) Leases {
	t.Helper()
	entries, _ := f.List(context.Background(), LeasePrefix)
	l, problems := ParseLeases(entries)
	if len(problems) > 0 {
		t.Fatalf("fake KV holds malformed leases: %v", problems)
	}
	return l
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestLeaseKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		in      netip.Prefix
		wantKey string
		want    netip.Prefix
	}{
		{"ipv4 /24", pfx("10.42.1.0/24"), "drover/v1/leases/10.42.1.0_24", pfx("10.42.1.0/24")},
		{"ipv4 /30", pfx("10.42.0.4/30"), "drover/v1/leases/10.42.0.4_30", pfx("10.42.0.4/30")},
		{"host bits are masked", pfx("10.42.1.7/24"), "drover/v1/leases/10.42.1.0_24", pfx("10.42.1.0/24")},
		{"ipv6", pfx("fd00:42::/64"), "drover/v1/leases/fd00:42::_64", pfx("fd00:42::/64")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := LeaseKey(tc.in)
			if key != tc.wantKey {
				t.Errorf("LeaseKey(%s) = %q, want %q", tc.in, key, tc.wantKey)
			}
			got, err := ParseLeaseKey(key)
			if err != nil {
				t.Fatalf("ParseLeaseKey(%q): %v", key, err)
			}
			if got != tc.want {
				t.Errorf("ParseLeaseKey(%q) = %s, want %s", key, got, tc.want)
			}
		})
	}
}

func TestParseLeaseKeyErrors(t *testing.T) {
	for _, key := range []string{
		LeasePrefix,
		LeasePrefix + "10.42.1.0",
		LeasePrefix + "10.42.1.0_33",
		LeasePrefix + "nonsense_24",
		LeasePrefix + "10.42.1.0/24/x",
	} {
		t.Run(key, func(t *testing.T) {
			if p, err := ParseLeaseKey(key); err == nil {
				t.Errorf("ParseLeaseKey(%q) = %s, want an error", key, p)
			}
		})
	}
}

func TestParseLeases(t *testing.T) {
	good := func(node, key string) KVEntry {
		v, _ := json.Marshal(Lease{Node: node, PublicKey: key})
		return KVEntry{Value: v, Index: 7}
	}
	tests := []struct {
		name         string
		kv           map[string]KVEntry
		want         Leases
		wantProblems []string // substrings, one per problem, in key order
	}{
		{
			name: "empty",
			kv:   nil,
			want: Leases{},
		},
		{
			name: "well formed",
			kv: map[string]KVEntry{
				LeaseKey(pfx("10.42.0.0/24")): good("a", "ka"),
				LeaseKey(pfx("10.42.1.0/24")): good("b", "kb"),
			},
			want: Leases{
				pfx("10.42.0.0/24"): {Node: "a", PublicKey: "ka"},
				pfx("10.42.1.0/24"): {Node: "b", PublicKey: "kb"},
			},
		},
		{
			name: "lease without a public key is kept",
			kv:   map[string]KVEntry{LeaseKey(pfx("10.42.0.0/24")): {Value: []byte(`{"node":"a"}`)}},
			want: Leases{pfx("10.42.0.0/24"): {Node: "a"}},
		},
		{
			name: "malformed entries are problems and left out",
			kv: map[string]KVEntry{
				LeasePrefix:                   {},
				LeasePrefix + "garbage":       good("x", "kx"),
				LeaseKey(pfx("10.42.0.0/24")): good("a", "ka"),
				LeaseKey(pfx("10.42.1.0/24")): {Value: []byte("not json")},
				LeaseKey(pfx("10.42.2.0/24")): {Value: []byte(`{"public_key":"kc"}`)},
				LeaseKey(pfx("10.42.3.0/24")): {Value: []byte(`{"node":""}`)},
				LeaseKey(pfx("10.42.4.0/24")): {Value: nil},
			},
			want: Leases{pfx("10.42.0.0/24"): {Node: "a", PublicKey: "ka"}},
			wantProblems: []string{
				`lease key "drover/v1/leases/"`,
				`lease 10.42.1.0/24: value "not json"`,
				`lease 10.42.2.0/24`,
				`lease 10.42.3.0/24`,
				`lease 10.42.4.0/24`,
				`lease key "drover/v1/leases/garbage"`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := ParseLeases(tc.kv)
			if diff := cmp.Diff(tc.want, got, ignoreIndex); diff != "" {
				t.Errorf("leases (-want +got):\n%s", diff)
			}
			if len(problems) != len(tc.wantProblems) {
				t.Fatalf("problems = %q, want %d matching %q", problems, len(tc.wantProblems), tc.wantProblems)
			}
			for i, want := range tc.wantProblems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], want)
				}
			}
		})
	}
}

func TestChooseSubnet(t *testing.T) {
	cidr := pfx("10.42.0.0/16")
	self := Lease{Node: "self", PublicKey: "kself"}
	other := func(n string) Lease { return Lease{Node: n, PublicKey: "k" + n} }
	tests := []struct {
		name     string
		cidr     netip.Prefix
		bits     int
		leases   Leases
		cached   netip.Prefix
		want     netip.Prefix
		wantHeld bool
		wantErr  string // substring; "" for success
		wantIs   error
	}{
		{
			name: "first free of an empty CIDR",
			cidr: cidr, bits: 24,
			want: pfx("10.42.0.0/24"),
		},
		{
			name: "unmasked CIDR starts at its network address",
			cidr: pfx("10.42.7.9/16"), bits: 24,
			want: pfx("10.42.0.0/24"),
		},
		{
			name: "skip taken",
			cidr: cidr, bits: 24,
			leases: Leases{pfx("10.42.0.0/24"): other("a"), pfx("10.42.1.0/24"): other("b"), pfx("10.42.3.0/24"): other("c")},
			want:   pfx("10.42.2.0/24"),
		},
		{
			name: "skip a subnet overlapped by a larger lease",
			cidr: cidr, bits: 24,
			leases: Leases{pfx("10.42.0.0/23"): other("a")},
			want:   pfx("10.42.2.0/24"),
		},
		{
			name: "skip a subnet overlapped by a smaller lease",
			cidr: cidr, bits: 24,
			leases: Leases{pfx("10.42.0.128/25"): other("a")},
			want:   pfx("10.42.1.0/24"),
		},
		{
			name: "leases of other nodes with self's key are not self's",
			cidr: cidr, bits: 24,
			leases: Leases{pfx("10.42.0.0/24"): {Node: "a", PublicKey: self.PublicKey}},
			want:   pfx("10.42.1.0/24"),
		},
		{
			name: "keep lease already held by self",
			cidr: cidr, bits: 24,
			leases:   Leases{pfx("10.42.0.0/24"): other("a"), pfx("10.42.5.0/24"): self},
			want:     pfx("10.42.5.0/24"),
			wantHeld: true,
		},
		{
			name: "held lease wins over a free cached subnet",
			cidr: cidr, bits: 24,
			leases:   Leases{pfx("10.42.5.0/24"): self},
			cached:   pfx("10.42.9.0/24"),
			want:     pfx("10.42.5.0/24"),
			wantHeld: true,
		},
		{
			name: "held lease is kept even if its size differs",
			cidr: cidr, bits: 24,
			leases:   Leases{pfx("10.42.4.0/23"): self},
			want:     pfx("10.42.4.0/23"),
			wantHeld: true,
		},
		{
			name: "several held leases: the cached one",
			cidr: cidr, bits: 24,
			leases:   Leases{pfx("10.42.3.0/24"): self, pfx("10.42.7.0/24"): self},
			cached:   pfx("10.42.7.0/24"),
			want:     pfx("10.42.7.0/24"),
			wantHeld: true,
		},
		{
			name: "several held leases: the lowest without a cached one",
			cidr: cidr, bits: 24,
			leases:   Leases{pfx("10.42.7.0/24"): self, pfx("10.42.3.0/24"): self, pfx("10.42.200.0/24"): self},
			want:     pfx("10.42.3.0/24"),
			wantHeld: true,
		},
		{
			name: "prefer cached subnet when free",
			cidr: cidr, bits: 24,
			leases: Leases{pfx("10.42.0.0/24"): other("a")},
			cached: pfx("10.42.9.0/24"),
			want:   pfx("10.42.9.0/24"),
		},
		{
			name: "cached subnet taken by another node: first free",
			cidr: cidr, bits: 24,
			leases: Leases{pfx("10.42.9.0/24"): other("a")},
			cached: pfx("10.42.9.0/24"),
			want:   pfx("10.42.0.0/24"),
		},
		{
			name: "cached subnet outside the CIDR: first free",
			cidr: cidr, bits: 24,
			cached: pfx("10.43.9.0/24"),
			want:   pfx("10.42.0.0/24"),
		},
		{
			name: "cached subnet of another size: first free",
			cidr: cidr, bits: 24,
			cached: pfx("10.42.9.0/25"),
			want:   pfx("10.42.0.0/24"),
		},
		{
			name: "refuse a lease of self's node with another key",
			cidr: cidr, bits: 24,
			leases:  Leases{pfx("10.42.3.0/24"): {Node: "self", PublicKey: "kstolen"}},
			wantErr: `node "self"`,
		},
		{
			name: "refuse even when self also holds a lease with its own key",
			cidr: cidr, bits: 24,
			leases:  Leases{pfx("10.42.2.0/24"): self, pfx("10.42.3.0/24"): {Node: "self", PublicKey: "kstolen"}},
			cached:  pfx("10.42.2.0/24"),
			wantErr: `node "self"`,
		},
		{
			name: "no free subnet",
			cidr: pfx("10.42.0.0/30"), bits: 30,
			leases:  Leases{pfx("10.42.0.0/30"): other("a")},
			wantIs:  ErrNoFreeSubnet,
			wantErr: "10.42.0.0/30",
		},
		{
			name: "no free subnet among four",
			cidr: pfx("10.42.0.0/22"), bits: 24,
			leases:  Leases{pfx("10.42.0.0/24"): other("a"), pfx("10.42.1.0/24"): other("b"), pfx("10.42.2.0/23"): other("c")},
			wantIs:  ErrNoFreeSubnet,
			wantErr: "/24",
		},
		{
			name: "last subnet of the CIDR",
			cidr: pfx("10.42.0.0/22"), bits: 24,
			leases: Leases{pfx("10.42.0.0/24"): other("a"), pfx("10.42.1.0/24"): other("b"), pfx("10.42.2.0/24"): other("c")},
			want:   pfx("10.42.3.0/24"),
		},
		{
			name: "subnet as large as the CIDR",
			cidr: cidr, bits: 16,
			want: pfx("10.42.0.0/16"),
		},
		{
			name: "bad size: larger than the CIDR",
			cidr: cidr, bits: 15,
			wantErr: "/15 does not fit cluster CIDR 10.42.0.0/16",
		},
		{
			name: "bad size: smaller than /30",
			cidr: cidr, bits: 31,
			wantErr: "/31 does not fit",
		},
		{
			name: "bad size: /32",
			cidr: cidr, bits: 32,
			wantErr: "/32 does not fit",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, held, err := ChooseSubnet(tc.cidr, tc.bits, tc.leases, self, tc.cached)
			if tc.wantErr != "" || tc.wantIs != nil {
				if err == nil {
					t.Fatalf("ChooseSubnet = %s, %v, nil; want an error", got, held)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("error %q is not %v", err, tc.wantIs)
				}
				if tc.wantIs == nil && errors.Is(err, ErrNoFreeSubnet) {
					t.Errorf("error %q is ErrNoFreeSubnet, want another error", err)
				}
				if got.IsValid() || held {
					t.Errorf("on error got %s, %v; want zero prefix, false", got, held)
				}
				return
			}
			if err != nil {
				t.Fatalf("ChooseSubnet: %v", err)
			}
			if got != tc.want || held != tc.wantHeld {
				t.Errorf("ChooseSubnet = %s, held %v; want %s, held %v", got, held, tc.want, tc.wantHeld)
			}
		})
	}
}

func TestAcquire(t *testing.T) {
	cidr := pfx("10.42.0.0/16")
	self := Lease{Node: "self", PublicKey: "kself"}
	tests := []struct {
		name      string
		leases    map[netip.Prefix]Lease // in the KV before Acquire
		steal     map[netip.Prefix]Lease // taken by another writer just before our CAS
		cached    netip.Prefix
		want      netip.Prefix
		wantCAS   []netip.Prefix
		wantErr   string
		wantIs    error
		wantAfter Leases // the KV's leases after Acquire; nil: leases plus self at want
	}{
		{
			name:    "empty KV",
			want:    pfx("10.42.0.0/24"),
			wantCAS: []netip.Prefix{pfx("10.42.0.0/24")},
		},
		{
			name:    "skips taken subnets",
			leases:  map[netip.Prefix]Lease{pfx("10.42.0.0/24"): {Node: "a", PublicKey: "ka"}},
			want:    pfx("10.42.1.0/24"),
			wantCAS: []netip.Prefix{pfx("10.42.1.0/24")},
		},
		{
			name:    "already held: no write",
			leases:  map[netip.Prefix]Lease{pfx("10.42.0.0/24"): {Node: "a", PublicKey: "ka"}, pfx("10.42.6.0/24"): self},
			want:    pfx("10.42.6.0/24"),
			wantCAS: nil,
		},
		{
			name:    "cached subnet is leased again",
			cached:  pfx("10.42.9.0/24"),
			want:    pfx("10.42.9.0/24"),
			wantCAS: []netip.Prefix{pfx("10.42.9.0/24")},
		},
		{
			name:  "first CAS loses a race: moves to the next subnet",
			steal: map[netip.Prefix]Lease{pfx("10.42.0.0/24"): {Node: "racer", PublicKey: "kracer"}},
			want:  pfx("10.42.1.0/24"),
			wantCAS: []netip.Prefix{
				pfx("10.42.0.0/24"),
				pfx("10.42.1.0/24"),
			},
			wantAfter: Leases{
				pfx("10.42.0.0/24"): {Node: "racer", PublicKey: "kracer"},
				pfx("10.42.1.0/24"): self,
			},
		},
		{
			name:   "cached subnet lost in a race: first free",
			cached: pfx("10.42.9.0/24"),
			steal:  map[netip.Prefix]Lease{pfx("10.42.9.0/24"): {Node: "racer", PublicKey: "kracer"}},
			want:   pfx("10.42.0.0/24"),
			wantCAS: []netip.Prefix{
				pfx("10.42.9.0/24"),
				pfx("10.42.0.0/24"),
			},
			wantAfter: Leases{
				pfx("10.42.9.0/24"): {Node: "racer", PublicKey: "kracer"},
				pfx("10.42.0.0/24"): self,
			},
		},
		{
			name: "two races lost in a row",
			steal: map[netip.Prefix]Lease{
				pfx("10.42.0.0/24"): {Node: "r1", PublicKey: "k1"},
				pfx("10.42.1.0/24"): {Node: "r2", PublicKey: "k2"},
			},
			want: pfx("10.42.2.0/24"),
			wantCAS: []netip.Prefix{
				pfx("10.42.0.0/24"),
				pfx("10.42.1.0/24"),
				pfx("10.42.2.0/24"),
			},
			wantAfter: Leases{
				pfx("10.42.0.0/24"): {Node: "r1", PublicKey: "k1"},
				pfx("10.42.1.0/24"): {Node: "r2", PublicKey: "k2"},
				pfx("10.42.2.0/24"): self,
			},
		},
		{
			name:    "node name held with another key",
			leases:  map[netip.Prefix]Lease{pfx("10.42.4.0/24"): {Node: "self", PublicKey: "kother"}},
			wantErr: `node "self"`,
		},
		{
			name: "CIDR full",
			leases: map[netip.Prefix]Lease{
				pfx("10.42.0.0/17"):   {Node: "a", PublicKey: "ka"},
				pfx("10.42.128.0/17"): {Node: "b", PublicKey: "kb"},
			},
			wantIs: ErrNoFreeSubnet,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := newFakeKV()
			for p, l := range tc.leases {
				kv.putLease(p, l)
			}
			for p, l := range tc.steal {
				kv.steal[LeaseKey(p)] = l
			}
			got, err := Acquire(context.Background(), kv, nil, cidr, 24, self, tc.cached)
			if tc.wantErr != "" || tc.wantIs != nil {
				if err == nil {
					t.Fatalf("Acquire = %s, want an error", got)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("error %q is not %v", err, tc.wantIs)
				}
				if diff := cmp.Diff(Leases(tc.leases), kv.leases(t), ignoreIndex); diff != "" {
					t.Errorf("KV changed on error (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if got != tc.want {
				t.Errorf("Acquire = %s, want %s", got, tc.want)
			}
			var wantCAS []string
			for _, p := range tc.wantCAS {
				wantCAS = append(wantCAS, LeaseKey(p))
			}
			if diff := cmp.Diff(wantCAS, kv.cas); diff != "" {
				t.Errorf("CAS calls (-want +got):\n%s", diff)
			}
			want := tc.wantAfter
			if want == nil {
				want = Leases{}
				for p, l := range tc.leases {
					want[p] = l
				}
				want[tc.want] = self
			}
			if diff := cmp.Diff(want, kv.leases(t), ignoreIndex); diff != "" {
				t.Errorf("KV leases after Acquire (-want +got):\n%s", diff)
			}
		})
	}
}

// racingKV loses every CAS: another writer always gets there first.
type racingKV struct{ *fakeKV }

func (r racingKV) CAS(context.Context, string, []byte, uint64) (bool, error) { return false, nil }

func TestAcquireGivesUpAfterLosingEveryRace(t *testing.T) {
	_, err := Acquire(context.Background(), racingKV{newFakeKV()}, nil, pfx("10.42.0.0/16"), 24, Lease{Node: "self", PublicKey: "k"}, netip.Prefix{})
	if err == nil || !strings.Contains(err.Error(), "lost 20 races") {
		t.Errorf("Acquire error = %v, want one about lost races", err)
	}
}

func TestAcquireListError(t *testing.T) {
	kv := newFakeKV()
	boom := errors.New("consul down")
	kv.listErr = boom
	_, err := Acquire(context.Background(), kv, nil, pfx("10.42.0.0/16"), 24, Lease{Node: "self", PublicKey: "k"}, netip.Prefix{})
	if !errors.Is(err, boom) {
		t.Errorf("Acquire error = %v, want it to wrap %v", err, boom)
	}
}

func TestRelease(t *testing.T) {
	self := Lease{Node: "self", PublicKey: "kself"}
	p := pfx("10.42.3.0/24")
	tests := []struct {
		name        string
		value       []byte // value of p's lease key; nil: no key
		wantErr     string
		wantDeleted bool
	}{
		{
			name:        "lease naming self is deleted",
			value:       []byte(`{"node":"self","public_key":"kself"}`),
			wantDeleted: true,
		},
		{
			name: "no lease: nothing to do",
		},
		{
			name:    "lease of another node is left alone",
			value:   []byte(`{"node":"other","public_key":"kother"}`),
			wantErr: "not this host",
		},
		{
			name:    "lease of self's node with another key is left alone",
			value:   []byte(`{"node":"self","public_key":"kother"}`),
			wantErr: "not this host",
		},
		{
			name:    "lease of another node with self's key is left alone",
			value:   []byte(`{"node":"other","public_key":"kself"}`),
			wantErr: "not this host",
		},
		{
			name:    "malformed lease is left alone",
			value:   []byte(`garbage`),
			wantErr: "not this host",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := newFakeKV()
			neighbour := pfx("10.42.30.0/24") // LeaseKey(p) is a string prefix of its key
			kv.putLease(neighbour, Lease{Node: "n", PublicKey: "kn"})
			if tc.value != nil {
				kv.mu.Lock()
				kv.put(LeaseKey(p), tc.value)
				kv.mu.Unlock()
			}
			err := Release(context.Background(), kv, p, self)
			if tc.wantErr == "" && err != nil {
				t.Errorf("Release: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Release error = %v, want one containing %q", err, tc.wantErr)
			}
			var wantDeletes []string
			if tc.wantDeleted {
				wantDeletes = []string{LeaseKey(p)}
			}
			if diff := cmp.Diff(wantDeletes, kv.deletes); diff != "" {
				t.Errorf("deleted keys (-want +got):\n%s", diff)
			}
			entries, _ := kv.List(context.Background(), LeasePrefix)
			if _, ok := entries[LeaseKey(p)]; ok == tc.wantDeleted && tc.value != nil {
				t.Errorf("lease key present = %v after Release, want %v", ok, !tc.wantDeleted)
			}
			if _, ok := entries[LeaseKey(neighbour)]; !ok {
				t.Errorf("Release deleted the neighbouring lease %s", neighbour)
			}
		})
	}
}

// changingKV changes the lease between Release's read and its delete.
type changingKV struct{ *fakeKV }

func (c changingKV) DeleteCAS(ctx context.Context, key string, index uint64) (bool, error) {
	c.mu.Lock()
	c.put(key, []byte(`{"node":"other","public_key":"kother"}`))
	c.mu.Unlock()
	return c.fakeKV.DeleteCAS(ctx, key, index)
}

func TestReleaseLeaseChangedMeanwhile(t *testing.T) {
	self := Lease{Node: "self", PublicKey: "kself"}
	p := pfx("10.42.3.0/24")
	kv := newFakeKV()
	kv.putLease(p, self)
	err := Release(context.Background(), changingKV{kv}, p, self)
	if err == nil || !strings.Contains(err.Error(), "changed meanwhile") {
		t.Errorf("Release error = %v, want one about a change", err)
	}
	if got := kv.leases(t)[p]; got.Node != "other" {
		t.Errorf("lease after Release = %+v, want the other host's one kept", got)
	}
}

// fakeRecords lists a fixed set of drover-node records.
type fakeRecords []discovery.Node

func (f fakeRecords) NodeRecords(context.Context) ([]discovery.Node, error) { return f, nil }

// TestWithRecords: a subnet announced by a record is taken even when its
// lease key is missing; records of self and malformed ones are ignored.
func TestWithRecords(t *testing.T) {
	self := Lease{Node: "self", PublicKey: "kself"}
	rec := func(name, subnet string) discovery.Node {
		n := discovery.Node{Name: name, PublicKey: "k" + name}
		if subnet != "" {
			n.Subnet = pfx(subnet)
		}
		return n
	}
	tests := []struct {
		name   string
		leases Leases
		nodes  []discovery.Node
		want   Leases
	}{
		{name: "no records", leases: Leases{pfx("10.42.0.0/24"): {Node: "a", PublicKey: "ka"}},
			want: Leases{pfx("10.42.0.0/24"): {Node: "a", PublicKey: "ka"}}},
		{name: "a record whose lease vanished still takes its subnet",
			nodes: []discovery.Node{rec("b", "10.42.1.0/24")},
			want:  Leases{pfx("10.42.1.0/24"): {Node: "b", PublicKey: "kb"}}},
		{name: "a lease wins over a record of the same subnet",
			leases: Leases{pfx("10.42.1.0/24"): {Node: "c", PublicKey: "kc"}},
			nodes:  []discovery.Node{rec("b", "10.42.1.0/24")},
			want:   Leases{pfx("10.42.1.0/24"): {Node: "c", PublicKey: "kc"}}},
		{name: "self's own record and malformed records are ignored",
			nodes: []discovery.Node{rec("self", "10.42.2.0/24"), rec("d", ""), rec("", "10.42.3.0/24"), rec("e", "10.42.4.1/24")},
			want:  Leases{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := WithRecords(tc.leases, tc.nodes, self)
			if diff := cmp.Diff(tc.want, got, netipEq); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestAcquireSkipsAnnouncedSubnet: the first subnet's lease key vanished
// but its owner's record still announces it; a new host takes the next.
func TestAcquireSkipsAnnouncedSubnet(t *testing.T) {
	kv := newFakeKV()
	kv.putLease(pfx("10.42.1.0/24"), Lease{Node: "c", PublicKey: "kc"})
	recs := fakeRecords{{Name: "b", PublicKey: "kb", Subnet: pfx("10.42.0.0/24")}, {Name: "c", PublicKey: "kc", Subnet: pfx("10.42.1.0/24")}}
	got, err := Acquire(context.Background(), kv, recs, pfx("10.42.0.0/16"), 24, Lease{Node: "new", PublicKey: "knew"}, pfx("10.42.0.0/24"))
	if err != nil || got != pfx("10.42.2.0/24") {
		t.Fatalf("Acquire = %v, %v; want 10.42.2.0/24 (cached 10.42.0.0/24 is announced by b)", got, err)
	}
	// The owner takes its lease back from its local copy (no records read).
	back, err := Acquire(context.Background(), kv, nil, pfx("10.42.0.0/24"), 24, Lease{Node: "b", PublicKey: "kb"}, pfx("10.42.0.0/24"))
	if err != nil || back != pfx("10.42.0.0/24") {
		t.Fatalf("owner retaking = %v, %v", back, err)
	}
}

// ignoreIndex compares leases without their Consul index (the fakes number
// writes their own way).
var ignoreIndex = cmpopts.IgnoreFields(Lease{}, "Index")
