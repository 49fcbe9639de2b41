package discovery

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

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
