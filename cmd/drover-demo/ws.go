package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// wsEcho serves /ws: a WebSocket that echoes every message (the lb's
// long-lived-connection tests).
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// wsIdle opens a WebSocket to url, exchanges one message, stays idle for
// -idle, then exchanges another: it fails if the connection did not live
// through the idle time. With -ready it prints "open" once the first
// exchange is done (a test can then act on the path).
func wsIdle(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ws", flag.ContinueOnError)
	idle := fs.Duration("idle", 90*time.Second, "idle time between the two messages")
	host := fs.String("host", "", "Host header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: drover-demo ws [-idle D] [-host H] ws://addr/ws")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *idle+30*time.Second)
	defer cancel()
	opt := &websocket.DialOptions{}
	if *host != "" {
		opt.Host = *host
	}
	c, _, err := websocket.Dial(ctx, fs.Arg(0), opt)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", fs.Arg(0), err)
	}
	defer c.CloseNow()
	exchange := func(msg string) error {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := c.Write(wctx, websocket.MessageText, []byte(msg)); err != nil {
			return fmt.Errorf("writing %q: %w", msg, err)
		}
		_, got, err := c.Read(wctx)
		if err != nil {
			return fmt.Errorf("reading the echo of %q: %w", msg, err)
		}
		if string(got) != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	if err := exchange("first"); err != nil {
		return err
	}
	fmt.Fprintln(out, "open")
	begin := time.Now()
	time.Sleep(*idle)
	if err := exchange("after idle"); err != nil {
		return fmt.Errorf("after %s idle: %w", time.Since(begin).Round(time.Second), err)
	}
	fmt.Fprintf(out, "alive after %s idle\n", time.Since(begin).Round(time.Second))
	return c.Close(websocket.StatusNormalClosure, "")
}
