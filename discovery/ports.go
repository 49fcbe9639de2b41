package discovery

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// noPorts is ports' fault for a container with registrator's rules and no
// port at all.
const noPorts = "no exposed or published ports"

type unusedPort struct {
	port   int
	reason string
}

// ports selects the container ports to register. unused lists ports that
// have per-port labels although drover.port selects another one.
//
// A container with registrator's keys only is read as registrator reads
// it: every exposed or published port is a service (SERVICE_<port>_* keys
// only change that port). With drover.* labels, drover.port selects one
// port, else per-port keys (drover.<port>.*, SERVICE_<port>_*) select
// exactly the ports they name, else the one exposed port is registered.
func (r *labelReader) ports() (ports []int, unused []unusedPort, fault string) {
	perPort := map[int][]string{}
	for p, m := range r.perPort {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			perPort[p] = append(perPort[p], m[k].key)
		}
	}
	for p, m := range r.regPort {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			perPort[p] = append(perPort[p], m[k].key)
		}
	}
	if !droverLabelled(r.c) {
		set := map[int]bool{}
		for _, p := range r.c.Exposed {
			set[p] = true
		}
		for p := range r.c.Published {
			set[p] = true
		}
		for p := range set {
			ports = append(ports, p)
		}
		sort.Ints(ports)
		for q, keys := range perPort {
			if !set[q] {
				sort.Strings(keys)
				unused = append(unused, unusedPort{q, fmt.Sprintf("%s: unused, the container does not expose or publish port %d", strings.Join(keys, ", "), q)})
			}
		}
		if len(ports) == 0 {
			return nil, unused, noPorts
		}
		return ports, unused, ""
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
