package dns

import (
	"context"
	"time"

	"github.com/drover-net/drover/discovery"
)

// Source is what the server answers from: the instances of every service,
// kept current, and a kick on every change. *watch.Set fits.
type Source interface {
	Changed() <-chan struct{}
	// Snapshot fails while the view is not complete and fresh.
	Snapshot() (map[string][]discovery.Instance, error)
}

// Feed gives srv a new Index on every change of src until ctx ends. While
// src cannot give a complete view (Consul unreachable, a fetch failing, a
// new service not read yet) the last index keeps being answered and the
// reason is in srv's status.
func Feed(ctx context.Context, src Source, srv *Server) {
	changed := src.Changed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		snap, err := src.Snapshot()
		if err != nil {
			srv.SetIndexError(err)
			continue
		}
		srv.SetIndex(NewIndex(snap), time.Now())
	}
}
