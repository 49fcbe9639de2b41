package main

import (
	"fmt"
	"strings"

	"github.com/drover-net/drover/internal/aclpolicy"
)

const aclPolicySynopsis = `drover acl-policy [--node NAME] [--lb] [--confgen-prefix P]...

Prints the least-privilege Consul ACL policy (HCL) of one drover agent, each
rule with the reason it is there. Create it and a token with, e.g.:

  drover acl-policy --node h1 > drover-h1.hcl
  consul acl policy create -name drover-h1 -rules @drover-h1.hcl
  consul acl token create -policy-name drover-h1 -description "drover on h1"

Without --node the node rules cover every node (one policy for all hosts).
docs/security.md explains every rule.`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func (c *cli) aclPolicy(args []string) int {
	fs := c.flagSet("acl-policy", aclPolicySynopsis)
	node := fs.String("node", "", "Consul node name of the agent's host (empty: any node)")
	lb := fs.Bool("lb", false, "the agent runs the load balancer (--lb)")
	var prefixes stringList
	fs.Var(&prefixes, "confgen-prefix", "KV prefix confgen reads (repeatable; its resources' keys joined to --prefix)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return c.fail("acl-policy takes no arguments (got %q)", fs.Args())
	}
	fmt.Fprint(c.stdout, aclpolicy.HCL(aclpolicy.Options{Node: *node, LB: *lb, ConfgenPrefixes: prefixes}))
	return 0
}
