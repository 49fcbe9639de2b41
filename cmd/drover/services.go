package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/drover-net/drover/discovery"
)

// services lists drover-registered service instances from Consul with their
// overlay address, node and health.
func (c *cli) services(args []string) int {
	fs := c.flagSet("services", "drover services [--consul-addr ADDR] [--consul-ca FILE] [--consul-token-file FILE] [NAME...]\n\nLists the service instances in Consul (all services, or the ones named),\nwith address and port, how drover chose the address (MODE: overlay, host\nor container; \"-\" when drover did not register it), node, tags and health.")
	var cf consulFlags
	cf.bind(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cl, err := c.consulClient(fs, &cf)
	if err != nil {
		return c.fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := fs.Args()
	if len(names) == 0 {
		all, err := cl.CatalogServices(ctx)
		if err != nil {
			return c.fail("%v", err)
		}
		for n := range all {
			if n != "consul" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tADDRESS\tMODE\tNODE\tTAGS\tHEALTH\tCHECKS")
	for _, n := range names {
		es, _, err := cl.HealthService(ctx, n, 0)
		if err != nil {
			return c.fail("%v", err)
		}
		for _, e := range es {
			var checks []string
			for _, ck := range e.Checks {
				if ck.ServiceID == "" {
					continue // node checks
				}
				checks = append(checks, ck.Name+"="+ck.Status)
			}
			mode := e.Service.Meta[discovery.MetaAddressMode]
			if mode == "" {
				mode = "-" // not registered by drover, or by an older one
			}
			fmt.Fprintf(tw, "%s\t%s:%d\t%s\t%s\t%s\t%s\t%s\n", n, e.Service.Address, e.Service.Port, mode, e.Node.Node,
				strings.Join(e.Service.Tags, ","), e.Checks.AggregatedStatus(), strings.Join(checks, " "))
		}
	}
	tw.Flush()
	return 0
}
