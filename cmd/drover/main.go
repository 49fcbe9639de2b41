// Command drover is the multi-node networking agent of a container platform:
// an encrypted WireGuard mesh between hosts, Docker-to-Consul service
// registration, health checks, HAProxy load balancing and templated files,
// all driven from Consul. One binary holds every subcommand.
//
// This package owns flags, environment and configuration files, wiring of
// adapters to the core packages, the local status API and exit codes. It
// holds no networking logic of its own.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/drover-net/drover/internal/buildinfo"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(c *cli, args []string) int
}

// cli carries the process's standard streams and environment, so that
// subcommands can be tested without touching the real ones.
type cli struct {
	stdout, stderr io.Writer
	environ        []string
}

func commands() []command {
	return []command{
		{"agent", "run the drover agent on this host", (*cli).agent},
		{"status", "show what the local agent is doing", (*cli).status},
		{"leave", "take this host out of the mesh for good", (*cli).leaveCmd},
		{"ui", "print (and open) the address of the local agent's web UI", (*cli).ui},
		{"services", "list the service instances in Consul with address and health", (*cli).services},
		{"leases", "list the subnet leases with their nodes and whether they are alive", (*cli).leases},
		{"lease", "release the subnet lease of a node that is gone (lease release SUBNET)", (*cli).lease},
		{"acl-policy", "print the least-privilege Consul ACL policy of an agent", (*cli).aclPolicy},
		{"confgen", "render files from Consul, confd-compatible (onetime or watching)", (*cli).confgen},
		{"sandbox", "run a multi-host test cluster on this machine (namespaces)", (*cli).sandbox},
		{"version", "print the version", (*cli).version},
	}
}

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ()}
	os.Exit(c.main(os.Args[1:]))
}

func (c *cli) main(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.usage(c.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			return cmd.run(c, args[1:])
		}
	}
	if args[0] == "wg-userspace" { // internal: started by the agent
		return c.wgUserspace(args[1:])
	}
	fmt.Fprintf(c.stderr, "drover: unknown command %q\n\n", args[0])
	c.usage(c.stderr)
	return 2
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, "drover %s: WireGuard mesh, service discovery, health checks, HAProxy load balancing and files rendered from Consul.\n\n", buildinfo.String())
	fmt.Fprintf(w, "Usage: drover COMMAND [flags]\n\nCommands:\n")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, "\nRun `drover COMMAND --help` for the flags of a command.\n")
}

// flagSet returns a flag set whose --help prints synopsis, then the flags.
func (c *cli) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n", synopsis)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args; it returns (exit code, false) when the caller should
// stop (--help gives 0, a bad flag 2).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(fs.Output())
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

func (c *cli) getenv(key string) string {
	for i := len(c.environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(c.environ[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func (c *cli) version(args []string) int {
	fs := c.flagSet("version", "drover version\n\nPrints the drover version, Go version and platform.")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fmt.Fprintf(c.stdout, "drover %s %s %s/%s\n", buildinfo.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

func (c *cli) fail(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "drover: "+format+"\n", a...)
	return 1
}
