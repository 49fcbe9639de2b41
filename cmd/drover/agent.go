package main

import "fmt"

func (c *cli) agent(args []string) int {
	fs := c.flagSet("agent", "drover agent [flags]\n\nRuns the drover agent on this host.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintln(c.stderr, "drover agent: no controller is built into this version yet")
	return 1
}

func (c *cli) status(args []string) int {
	fs := c.flagSet("status", "drover status [--json]\n\nShows what the local agent is doing.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintln(c.stderr, "drover status: no agent API is built into this version yet")
	return 1
}
