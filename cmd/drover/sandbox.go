package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/drover-net/drover/test/sandbox"
)

const sandboxUsage = `drover sandbox SUBCOMMAND [flags]

A multi-host drover cluster on this machine, for trying drover and for its
end-to-end tests. Each host (h1..hN) is a network namespace with its own
Consul client agent and dockerd on a shared underlay bridge (10.99.0.0/24);
Consul servers run in namespaces of their own. The root namespace gets no
route into any of it. Needs root.

Subcommands:
  up [--hosts N] [--consul-servers 1|3] [--agents=false] [--lb HOST]
                                           create or converge the sandbox (with a
                                           drover agent on every host by default)
  down                                     remove everything the sandbox made
  status [--json]                          hosts, daemons, Consul members
  exec HOST -- CMD...                      run CMD inside HOST (DOCKER_HOST, and
                                           CONSUL_HTTP_ADDR, CONSUL_CACERT,
                                           CONSUL_HTTP_TOKEN_FILE, CURL_HOME so that
                                           consul and curl use HTTPS and the
                                           management token)
  docker HOST -- ARGS...                   run docker ARGS against HOST's dockerd
  partition HOST | heal HOST               cut / restore HOST's underlay link
  kill HOST PROCESS                        kill -9 one of HOST's daemons
                                           (agent, consul, dockerd, haproxy)
  start HOST PROCESS [-- AGENT FLAGS]      start consul, dockerd or agent again
  ui [--listen 127.0.0.1:8501] [--drover-listen 127.0.0.1:9714] [--host h1]
                                           relay the Consul UI/HTTPS API and HOST's
                                           drover web UI (/ui/) to loopback

Flags common to every subcommand (before the subcommand):
  --prefix NAME   name prefix of everything made (env DROVER_SANDBOX_PREFIX, default drv)
  --bin-dir DIR   where consul and drover-demo are (default: this binary's directory)
`

