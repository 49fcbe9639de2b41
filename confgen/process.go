package confgen

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/drover-net/drover/internal/atomicfile"
)

// Runner runs a shell command line (check_cmd, reload_cmd) and returns its
// combined output. Implementations enforce a timeout.
type Runner interface {
	Run(ctx context.Context, command string) ([]byte, error)
}

// Options configures a Processor.
type Options struct {
	Noop          bool // render and report, never write or run commands
	SyncOnly      bool // write files, never run check_cmd or reload_cmd
	KeepStageFile bool // keep the staged file after a failed check
	Runner        Runner
	Services      Services // may be nil
	Log           *slog.Logger
}

// Processor renders resources and swaps files safely.
type Processor struct {
	opt Options

	mu sync.Mutex // guards reloadDue
	// reloadDue holds the dests whose file was replaced but whose reload_cmd
	// failed: the next Sync runs it again even though the bytes are the
	// same, until it succeeds.
	reloadDue map[string]bool
}

// NewProcessor returns a processor.
func NewProcessor(opt Options) *Processor { return &Processor{opt: opt, reloadDue: map[string]bool{}} }

func (p *Processor) due(dest string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reloadDue[dest]
}

func (p *Processor) setDue(dest string, due bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if due {
		p.reloadDue[dest] = true
	} else {
		delete(p.reloadDue, dest)
	}
}

// reload runs r's reload_cmd, remembering a failure so that it is retried.
func (p *Processor) reload(ctx context.Context, r Resource, out *Outcome) error {
	if r.ReloadCmd == "" || p.opt.SyncOnly {
		p.setDue(r.Dest, false)
		return nil
	}
	if output, err := p.opt.Runner.Run(ctx, r.ReloadCmd); err != nil {
		p.setDue(r.Dest, true)
		return fmt.Errorf("reload_cmd %q failed after %s was replaced (retried until it succeeds): %w: %s", r.ReloadCmd, r.Dest, err, strings.TrimSpace(string(output)))
	}
	p.setDue(r.Dest, false)
	out.Reloaded = true
	return nil
}

// Outcome is what one Sync did.
type Outcome struct {
	Resource string `json:"resource"`
	Dest     string `json:"dest"`
	Changed  bool   `json:"changed"`  // the file was (or, with Noop, would be) replaced
	Reloaded bool   `json:"reloaded"` // reload_cmd ran successfully
	// Diff of old and new content. It may hold secrets (rendered files
	// often do), so it is never marshalled: status, JSON output and logs
	// leave it out; only an explicit --dry-run/--noop shows it.
	Diff string    `json:"-"`
	At   time.Time `json:"at"`
}

// Render executes the resource's template over kv (Consul keys). It is
// pure but for reading the template file.
func Render(r Resource, kv map[string]string, svc Services) ([]byte, error) {
	text, err := os.ReadFile(r.Src)
	if err != nil {
		return nil, fmt.Errorf("reading template %s: %w", r.Src, err)
	}
	t, err := template.New(filepath.Base(r.Src)).Funcs(FuncMap(r.StoreFor(kv), svc)).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("parsing template %s: %w", r.Src, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, nil); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", r.Src, err)
	}
	return out.Bytes(), nil
}

// Sync renders r over kv and, when the result differs from dest (bytes,
// mode or owner), stages it next to dest, runs check_cmd on the staged file,
// fsyncs it, renames it over dest, fsyncs the directory and runs
// reload_cmd. Any error before the rename leaves dest byte for byte as it
// was.
func (p *Processor) Sync(ctx context.Context, r Resource, kv map[string]string) (Outcome, error) {
	out := Outcome{Resource: filepath.Base(r.File), Dest: r.Dest, At: time.Now()}
	content, err := Render(r, kv, p.opt.Services)
	if err != nil {
		return out, err
	}
	mode := r.FileMode()
	same, old := sameFile(r.Dest, content, mode, r.UID, r.GID)
	if same {
		if p.due(r.Dest) && !p.opt.Noop {
			return out, p.reload(ctx, r, &out)
		}
		return out, nil
	}
	out.Changed = true
	out.Diff = diffLines(old, content)
	if p.opt.Noop {
		p.opt.Log.Info("confgen: would replace file (noop)", "dest", r.Dest, "diff", out.Diff)
		return out, nil
	}
	stage, err := atomicfile.Stage(r.Dest, content, atomicfile.Options{Mode: mode, UID: r.UID, GID: r.GID})
	if err != nil {
		return out, err
	}
	defer stage.Discard()
	if r.CheckCmd != "" && !p.opt.SyncOnly {
		cmd := strings.ReplaceAll(r.CheckCmd, "{{.src}}", stage.Name())
		if output, err := p.opt.Runner.Run(ctx, cmd); err != nil {
			if p.opt.KeepStageFile {
				stage.Keep()
			}
			return out, fmt.Errorf("check_cmd %q failed, %s kept as it was: %w: %s", cmd, r.Dest, err, strings.TrimSpace(string(output)))
		}
	}
	if err := stage.Commit(); err != nil {
		return out, err
	}
	p.opt.Log.Info("confgen: file replaced", "dest", r.Dest, "resource", out.Resource)
	if err := p.reload(ctx, r, &out); err != nil {
		return out, err
	}
	return out, nil
}

// sameFile reports whether path holds exactly content with mode and owner,
// and returns its current content.
func sameFile(path string, content []byte, mode os.FileMode, uid, gid int) (bool, []byte) {
	old, err := os.ReadFile(path)
	if err != nil {
		return false, nil
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != mode.Perm() || !bytes.Equal(old, content) {
		return false, old
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if (uid >= 0 && int(st.Uid) != uid) || (gid >= 0 && int(st.Gid) != gid) {
			return false, old
		}
	}
	return true, old
}

// diffLines is a small line diff for logs and --noop: removed lines with
// "-", added with "+".
func diffLines(old, new []byte) string {
	a := strings.Split(strings.TrimRight(string(old), "\n"), "\n")
	b := strings.Split(strings.TrimRight(string(new), "\n"), "\n")
	seen := map[string]int{}
	for _, l := range b {
		seen[l]++
	}
	var out []string
	for _, l := range a {
		if seen[l] > 0 {
			seen[l]--
			continue
		}
		if len(old) > 0 {
			out = append(out, "-"+l)
		}
	}
	have := map[string]int{}
	for _, l := range a {
		have[l]++
	}
	for _, l := range b {
		if have[l] > 0 {
			have[l]--
			continue
		}
		out = append(out, "+"+l)
	}
	return strings.Join(out, "\n")
}
