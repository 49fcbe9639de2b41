package dns

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/drover-net/drover/discovery"
)

// Target is one passing instance as DNS sees it.
type Target struct {
	Addr netip.Addr
	Port uint16
	Node string
	Tags []string // lowercased
}

// Index is the answerable content of one snapshot: the passing instances
// of every service whose name is a valid DNS label, by lowercased name. It
// is immutable once built and safe for concurrent readers.
type Index struct {
	services map[string][]Target
	// Services and Instances count what the index holds.
	Services, Instances int
	// Skipped counts services whose name is not a DNS label.
	Skipped int
}

// NewIndex builds the index of a snapshot (service name → instances, any
// health). Only passing instances with a parseable address are kept, in a
// stable order (by address, then port). It is pure.
func NewIndex(snapshot map[string][]discovery.Instance) *Index {
	ix := &Index{services: make(map[string][]Target, len(snapshot))}
	for name, ins := range snapshot {
		key := strings.ToLower(name)
		if !validLabel(key) {
			ix.Skipped++
			continue
		}
		var ts []Target
		for _, in := range ins {
			if in.Health != "passing" {
				continue
			}
			a, err := netip.ParseAddr(in.Address)
			if err != nil || in.Port < 0 || in.Port > 65535 {
				continue
			}
			tags := make([]string, len(in.Tags))
			for i, t := range in.Tags {
				tags[i] = strings.ToLower(t)
			}
			ts = append(ts, Target{Addr: a.Unmap(), Port: uint16(in.Port), Node: in.Node, Tags: tags})
		}
		ix.Services++
		if len(ts) == 0 {
			continue
		}
		sort.Slice(ts, func(i, j int) bool {
			if c := ts[i].Addr.Compare(ts[j].Addr); c != 0 {
				return c < 0
			}
			return ts[i].Port < ts[j].Port
		})
		ix.services[key] = append(ix.services[key], ts...)
		ix.Instances += len(ts)
	}
	return ix
}

// lookup returns the passing instances of service (lowercased), only those
// with tag when tag is not "".
func (ix *Index) lookup(service, tag string) []Target {
	ts := ix.services[service]
	if tag == "" {
		return ts
	}
	var out []Target
	for _, t := range ts {
		for _, tg := range t.Tags {
			if tg == tag {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// validLabel reports whether s is a DNS label as services are named:
// letters, digits, hyphens and underscores, 1–63 long, no leading or
// trailing hyphen.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
