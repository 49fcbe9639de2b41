package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Command returns a command that runs argv inside host name's network and
// mount namespaces, with DOCKER_HOST and CONSUL_HTTP_ADDR set for that host
// and the sandbox's binary directory first on PATH.
func (s *Sandbox) Command(ctx context.Context, name string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("sandbox exec: no command given")
	}
	h, err := s.HostByName(name)
	if err != nil {
		return nil, err
	}
	if !netnsExists(h.NetNS) {
		return nil, fmt.Errorf("host %s is not up (no namespace %s); run `drover sandbox up`", name, h.NetNS)
	}
	cmd := exec.CommandContext(ctx, "nsenter", append(nsArgs(h.NetNS, h.MountNS), argv...)...)
	env := append(os.Environ(), h.Env()...)
	env = append(env, "PATH="+s.opt.BinDir+":"+os.Getenv("PATH"))
	cmd.Env = env
	return cmd, nil
}

// Exec runs argv inside a host with the given stdio and returns its exit
// code (and an error only when it could not be run at all).
func (s *Sandbox) Exec(ctx context.Context, name string, stdin io.Reader, stdout, stderr io.Writer, argv ...string) (int, error) {
	cmd, err := s.Command(ctx, name, argv...)
	if err != nil {
		return 1, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, fmt.Errorf("running %s on %s: %w", argv[0], name, err)
	}
	return 0, nil
}

// Output runs argv inside a host and returns its standard output; a non-zero
// exit is an error carrying standard error.
func (s *Sandbox) Output(ctx context.Context, name string, argv ...string) (string, error) {
	cmd, err := s.Command(ctx, name, argv...)
	if err != nil {
		return "", err
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Docker runs the docker CLI against host name's dockerd.
func (s *Sandbox) Docker(ctx context.Context, name string, args ...string) (string, error) {
	return s.Output(ctx, name, append([]string{"docker"}, args...)...)
}

func killPID(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
