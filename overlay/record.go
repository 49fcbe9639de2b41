package overlay

import (
	"context"
	"time"

	"github.com/drover-net/drover/internal/backoff"
)

// RecordWatcher watches this host's drover-node record on the local Consul
// agent (a blocking query on the agent's own service endpoint, so it
// answers within milliseconds when the agent forgets the record, and with
// an error while the agent is down).
type RecordWatcher interface {
	// WaitRecord returns the record's content hash ("" when the agent has
	// no such record), blocking while hash is not "" and still current.
	WaitRecord(ctx context.Context, hash string) (string, error)
}

// recordCallTimeout bounds one Announce made by the guard.
const recordCallTimeout = 10 * time.Second

// guardRecord keeps this host's drover-node record on the local Consul
// agent: whenever the record changes or vanishes (the agent restarted with
// an empty data dir forgets every service registered through it), it
// announces again — which writes only when the record differs — and, when
// it did write, calls OnRepair so that the other registrations made through
// that agent (container services, the mesh check's status) are restored at
// once too. It returns when ctx ends.
//
//	      ┌──────── unchanged (wait ends) ────────┐
//	      ▼                                       │
//	WaitRecord(hash) ── changed/absent ──▶ Announce ── wrote ──▶ OnRepair
//	      │ error (agent down)                    │ error
//	      └──▶ backoff ≤ 1 s, hash = "" ◀──────────┘
func (c *Controller) guardRecord(ctx context.Context) {
	if c.watchRec == nil {
		return
	}
	bo := backoff.New(100*time.Millisecond, time.Second)
	hash := ""
	for ctx.Err() == nil {
		h, err := c.watchRec.WaitRecord(ctx, hash)
		if err != nil {
			hash = ""
			bo.Wait(ctx)
			continue
		}
		if h != "" && h == hash {
			continue // the blocking query's wait ended with nothing changed
		}
		hash = h
		wrote, err := c.announceUnlessLeaving(ctx)
		if c.isLeaving() {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				c.opt.Log.Warn("restoring the drover-node record failed; retrying", "err", err)
			}
			hash = ""
			bo.Wait(ctx)
			continue
		}
		bo.Reset()
		if !wrote {
			continue
		}
		hash = "" // read the hash of what we wrote before blocking again
		c.mu.Lock()
		c.recordRepairs++
		c.mu.Unlock()
		c.opt.Log.Info("drover-node record restored on the local Consul agent")
		if c.onRepair != nil {
			c.onRepair()
		}
	}
}

// announceUnlessLeaving announces self's record unless Leave began; annMu
// orders it against Leave's withdrawal.
func (c *Controller) announceUnlessLeaving(ctx context.Context) (bool, error) {
	c.annMu.Lock()
	defer c.annMu.Unlock()
	c.mu.Lock()
	self, leaving := c.self, c.leaving
	c.mu.Unlock()
	if leaving {
		return false, nil
	}
	actx, cancel := context.WithTimeout(ctx, recordCallTimeout)
	defer cancel()
	return c.ann.Announce(actx, self, c.Endpoint())
}

func (c *Controller) isLeaving() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaving
}
