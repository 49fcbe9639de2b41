package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
)

// resolve looks a name up as an app in the container does: Go's own
// resolver reading the container's /etc/resolv.conf.
func resolve(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	srv := fs.Bool("srv", false, "look up SRV records instead of addresses")
	n := fs.Int("n", 1, "lookups to make, one after the other")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of each lookup")
	server := fs.String("server", "", "ask this ip:port instead of /etc/resolv.conf's nameservers (search domains still apply)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *n < 1 {
		return errors.New("usage: resolve [-srv] [-n 1] [-timeout 5s] [-server IP:PORT] NAME")
	}
	name := fs.Arg(0)
	r := &net.Resolver{PreferGo: true}
	if *server != "" {
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, *server)
		}
	}
	var lat []time.Duration
	failed := 0
	var last string
	var lastErr error
	for range *n {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		start := time.Now()
		var got []string
		var err error
		if *srv {
			var rs []*net.SRV
			_, rs, err = r.LookupSRV(ctx, "", "", name)
			for _, s := range rs {
				got = append(got, fmt.Sprintf("%s:%d", strings.TrimSuffix(s.Target, "."), s.Port))
			}
		} else {
			got, err = r.LookupHost(ctx, name)
		}
		d := time.Since(start)
		cancel()
		lastErr = err
		if err != nil {
			failed++
			continue
		}
		lat = append(lat, d)
		slices.Sort(got)
		key := "addrs="
		if *srv {
			key = "srv="
		}
		last = key + strings.Join(got, ",")
	}
	if lastErr != nil {
		fmt.Fprintf(out, "error=%q\n", lastErr.Error())
	} else {
		fmt.Fprintln(out, last)
	}
	if *n > 1 {
		slices.Sort(lat)
		fmt.Fprintf(out, "resolve n=%d ok=%d failed=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
			*n, len(lat), failed, ms(rank(lat, 50)), ms(rank(lat, 99)), ms(rank(lat, 100)))
	}
	if lastErr != nil {
		return fmt.Errorf("looking up %s: %w", name, lastErr)
	}
	return nil
}

// dnsStub answers A queries of the names given as NAME=IP, NXDOMAIN for
// any other, on UDP and TCP, until SIGINT or SIGTERM.
func dnsStub(args []string) error {
	fs := flag.NewFlagSet("dns-stub", flag.ContinueOnError)
	listen := fs.String("listen", ":5353", "address to listen on (UDP and TCP)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := map[string]net.IP{}
	for _, a := range fs.Args() {
		n, ip, ok := strings.Cut(a, "=")
		if !ok || net.ParseIP(ip).To4() == nil {
			return fmt.Errorf("want NAME=IPv4, got %q", a)
		}
		names[mdns.CanonicalName(n)] = net.ParseIP(ip).To4()
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if len(r.Question) != 1 {
			m.Rcode = mdns.RcodeFormatError
			_ = w.WriteMsg(m)
			return
		}
		q := r.Question[0]
		ip, ok := names[mdns.CanonicalName(q.Name)]
		switch {
		case !ok:
			m.Rcode = mdns.RcodeNameError
		case q.Qtype == mdns.TypeA:
			m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: ip}}
		}
		_ = w.WriteMsg(m)
	})
	errs := make(chan error, 2)
	var servers []*mdns.Server
	for _, netw := range []string{"udp", "tcp"} {
		s := &mdns.Server{Addr: *listen, Net: netw, Handler: h}
		servers = append(servers, s)
		go func() { errs <- s.ListenAndServe() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "dns-stub on %s answering %d names\n", *listen, len(names))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, s := range servers {
		_ = s.Shutdown()
	}
	return err
}
