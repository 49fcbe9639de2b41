package sandbox

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// HostStatus is what Status reports of one host.
type HostStatus struct {
	Host
	Up          bool           `json:"up"`
	Partitioned bool           `json:"partitioned"`
	PIDs        map[string]int `json:"pids"` // process name → PID, 0 when not running
}

// Status describes the sandbox as it exists now.
type Status struct {
	Prefix  string       `json:"prefix"`
	Up      bool         `json:"up"`
	Servers []Server     `json:"servers"`
	Hosts   []HostStatus `json:"hosts"`
	Members string       `json:"members"` // `consul members` as seen by server c1
}

// Status reads the state of every host and daemon. It changes nothing.
func (s *Sandbox) Status(ctx context.Context) Status {
	st := Status{Prefix: s.opt.Prefix, Servers: s.Servers()}
	if rec, ok := s.readState(); ok && s.sameShape(rec) {
		st.Up = s.namespacesPresent()
	}
	for _, h := range s.Hosts() {
		hs := HostStatus{Host: h, Up: netnsExists(h.NetNS), PIDs: map[string]int{}}
		for _, p := range Processes {
			hs.PIDs[p] = s.ProcessPID(h, p)
		}
		if hs.Up {
			hs.Partitioned, _ = s.Partitioned(ctx, h.Name)
		}
		st.Hosts = append(st.Hosts, hs)
	}
	if sv := s.Server(1); netnsExists(sv.NetNS) {
		out, err := s.serverCLI(ctx, "members")
		if err != nil {
			out = "consul members failed: " + err.Error()
		}
		st.Members = strings.TrimSpace(out)
	}
	return st
}

// Print writes st as a table, followed by hints on how to use the sandbox.
func (st Status) Print(w io.Writer, self string) {
	if !st.Up {
		fmt.Fprintf(w, "sandbox %q is not up (run `%s sandbox up`)\n", st.Prefix, self)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNETNS\tUNDERLAY\tCONSUL\tDOCKERD\tAGENT\tHAPROXY\tLINK")
	for _, sv := range st.Servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\tserver\t-\t-\t-\t-\n", sv.Name, sv.NetNS, sv.Addr)
	}
	for _, h := range st.Hosts {
		link := "up"
		if !h.Up {
			link = "absent"
		} else if h.Partitioned {
			link = "PARTITIONED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.NetNS, h.Addr,
			pidText(h.PIDs[ProcConsul]), pidText(h.PIDs[ProcDockerd]), pidText(h.PIDs[ProcAgent]), pidText(h.PIDs[ProcHAProxy]), link)
	}
	tw.Flush()
	if st.Members != "" {
		fmt.Fprintf(w, "\nConsul members (from %s):\n%s\n", st.Servers[0].Name, st.Members)
	}
	if len(st.Hosts) > 0 && st.Up {
		h := st.Hosts[0]
		fmt.Fprintf(w, "\nUse it:\n")
		fmt.Fprintf(w, "  %s sandbox exec %s -- consul members              # a shell command inside %s\n", self, h.Name, h.Name)
		fmt.Fprintf(w, "  %s sandbox docker %s -- ps                         # docker against %s's dockerd\n", self, h.Name, h.Name)
		fmt.Fprintf(w, "  %s sandbox exec %s -- curl -s %s/v1/catalog/nodes   # Consul HTTPS API (CA and token from CURL_HOME/.curlrc)\n", self, h.Name, h.ConsulHTTP)
		fmt.Fprintf(w, "  %s sandbox ui                                       # h1's drover UI on http://127.0.0.1:9714/ui/, Consul UI on https://127.0.0.1:8501/ui (loopback only)\n", self)
		fmt.Fprintf(w, "  (Consul runs with ACLs, TLS and gossip encryption; the CA, the gossip key and the\n   management token for the UI are in %s)\n", h.Security)
	}
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprintf("pid %d", pid)
}

// HostNames lists host names in order, for messages.
func (st Status) HostNames() []string {
	var n []string
	for _, h := range st.Hosts {
		n = append(n, h.Name)
	}
	sort.Strings(n)
	return n
}
