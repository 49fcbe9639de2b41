package webui

import (
	"fmt"
	"sort"
)

// Index is the /api/v1/ answer: the schema version and every endpoint.
type Index struct {
	Schema    int               `json:"schema"`
	Node      string            `json:"node"`
	Endpoints map[string]string `json:"endpoints"`
}

// Services is the /api/v1/services answer: every service in Consul with
// its instances and their checks, and the containers every host refused.
type Services struct {
	Schema   int           `json:"schema"`
	Services []Service     `json:"services"`
	Refused  []HostRefusal `json:"refused"`
	// Problems are reads that failed or rows that were skipped; what could
	// be read is still answered.
	Problems []string `json:"problems,omitempty"`
}

// Service is one service name and its instances.
type Service struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
}

// Instance is one registered instance.
type Instance struct {
	ID      string            `json:"id"`
	Node    string            `json:"node"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Health  string            `json:"health"` // the worst of its checks
	Checks  []Check           `json:"checks"`
}

// Check is one check of an instance (its node's checks included).
type Check struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

// HostRefusal is a refused container and the host that refused it.
type HostRefusal struct {
	Node string `json:"node"`
	Refusal
}

// LBs is the /api/v1/lb answer: every lb host's summary.
type LBs struct {
	Schema   int         `json:"schema"`
	LBs      []LBSummary `json:"lbs"`
	Problems []string    `json:"problems,omitempty"`
}

// Events is the /api/v1/events answer: every host's recent events, newest
// first.
type Events struct {
	Schema int     `json:"schema"`
	Events []Event `json:"events"`
}

// MaxEvents is how many events /api/v1/events answers at most; each row
// carries at most RowEvents of its host's.
const (
	MaxEvents = 100
	RowEvents = 20
)

// BuildServices sorts services and instances and joins every host's
// refusals. It is pure.
func BuildServices(svcs []Service, rows map[string]Row, problems []string) Services {
	out := Services{Schema: Schema, Services: append([]Service(nil), svcs...), Refused: []HostRefusal{}, Problems: problems}
	sort.Slice(out.Services, func(i, j int) bool { return out.Services[i].Name < out.Services[j].Name })
	for i := range out.Services {
		ins := append([]Instance(nil), out.Services[i].Instances...)
		sort.Slice(ins, func(a, b int) bool { return ins[a].ID < ins[b].ID })
		out.Services[i].Instances = ins
	}
	for _, n := range sortedKeys(rows) {
		for _, r := range rows[n].Refused {
			out.Refused = append(out.Refused, HostRefusal{Node: n, Refusal: r})
		}
		if k := rows[n].OmittedRefused; k > 0 {
			out.Problems = append(out.Problems, fmt.Sprintf("%s refused %d more containers than it publishes (drover status on %s lists them all)", n, k, n))
		}
	}
	if out.Services == nil {
		out.Services = []Service{}
	}
	return out
}

// BuildEvents merges every host's events. It is pure.
func BuildEvents(rows map[string]Row) Events {
	rs := make([]Row, 0, len(rows))
	for _, n := range sortedKeys(rows) {
		rs = append(rs, rows[n])
	}
	evs := MergeEvents(rs, MaxEvents)
	if evs == nil {
		evs = []Event{}
	}
	return Events{Schema: Schema, Events: evs}
}

// BuildLBs sorts the lb summaries by node. It is pure.
func BuildLBs(lbs map[string]LBSummary, problems []string) LBs {
	out := LBs{Schema: Schema, LBs: []LBSummary{}, Problems: problems}
	for _, n := range sortedKeys(lbs) {
		out.LBs = append(out.LBs, lbs[n])
	}
	return out
}
