package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-net/drover/discovery"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/overlay"
)

const leasesSynopsis = `drover leases [--json] [--consul-addr ADDR] [--consul-ca FILE] [--consul-token-file FILE] [--status-socket PATH]

Lists every subnet lease in Consul: subnet, node, key, whether that node is
alive in Consul (its drover-node record exists and its Consul node's
serfHealth is passing; "record absent" when there is no record) and, when
the local agent answers, how long it has seen that node failing or its
record absent (measured on this host's clock; Consul keeps no such time).`

// leases lists the subnet leases with their nodes' liveness.
func (c *cli) leases(args []string) int {
	fs := c.flagSet("leases", leasesSynopsis)
	var cf consulFlags
	cf.bind(fs)
	sock := fs.String("status-socket", envDefault(c.getenv("DROVER_STATUS_SOCKET"), DefaultConfig().StatusSocket), "unix socket of the local agent, asked for failing durations if it answers (env DROVER_STATUS_SOCKET)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cl, err := c.consulClient(fs, &cf)
	if err != nil {
		return c.fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos, err := readLeases(ctx, cl, "")
	if err != nil {
		return c.fail("%v", err)
	}
	failing := agentFailing(*sock)
	for i := range infos {
		infos[i].FailingFor = failing[infos[i].Node]
	}
	if *asJSON {
		if infos == nil {
			infos = []overlay.LeaseInfo{}
		}
		b, _ := json.MarshalIndent(infos, "", "  ")
		fmt.Fprintf(c.stdout, "%s\n", b)
		return 0
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBNET\tNODE\tKEY\tALIVE\tSERF HEALTH\tCONSUL NODE\tFAILING FOR\tPROBLEM")
	for _, l := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", l.Subnet, dash(l.Node), dash(shortKey(l.PublicKey)), l.Alive(), l.Serf,
			dash(l.ConsulNode), dash(l.FailingFor), l.Problem)
	}
	tw.Flush()
	return 0
}

const leaseSynopsis = `drover lease release SUBNET [--force] [--consul-addr ADDR] [--consul-ca FILE] [--consul-token-file FILE]

Frees the lease of SUBNET (e.g. 10.42.3.0/24) whose node is gone, so that a
new host can take it. Refused while that node is alive in Consul (its
drover-node record exists with serfHealth passing) unless --force. The key is
deleted with check-and-set on the index read, so a lease that changed
meanwhile is left alone. Every other host removes that node's peer at once:
a deleted lease is the explicit withdrawal (docs/consul-data.md).`

// lease runs `drover lease release`.
func (c *cli) lease(args []string) int {
	fs := c.flagSet("lease", leaseSynopsis)
	var cf consulFlags
	cf.bind(fs)
	force := fs.Bool("force", false, "release even while the node is alive")
	if len(args) == 0 || args[0] != "release" {
		if code, ok := parse(fs, args); !ok {
			return code
		}
		fs.Usage()
		return 2
	}
	// Flags may come before or after SUBNET.
	var rest []string
	for a := args[1:]; ; {
		if code, ok := parse(fs, a); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		a = fs.Args()[1:]
	}
	if len(rest) != 1 {
		fs.Usage()
		return 2
	}
	subnet, err := netip.ParsePrefix(rest[0])
	if err != nil || subnet != subnet.Masked() {
		return c.fail("%q is not a subnet such as 10.42.3.0/24", rest[0])
	}
	cl, err := c.consulClient(fs, &cf)
	if err != nil {
		return c.fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos, err := readLeases(ctx, cl, overlay.LeaseKey(subnet))
	if err != nil {
		return c.fail("%v", err)
	}
	var info *overlay.LeaseInfo
	for i := range infos {
		if infos[i].Subnet == subnet.String() {
			info = &infos[i]
		}
	}
	if info == nil {
		return c.fail("no lease for %s", subnet)
	}
	if err := overlay.CheckRelease(*info, *force); err != nil {
		return c.fail("%v", err)
	}
	ok, err := cl.KVDeleteCAS(ctx, &api.KVPair{Key: overlay.LeaseKey(subnet), ModifyIndex: info.Index})
	if err != nil {
		return c.fail("releasing %s: %v", subnet, err)
	}
	if !ok {
		return c.fail("lease %s changed meanwhile (index %d): left alone; look again with `drover leases`", subnet, info.Index)
	}
	fmt.Fprintf(c.stdout, "released %s (node %s, alive %t, %s)\n", subnet, dash(info.Node), info.Alive(), info.Serf)
	return 0
}

// readLeases reads the lease folder (or one key) and the drover-node
// records with their Consul nodes' serfHealth.
func readLeases(ctx context.Context, cl *consul.Client, key string) ([]overlay.LeaseInfo, error) {
	prefix := overlay.LeasePrefix
	if key != "" {
		prefix = key
	}
	ps, _, err := cl.KVList(ctx, prefix, 0)
	if err != nil {
		return nil, fmt.Errorf("reading leases: %w", err)
	}
	kv := map[string]overlay.KVEntry{}
	for _, p := range ps {
		if key == "" || p.Key == key {
			kv[p.Key] = overlay.KVEntry{Value: p.Value, Index: p.ModifyIndex}
		}
	}
	es, _, err := cl.HealthService(ctx, discovery.NodeService, 0)
	if err != nil {
		return nil, fmt.Errorf("reading drover-node records: %w", err)
	}
	serf := map[string]string{}
	for _, e := range es {
		for _, ck := range e.Checks {
			if ck.CheckID == "serfHealth" && ck.ServiceID == "" {
				serf[e.Node.Node] = ck.Status
			}
		}
	}
	return overlay.DescribeLeases(kv, discovery.NodesFromEntries(es), serf), nil
}

// agentFailing asks the local agent, if it answers within a second, how
// long it has seen each peer failing or absent.
func agentFailing(sock string) map[string]string {
	out := map[string]string{}
	cl := apiClient(sock)
	cl.Timeout = time.Second
	resp, err := cl.Get("http://drover/v1/status")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	var r StatusReport
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return out
	}
	for _, p := range r.Overlay.Peers {
		if p.FailingFor != "" {
			out[p.Node] = p.FailingFor
		}
	}
	return out
}

func shortKey(k string) string {
	if len(k) > 8 {
		return k[:8] + "…"
	}
	return k
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
