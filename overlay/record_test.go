package overlay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeAgentRecord is the local Consul agent's copy of this host's record.
type fakeAgentRecord struct {
	mu      sync.Mutex
	present bool
	down    bool // the agent does not answer
	version int
	writes  int
}

func (f *fakeAgentRecord) hashLocked() string {
	if !f.present {
		return ""
	}
	return fmt.Sprintf("h%d", f.version)
}

func (f *fakeAgentRecord) WaitRecord(ctx context.Context, hash string) (string, error) {
	deadline := time.Now().Add(50 * time.Millisecond) // a short "wait time"
	for {
		f.mu.Lock()
		down, cur := f.down, f.hashLocked()
		f.mu.Unlock()
		if down {
			return "", errors.New("connection refused")
		}
		if hash == "" || cur != hash || time.Now().After(deadline) {
			return cur, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (f *fakeAgentRecord) Announce(context.Context, Self, netip.AddrPort) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, errors.New("connection refused")
	}
	if f.present {
		return false, nil
	}
	f.present, f.version, f.writes = true, f.version+1, f.writes+1
	return true, nil
}

func (f *fakeAgentRecord) Withdraw(context.Context) error { return nil }

func (f *fakeAgentRecord) set(fn func(*fakeAgentRecord)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAgentRecord) get() (writes int, present bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.present
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGuardRecord: an unchanged record is never written; a record the
// agent forgot (restart with an empty data dir, agent down meanwhile) is
// written back once and OnRepair called once.
func TestGuardRecord(t *testing.T) {
	rec := &fakeAgentRecord{present: true, version: 1}
	var repairs sync.WaitGroup
	var mu sync.Mutex
	kicks := 0
	c := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, Deps{Ann: rec, Record: rec, OnRepair: func() {
		mu.Lock()
		kicks++
		mu.Unlock()
	}})
	c.self = Self{Name: "self", Subnet: pfx("10.42.0.0/24")}
	ctx, cancel := context.WithCancel(context.Background())
	repairs.Add(1)
	go func() {
		defer repairs.Done()
		c.guardRecord(ctx)
	}()
	defer func() {
		cancel()
		repairs.Wait()
	}()
	time.Sleep(200 * time.Millisecond) // several wait ends: nothing to write
	if w, _ := rec.get(); w != 0 {
		t.Fatalf("an unchanged record was written %d times", w)
	}
	rec.set(func(f *fakeAgentRecord) { f.down, f.present = true, false })
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	rec.set(func(f *fakeAgentRecord) { f.down = false })
	waitFor(t, "the record written back", func() bool { _, p := rec.get(); return p })
	t.Logf("record restored %v after the agent answered", time.Since(start).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if w, _ := rec.get(); w != 1 || kicks != 1 {
		t.Fatalf("writes %d, OnRepair calls %d; want 1 and 1", w, kicks)
	}
	c.mu.Lock()
	got := c.recordRepairs
	c.mu.Unlock()
	if got != 1 {
		t.Errorf("RecordRepairs = %d, want 1", got)
	}
}

// TestGuardRecordStopsOnLeave: after Leave the guard writes nothing back.
func TestGuardRecordStopsOnLeave(t *testing.T) {
	rec := &fakeAgentRecord{present: true, version: 1}
	c := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, Deps{Ann: rec, Record: rec})
	c.self = Self{Name: "self", Subnet: pfx("10.42.0.0/24")}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.guardRecord(context.Background())
	}()
	c.mu.Lock()
	c.leaving = true
	c.mu.Unlock()
	rec.set(func(f *fakeAgentRecord) { f.present = false })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("guard still running after leave")
	}
	if w, _ := rec.get(); w != 0 {
		t.Fatalf("record written back after leave")
	}
}
