package lb

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// CertSource gives the candidate certificate bundles: from Consul KV
// (key → PEM) and from the certificate directory (file name → PEM). An
// error means the source could not be read: nothing is changed then.
type CertSource interface {
	Certs() (kv, dir map[string][]byte, err error)
	Changed() <-chan struct{}
}

// CertInstaller is the HAProxy side: what is installed (name → leaf
// fingerprint) and how to change it without a reload.
type CertInstaller interface {
	InstalledCerts() (map[string]string, error)
	ApplyCerts(ctx context.Context, add, update []Cert, remove []string) error
}

// CertStatus is the certificates part of `drover status`. Bundles are
// never in it, only their names, hosts, expiry and fingerprints.
type CertStatus struct {
	Certs     []Cert    `json:"certs"`
	Refused   []string  `json:"refused,omitempty"`
	Applied   int64     `json:"applied"`
	LastApply time.Time `json:"last_apply,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// CertSync keeps HAProxy's certificates equal to the valid bundles of its
// sources, through the runtime API: a new or changed bundle is served
// within one pass and no reload; a bad one is refused with a reason and
// the installed version keeps serving; an unreadable source changes
// nothing (fail static).
type CertSync struct {
	src   CertSource
	dst   CertInstaller
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	status CertStatus
}

// NewCertSync returns a CertSync; every is how often it looks again even
// without a change (expiry), default 30 s.
func NewCertSync(src CertSource, dst CertInstaller, log *slog.Logger, every time.Duration) *CertSync {
	if every <= 0 {
		every = 30 * time.Second
	}
	return &CertSync{src: src, dst: dst, log: log, every: every}
}

// Status returns a copy of the current status.
func (s *CertSync) Status() CertStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Certs = append([]Cert(nil), st.Certs...)
	st.Refused = append([]string(nil), st.Refused...)
	return st
}

// Run applies changes until ctx ends.
func (s *CertSync) Run(ctx context.Context) error {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.Pass(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-s.src.Changed():
		case <-t.C:
		}
	}
}

// Pass is one comparison and, if needed, one application.
func (s *CertSync) Pass(ctx context.Context, now time.Time) {
	kv, dir, err := s.src.Certs()
	if err != nil {
		s.fail("reading certificates (the installed ones keep serving): " + err.Error())
		return
	}
	installed, err := s.dst.InstalledCerts()
	if err != nil {
		s.fail(err.Error())
		return
	}
	plan, good, probs := PlanCerts(installed, kv, dir, now)
	refused := make([]string, 0, len(probs))
	for _, p := range probs {
		refused = append(refused, p.String())
	}
	s.mu.Lock()
	known := map[string]bool{}
	for _, r := range s.status.Refused {
		known[r] = true
	}
	s.mu.Unlock()
	for _, r := range refused {
		if !known[r] {
			s.log.Warn("certificate refused", "reason", r)
		}
	}
	var applyErr error
	if !plan.Empty() {
		begin := time.Now()
		applyErr = s.dst.ApplyCerts(ctx, plan.Add, plan.Update, plan.Remove)
		names := func(cs []Cert) []string {
			out := make([]string, len(cs))
			for i, c := range cs {
				out[i] = c.Name
			}
			return out
		}
		if applyErr != nil {
			s.log.Error("applying certificates failed", "err", applyErr)
		} else {
			s.log.Info("certificates applied without a reload", "added", names(plan.Add), "updated", names(plan.Update),
				"removed", plan.Remove, "took", time.Since(begin).Round(time.Millisecond))
		}
	}
	sort.Slice(good, func(i, j int) bool { return good[i].Name < good[j].Name })
	for i := range good {
		good[i].Bundle = nil // status never holds key material
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Certs, s.status.Refused = good, refused
	s.status.LastError = ""
	if applyErr != nil {
		s.status.LastError = applyErr.Error()
	} else if !plan.Empty() {
		s.status.Applied++
		s.status.LastApply = now
	}
}

func (s *CertSync) fail(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.LastError != msg {
		s.log.Warn("certificates not synced", "err", msg)
	}
	s.status.LastError = msg
}
