package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
)

const uiSynopsis = `drover ui [--open=false] [--status-socket PATH]

Prints the address of the local agent's read-only web UI (the mesh matrix,
services and refused containers, load balancers, events; docs/api.md for
its JSON API) and, with a graphical session and xdg-open installed, opens
it in a browser. The UI listens on --metrics-addr unless the agent was
given --ui; off a loopback address it asks for the --ui-token-file token
(open /ui/?token=TOKEN once).`

func (c *cli) ui(args []string) int {
	fs, sock := c.socketFlag("ui", uiSynopsis)
	open := fs.Bool("open", true, "open the address with xdg-open when a graphical session is there")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	_, r, err := fetchStatus(*sock)
	if err != nil {
		return c.fail("%v", err)
	}
	if r.UI == "" {
		return c.fail("%v", errNoUI)
	}
	fmt.Fprintln(c.stdout, r.UI)
	if r.UIToken {
		fmt.Fprintf(c.stderr, "the UI asks for the token of --ui-token-file: open %s?token=TOKEN once\n", r.UI)
	}
	if *open && (c.getenv("DISPLAY") != "" || c.getenv("WAYLAND_DISPLAY") != "") {
		if bin, err := exec.LookPath("xdg-open"); err == nil {
			cmd := exec.Command(bin, r.UI)
			cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
			if err := cmd.Start(); err == nil {
				go func() { _ = cmd.Wait() }()
			}
		}
	}
	return 0
}
