package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// listenPrivate listens on a unix socket at path that is 0600 from the
// moment it appears there: it is bound inside a fresh 0700 directory next
// to path, chmod-ed there, then renamed into place (a rename is atomic), so
// there is no window in which anyone else could connect.
func listenPrivate(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	ul := ln.(*net.UnixListener)
	// The listener must not unlink tmp on Close: after the rename it names
	// path, which Close then removes.
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &unlinkOnClose{UnixListener: ul, path: path}, nil
}

// unlinkOnClose removes the socket file when the listener closes.
type unlinkOnClose struct {
	*net.UnixListener
	path string
}

func (u *unlinkOnClose) Close() error {
	err := u.UnixListener.Close()
	_ = os.Remove(u.path)
	return err
}
