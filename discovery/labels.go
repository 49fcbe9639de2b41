package discovery

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/drover-net/drover/discovery/contract"
)

// Defaults for checks when labels do not say otherwise.
var DefaultCheck = Check{Kind: "tcp", Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 3}

// Bounds of the label values.
const (
	minCheckInterval = time.Second
	maxCheckInterval = time.Hour
	minCheckTimeout  = 100 * time.Millisecond
	maxRiseFall      = 10
	maxWeight        = contract.MaxWeight
	defaultWeight    = 100
	maxTagLen        = 64
)

// Registrations turns running containers into the registrations this node
// should have in Consul, and the problems of those it skipped. network is the
// Docker network whose address is published (the overlay network, "drover").
// Pure and deterministic: output sorted by ID, problems sorted by container name then port.
func Registrations(node, network string, cs []Container) ([]Registration, []Problem) {
	return Place(Placement{Node: node, Network: network}, cs)
}

// Place is Registrations with the agent's address mode and host address.
func Place(p Placement, cs []Container) ([]Registration, []Problem) {
	var regs []Registration
	var problems []Problem
	for _, c := range cs {
		r, p := containerRegistrations(p, c)
		regs = append(regs, r...)
		problems = append(problems, p...)
	}
	regs, dup := uniqueIDs(regs)
	problems = append(problems, dup...)
	sort.Slice(regs, func(i, j int) bool { return regs[i].ID < regs[j].ID })
	sort.Slice(problems, func(i, j int) bool {
		a, b := problems[i], problems[j]
		if a.ContainerName != b.ContainerName {
			return a.ContainerName < b.ContainerName
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		if a.ContainerID != b.ContainerID {
			return a.ContainerID < b.ContainerID
		}
		return a.Reason < b.Reason
	})
	return regs, problems
}

// ServiceID returns "drover:<node>:<first 12 chars of container id>:<port>".
func ServiceID(node, containerID string, port int) string {
	if len(containerID) > 12 {
		containerID = containerID[:12]
	}
	return "drover:" + node + ":" + containerID + ":" + strconv.Itoa(port)
}

// containerRegistrations is Registrations for one container.
func containerRegistrations(p Placement, c Container) ([]Registration, []Problem) {
	asked := labelled(c)
	if !c.Running || !asked && !p.All {
		return nil, nil
	}
	r := newLabelReader(c)
	problem := func(port int, reason string) Problem {
		return Problem{ContainerID: c.ID, ContainerName: c.Name, Port: port, Reason: reason}
	}
	if ign, f := r.ignored(); ign {
		return nil, nil
	} else if f != nil {
		return nil, []Problem{problem(0, f.reason)}
	}

	// Container-wide faults, deduplicated; any one skips the container.
	var containerFaults []string
	seen := map[string]bool{}
	addContainer := func(reason string) {
		if !seen[reason] {
			seen[reason] = true
			containerFaults = append(containerFaults, reason)
		}
	}
	for _, f := range r.faults {
		addContainer(f.reason)
	}
	// Every container-wide drover label is checked, used or not.
	for _, key := range slices.Sorted(maps.Keys(r.common)) {
		if f := checkValue(key, r.common[key]); f != nil {
			addContainer(f.reason)
		}
	}

	ports, unused, portFault := r.ports()
	if portFault == noPorts && !asked {
		return nil, nil
	}
	if portFault != "" {
		addContainer(portFault)
	}
	var problems []Problem
	for _, u := range unused {
		problems = append(problems, problem(u.port, u.reason))
	}
	// Each port's address first: registrator's rules name a service
	// "<name>-<port>" when the container registers several ports.
	type placed struct {
		port int
		addr address
	}
	var at []placed
	ignoredPorts := 0
	for _, port := range ports {
		if ign, f := r.portIgnored(port); ign {
			ignoredPorts++ // still counts for "<name>-<port>", as in registrator
			continue
		} else if f != nil {
			problems = append(problems, problem(port, f.reason))
			continue
		}
		a, f := r.address(p, port)
		if f == nil {
			at = append(at, placed{port, a})
			continue
		}
		if f.quiet && !asked {
			continue
		}
		if !f.perPort {
			// The container is skipped; its ports' own problems are still
			// reported below.
			addContainer(f.reason)
			at = append(at, placed{port: port})
			continue
		}
		problems = append(problems, problem(port, f.reason))
	}
	group := len(at)+ignoredPorts > 1
	var regs []Registration
	for _, pa := range at {
		port := pa.port
		reg, faults := r.registration(p.Node, port, group)
		var portFaults []string
		for _, f := range faults {
			if f.perPort {
				portFaults = append(portFaults, f.reason)
			} else {
				addContainer(f.reason)
			}
		}
		if len(portFaults) > 0 {
			done := map[string]bool{}
			for _, reason := range portFaults {
				if !done[reason] {
					done[reason] = true
					problems = append(problems, problem(port, reason))
				}
			}
			continue
		}
		reg.Address, reg.Port = pa.addr.addr.Addr(), int(pa.addr.addr.Port())
		reg.ContainerPort = port
		reg.AddressMode, reg.AddressWhy = pa.addr.mode, pa.addr.why
		reg.Meta[MetaAddressMode] = string(pa.addr.mode)
		regs = append(regs, reg)
	}
	if len(containerFaults) > 0 {
		for _, reason := range containerFaults {
			problems = append(problems, problem(0, reason))
		}
		return nil, problems
	}
	return regs, problems
}

// portIgnored reads SERVICE_<port>_IGNORE (drover.ignore is container-wide).
func (r *labelReader) portIgnored(port int) (bool, *fault) {
	if s, ok := r.regPort[port][regIgnore]; ok {
		return parseRegIgnore(s)
	}
	return false, nil
}

// uniqueIDs keeps the first registration of each ID (SERVICE_ID may give
// two containers the same one) and says why the others were left out.
func uniqueIDs(regs []Registration) ([]Registration, []Problem) {
	sort.SliceStable(regs, func(i, j int) bool {
		if regs[i].ID != regs[j].ID {
			return regs[i].ID < regs[j].ID
		}
		return regs[i].Meta["container_id"] < regs[j].Meta["container_id"]
	})
	var out []Registration
	var problems []Problem
	for i, r := range regs {
		if i > 0 && regs[i-1].ID == r.ID {
			first := out[len(out)-1]
			problems = append(problems, Problem{ContainerID: r.Meta["container_id"], ContainerName: r.Meta["container_name"], Port: r.ContainerPort,
				Reason: fmt.Sprintf("service ID %q is also asked for by container %s", r.ID, first.Meta["container_name"])})
			continue
		}
		out = append(out, r)
	}
	return out, problems
}

// registration resolves the settings of one port. Faults with !perPort
// skip the whole container.
// group is true when the container registers several ports: under
// registrator's rules each is then named "<name>-<port>" unless
// SERVICE_<port>_NAME names it.
func (r *labelReader) registration(node string, port int, group bool) (Registration, []fault) {
	var faults []fault
	add := func(f *fault) {
		if f != nil {
			faults = append(faults, *f)
		}
	}
	c := r.c
	reg := Registration{
		ID:   ServiceID(node, c.ID, port),
		Port: port,
		Meta: map[string]string{
			MetaNode:         node,
			"container_id":   c.ID,
			"container_name": c.Name,
			"image":          c.Image,
		},
		DockerHealth: c.Health != "",
		DockerStatus: c.Health,
		Started:      c.StartedAt,
	}
	// Per-port labels: unknown keys and values on their own.
	for _, key := range slices.Sorted(maps.Keys(r.perPort[port])) {
		s := r.perPort[port][key]
		if !droverKeys[key] {
			add(&fault{perPort: true, reason: "unknown label " + s.key})
			continue
		}
		add(checkValue(key, s))
	}

	// Name.
	registratorRules := !droverLabelled(c)
	if s, ok := r.lookup(port, "service"); ok {
		reg.Name, _ = parseName(s) // checked above or by the container pass
	} else if s, ok := r.regPort[port][regName]; ok {
		var f *fault
		reg.Name, f = parseName(s)
		add(f)
	} else if s, ok := r.regCommon[regName]; ok {
		var f *fault
		reg.Name, f = parseName(s)
		add(f)
		if f == nil && group && registratorRules {
			reg.Name = groupName(reg.Name, port, s, add)
		}
	} else {
		switch n := imageName(c.Image); {
		case strings.HasPrefix(c.Image, "sha256:"):
			add(&fault{reason: fmt.Sprintf("image %q has no name: set drover.service", c.Image)})
		case !validName(n):
			add(&fault{reason: fmt.Sprintf("image name %q is not a valid service name (%s): set drover.service", n, strings.TrimPrefix(wantName, "want "))})
		default:
			reg.Name = n
			if group && registratorRules {
				reg.Name = groupName(n, port, setting{key: "image name", value: n}, add)
			}
		}
	}

	// Tags.
	if s, ok := r.lookup(port, "tags"); ok {
		reg.Tags, _ = parseTags(s)
	} else if s, ok := r.reg(port, regTags); ok {
		var f *fault
		reg.Tags, f = parseTags(s)
		add(f)
	}

	// ID.
	if s, ok := r.reg(port, regID); ok {
		switch {
		case !s.perPort && group:
			add(&fault{reason: fmt.Sprintf("%s names one service, but the container registers several ports: set SERVICE_<port>_ID", s.key)})
		case !validServiceID(s.value):
			add(badf(s, wantServiceID))
		default:
			reg.ID = s.value
			reg.Meta[MetaOwnID] = "true"
		}
	}

	// Registrator's attributes become service meta.
	var warnings []string
	for _, at := range r.attributes(port) {
		k, s := at.key, at.s
		switch {
		case reservedMeta(k):
			warnings = append(warnings, fmt.Sprintf("%s: meta key %q is drover's own; ignored", s.key, k))
		case !validMetaKey(k):
			add(badf(s, "the meta key it makes ("+k+") must be letters, digits, '_' and '-'"))
		default:
			reg.Meta[k] = s.value
		}
	}

	// Check.
	var checkWarnings []string
	reg.Check, faults, checkWarnings = r.check(port, faults)
	reg.Warnings = append(checkWarnings, warnings...)

	// Load balancer.
	if mode, ok := r.lookup(port, "lb.mode"); ok {
		if mode.value == "tcp" {
			for _, key := range []string{"lb.host", "lb.path", "lb.sticky"} {
				if s, ok := r.lookup(port, key); ok && !(key == "lb.sticky" && s.value == "false") {
					add(&fault{
						perPort: s.perPort || mode.perPort,
						reason:  fmt.Sprintf("%s %q: want drover.lb.mode http, but %s is \"tcp\"", s.key, s.value, mode.key),
					})
				}
			}
		}
		l := &contract.LB{Mode: mode.value, Weight: defaultWeight}
		if s, ok := r.lookup(port, "lb.port"); ok {
			l.Port, _ = parsePortNumber(s.value) // checked by checkValue
		}
		if s, ok := r.lookup(port, "lb.host"); ok {
			l.Host = s.value
		}
		if s, ok := r.lookup(port, "lb.path"); ok {
			l.Path = s.value
		}
		if s, ok := r.lookup(port, "lb.balance"); ok {
			l.Balance = s.value
		}
		if s, ok := r.lookup(port, "weight"); ok {
			l.Weight, _ = parseIntRange(s, 0, maxWeight)
		}
		if s, ok := r.lookup(port, "lb.sticky"); ok {
			l.Sticky = s.value == "true"
		}
		if s, ok := r.lookup(port, "lb.proxy-protocol"); ok {
			l.ProxyProtocol = s.value
		}
		if s, ok := r.lookup(port, "lb.tunnel-timeout"); ok {
			l.TunnelTimeout, _ = parseTunnel(s)
		}
		if s, ok := r.lookup(port, "lb.tls"); ok {
			l.TLS = s.value == "true"
		}
		if s, ok := r.lookup(port, "lb.redirect"); ok {
			l.Redirect, _ = strconv.Atoi(s.value)
		}
		if s, ok := r.lookup(port, "lb.hsts"); ok {
			l.HSTS, _ = parseHSTS(s)
		}
		if (l.TLS || l.Redirect != 0 || l.HSTS != 0) && (l.Mode != "http" || l.Host == "") {
			add(&fault{perPort: mode.perPort, reason: fmt.Sprintf("drover.lb.tls, .redirect and .hsts need drover.lb.mode http and drover.lb.host (the certificate is chosen by host name); %s is %q", mode.key, mode.value)})
		} else if (l.Redirect != 0 || l.HSTS != 0) && !l.TLS {
			add(&fault{perPort: mode.perPort, reason: "drover.lb.redirect and drover.lb.hsts need drover.lb.tls=true"})
		}
		contract.Encode(reg.Meta, l, reg.Check)
	}
	faults = append(faults, metaLimits(reg.Meta)...)
	return reg, faults
}

// Consul's limits on service meta (agent/structs): a registration beyond
// them is refused on every attempt, so it is refused here once, with the
// reason, instead.
const (
	metaMaxPairs  = 64
	metaMaxKey    = 128
	metaMaxValue  = 512
	metaHashPairs = 1 // the digest the sync adds
)

// metaLimits reports every meta key or value Consul would refuse.
func metaLimits(meta map[string]string) []fault {
	var out []fault
	if len(meta)+metaHashPairs > metaMaxPairs {
		out = append(out, fault{perPort: true, reason: fmt.Sprintf("%d meta pairs: Consul allows at most %d", len(meta)+metaHashPairs, metaMaxPairs)})
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		if len(k) > metaMaxKey {
			out = append(out, fault{perPort: true, reason: fmt.Sprintf("meta key %.20q… is %d bytes: Consul allows at most %d", k, len(k), metaMaxKey)})
		}
		if v := meta[k]; len(v) > metaMaxValue {
			out = append(out, fault{perPort: true, reason: fmt.Sprintf("meta %s is %d bytes (from a label or the container's name or image): Consul allows at most %d", k, len(v), metaMaxValue)})
		}
	}
	return out
}

// groupName is registrator's "<name>-<port>".
func groupName(name string, port int, s setting, add func(*fault)) string {
	n := name + "-" + strconv.Itoa(port)
	if !validName(n) {
		add(&fault{perPort: true, reason: fmt.Sprintf("%s %q: with several ports the service is named %q, which is too long: set SERVICE_%d_NAME", s.key, s.value, n, port)})
	}
	return n
}

const wantServiceID = "want 1 to 128 letters, digits and ._:@- not starting with \"drover:\""

// validServiceID is what SERVICE_ID may be: no '/' (Consul's API paths),
// and not in drover's own ID space.
func validServiceID(s string) bool {
	return len(s) >= 1 && len(s) <= 128 && !strings.HasPrefix(s, "drover:") && alnumOr(s, "._:@-")
}

// validMetaKey is Consul's rule for meta keys.
func validMetaKey(k string) bool {
	return k != "" && len(k) <= metaMaxKey && !strings.HasPrefix(k, "consul-") && alnumOr(k, "_-")
}

// reservedMeta reports whether k is a meta key drover writes itself.
func reservedMeta(k string) bool {
	switch k {
	case MetaNode, "container_id", "container_name", "image", MetaAddressMode, MetaOwnID, MetaHash:
		return true
	}
	return strings.HasPrefix(k, "drover") || contract.Reserved(k)
}

// attr is one registrator attribute: its meta key and the setting.
type attr struct {
	key string
	s   setting
}

// attributes are registrator's keys for port that are not settings drover
// reads (SERVICE_REGION=us2 → meta region=us2), per-port ones first.
func (r *labelReader) attributes(port int) []attr {
	var out []attr
	r.eachReg(port, func(k string, s setting) {
		switch {
		case k == regName, k == regTags, k == regID, k == regIgnore, strings.HasPrefix(k, regCheck):
			return
		}
		out = append(out, attr{strings.ToLower(k), s})
	})
	return out
}
