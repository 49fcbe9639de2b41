package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/drover-net/drover/confgen"
	"github.com/drover-net/drover/discovery/consul"
	"github.com/drover-net/drover/discovery/watch"
	"github.com/drover-net/drover/internal/execcmd"
)

const confgenSynopsis = `drover confgen [flags]

Renders files from Consul, confd-style: every <confdir>/conf.d/*.toml
template resource ([template] src, dest, keys, prefix, owner, uid, gid, mode,
check_cmd, reload_cmd; drover adds min_wait and max_wait) with confd's
template functions plus service, services, nodes and meshPeers. A file is
replaced only when its bytes, mode or owner change: staged next to dest,
checked with check_cmd, fsynced, renamed, then reload_cmd runs. Any error
keeps the old file. Without --onetime it watches Consul and re-renders on
every change (debounced per resource).`

func (c *cli) confgen(args []string) int {
	fs := c.flagSet("confgen", confgenSynopsis)
	confdir := fs.String("confdir", envDefault(c.getenv("DROVER_CONFDIR"), "/etc/confd"), "directory with conf.d/ and templates/ (env DROVER_CONFDIR)")
	prefix := fs.String("prefix", c.getenv("DROVER_PREFIX"), "KV prefix joined before every resource's prefix (env DROVER_PREFIX)")
	onetime := fs.Bool("onetime", false, "render once and exit (non-zero if any resource failed)")
	noop := fs.Bool("noop", false, "render and print what would change; write nothing, run nothing")
	dryRun := fs.Bool("dry-run", false, "like --noop, and print each resource's diff on standard output")
	syncOnly := fs.Bool("sync-only", false, "write files but never run check_cmd or reload_cmd")
	keepStage := fs.Bool("keep-stage-file", false, "keep the staged file when check_cmd fails")
	var cf consulFlags
	cf.bind(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if err := loadConsulEnv(fs, c.getenv); err != nil {
		return c.fail("%v", err)
	}
	c.takeConsulSecrets(&cf)
	if *dryRun {
		*noop, *onetime = true, true
	}
	rs, err := confgen.LoadResources(*confdir, *prefix)
	if err != nil {
		return c.fail("%v", err)
	}
	cl, err := consul.New(cf.options())
	if err != nil {
		return c.fail("%v", err)
	}
	log := newLogger(c.stderr, "text", "info")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	watches := watch.New(ctx, cl, log.With("component", "watch"))
	opt := confgen.Options{Noop: *noop, SyncOnly: *syncOnly, KeepStageFile: *keepStage, Runner: execcmd.Shell{}, Log: log}
	names := func(ctx context.Context) ([]string, error) {
		m, err := cl.CatalogServices(ctx)
		var out []string
		for n := range m {
			out = append(out, n)
		}
		return out, err
	}
	if *onetime {
		opt.Services = confgen.NewWatchedServices(ctx, watches, names, nil)
		p := confgen.NewProcessor(opt)
		failed := 0
		for _, r := range rs {
			kv := map[string]string{}
			var ferr error
			for _, pre := range r.Prefixes() {
				ps, _, err := cl.KVList(ctx, pre, 0)
				if err != nil {
					ferr = err
					break
				}
				for _, p := range ps {
					kv[p.Key] = string(p.Value)
				}
			}
			if ferr != nil {
				failed++
				fmt.Fprintf(c.stderr, "%s: %v (old file kept)\n", r.File, ferr)
				continue
			}
			out, err := p.Sync(ctx, r, kv)
			if err != nil {
				failed++
				fmt.Fprintf(c.stderr, "%s: %v\n", r.File, err)
				continue
			}
			if *dryRun {
				if out.Changed {
					fmt.Fprintf(c.stdout, "--- %s\n+++ %s (rendered)\n%s\n", r.Dest, r.Dest, out.Diff)
				} else {
					fmt.Fprintf(c.stdout, "%s: unchanged\n", r.Dest)
				}
				continue
			}
			b, _ := json.Marshal(out)
			fmt.Fprintln(c.stdout, string(b))
		}
		if failed > 0 {
			return 1
		}
		return 0
	}
	var w *confgen.Watcher
	opt.Services = confgen.NewWatchedServices(ctx, watches, names, func() { w.KickAll() })
	w = confgen.NewWatcher(confgen.NewProcessor(opt), rs, watches)
	log.Info("confgen watching Consul", "resources", len(rs), "confdir", *confdir)
	return map[bool]int{true: 0, false: 1}[w.Run(ctx) == nil]
}
