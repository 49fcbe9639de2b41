package discovery

import (
	"fmt"
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
	var regs []Registration
	var problems []Problem
	for _, c := range cs {
		r, p := containerRegistrations(node, network, c)
		regs = append(regs, r...)
		problems = append(problems, p...)
	}
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
func containerRegistrations(node, network string, c Container) ([]Registration, []Problem) {
	if !c.Running || !labelled(c) {
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
	for _, key := range sortedKeys(r.common) {
		if f := checkValue(key, r.common[key]); f != nil {
			addContainer(f.reason)
		}
	}
	for _, name := range []string{envCheckScript, envCheckCmd} {
		if s, ok := r.registrator(name); ok {
			addContainer(s.bad("script checks are not supported; want drover.check=http:/path, tcp or none").reason)
		}
	}
	addr, ok := c.Networks[network]
	if !ok || !addr.IsValid() {
		addContainer(fmt.Sprintf("not attached to the %s network", network))
	}

	ports, unused, portFault := r.ports()
	if portFault != "" {
		addContainer(portFault)
	}
	var problems []Problem
	for _, u := range unused {
		problems = append(problems, problem(u.port, u.reason))
	}
	var regs []Registration
	for _, port := range ports {
		reg, faults := r.registration(node, port)
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
		reg.Address = addr
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// registration resolves the settings of one port. Faults with !perPort
// skip the whole container.
func (r *labelReader) registration(node string, port int) (Registration, []fault) {
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
	for _, key := range sortedKeys(r.perPort[port]) {
		s := r.perPort[port][key]
		if !droverKeys[key] {
			add(&fault{perPort: true, reason: "unknown label " + s.key})
			continue
		}
		add(checkValue(key, s))
	}

	// Name.
	if s, ok := r.lookup(port, "service"); ok {
		reg.Name, _ = parseName(s) // checked above or by the container pass
	} else if s, ok := r.names[port]; ok {
		var f *fault
		reg.Name, f = parseName(s)
		add(f)
	} else if s, ok := r.registrator(envName); ok {
		var f *fault
		reg.Name, f = parseName(s)
		add(f)
	} else {
		switch n := imageName(c.Image); {
		case strings.HasPrefix(c.Image, "sha256:"):
			add(&fault{reason: fmt.Sprintf("image %q has no name: set drover.service", c.Image)})
		case !validName(n):
			add(&fault{reason: fmt.Sprintf("image name %q is not a valid service name (%s): set drover.service", n, strings.TrimPrefix(wantName, "want "))})
		default:
			reg.Name = n
		}
	}

	// Tags.
	if s, ok := r.lookup(port, "tags"); ok {
		reg.Tags, _ = parseTags(s)
	} else if s, ok := r.registrator(envTags); ok {
		var f *fault
		reg.Tags, f = parseTags(s)
		add(f)
	}

	// Check.
	reg.Check, faults = r.check(port, faults)

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
	for _, k := range sortedKeys(meta) {
		if len(k) > metaMaxKey {
			out = append(out, fault{perPort: true, reason: fmt.Sprintf("meta key %.20q… is %d bytes: Consul allows at most %d", k, len(k), metaMaxKey)})
		}
		if v := meta[k]; len(v) > metaMaxValue {
			out = append(out, fault{perPort: true, reason: fmt.Sprintf("meta %s is %d bytes (from a label or the container's name or image): Consul allows at most %d", k, len(v), metaMaxValue)})
		}
	}
	return out
}
