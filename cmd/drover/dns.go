package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"github.com/drover-net/drover/discovery/dns"
	dnslink "github.com/drover-net/drover/discovery/dns/netlink"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/backoff"
)

// The hub's set of every service is what the DNS server answers from.
var _ dns.Source = (*watch.Set)(nil)

// dnsLinkName is the dummy link that holds --dns-addr on every host.
const dnsLinkName = "drover-dns"

// dnsLinkCheck is how often the link and its address are checked and put
// back when someone removed them.
const dnsLinkCheck = 5 * time.Second

// dnsListen is --dns-addr as ip:port (port 53 unless given); ok is false
// when it is empty (DNS off).
func dnsListen(s string) (netip.AddrPort, bool, error) {
	if s == "" {
		return netip.AddrPort{}, false, nil
	}
	ap, err := parseEndpoint(s, 53)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, false, errors.New("want one address, not a wildcard (the server must not answer on the underlay)")
	}
	return ap, true, nil
}

// dnsUpstreams is --dns-upstream as host:port entries, or, when empty, the
// nameservers of resolvConf (read at start), less the server's own address.
func dnsUpstreams(flag, resolvConf string, self netip.AddrPort) ([]string, error) {
	var out []string
	if flag != "" {
		for _, f := range strings.Split(flag, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			ap, err := parseEndpoint(f, 53)
			if err != nil {
				return nil, fmt.Errorf("--dns-upstream %q: %w", f, err)
			}
			out = append(out, ap.String())
		}
		return out, nil
	}
	cc, err := mdns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading the host's resolvers from %s: %w", resolvConf, err)
	}
	port, _ := strconv.Atoi(cc.Port)
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a == self.Addr() {
			continue // a host that points its own resolver at drover would loop
		}
		out = append(out, netip.AddrPortFrom(a, uint16(port)).String())
	}
	return out, nil
}

// dnsAllow is who the server answers: loopback, the cluster's containers
// and --dns-allow.
func (c Config) dnsAllow() []netip.Prefix {
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if p, err := netip.ParsePrefix(c.ClusterCIDR); err == nil {
		allow = append(allow, p.Masked())
	}
	extra, _ := parseCIDRs(c.DNSAllow) // validated with the config
	return append(allow, extra...)
}

// startDNS starts the DNS server and its feed under g, unless --dns-addr is
// empty: the listeners on --dns-addr (on the dummy link drover-dns, made
// and kept here), answers from the watch hub's set of every service. No
// DNS failure stops the agent.
func (a *agent) startDNS(ctx context.Context, g *errgroup.Group) {
	listen, on, _ := dnsListen(a.cfg.DNSAddr) // validated with the config
	if !on {
		return
	}
	log := a.log.With("component", "dns")
	ups, err := dnsUpstreams(a.cfg.DNSUpstream, "/etc/resolv.conf", listen)
	if err != nil {
		log.Warn("no upstream resolver", "err", err) // service names still work
	} else if len(ups) == 0 {
		log.Warn("no upstream resolver (none in /etc/resolv.conf, no --dns-upstream): names outside the domain get SERVFAIL")
	}
	a.dns = dns.NewServer(dns.ServerOptions{Listen: listen, Domain: a.cfg.DNSDomain, TTL: a.cfg.DNSTTL,
		Upstreams: ups, Allow: a.cfg.dnsAllow(), Log: log})
	a.dnsSet = a.watches.Services("")
	ctx, a.dnsStop = context.WithCancel(ctx)
	a.dnsDone = make(chan struct{})
	g.Go(func() error { dns.Feed(ctx, a.dnsSet, a.dns); return nil })
	g.Go(func() error {
		defer close(a.dnsDone)
		serveDNS(ctx, a.dns, listen.Addr(), log)
		return nil
	})
}

// serveDNS keeps the dummy link and the listeners up until ctx ends,
// retrying with backoff; a DNS failure never stops the agent.
func serveDNS(ctx context.Context, srv *dns.Server, addr netip.Addr, log *slog.Logger) {
	bo := backoff.New(250*time.Millisecond, 30*time.Second)
	for ctx.Err() == nil {
		dev, _, err := dnslink.Ensure(dnsLinkName, addr)
		if err != nil {
			srv.SetError(err)
			log.Warn("dns link", "err", err)
			bo.Wait(ctx)
			continue
		}
		srv.SetDevice(dev)
		rctx, cancel := context.WithCancel(ctx)
		go func() { // the link's guard: put it back when someone removed it
			t := time.NewTicker(dnsLinkCheck)
			defer t.Stop()
			for {
				select {
				case <-rctx.Done():
					return
				case <-t.C:
				}
				if _, changed, err := dnslink.Ensure(dnsLinkName, addr); err != nil {
					log.Warn("dns link check", "err", err)
				} else if changed {
					log.Info("dns address put back", "link", dnsLinkName, "addr", addr)
				}
			}
		}()
		err = srv.Run(rctx)
		cancel()
		if err == nil {
			return
		}
		srv.SetError(err)
		log.Warn("dns server", "err", err)
		bo.Wait(ctx)
	}
}

// leaveDNS stops the DNS server and removes its link (`drover leave`).
func (a *agent) leaveDNS() error {
	if a.dnsStop == nil {
		return nil
	}
	a.dnsStop()
	<-a.dnsDone
	listen, _, _ := dnsListen(a.cfg.DNSAddr)
	return dnslink.Remove(dnsLinkName, listen.Addr())
}

// isDomainName reports whether s is a name of dot-separated DNS labels.
func isDomainName(s string) bool {
	_, ok := mdns.IsDomainName(s)
	return ok && !strings.Contains(s, "..")
}

// printDNS is the DNS part of `drover status`.
func printDNS(w io.Writer, d *dns.Status) {
	if d == nil {
		fmt.Fprintln(w, "dns: off (--dns-addr empty)")
		return
	}
	state := "listening"
	if !d.Listening {
		state = "NOT LISTENING"
	}
	fmt.Fprintf(w, "dns %s (udp+tcp, on %s) %s: domain %s, ttl %s, upstreams %s\n", d.Listen, d.Device, state, d.Domain, d.TTL, strings.Join(d.Upstreams, ","))
	if d.IndexAt.IsZero() {
		fmt.Fprintln(w, "dns: no first read of the services yet (names of the domain get SERVFAIL)")
	} else {
		fmt.Fprintf(w, "dns answers %d services with %d passing instances (read %s ago)\n", d.Services, d.Instances, time.Since(d.IndexAt).Round(time.Second))
	}
	st := d.Stats
	rc := []string{"none"}
	if len(st.Queries) > 0 {
		rc = rc[:0]
	}
	for _, k := range slices.Sorted(maps.Keys(st.Queries)) {
		rc = append(rc, fmt.Sprintf("%s %d", k, st.Queries[k]))
	}
	fmt.Fprintf(w, "dns queries: %s; forwarded %d (%d failed), refused %d\n", strings.Join(rc, ", "), st.Forwarded, st.ForwardErrors, st.Refused)
	if d.LastError != "" {
		fmt.Fprintf(w, "dns error: %s\n", d.LastError)
	}
	if d.IndexError != "" {
		fmt.Fprintf(w, "dns: answering the last good read; the latest failed: %s\n", d.IndexError)
	}
}
