package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter holds one token bucket per key (a token id, or a client address
// for public routes).
type Limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

const maxLimiters = 100_000

// NewLimiter allows perSecond requests a second per key, in bursts of up
// to burst. perSecond <= 0 disables limiting.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return &Limiter{rate: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*rate.Limiter{}}
}

// Allow reports whether key may make a request now and, when not, how long
// until it may.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiters {
			clear(l.buckets)
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// Slots caps how many long-lived responses (event streams) each key holds
// at once. Unlike a rate, it counts what is open now: a stream takes a
// slot when it opens and gives it back when it ends.
type Slots struct {
	max int

	mu   sync.Mutex
	held map[string]int
}

// NewSlots allows max concurrent holders per key; max <= 0 means no cap.
func NewSlots(max int) *Slots { return &Slots{max: max, held: map[string]int{}} }

// Max is the cap per key (<= 0: none).
func (s *Slots) Max() int { return s.max }

// Acquire takes a slot for key and returns the func that gives it back,
// or false when key holds every slot already.
func (s *Slots) Acquire(key string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.held[key] >= s.max {
		return nil, false
	}
	s.held[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.held[key]--; s.held[key] <= 0 {
				delete(s.held, key)
			}
		})
	}, true
}
