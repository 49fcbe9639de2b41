package dns

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/drover-net/drover/discovery"
)

func inst(svc, node, addr string, port int, health string, tags ...string) discovery.Instance {
	return discovery.Instance{ID: svc + ":" + addr, Service: svc, Node: node, Address: addr, Port: port, Health: health, Tags: tags}
}

var testSnapshot = map[string][]discovery.Instance{
	"web": {
		inst("web", "h3", "10.42.3.2", 8080, "passing", "v2"),
		inst("web", "h2", "10.42.2.2", 8080, "passing", "v1", "V2-Canary"),
		inst("web", "h2", "10.42.2.3", 8080, "critical", "v2"),
		inst("web", "h3", "10.42.3.9", 8080, "warning"),
	},
	"api": {
		inst("api", "h1", "10.42.1.5", 9000, "passing"),
		inst("api", "h1", "10.42.1.5", 9001, "passing"),
		inst("api", "h2", "fd00::5", 9000, "passing"),
	},
	"down":    {inst("down", "h1", "10.42.1.7", 80, "critical")},
	"web.v2":  {inst("web.v2", "h1", "10.42.1.8", 80, "passing")},
	"Mixed":   {inst("Mixed", "h1", "10.42.1.9", 80, "passing")},
	"noaddr":  {inst("noaddr", "h1", "", 80, "passing")},
	"drover-": {inst("drover-", "h1", "10.42.1.10", 80, "passing")},
}

var testOpt = Options{Domain: "service.consul.", TTL: 5}

