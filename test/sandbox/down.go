package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Down removes everything the sandbox made: containers, daemons, every
// process left in its namespaces or cgroups, mounts, namespaces (and with
// them every link), cgroups and directories. It works from what exists, not
// from the recorded shape, so it also cleans the remains of a killed run. It
// finishes with Leftovers and fails if anything remains.
func (s *Sandbox) Down(ctx context.Context) error {
	s.removeContainers(ctx)
	s.stopDaemons()
	s.killNamespaceProcs()
	s.killCgroups()
	var errs []error
	errs = append(errs, s.unmountAll()...)
	for _, ns := range s.netnsList() {
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range []string{s.opt.Dir, s.opt.RunDir} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", d, err))
		}
	}
	if left := s.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, "; ")))
	}
	return errors.Join(errs...)
}

// removeContainers force-removes every container of every host whose dockerd
// still answers, so that no container outlives its dockerd.
func (s *Sandbox) removeContainers(ctx context.Context) {
	socks, _ := filepath.Glob(filepath.Join(s.opt.RunDir, "*", "docker.sock"))
	for _, sock := range socks {
		host := filepath.Base(filepath.Dir(sock))
		if pidOf(filepath.Join(filepath.Dir(sock), ProcDockerd+".pid"), "dockerd") == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		env := append(os.Environ(), "DOCKER_HOST=unix://"+sock)
		ids := dockerCmd(cctx, env, "ps", "-aq")
		if ids != "" {
			s.log.Info("removing containers", "host", host, "count", len(strings.Fields(ids)))
			dockerCmd(cctx, env, append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
		cancel()
	}
}

func dockerCmd(ctx context.Context, env []string, args ...string) string {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = env
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}

// stopDaemons stops every process recorded in a pid file, politely first.
func (s *Sandbox) stopDaemons() {
	files, _ := filepath.Glob(filepath.Join(s.opt.RunDir, "*", "*.pid"))
	match := map[string]string{ProcConsul: "consul", ProcDockerd: "dockerd", ProcAgent: "drover", ProcHAProxy: "haproxy"}
	// Agents and HAProxy first, dockerd before consul: the reverse of start.
	order := map[string]int{ProcAgent: 0, ProcHAProxy: 1, ProcDockerd: 2, ProcConsul: 3}
	sort.SliceStable(files, func(i, j int) bool {
		return order[strings.TrimSuffix(filepath.Base(files[i]), ".pid")] < order[strings.TrimSuffix(filepath.Base(files[j]), ".pid")]
	})
	for _, f := range files {
		proc := strings.TrimSuffix(filepath.Base(f), ".pid")
		want, ok := match[proc]
		if !ok {
			continue
		}
		if pid := pidOf(f, want); pid != 0 {
			s.log.Info("stopping", "process", proc, "host", filepath.Base(filepath.Dir(f)), "pid", pid)
			if err := stop(pid, 20*time.Second); err != nil {
				s.log.Warn("stopping failed", "process", proc, "err", err)
			}
		}
	}
}

// killNamespaceProcs kills every process still living in one of the
// sandbox's network or mount namespaces (containerd and its shims, helper
// processes of killed daemons).
func (s *Sandbox) killNamespaceProcs() {
	netIno, mntIno := map[string]bool{}, map[string]bool{}
	for _, ns := range s.netnsList() {
		if ino := nsInode("/run/netns/" + ns); ino != "" {
			netIno[ino] = true
		}
	}
	mnts, _ := filepath.Glob(filepath.Join(s.mountRoot(), "*"))
	for _, m := range mnts {
		if ino := nsInode(m); ino != "" {
			mntIno[ino] = true
		}
	}
	for round := 0; round < 5; round++ {
		pids := append(pidsIn(netIno, mntIno), s.procsReferencing()...)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = killPID(pid)
		}
		for _, pid := range pids {
			waitGone(pid, 2*time.Second)
		}
	}
}

// cgroupDirs lists the sandbox's container cgroups in every hierarchy,
// deepest first.
func (s *Sandbox) cgroupDirs() []string { return cgroupDirs(s.opt.Prefix + "-sandbox-*") }

// killCgroup kills every process in one of the sandbox's cgroups (name is
// "/<prefix>-sandbox-hN") in every hierarchy.
func (s *Sandbox) killCgroup(name string) {
	for _, d := range cgroupDirs(strings.TrimPrefix(name, "/")) {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = killPID(pid)
				waitGone(pid, 2*time.Second)
			}
		}
	}
}

// cgroupDirs lists the cgroups matching a top-level glob in every
// hierarchy, with their descendants, deepest first.
func cgroupDirs(glob string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		tops, _ := filepath.Glob(filepath.Join(r, glob))
		for _, top := range tops {
			_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// killCgroups kills every process in the sandbox's container cgroups (the
// containers of a dockerd that was killed) and removes the cgroups.
func (s *Sandbox) killCgroups() {
	for round := 0; round < 5; round++ {
		found := false
		for _, d := range s.cgroupDirs() {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					found = true
					_ = killPID(pid)
					waitGone(pid, 2*time.Second)
				}
			}
		}
		if !found {
			break
		}
	}
	for _, d := range s.cgroupDirs() {
		_ = syscall.Rmdir(d)
	}
}

// unmountAll detaches every mount under the sandbox's directories, deepest
// first (Docker's overlay and netns mounts, the mount-namespace pins).
func (s *Sandbox) unmountAll() []error {
	var errs []error
	for _, m := range s.ownMounts() {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	return errs
}

func (s *Sandbox) ownMounts() []string {
	var own []string
	for _, m := range mountPoints() {
		for _, d := range []string{s.opt.Dir, s.opt.RunDir} {
			if m == d || strings.HasPrefix(m, d+"/") {
				own = append(own, m)
			}
		}
	}
	sort.Slice(own, func(i, j int) bool { return len(own[i]) > len(own[j]) })
	return own
}

// Leftovers lists whatever of the sandbox's prefix still exists: network
// namespaces, mounts, live daemons, cgroups, directories. Empty means clean.
func (s *Sandbox) Leftovers() []string {
	var left []string
	for _, ns := range s.netnsList() {
		left = append(left, "netns "+ns)
	}
	for _, m := range s.ownMounts() {
		left = append(left, "mount "+m)
	}
	for _, d := range s.cgroupDirs() {
		left = append(left, "cgroup "+d)
	}
	for _, d := range []string{s.opt.Dir, s.opt.RunDir} {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "dir "+d)
		}
	}
	for _, pid := range s.procsReferencing() {
		left = append(left, "process "+strconv.Itoa(pid))
	}
	return left
}

// procsReferencing lists live processes whose command line names one of the
// sandbox's directories (every daemon it starts is configured that way).
func (s *Sandbox) procsReferencing() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cl := string(b)
		if strings.Contains(cl, s.opt.Dir+"/") || strings.Contains(cl, s.opt.RunDir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}
