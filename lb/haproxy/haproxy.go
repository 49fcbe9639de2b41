package haproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	cnruntime "github.com/haproxytech/client-native/v5/runtime"

	"github.com/drover-net/drover/internal/atomicfile"
)

// Modes.
const (
	ModeManaged  = "managed"  // drover starts HAProxy and restarts it if it dies
	ModeExternal = "external" // someone else runs HAProxy; drover writes its config and uses its master socket
)

// Options configure an HAProxy.
type Options struct {
	Mode         string // managed or external
	Bin          string // the haproxy binary (validation, and managed mode's process)
	Dir          string // drover's lb directory: staged and last-known-good configs, server state, running record
	ConfigPath   string // the config file HAProxy reads; default Dir/haproxy.cfg
	MasterSocket string // HAProxy's master CLI socket; default Dir/master.sock
	LogAddr      string // UDP address HAProxy sends its access log to ("": none)
	Log          *slog.Logger
	// AttachWait is how long Start waits for a live master that does not
	// answer on its socket before it gives up (its caller retries);
	// default 15s.
	AttachWait time.Duration
}

// HAProxy is one HAProxy process seen through its config file and master
// socket. Methods are safe for one reconcile loop plus concurrent readers
// of Servers and Procs.
type HAProxy struct {
	opt Options

	mu sync.Mutex // guards rt
	rt cnruntime.Runtime
}

// New checks the options and returns an HAProxy; it starts nothing.
func New(opt Options) (*HAProxy, error) {
	switch opt.Mode {
	case ModeManaged, ModeExternal:
	default:
		return nil, fmt.Errorf("haproxy mode %q: want managed or external", opt.Mode)
	}
	if opt.Bin == "" {
		opt.Bin = "haproxy"
	}
	if opt.Dir == "" {
		return nil, errors.New("haproxy: no lb directory")
	}
	if opt.ConfigPath == "" {
		opt.ConfigPath = filepath.Join(opt.Dir, "haproxy.cfg")
	}
	if opt.MasterSocket == "" {
		opt.MasterSocket = filepath.Join(opt.Dir, "master.sock")
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.AttachWait <= 0 {
		opt.AttachWait = 15 * time.Second
	}
	h := &HAProxy{opt: opt}
	if err := h.ensureCerts(); err != nil {
		return nil, fmt.Errorf("haproxy: %w", err)
	}
	h.removeStale()
	return h, nil
}

// removeStale removes what an agent killed while writing left behind: the
// stage files of atomic writes and the copies staged for `haproxy -c`
// (issue 12, T2). Only this agent writes into these directories.
func (h *HAProxy) removeStale() {
	n := 0
	for _, d := range []string{h.opt.Dir, filepath.Dir(h.opt.ConfigPath), h.certDir()} {
		k, _ := atomicfile.RemoveStaleIn(d)
		n += k
	}
	if ms, err := filepath.Glob(filepath.Join(h.opt.Dir, checkPrefix+"*")); err == nil {
		for _, m := range ms {
			if os.Remove(m) == nil {
				n++
			}
		}
	}
	if n > 0 {
		h.opt.Log.Info("removed files a killed agent left while writing", "count", n)
	}
}

// checkPrefix starts the name of a config staged for validation.
const checkPrefix = ".haproxy.cfg.check-"

// Globals are the host-specific paths and settings a config for this
// HAProxy must name in its global section. (lb.Globals has the same
// fields: cmd/drover converts one into the other.)
type Globals struct {
	StatsSocket string // the worker's admin socket
	StateFile   string // server-state-file: health and admin state kept across reloads
	CertList    string // the HTTPS frontends' crt-list, kept by ApplyCerts
	LogAddr     string // UDP address for the access log ("": none)
	User, Group string // what the workers run as once the ports are bound ("": as started)
}

// Globals returns what the config must name.
//
// A managed HAProxy started as root runs its workers as the "haproxy" user
// and group when they exist (Debian's package and the haproxy image make
// them): once the ports are bound, a worker compromised by a request holds
// no root rights. An external HAProxy's user is its operator's business.
func (h *HAProxy) Globals() Globals {
	g := Globals{StatsSocket: filepath.Join(h.opt.Dir, "haproxy.sock"), StateFile: h.stateFile(),
		CertList: h.certList(), LogAddr: h.opt.LogAddr}
	if h.opt.Mode == ModeManaged && os.Geteuid() == 0 {
		if _, err := user.Lookup(workerUser); err == nil {
			g.User = workerUser
		}
		if _, err := user.LookupGroup(workerUser); err == nil {
			g.Group = workerUser
		}
	}
	return g
}

// workerUser is the unprivileged user and group HAProxy's workers run as.
const workerUser = "haproxy"

// ConfigPath is the file HAProxy runs from.
func (h *HAProxy) ConfigPath() string { return h.opt.ConfigPath }

// RecordPath is the file the caller's record of what runs is kept in.
func (h *HAProxy) RecordPath() string { return filepath.Join(h.opt.Dir, "running.json") }

func (h *HAProxy) lkgPath() string   { return h.opt.ConfigPath + ".lkg" }
func (h *HAProxy) pidPath() string   { return filepath.Join(h.opt.Dir, "haproxy.pid") }
func (h *HAProxy) stateFile() string { return filepath.Join(h.opt.Dir, "haproxy.state") }
func (h *HAProxy) logPath() string   { return filepath.Join(h.opt.Dir, "haproxy.log") }
