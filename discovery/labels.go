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

// The drover.* keys, without the "drover." prefix. Every one but port and
// ignore may also be given per port as drover.<port>.<key>.
var droverKeys = map[string]bool{
	"service": true, "tags": true,
	"check": true, "check.interval": true, "check.timeout": true, "check.rise": true, "check.fall": true, "check.grace": true,
	"lb.mode": true, "lb.port": true, "lb.host": true, "lb.path": true, "lb.balance": true,
	"lb.sticky": true, "lb.proxy-protocol": true, "lb.tunnel-timeout": true,
	"weight": true,
	"port":   false, "ignore": false, // container-wide only
}

// Registrator's names (labels or environment variables).
const (
	envName        = "SERVICE_NAME"
	envTags        = "SERVICE_TAGS"
	envIgnore      = "SERVICE_IGNORE"
	envCheckPrefix = "SERVICE_CHECK_"
	envCheckHTTP   = "SERVICE_CHECK_HTTP"
	envCheckTCP    = "SERVICE_CHECK_TCP"
	envCheckIntvl  = "SERVICE_CHECK_INTERVAL"
	envCheckTmout  = "SERVICE_CHECK_TIMEOUT"
	envCheckScript = "SERVICE_CHECK_SCRIPT"
	envCheckCmd    = "SERVICE_CHECK_CMD"
)

// setting is one label (or registrator variable) value and where it came from.
type setting struct {
	key     string // as the user wrote it; "env SERVICE_…" for environment variables
	value   string
	perPort bool // a per-port key: a bad value skips only that port
}

func (s setting) bad(want string) fault {
	return fault{perPort: s.perPort, reason: fmt.Sprintf("%s %q: %s", s.key, s.value, want)}
}

// fault is one reason to skip a port, or the whole container when !perPort.
type fault struct {
	perPort bool
	reason  string
}

// labelReader reads the settings of one container.
type labelReader struct {
	c       Container
	common  map[string]setting         // drover.<key> by key
	perPort map[int]map[string]setting // drover.<port>.<key> by port, key
	names   map[int]setting            // SERVICE_<port>_NAME by port
	faults  []fault                    // found while reading the keys
}

// labelled reports whether c asks for discovery at all, in drover's or
// registrator's words.
func labelled(c Container) bool {
	for k := range c.Labels {
		if strings.HasPrefix(k, "drover.") || registratorKey(k) {
			return true
		}
	}
	for k := range c.Env {
		if registratorKey(k) {
			return true
		}
	}
	return false
}

func registratorKey(k string) bool {
	switch {
	case k == envName, k == envTags, k == envIgnore, strings.HasPrefix(k, envCheckPrefix):
		return true
	}
	_, ok := registratorPortName(k)
	return ok
}

// registratorPortName returns the port digits of SERVICE_<digits>_NAME.
func registratorPortName(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, "SERVICE_")
	if !ok {
		return "", false
	}
	digits, ok := strings.CutSuffix(rest, "_NAME")
	if !ok || digits == "" || !allDigits(digits) {
		return "", false
	}
	return digits, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// registrator returns a registrator variable, from the labels first, else
// from the environment.
func (r *labelReader) registrator(name string) (setting, bool) {
	if v, ok := r.c.Labels[name]; ok {
		return setting{key: name, value: v}, true
	}
	if v, ok := r.c.Env[name]; ok {
		return setting{key: "env " + name, value: v}, true
	}
	return setting{}, false
}

// lookup returns drover.<port>.<key>, else drover.<key>.
func (r *labelReader) lookup(port int, key string) (setting, bool) {
	if s, ok := r.perPort[port][key]; ok {
		return s, true
	}
	s, ok := r.common[key]
	return s, ok
}

