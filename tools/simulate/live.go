package simulate

import "sync"

// Live is a running simulation's state, safe to read from other goroutines
// (the demo's dashboard): the visits so far and each policy's click rate
// over the last Config.Window visits. Pass one in Config.Live; its zero
// value is ready to use.
type Live struct {
	mu     sync.Mutex
	visits int
	window int
	hits   map[string][]bool // per policy, a ring of the last window visits
	clicks map[string]int    // clicks in the ring
}

// record adds visit n's outcome (clicked per policy, ≥ 0 for a click).
func (l *Live) record(n, window int, clicked map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hits == nil {
		l.window, l.hits, l.clicks = window, map[string][]bool{}, map[string]int{}
	}
	l.visits = n
	slot := (n - 1) % l.window
	for pol, c := range clicked {
		ring := l.hits[pol]
		if ring == nil {
			ring = make([]bool, l.window)
			l.hits[pol] = ring
		}
		if ring[slot] {
			l.clicks[pol]--
		}
		ring[slot] = c >= 0
		if ring[slot] {
			l.clicks[pol]++
		}
	}
}

// Snapshot returns the visits so far and each policy's rolling click rate
// (over the last min(visits, window) visits).
func (l *Live) Snapshot() (visits int, ctr map[string]float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctr = make(map[string]float64, len(l.clicks))
	if l.visits == 0 {
		return 0, ctr
	}
	n := min(l.visits, l.window)
	for pol, c := range l.clicks {
		ctr[pol] = float64(c) / float64(n)
	}
	return l.visits, ctr
}
