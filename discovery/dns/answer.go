package dns

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// Options are what Answer needs besides the question and the index.
type Options struct {
	// Domain is the zone answered, a lowercased FQDN ("service.consul.");
	// containers get it as their search domain, so a bare service name
	// resolves too.
	Domain string
	// TTL is the TTL of every answer and of negative answers (the SOA's
	// minimum), in seconds: short, since an instance that fails its check
	// must leave the answers soon.
	TTL uint32
}

// Shuffler reorders the targets of one answer in place (randomly in the
// server; the identity in tests that want a fixed order).
type Shuffler func([]Target)

// MaxSize is the largest reply req's client takes: 64 KiB over TCP, else
// the EDNS0 buffer size it announced, at least 512 bytes.
func MaxSize(req *mdns.Msg, tcp bool) int {
	if tcp {
		return mdns.MaxMsgSize
	}
	if o := req.IsEdns0(); o != nil && int(o.UDPSize()) > mdns.MinMsgSize {
		return int(o.UDPSize())
	}
	return mdns.MinMsgSize
}

// InDomain reports whether req asks a name of the domain (Answer answers
// it) rather than one to forward.
func InDomain(req *mdns.Msg, domain string) bool {
	if len(req.Question) != 1 {
		return true // answered with FORMERR, never forwarded
	}
	return mdns.IsSubDomain(domain, strings.ToLower(mdns.Fqdn(req.Question[0].Name)))
}

// Answer returns the reply to req from ix, and false when req's name is
// outside the domain (to be forwarded; the reply is then nil). It is pure
// but for shuffle.
//
//	<service>.<domain>              A/AAAA/SRV/ANY of the passing instances
//	<tag>.<service>.<domain>        the same, only instances with that tag
//	_<service>._<tag>.<domain>      RFC 2782 form (tag tcp or udp: every instance)
//	<hex ip>.addr.<domain>          the address an SRV target names
//	<domain>                        SOA; any other type: no data
//
// A name with no passing instance is NXDOMAIN, a name with instances but
// no record of the type asked (AAAA of IPv4 instances, MX) is NOERROR with
// no answer (NODATA); both carry the SOA, whose minimum is the TTL. A
// reply larger than maxSize is cut to whole records and marked truncated
// (TC), so that the client asks again over TCP.
func Answer(req *mdns.Msg, ix *Index, opt Options, maxSize int, shuffle Shuffler) (*mdns.Msg, bool) {
	m := new(mdns.Msg)
	if len(req.Question) != 1 {
		m.SetRcodeFormatError(req)
		return m, true
	}
	q := req.Question[0]
	name := strings.ToLower(mdns.Fqdn(q.Name))
	if !mdns.IsSubDomain(opt.Domain, name) {
		return nil, false
	}
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Compress = true
	if req.Opcode != mdns.OpcodeQuery {
		m.SetRcode(req, mdns.RcodeNotImplemented)
		return finish(m, req, maxSize), true
	}
	answerName(m, q, name, ix, opt, shuffle)
	return finish(m, req, maxSize), true
}