func newLabelReader(c Container) *labelReader {
	r := &labelReader{c: c, common: map[string]setting{}, perPort: map[int]map[string]setting{}, names: map[int]setting{}}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "drover.")
		if !ok {
			continue
		}
		s := setting{key: k, value: c.Labels[k]}
		if _, ok := droverKeys[rest]; ok {
			r.common[rest] = s
			continue
		}
		digits, key, ok := strings.Cut(rest, ".")
		if !ok || digits == "" || !allDigits(digits) {
			r.faults = append(r.faults, fault{reason: "unknown label " + k})
			continue
		}
		port, ok := parsePortNumber(digits)
		if !ok {
			r.faults = append(r.faults, fault{reason: fmt.Sprintf("label %s: want drover.<port>.<key> with a port between 1 and 65535", k)})
			continue
		}
		s.perPort = true
		if r.perPort[port] == nil {
			r.perPort[port] = map[string]setting{}
		}
		// Unknown per-port keys are kept, so that the port is selected
		// and then skipped with the reason.
		r.perPort[port][key] = s
	}
	for _, src := range []struct {
		m   map[string]string
		env bool
	}{{c.Labels, false}, {c.Env, true}} {
		for k, v := range src.m {
			digits, ok := registratorPortName(k)
			if !ok {
				continue
			}
			s := setting{key: k, value: v, perPort: true}
			if src.env {
				s.key = "env " + k
			}
			port, ok := parsePortNumber(digits)
			if !ok {
				r.faults = append(r.faults, fault{reason: fmt.Sprintf("%s: want SERVICE_<port>_NAME with a port between 1 and 65535", s.key)})
				continue
			}
			if _, seen := r.names[port]; !seen { // labels first
				r.names[port] = s
			}
		}
	}
	return r
}

// parsePortNumber parses a canonical decimal port, 1..65535.
func parsePortNumber(s string) (int, bool) {
	n, ok := parseCanonicalInt(s)
	return n, ok && n >= 1 && n <= 65535
}