func (c *cli) sandbox(args []string) int {
	fs := c.flagSet("sandbox", sandboxUsage)
	fs.Usage = func() { fmt.Fprint(fs.Output(), "Usage: "+sandboxUsage) }
	prefix := fs.String("prefix", envDefault(c.getenv("DROVER_SANDBOX_PREFIX"), "drv"), "name prefix")
	binDir := fs.String("bin-dir", "", "binary directory")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	sub, rest := rest[0], rest[1:]
	opt := sandbox.Options{Prefix: *prefix, BinDir: *binDir,
		Log: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if os.Geteuid() != 0 {
		return c.fail("sandbox needs root (it creates network namespaces and starts daemons)")
	}
	switch sub {
	case "up":
		return c.sandboxUp(ctx, opt, rest)
	case "down":
		// Its own flag set, so that `down --help` (or a stray argument)
		// explains instead of removing a sandbox.
		dfs := c.flagSet("sandbox down", "drover sandbox [--prefix NAME] down\n\nRemoves everything the sandbox with that prefix made: namespaces, links,\nmounts, daemons, data.")
		if code, ok := parse(dfs, rest); !ok {
			return code
		}
		if dfs.NArg() > 0 {
			return c.fail("sandbox down takes no arguments (got %q); --prefix goes before the subcommand", dfs.Args())
		}
		return c.withSandbox(opt, func(sb *sandbox.Sandbox) error {
			if err := sb.Down(ctx); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "sandbox %q removed; nothing with its prefix remains\n", opt.Prefix)
			return nil
		})
	case "status":
		sfs := c.flagSet("sandbox status", "drover sandbox status [--json]")
		asJSON := sfs.Bool("json", false, "print JSON")
		if code, ok := parse(sfs, rest); !ok {
			return code
		}
		return c.withSandbox(opt, func(sb *sandbox.Sandbox) error {
			st := sb.Status(ctx)
			if *asJSON {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			st.Print(c.stdout, "drover")
			return nil
		})
	case "exec", "docker":
		return c.sandboxExec(ctx, opt, sub, rest)
	case "partition", "heal":
		if len(rest) != 1 {
			return c.fail("usage: drover sandbox %s HOST", sub)
		}
		return c.withSandbox(opt, func(sb *sandbox.Sandbox) error {
			if sub == "partition" {
				return sb.Partition(ctx, rest[0])
			}
			return sb.Heal(ctx, rest[0])
		})
	case "kill", "start":
		if len(rest) < 2 || (sub == "kill" && len(rest) != 2) {
			return c.fail("usage: drover sandbox %s HOST PROCESS", sub)
		}
		return c.withSandbox(opt, func(sb *sandbox.Sandbox) error {
			if sub == "start" {
				extra := rest[2:]
				if len(extra) > 0 && extra[0] == "--" {
					extra = extra[1:]
				}
				return sb.Start(ctx, rest[0], rest[1], extra...)
			}
			pid, err := sb.Kill(rest[0], rest[1])
			if err == nil {
				fmt.Fprintf(c.stdout, "killed %s on %s (pid %d)\n", rest[1], rest[0], pid)
			}
			return err
		})
	case "ui":
		ufs := c.flagSet("sandbox ui", "drover sandbox ui [--listen 127.0.0.1:8501] [--drover-listen 127.0.0.1:9714] [--host h1]")
		listen := ufs.String("listen", "127.0.0.1:8501", "loopback address to serve the Consul UI on (empty: none)")
		droverListen := ufs.String("drover-listen", "127.0.0.1:9714", "loopback address to serve HOST's drover web UI on (empty: none)")
		host := ufs.String("host", "h1", "host whose drover web UI is relayed")
		if code, ok := parse(ufs, rest); !ok {
			return code
		}
		return c.withSandbox(opt, func(sb *sandbox.Sandbox) error {
			errs := make(chan error, 2)
			n := 0
			if *listen != "" {
				n++
				fmt.Fprintf(c.stdout, "Consul UI: https://%s/ui (certificate from the sandbox CA %s; log in with the token in %s)\n",
					*listen, sb.CAFile(), sb.ManagementTokenFile())
				go func() { errs <- sb.ServeUI(ctx, *listen) }()
			}
			if *droverListen != "" {
				n++
				fmt.Fprintf(c.stdout, "drover UI of %s: http://%s/ui/\n", *host, *droverListen)
				go func() { errs <- sb.ServeAgentUI(ctx, *droverListen, *host) }()
			}
			fmt.Fprintln(c.stdout, "Ctrl-C to stop")
			var first error
			for range n {
				if err := <-errs; err != nil && first == nil {
					first = err
					stop()
				}
			}
			return first
		})
	default:
		fs.Usage()
		return 2
	}
}

func (c *cli) withSandbox(opt sandbox.Options, f func(*sandbox.Sandbox) error) int {
	sb, err := sandbox.New(opt)
	if err != nil {
		return c.fail("%v", err)
	}
	if err := f(sb); err != nil {
		return c.fail("%v", err)
	}
	return 0
}

func (c *cli) sandboxUp(ctx context.Context, opt sandbox.Options, args []string) int {
	fs := c.flagSet("sandbox up", "drover sandbox up [--hosts N] [--consul-servers 1|3] [--lb HOST]\n\nCreates the sandbox, or converges an existing one (restarting dead daemons).\nRemains of an earlier or killed run with the same prefix are removed first.")
	fs.IntVar(&opt.Hosts, "hosts", 0, "number of hosts (default: as the sandbox that is up, else 3)")
	fs.IntVar(&opt.ConsulServers, "consul-servers", 0, "Consul servers, 1 or 3 (default: as the sandbox that is up, else 1)")
	fs.BoolVar(&opt.Agents, "agents", true, "start a drover agent on every host")
	fs.StringVar(&opt.LB, "lb", "h1", "host whose agent runs the HAProxy load balancer (none: no load balancer)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	begin := time.Now()
	return c.withSandbox(opt, func(sb *sandbox.Sandbox) error {
		if err := sb.Up(ctx); err != nil {
			return err
		}
		sb.Status(ctx).Print(c.stdout, "drover")
		fmt.Fprintf(c.stdout, "\nsandbox up in %s\n", time.Since(begin).Round(100*time.Millisecond))
		return nil
	})
}

// sandboxExec runs `exec HOST -- CMD...` or `docker HOST -- ARGS...` and
// exits with the command's code.
func (c *cli) sandboxExec(ctx context.Context, opt sandbox.Options, sub string, args []string) int {
	if len(args) < 1 {
		return c.fail("usage: drover sandbox %s HOST -- ARGS...", sub)
	}
	host, argv := args[0], args[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if sub == "docker" {
		argv = append([]string{"docker"}, argv...)
	}
	if len(argv) == 0 {
		return c.fail("usage: drover sandbox %s HOST -- ARGS...", sub)
	}
	sb, err := sandbox.New(opt)
	if err != nil {
		return c.fail("%v", err)
	}
	code, err := sb.Exec(ctx, host, os.Stdin, c.stdout, c.stderr, argv...)
	if err != nil {
		return c.fail("%v", err)
	}
	return code
}

func envDefault(v, def string) string {
	if strings.TrimSpace(v) != "" {
		return v
	}
	return def
}
