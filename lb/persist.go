package lb

import (
	"context"
	"time"
)

// queuePersist records st as what runs after runtime operations and kicks
// the file writer; states queued while it writes coalesce into the latest.
func (c *Controller) queuePersist(st State) {
	c.mu.Lock()
	c.toPersist = st.Clone()
	c.persistGen++
	c.st.PendingFile = true
	c.mu.Unlock()
	select {
	case c.persistKick <- struct{}{}:
	default:
	}
}

// reload runs a reload under the files lock; a successful one writes the
// files for next, superseding every state queued before it.
func (c *Controller) reload(ctx context.Context, next State) error {
	c.files.Lock()
	defer c.files.Unlock()
	c.mu.Lock()
	gen := c.persistGen
	c.mu.Unlock()
	err := c.proxy.Reload(ctx, next)
	if err == nil {
		c.mu.Lock()
		if gen > c.persistedGen {
			c.persistedGen = gen
		}
		c.st.PendingFile = c.persistGen > c.persistedGen
		c.mu.Unlock()
	}
	return err
}

// persistLoop writes the files after runtime operations, in the background
// and coalesced (issue 12 defect 19, issue 17 item 4): the controller's loop
// never waits for a validation or a file write, and the files catch up with
// the latest state. A failed write is retried on the next kick or check.
func (c *Controller) persistLoop(ctx context.Context) {
	retry := time.NewTicker(c.opt.Check)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.persistKick:
		case <-retry.C:
		}
		c.persistOnce(ctx)
	}
}

func (c *Controller) persistOnce(ctx context.Context) {
	c.files.Lock()
	defer c.files.Unlock()
	c.mu.Lock()
	gen, st := c.persistGen, c.toPersist
	due := gen > c.persistedGen
	c.mu.Unlock()
	if !due {
		return
	}
	begin := time.Now()
	if err := c.proxy.Persist(ctx, st); err != nil {
		c.fail("writing haproxy files", err)
		return
	}
	d := time.Since(begin)
	c.mu.Lock()
	if gen > c.persistedGen {
		c.persistedGen = gen
	}
	c.st.PendingFile = c.persistGen > c.persistedGen
	c.st.FileWrites++
	c.st.FileWriteDur = d
	c.mu.Unlock()
	c.opt.Log.Debug("haproxy files written after runtime changes", "took", d.Round(time.Millisecond))
}
