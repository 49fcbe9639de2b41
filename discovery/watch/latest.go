package watch

import (
	"reflect"
	"sync"
	"time"

	"github.com/drover-net/drover/internal/kick"
)

// Latest holds the newest snapshot of one watched topic. A slow reader sees
// fewer, newer snapshots, never a queue. Its zero value is not usable; make
// one with NewLatest.
type Latest[T any] struct {
	mu      sync.Mutex
	val     T
	ok      bool      // a first successful read happened
	at      time.Time // time of the last successful contact
	lastErr error
	kick    chan<- struct{}
	// errOf and atOf, when set, make a derived Latest (one service of a
	// Set): its error and last contact are those of the queries it is
	// built from.
	errOf func() error
	atOf  func() time.Time
}

// NewLatest returns an empty Latest that kicks kick (non-blocking, so kick
// should have capacity 1) whenever its value changes.
func NewLatest[T any](kick chan<- struct{}) *Latest[T] { return &Latest[T]{kick: kick} }

// Get returns the value, whether any read succeeded, and the time of the last
// successful contact (for staleness reports).
func (l *Latest[T]) Get() (T, bool, time.Time) {
	l.mu.Lock()
	v, ok, at := l.val, l.ok, l.at
	l.mu.Unlock()
	if l.atOf != nil && ok {
		at = l.atOf()
	}
	return v, ok, at
}

// Err returns the error of the last failed read, or nil after a success.
func (l *Latest[T]) Err() error {
	l.mu.Lock()
	err := l.lastErr
	l.mu.Unlock()
	if err == nil && l.errOf != nil {
		err = l.errOf()
	}
	return err
}

func (l *Latest[T]) set(v T) {
	l.mu.Lock()
	changed := !l.ok || !reflect.DeepEqual(l.val, v)
	l.val, l.ok, l.at, l.lastErr = v, true, time.Now(), nil
	l.mu.Unlock()
	if changed && l.kick != nil {
		kick.Send(l.kick)
	}
}

func (l *Latest[T]) fail(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}