// parseCanonicalInt accepts plain decimal digits without sign or leading
// zeros, so that every accepted value has one spelling.
func parseCanonicalInt(s string) (int, bool) {
	if s == "" || len(s) > 9 || !allDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// ignored reports whether the container asks not to be registered; a bad
// value is a fault.
func (r *labelReader) ignored() (bool, *fault) {
	if s, ok := r.common["ignore"]; ok {
		switch s.value {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		f := s.bad("want true or false")
		return false, &f
	}
	if s, ok := r.registrator(envIgnore); ok {
		switch s.value {
		case "true", "1":
			return true, nil
		case "false", "0", "":
			return false, nil
		}
		f := s.bad("want true, 1, false or 0")
		return false, &f
	}
	return false, nil
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

type unusedPort struct {
	port   int
	reason string
}

// ports selects the container ports to register. unused lists ports that
// have per-port labels although drover.port selects another one.
func (r *labelReader) ports() (ports []int, unused []unusedPort, fault string) {
	perPort := map[int][]string{}
	for p, m := range r.perPort {
		for _, k := range sortedKeys(m) {
			perPort[p] = append(perPort[p], m[k].key)
		}
	}
	for p, s := range r.names {
		perPort[p] = append(perPort[p], s.key)
	}
	if s, ok := r.common["port"]; ok {
		p, ok := parsePortNumber(s.value)
		if !ok {
			return nil, nil, "" // reported by checkValue
		}
		for q, keys := range perPort {
			if q != p {
				sort.Strings(keys)
				unused = append(unused, unusedPort{q, fmt.Sprintf("%s: unused, drover.port selects port %d only", strings.Join(keys, ", "), p)})
			}
		}
		return []int{p}, unused, ""
	}
	if len(perPort) > 0 {
		for p := range perPort {
			ports = append(ports, p)
		}
		sort.Ints(ports)
		return ports, nil, ""
	}
	if len(r.c.Exposed) == 1 {
		return []int{r.c.Exposed[0]}, nil, ""
	}
	exposed := "none"
	if len(r.c.Exposed) > 0 {
		s := make([]string, len(r.c.Exposed))
		for i, p := range r.c.Exposed {
			s[i] = strconv.Itoa(p)
		}
		exposed = strings.Join(s, ", ")
	}
	return nil, nil, "several (or no) exposed ports: set drover.port (exposed: " + exposed + ")"
}

// checkValue checks one drover label value on its own; key is without the
// "drover." and port prefix.
func checkValue(key string, s setting) *fault {
	var f *fault
	switch key {
	case "service":
		_, f = parseName(s)
	case "port":
		if _, ok := parsePortNumber(s.value); !ok {
			f = badf(s, "want a port between 1 and 65535")
		}
	case "tags":
		_, f = parseTags(s)
	case "check":
		_, _, f = parseCheckKind(s)
	case "check.interval":
		_, f = parseInterval(s)
	case "check.timeout":
		_, f = parseTimeout(s)
	case "check.rise", "check.fall":
		_, f = parseIntRange(s, 1, maxRiseFall)
	case "check.grace":
		_, f = parseGrace(s)
	case "lb.mode":
		f = oneOf(s, "http", "tcp")
	case "lb.port":
		if _, ok := parsePortNumber(s.value); !ok {
			f = badf(s, "want a port between 1 and 65535")
		}
	case "lb.host":
		if !contract.ValidHost(s.value) {
			f = badf(s, "want a lower-case DNS name (labels of a-z, 0-9 and '-' separated by dots, at most 253 characters)")
		}
	case "lb.path":
		if !contract.ValidPath(s.value) {
			f = badf(s, `want a path starting with "/" without spaces`)
		}
	case "lb.balance":
		f = oneOf(s, "roundrobin", "leastconn", "source")
	case "lb.sticky":
		f = oneOf(s, "true", "false")
	case "lb.proxy-protocol":
		f = oneOf(s, "v1", "v2")
	case "lb.tunnel-timeout":
		_, f = parseTunnel(s)
	case "weight":
		_, f = parseIntRange(s, 0, maxWeight)
	case "ignore":
		// checked by ignored
	default:
		f = &fault{perPort: s.perPort, reason: "unknown label " + s.key}
	}
	return f
}

func badf(s setting, want string) *fault {
	f := s.bad(want)
	return &f
}

func oneOf(s setting, allowed ...string) *fault {
	for _, a := range allowed {
		if s.value == a {
			return nil
		}
	}
	want := "want " + strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	return badf(s, want)
}

func parseIntRange(s setting, lo, hi int) (int, *fault) {
	n, ok := parseCanonicalInt(s.value)
	if !ok || n < lo || n > hi {
		return 0, badf(s, fmt.Sprintf("want an integer between %d and %d", lo, hi))
	}
	return n, nil
}

// validName is ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

const wantName = "want a name of lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit"

func parseName(s setting) (string, *fault) {
	if !validName(s.value) {
		return "", badf(s, wantName)
	}
	return s.value, nil
}

// imageName is the name part of an image reference, lower-cased:
// "registry.io:5000/team/web:1.2" → "web".
func imageName(image string) string {
	ref, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		ref = ref[i+1:]
	}
	ref, _, _ = strings.Cut(ref, ":")
	return strings.ToLower(ref)
}

// validTag is ^[A-Za-z0-9._:=/-]{1,64}$.
func validTag(s string) bool {
	if len(s) < 1 || len(s) > maxTagLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:=/-", c) >= 0) {
			return false
		}
	}
	return true
}

// parseTags splits a comma-separated list; the result is sorted, without
// duplicates, nil when empty.
func parseTags(s setting) ([]string, *fault) {
	set := map[string]bool{}
	for _, t := range strings.Split(s.value, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !validTag(t) {
			return nil, badf(s, fmt.Sprintf("tag %q: want comma-separated tags of letters, digits and ._:=/- (1 to 64 characters each)", t))
		}
		set[t] = true
	}
	if len(set) == 0 {
		return nil, nil
	}
	return sortedKeys(set), nil
}

const wantCheck = "want http:/path, tcp or none"

