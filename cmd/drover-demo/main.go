// Command drover-demo is the tiny HTTP service that drover's sandbox, demo
// and end-to-end tests run in containers. It is built statically and packed
// into the FROM-scratch image drover-demo:latest.
//
// Modes:
//
//	drover-demo [serve] [-listen :8080] [-marker TEXT]
//	    answer every path with the hostname, the container's addresses, the
//	    request path and an optional marker; /healthz answers "ok".
//	drover-demo get [-timeout 5s] [-n 1] [-count] URL
//	    fetch URL n times and print the last body (scratch images have no curl);
//	    exits 1 on any failure.
//	drover-demo sink [-listen :5201]
//	    accept TCP connections and discard what they send (throughput tests).
//	drover-demo blast [-seconds 5] [-streams 1] ADDR
//	    send as fast as possible to a sink and print "gbit_per_s=X".
//
// It is a test fixture, not part of the agent: it knows nothing of drover.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	mode := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "serve":
		err = serve(args)
	case "get":
		err = get(args, os.Stdout)
	case "sink":
		err = sink(args)
	case "blast":
		err = blast(args, os.Stdout)
	default:
		err = fmt.Errorf("unknown mode %q (want serve or get)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "drover-demo:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", envOr("DEMO_LISTEN", ":8080"), "address to listen on")
	marker := fs.String("marker", os.Getenv("DEMO_MARKER"), "text added to every reply (tests search for it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	var served atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	// /stream?seconds=N&rate=BYTES_PER_SECOND sends a long response at a
	// bounded rate: a long-running transfer for fault tests.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		secs, _ := strconv.Atoi(r.URL.Query().Get("seconds"))
		rate, _ := strconv.Atoi(r.URL.Query().Get("rate"))
		if secs <= 0 || secs > 600 {
			secs = 5
		}
		if rate <= 0 || rate > 100<<20 {
			rate = 1 << 20
		}
		chunk := make([]byte, rate/10)
		for i := range chunk {
			chunk[i] = 'x'
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(chunk)*secs*10))
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; i < secs*10; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			<-t.C
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		fmt.Fprintf(w, "host=%s addrs=%s path=%s n=%d", host, strings.Join(addrs(), ","), r.URL.Path, n)
		if *marker != "" {
			fmt.Fprintf(w, " marker=%s", *marker)
		}
		fmt.Fprintln(w)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", *listen, err)
	case <-ctx.Done():
	}
	// Graceful stop: finish in-flight requests, close idle keep-alives.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func get(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	n := fs.Int("n", 1, "number of requests")
	count := fs.Bool("count", false, "print only the number of body bytes received")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("get needs exactly one URL")
	}
	url := fs.Arg(0)
	client := &http.Client{Timeout: *timeout}
	var body []byte
	for i := 0; i < *n; i++ {
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("fetching %s: %w", url, err)
		}
		if *count {
			var got int64
			got, err = io.Copy(io.Discard, resp.Body)
			body = []byte(fmt.Sprintf("received %d bytes\n", got))
			if err == nil && resp.ContentLength >= 0 && got != resp.ContentLength {
				err = fmt.Errorf("short body: %d of %d bytes", got, resp.ContentLength)
			}
		} else {
			body, err = io.ReadAll(resp.Body)
		}
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fetching %s: status %s", url, resp.Status)
		}
	}
	_, err := out.Write(body)
	return err
}

// addrs lists the non-loopback IP addresses of this host, sorted.
func addrs() []string {
	var out []string
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range ifaddrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	sort.Strings(out)
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", ":5201", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

func blast(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("blast", flag.ContinueOnError)
	secs := fs.Int("seconds", 5, "how long to send")
	streams := fs.Int("streams", 1, "parallel TCP connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("blast needs ADDR (host:port of a sink)")
	}
	deadline := time.Now().Add(time.Duration(*secs) * time.Second)
	var total atomic.Int64
	errc := make(chan error, *streams)
	begin := time.Now()
	for i := 0; i < *streams; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", fs.Arg(0), 5*time.Second)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 128<<10)
			for time.Now().Before(deadline) {
				n, err := c.Write(buf)
				total.Add(int64(n))
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for i := 0; i < *streams; i++ {
		if err := <-errc; err != nil {
			return fmt.Errorf("blasting %s: %w", fs.Arg(0), err)
		}
	}
	el := time.Since(begin).Seconds()
	fmt.Fprintf(out, "gbit_per_s=%.3f bytes=%d seconds=%.2f\n", float64(total.Load())*8/el/1e9, total.Load(), el)
	return nil
}
