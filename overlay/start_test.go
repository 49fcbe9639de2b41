package overlay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

type startWG struct{}

func (startWG) Ensure(context.Context) error                 { return nil }
func (startWG) SetMTU(int)                                   {}
func (startWG) Device(string) (*wgtypes.Device, error)       { return &wgtypes.Device{}, nil }
func (startWG) ConfigureDevice(string, wgtypes.Config) error { return nil }

// downKV is Consul with its servers gone: every read fails.
type downKV struct{}

func (downKV) List(context.Context, string) (map[string]KVEntry, error) {
	return nil, errors.New("Unexpected response code: 500 (No cluster leader)")
}
func (downKV) CAS(context.Context, string, []byte, uint64) (bool, error) {
	return false, errors.New("No cluster leader")
}
func (downKV) DeleteCAS(context.Context, string, uint64) (bool, error) {
	return false, errors.New("No cluster leader")
}

type startAnn struct{ announced []Self }

func (a *startAnn) Announce(_ context.Context, s Self, _ netip.AddrPort) (bool, error) {
	a.announced = append(a.announced, s)
	return true, nil
}
func (a *startAnn) Withdraw(context.Context) error { return nil }

// An agent restarted while Consul's servers are unreachable comes up on its
// cached lease instead of not at all (issue 12, defect 15); without a cached
// lease it cannot decide anything and keeps failing.
func TestStartOnCachedLeaseWhileConsulIsDown(t *testing.T) {
	key, _ := wgtypes.GeneratePrivateKey()
	for _, tc := range []struct {
		name   string
		cached string
		want   string // subnet, or an error substring
	}{
		{"cached lease", "10.42.7.0/24\n", "10.42.7.0/24"},
		{"no cache", "", "consul not readable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.cached != "" {
				if err := os.WriteFile(filepath.Join(dir, "lease"), []byte(tc.cached), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ann := &startAnn{}
			c := New(Options{Interface: "drover0", ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), SubnetBits: 24,
				DataDir: dir, NodeName: "h1", PrivateKey: key, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
				Deps{WG: startWG{}, Ann: ann, KV: downKV{}})
			self, err := c.Start(context.Background())
			if strings.Contains(tc.want, "/") {
				if err != nil || self.Subnet.String() != tc.want || len(ann.announced) != 1 {
					t.Fatalf("start = %+v, %v (announced %d); want %s", self, err, len(ann.announced), tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start = %+v, %v; want an error with %q", self, err, tc.want)
			}
		})
	}
}