// render is a reply as text: header line, then each section's records.
func render(m *mdns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s aa=%v tc=%v ra=%v\n", mdns.RcodeToString[m.Rcode], m.Authoritative, m.Truncated, m.RecursionAvailable)
	for _, s := range []struct {
		name string
		rrs  []mdns.RR
	}{{"an", m.Answer}, {"ns", m.Ns}, {"ex", m.Extra}} {
		for _, rr := range s.rrs {
			if rr.Header().Rrtype == mdns.TypeOPT {
				continue
			}
			fmt.Fprintf(&b, "%s %s\n", s.name, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	return b.String()
}

func query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

const soaLine = "ns service.consul. 5 IN SOA ns.service.consul. hostmaster.service.consul. 1 3600 600 86400 5\n"

func TestAnswer(t *testing.T) {
	ix := NewIndex(testSnapshot)
	cases := []struct {
		name  string
		req   *mdns.Msg
		opt   *Options
		want  string
		fwd   bool
		order Shuffler
	}{
		{name: "A of the passing instances only", req: query("web.service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\n" +
				"an web.service.consul. 5 IN A 10.42.2.2\n" +
				"an web.service.consul. 5 IN A 10.42.3.2\n"},
		{name: "case-insensitive, answered in the question's case", req: query("WEB.Service.CONSUL.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\n" +
				"an WEB.Service.CONSUL. 5 IN A 10.42.2.2\n" +
				"an WEB.Service.CONSUL. 5 IN A 10.42.3.2\n"},
		{name: "a service name with capitals", req: query("mixed.service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\nan mixed.service.consul. 5 IN A 10.42.1.9\n"},
		{name: "tag filter", req: query("v2.web.service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\nan v2.web.service.consul. 5 IN A 10.42.3.2\n"},
		{name: "tag filter is case-insensitive", req: query("v2-canary.web.service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\nan v2-canary.web.service.consul. 5 IN A 10.42.2.2\n"},
		{name: "a tag no passing instance has", req: query("v9.web.service.consul.", mdns.TypeA),
			want: "NXDOMAIN aa=true tc=false ra=true\n" + soaLine},
		{name: "unknown service", req: query("nope.service.consul.", mdns.TypeA),
			want: "NXDOMAIN aa=true tc=false ra=true\n" + soaLine},
		{name: "only critical instances", req: query("down.service.consul.", mdns.TypeA),
			want: "NXDOMAIN aa=true tc=false ra=true\n" + soaLine},
		{name: "web.v2 (no DNS label) is not served: v2.web is web with tag v2", req: query("v2.web.service.consul.", mdns.TypeSRV),
			want: "NOERROR aa=true tc=false ra=true\n" +
				"an v2.web.service.consul. 5 IN SRV 1 1 8080 0a2a0302.addr.service.consul.\n" +
				"ex 0a2a0302.addr.service.consul. 5 IN A 10.42.3.2\n"},
		{name: "an instance without an address is left out", req: query("noaddr.service.consul.", mdns.TypeA),
			want: "NXDOMAIN aa=true tc=false ra=true\n" + soaLine},
		{name: "AAAA of IPv4 instances is NODATA", req: query("web.service.consul.", mdns.TypeAAAA),
			want: "NOERROR aa=true tc=false ra=true\n" + soaLine},
		{name: "MX is NODATA", req: query("web.service.consul.", mdns.TypeMX),
			want: "NOERROR aa=true tc=false ra=true\n" + soaLine},
		{name: "AAAA of an IPv6 instance", req: query("api.service.consul.", mdns.TypeAAAA),
			want: "NOERROR aa=true tc=false ra=true\nan api.service.consul. 5 IN AAAA fd00::5\n"},
		{name: "A once per address, however many ports", req: query("api.service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\nan api.service.consul. 5 IN A 10.42.1.5\n"},
		{name: "ANY is A and AAAA", req: query("api.service.consul.", mdns.TypeANY),
			want: "NOERROR aa=true tc=false ra=true\nan api.service.consul. 5 IN A 10.42.1.5\nan api.service.consul. 5 IN AAAA fd00::5\n"},
		{name: "SRV: one per instance with its port, targets' addresses as additional records", req: query("api.service.consul.", mdns.TypeSRV),
			want: "NOERROR aa=true tc=false ra=true\n" +
				"an api.service.consul. 5 IN SRV 1 1 9000 0a2a0105.addr.service.consul.\n" +
				"an api.service.consul. 5 IN SRV 1 1 9001 0a2a0105.addr.service.consul.\n" +
				"an api.service.consul. 5 IN SRV 1 1 9000 fd000000000000000000000000000005.addr.service.consul.\n" +
				"ex 0a2a0105.addr.service.consul. 5 IN A 10.42.1.5\n" +
				"ex fd000000000000000000000000000005.addr.service.consul. 5 IN AAAA fd00::5\n"},
		{name: "RFC 2782 SRV", req: query("_web._tcp.service.consul.", mdns.TypeSRV),
			want: "NOERROR aa=true tc=false ra=true\n" +
				"an _web._tcp.service.consul. 5 IN SRV 1 1 8080 0a2a0202.addr.service.consul.\n" +
				"an _web._tcp.service.consul. 5 IN SRV 1 1 8080 0a2a0302.addr.service.consul.\n" +
				"ex 0a2a0202.addr.service.consul. 5 IN A 10.42.2.2\n" +
				"ex 0a2a0302.addr.service.consul. 5 IN A 10.42.3.2\n"},
		{name: "RFC 2782 SRV with a tag", req: query("_web._v1.service.consul.", mdns.TypeSRV),
			want: "NOERROR aa=true tc=false ra=true\n" +
				"an _web._v1.service.consul. 5 IN SRV 1 1 8080 0a2a0202.addr.service.consul.\n" +
				"ex 0a2a0202.addr.service.consul. 5 IN A 10.42.2.2\n"},
		{name: "an SRV target's name", req: query("0a2a0302.addr.service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\nan 0a2a0302.addr.service.consul. 5 IN A 10.42.3.2\n"},
		{name: "an SRV target's name, other type", req: query("0a2a0302.addr.service.consul.", mdns.TypeAAAA),
			want: "NOERROR aa=true tc=false ra=true\n" + soaLine},
		{name: "apex SOA", req: query("service.consul.", mdns.TypeSOA),
			want: "NOERROR aa=true tc=false ra=true\nan service.consul. 5 IN SOA ns.service.consul. hostmaster.service.consul. 1 3600 600 86400 5\n"},
		{name: "apex A is NODATA", req: query("service.consul.", mdns.TypeA),
			want: "NOERROR aa=true tc=false ra=true\n" + soaLine},
		{name: "too many labels", req: query("a.v2.web.service.consul.", mdns.TypeA),
			want: "NXDOMAIN aa=true tc=false ra=true\n" + soaLine},
		{name: "outside the domain is forwarded", req: query("example.invalid.", mdns.TypeA), fwd: true},
		{name: "the parent of the domain is forwarded", req: query("consul.", mdns.TypeA), fwd: true},
		{name: "a name that merely ends like the domain is forwarded", req: query("web.xservice.consul.", mdns.TypeA), fwd: true},
		{name: "two questions", req: func() *mdns.Msg {
			m := query("web.service.consul.", mdns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), want: "FORMERR aa=false tc=false ra=false\n"},
		{name: "not a query", req: func() *mdns.Msg {
			m := query("web.service.consul.", mdns.TypeA)
			m.Opcode = mdns.OpcodeUpdate
			return m
		}(), want: "NOTIMP aa=true tc=false ra=true\n"},
		{name: "another domain", req: query("web.svc.example.", mdns.TypeA), opt: &Options{Domain: "svc.example.", TTL: 30},
			want: "NOERROR aa=true tc=false ra=true\nan web.svc.example. 30 IN A 10.42.2.2\nan web.svc.example. 30 IN A 10.42.3.2\n"},
		{name: "the shuffler orders the answer", req: query("web.service.consul.", mdns.TypeA), order: func(ts []Target) { slices.Reverse(ts) },
			want: "NOERROR aa=true tc=false ra=true\nan web.service.consul. 5 IN A 10.42.3.2\nan web.service.consul. 5 IN A 10.42.2.2\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opt := testOpt
			if c.opt != nil {
				opt = *c.opt
			}
			got, ok := Answer(c.req, ix, opt, MaxSize(c.req, false), c.order)
			if ok == c.fwd {
				t.Fatalf("answered=%v, want %v", ok, !c.fwd)
			}
			if InDomain(c.req, opt.Domain) == c.fwd {
				t.Errorf("InDomain disagrees with Answer")
			}
			if c.fwd {
				return
			}
			if got.Id != c.req.Id || !got.Response {
				t.Errorf("reply id %d response %v, want id %d and a response", got.Id, got.Response, c.req.Id)
			}
			if diff := cmp.Diff(c.want, render(got)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if _, err := got.Pack(); err != nil {
				t.Errorf("packing the reply: %v", err)
			}
		})
	}
}

func bigSnapshot(services, per int) map[string][]discovery.Instance {
	s := map[string][]discovery.Instance{}
	for i := range services {
		name := fmt.Sprintf("svc%d", i)
		for j := range per {
			s[name] = append(s[name], inst(name, "h1", fmt.Sprintf("10.%d.%d.%d", 42+i/250, (j/250)%250, j%250+1), 8080, "passing"))
		}
	}
	return s
}

func TestAnswerTruncates(t *testing.T) {
	ix := NewIndex(bigSnapshot(1, 200))
	for _, c := range []struct {
		name    string
		req     *mdns.Msg
		tcp     bool
		tc      bool
		answers int // exact when not truncated
	}{
		{name: "UDP without EDNS0: 512 bytes", req: query("svc0.service.consul.", mdns.TypeA), tc: true},
		{name: "UDP with a 4096-byte EDNS0 buffer", req: query("svc0.service.consul.", mdns.TypeA).SetEdns0(4096, false), tc: false, answers: 200},
		{name: "SRV over UDP with EDNS0", req: query("svc0.service.consul.", mdns.TypeSRV).SetEdns0(4096, false), tc: true},
		{name: "TCP takes all", req: query("svc0.service.consul.", mdns.TypeSRV), tcp: true, tc: false, answers: 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			max := MaxSize(c.req, c.tcp)
			got, _ := Answer(c.req, ix, testOpt, max, nil)
			b, err := got.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > max {
				t.Errorf("reply is %d bytes, over %d", len(b), max)
			}
			if got.Truncated != c.tc {
				t.Errorf("TC=%v, want %v (answers %d)", got.Truncated, c.tc, len(got.Answer))
			}
			if c.tc && (len(got.Answer) == 0 || len(got.Answer) >= 200) {
				t.Errorf("truncated reply has %d answers, want some but not all 200", len(got.Answer))
			}
			if !c.tc && len(got.Answer) != c.answers {
				t.Errorf("%d answers, want %d", len(got.Answer), c.answers)
			}
			if c.req.IsEdns0() != nil && got.IsEdns0() == nil {
				t.Errorf("EDNS0 query answered without an OPT record")
			}
		})
	}
}

func TestAnswerShufflesEveryAddress(t *testing.T) {
	ix := NewIndex(bigSnapshot(1, 5))
	r := rand.New(rand.NewPCG(1, 2))
	shuffle := func(ts []Target) { r.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] }) }
	first := map[string]int{}
	for range 500 {
		got, _ := Answer(query("svc0.service.consul.", mdns.TypeA), ix, testOpt, 512, shuffle)
		if len(got.Answer) != 5 {
			t.Fatalf("%d answers, want 5", len(got.Answer))
		}
		first[got.Answer[0].(*mdns.A).A.String()]++
	}
	if len(first) != 5 {
		t.Errorf("first addresses seen %v, want each of the 5", first)
	}
	// The index itself is not reordered by a shuffle.
	if got := ix.lookup("svc0", ""); got[0].Addr.String() != "10.42.0.1" {
		t.Errorf("index reordered: first %v", got[0].Addr)
	}
}

func TestNewIndexCounts(t *testing.T) {
	ix := NewIndex(testSnapshot)
	// web.v2 and drover- are no DNS labels; the others count, with their
	// passing instances.
	if ix.Services != 5 || ix.Skipped != 2 || ix.Instances != 6 {
		t.Errorf("services %d skipped %d instances %d, want 5 2 6", ix.Services, ix.Skipped, ix.Instances)
	}
}

func BenchmarkAnswer1000(b *testing.B) {
	ix := NewIndex(bigSnapshot(50, 20)) // 1,000 instances
	r := rand.New(rand.NewPCG(1, 2))
	shuffle := func(ts []Target) { r.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] }) }
	reqs := make([]*mdns.Msg, 50)
	for i := range reqs {
		reqs[i] = query(fmt.Sprintf("svc%d.service.consul.", i), mdns.TypeA)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m, _ := Answer(reqs[i%len(reqs)], ix, testOpt, 512, shuffle)
		if _, err := m.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewIndex1000(b *testing.B) {
	s := bigSnapshot(50, 20)
	for b.Loop() {
		NewIndex(s)
	}
}