// parseCheckKind parses drover.check: "http:/path", "tcp" or "none".
func parseCheckKind(s setting) (kind, path string, f *fault) {
	switch v := s.value; {
	case v == "tcp", v == "none":
		return v, "", nil
	case strings.HasPrefix(v, "http:"):
		p := strings.TrimPrefix(v, "http:")
		if !contract.ValidPath(p) {
			return "", "", badf(s, `want http:/path with a path starting with "/" without spaces`)
		}
		return "http", p, nil
	case strings.HasPrefix(v, "script"):
		return "", "", badf(s, "script checks are not supported; "+wantCheck)
	}
	return "", "", badf(s, wantCheck)
}

const wantInterval = "want a duration between 1s and 1h"

func parseInterval(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < minCheckInterval || d > maxCheckInterval {
		return 0, badf(s, wantInterval)
	}
	return d, nil
}

const wantGrace = "want a duration between 0s and 1h"

// parseGrace reads drover.check.grace: how long after the container starts
// failures count less (see Check.Grace).
func parseGrace(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < 0 || d > time.Hour {
		return 0, badf(s, wantGrace)
	}
	return d, nil
}

const wantTunnel = "want a duration of whole seconds between 1s and 24h"

// parseTunnel reads drover.lb.tunnel-timeout.
func parseTunnel(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < contract.MinTunnel || d > contract.MaxTunnel || d%time.Second != 0 {
		return 0, badf(s, wantTunnel)
	}
	return d, nil
}

const wantTimeout = "want a duration between 100ms and the check interval"

// parseTimeout checks the timeout on its own; registration checks it
// against the interval.
func parseTimeout(s setting) (time.Duration, *fault) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < minCheckTimeout || d >= maxCheckInterval {
		return 0, badf(s, wantTimeout)
	}
	return d, nil
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

// check resolves the health check of one port.
func (r *labelReader) check(port int, faults []fault) (Check, []fault) {
	add := func(f *fault) {
		if f != nil {
			faults = append(faults, *f)
		}
	}
	ck := DefaultCheck
	if s, ok := r.lookup(port, "check"); ok {
		ck.Kind, ck.Path, _ = parseCheckKind(s)
	} else if s, ok := r.registrator(envCheckHTTP); ok {
		if contract.ValidPath(s.value) {
			ck.Kind, ck.Path = "http", s.value
		} else {
			add(badf(s, `want a path starting with "/" without spaces`))
		}
	} else if s, ok := r.registrator(envCheckTCP); ok {
		switch s.value {
		case "true":
			ck.Kind = "tcp"
		case "false":
		default:
			add(badf(s, "want true or false"))
		}
	}

	interval, intervalSet := r.lookup(port, "check.interval")
	if !intervalSet {
		interval, intervalSet = r.registrator(envCheckIntvl)
	}
	intervalOK := true
	if intervalSet {
		d, f := parseInterval(interval)
		add(f)
		if intervalOK = f == nil; intervalOK {
			ck.Interval = d
			ck.Timeout = min(DefaultCheck.Timeout, d/2)
		}
	}
	timeout, timeoutSet := r.lookup(port, "check.timeout")
	if !timeoutSet {
		timeout, timeoutSet = r.registrator(envCheckTmout)
	}
	if timeoutSet {
		d, f := parseTimeout(timeout)
		add(f)
		if f == nil {
			if intervalOK && d >= ck.Interval {
				add(&fault{
					perPort: timeout.perPort || (intervalSet && interval.perPort),
					reason:  fmt.Sprintf("%s %q: %s (%s)", timeout.key, timeout.value, wantTimeout, ck.Interval),
				})
			}
			ck.Timeout = d
		}
	}
	if s, ok := r.lookup(port, "check.rise"); ok {
		ck.Rise, _ = parseIntRange(s, 1, maxRiseFall)
	}
	if s, ok := r.lookup(port, "check.fall"); ok {
		ck.Fall, _ = parseIntRange(s, 1, maxRiseFall)
	}
	if s, ok := r.lookup(port, "check.grace"); ok {
		ck.Grace, _ = parseGrace(s)
	}
	return ck, faults
}
