// Package wg is the WireGuard adapter: the key file, the interface (kernel
// WireGuard through netlink, or the embedded wireguard-go run as its own
// supervised process that owns the TUN device and the UAPI socket) and the
// wgctrl client that drives either. It knows nothing of drover's peers.
package wg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/drover-net/drover/internal/atomicfile"
)

// KeyFile is the name of the private key file in the data directory.
const KeyFile = "wg.key"

// LoadOrCreateKey returns the private key kept in dir, creating it (0600,
// dir 0700) on first use. The key never leaves the file except to configure
// the device.
func LoadOrCreateKey(dir string) (wgtypes.Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wgtypes.Key{}, fmt.Errorf("creating data dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return wgtypes.Key{}, fmt.Errorf("securing data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("reading WireGuard key %s: not a key (the file is kept; move it away to make a new one)", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return wgtypes.Key{}, fmt.Errorf("securing %s: %w", path, err)
			}
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return wgtypes.Key{}, fmt.Errorf("reading WireGuard key %s: %w", path, err)
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generating WireGuard key: %w", err)
	}
	// Leftovers of a start that died while staging never became the key
	// (the key file does not exist): remove them. The old scheme's fixed
	// name too (it blocked every later start, issue 12 defect 10).
	os.Remove(path + ".tmp")
	if _, err := atomicfile.RemoveStale(path); err != nil {
		return wgtypes.Key{}, fmt.Errorf("removing stale stages of %s: %w", path, err)
	}
	if err := atomicfile.Write(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return wgtypes.Key{}, fmt.Errorf("writing WireGuard key: %w", err)
	}
	return k, nil
}