// answerName fills m's sections for name.
func answerName(m *mdns.Msg, q mdns.Question, name string, ix *Index, opt Options, shuffle Shuffler) {
	soa := func() { m.Ns = []mdns.RR{soaRR(opt)} }
	nxdomain := func() { m.Rcode = mdns.RcodeNameError; soa() }
	if name == opt.Domain {
		if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
			m.Answer = []mdns.RR{soaRR(opt)}
			return
		}
		soa() // NODATA
		return
	}
	labels := mdns.SplitDomainName(strings.TrimSuffix(name, "."+opt.Domain))
	var service, tag string
	switch {
	case len(labels) == 1:
		service = labels[0]
	case len(labels) == 2 && labels[1] == "addr":
		if a, ok := decodeAddr(labels[0]); ok {
			addrAnswer(m, q, a, opt)
			return
		}
		service, tag = labels[1], labels[0]
	case len(labels) == 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_"):
		service, tag = labels[0][1:], labels[1][1:]
		if tag == "tcp" || tag == "udp" {
			tag = ""
		}
	case len(labels) == 2:
		service, tag = labels[1], labels[0]
	default:
		nxdomain()
		return
	}
	ts := ix.lookup(service, tag)
	if len(ts) == 0 {
		nxdomain()
		return
	}
	ts = append([]Target(nil), ts...)
	if shuffle != nil {
		shuffle(ts)
	}
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: opt.TTL}
	}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA, mdns.TypeANY:
		seen := make(map[netip.Addr]bool, len(ts))
		for _, t := range ts {
			if seen[t.Addr] {
				continue
			}
			seen[t.Addr] = true
			if rr := addrRR(hdr, t.Addr, q.Qtype); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	case mdns.TypeSRV:
		seen := make(map[netip.Addr]bool, len(ts))
		for _, t := range ts {
			target := encodeAddr(t.Addr) + ".addr." + opt.Domain
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(mdns.TypeSRV), Priority: 1, Weight: 1, Port: t.Port, Target: target})
			if !seen[t.Addr] {
				seen[t.Addr] = true
				th := func(rt uint16) mdns.RR_Header {
					return mdns.RR_Header{Name: target, Rrtype: rt, Class: mdns.ClassINET, Ttl: opt.TTL}
				}
				m.Extra = append(m.Extra, addrRR(th, t.Addr, mdns.TypeANY))
			}
		}
	}
	if len(m.Answer) == 0 {
		soa() // NODATA: the name has instances, not this type
	}
}

// addrAnswer answers <hex ip>.addr.<domain>.
func addrAnswer(m *mdns.Msg, q mdns.Question, a netip.Addr, opt Options) {
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: opt.TTL}
	}
	if rr := addrRR(hdr, a, q.Qtype); rr != nil {
		m.Answer = append(m.Answer, rr)
		return
	}
	m.Ns = []mdns.RR{soaRR(opt)}
}

// addrRR is a's A or AAAA record when qtype asks for it (ANY asks for
// both), else nil.
func addrRR(hdr func(uint16) mdns.RR_Header, a netip.Addr, qtype uint16) mdns.RR {
	switch {
	case a.Is4() && (qtype == mdns.TypeA || qtype == mdns.TypeANY):
		return &mdns.A{Hdr: hdr(mdns.TypeA), A: net.IP(a.AsSlice())}
	case a.Is6() && (qtype == mdns.TypeAAAA || qtype == mdns.TypeANY):
		return &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: net.IP(a.AsSlice())}
	}
	return nil
}

// soaRR is the domain's SOA; its minimum is the negative-answer TTL.
func soaRR(opt Options) mdns.RR {
	return &mdns.SOA{Hdr: mdns.RR_Header{Name: opt.Domain, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: opt.TTL},
		Ns: "ns." + opt.Domain, Mbox: "hostmaster." + opt.Domain, Serial: 1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: opt.TTL}
}

// encodeAddr is a's hex form, as Consul names SRV targets with a service
// address (10.42.2.3 → 0a2a0203).
func encodeAddr(a netip.Addr) string { return hex.EncodeToString(a.AsSlice()) }

// decodeAddr is encodeAddr's inverse: 8 hex digits (IPv4) or 32 (IPv6).
func decodeAddr(s string) (netip.Addr, bool) {
	if len(s) != 8 && len(s) != 32 {
		return netip.Addr{}, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

// finish adds the EDNS0 record a client that sent one expects, and cuts a
// reply larger than maxSize (TC set when answers had to go).
func finish(m, req *mdns.Msg, maxSize int) *mdns.Msg {
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(uint16(min(maxSize, mdns.MaxMsgSize)), false)
	}
	if m.Len() > maxSize {
		m.Truncate(maxSize)
	}
	return m
}
