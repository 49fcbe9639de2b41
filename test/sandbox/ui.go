package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// DialNetns dials addr from inside network namespace netns (a name under
// /run/netns). The connection stays in that namespace; the caller's thread
// and namespace are untouched (the dialing thread is discarded afterwards).
func DialNetns(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread dies with this goroutine, so its
		// namespace can never leak into other goroutines.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("opening netns %s: %w", netns, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("entering netns %s: %w", netns, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// ServeUI forwards TCP connections accepted on listen (which must be a
// loopback address) to the Consul HTTPS API and UI of server c1, inside its
// namespace, until ctx ends (TLS passes through: the browser or curl
// verifies the sandbox CA; the UI asks for the management token). Nothing is routed: each connection is relayed
// by this process.
func (s *Sandbox) ServeUI(ctx context.Context, listen string) error {
	sv := s.Server(1)
	return serveRelay(ctx, listen, sv.NetNS, ConsulHTTPS)
}

// AgentUI is where a host's drover agent serves its web UI inside the
// host's namespace (its default --metrics-addr).
const AgentUI = "127.0.0.1:9714"

// ServeAgentUI forwards TCP connections accepted on listen (a loopback
// address) to the drover agent's web UI on host name, inside its
// namespace, until ctx ends. The browser's Host header stays a loopback
// address, which the UI requires when it has no token.
func (s *Sandbox) ServeAgentUI(ctx context.Context, listen, name string) error {
	h, err := s.HostByName(name)
	if err != nil {
		return err
	}
	return serveRelay(ctx, listen, h.NetNS, AgentUI)
}

// ListenAgentUI is ServeAgentUI on a listener the caller already has (a
// test that picks a free port).
func (s *Sandbox) ListenAgentUI(ctx context.Context, ln net.Listener, name string) error {
	h, err := s.HostByName(name)
	if err != nil {
		return err
	}
	return relayFrom(ctx, ln, h.NetNS, AgentUI)
}

// serveRelay listens on the loopback address listen and relays every
// connection to addr inside netns.
func serveRelay(ctx context.Context, listen, netns, addr string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("sandbox ui: listen address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("sandbox ui: listen address %q must be a loopback address", listen)
	}
	if !netnsExists(netns) {
		return fmt.Errorf("sandbox ui: the sandbox is not up (no namespace %s)", netns)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("sandbox ui: %w", err)
	}
	return relayFrom(ctx, ln, netns, addr)
}

func relayFrom(ctx context.Context, ln net.Listener, netns, addr string) error {
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sandbox ui: accepting: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			relay(ctx, c, netns, addr)
		}()
	}
}

func relay(ctx context.Context, c net.Conn, netns, addr string) {
	defer c.Close()
	up, err := DialNetns(ctx, netns, "tcp", addr)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
