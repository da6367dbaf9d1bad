package backend

import (
	"context"
	"fmt"
	"sync"
)

// fairSlots bounds how many jobs run at once and shares the workers between groups (roles, so
// tenants): a free worker goes to the waiting group with the fewest running jobs (ties: the group
// whose first waiter came earliest), and no group holds more than perGroup workers, so some are
// always left for another tenant arriving while one tenant's slow jobs (a DNS record that never
// propagates) hold the rest. Within a group, jobs start in arrival order. Safe for concurrent use.
type fairSlots struct {
	mu       sync.Mutex
	n        int
	perGroup int
	total    int
	running  map[string]int
	queues   map[string][]*slotWaiter
	seq      uint64
}

type slotWaiter struct {
	group string
	seq   uint64
	ready chan struct{} // closed when the slot is granted
}

// newFairSlots returns a pool of n workers of which one group may hold at most n - n/4 (n - 1
// for n < 4, and 1 for n = 1): a quarter stays for the others.
func newFairSlots(n int) *fairSlots {
	per := n - n/4
	if n >= 2 && per == n {
		per = n - 1
	}
	return &fairSlots{n: n, perGroup: per, running: map[string]int{}, queues: map[string][]*slotWaiter{}}
}

// acquire waits for a worker for group and returns its release function, or ctx's error.
// queued, when not nil, is called (without locks held) with the reason when the job has to wait.
func (f *fairSlots) acquire(ctx context.Context, group string, queued func(reason string)) (func(), error) {
	f.mu.Lock()
	f.seq++
	w := &slotWaiter{group: group, seq: f.seq, ready: make(chan struct{})}
	f.queues[group] = append(f.queues[group], w)
	f.grantLocked()
	reason := ""
	select {
	case <-w.ready:
	default:
		reason = f.waitingReasonLocked(group)
	}
	f.mu.Unlock()
	release := func() {
		f.mu.Lock()
		f.total--
		if f.running[group]--; f.running[group] == 0 {
			delete(f.running, group)
		}
		f.grantLocked()
		f.mu.Unlock()
	}
	if reason != "" && queued != nil {
		queued(reason)
	}
	select {
	case <-w.ready:
		return release, nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		f.mu.Unlock()
		release()
		return nil, ctx.Err()
	default:
	}
	q := f.queues[group]
	for i, x := range q {
		if x == w {
			f.queues[group] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(f.queues[group]) == 0 {
		delete(f.queues, group)
	}
	f.mu.Unlock()
	return nil, ctx.Err()
}

// grantLocked hands free workers to waiters: each time to the eligible group with the fewest
// running jobs, ties to the earliest first waiter. O(groups) per grant.
func (f *fairSlots) grantLocked() {
	for f.total < f.n {
		var best string
		var bestW *slotWaiter
		for g, q := range f.queues {
			if f.running[g] >= f.perGroup {
				continue
			}
			if bestW == nil || f.running[g] < f.running[best] || f.running[g] == f.running[best] && q[0].seq < bestW.seq {
				best, bestW = g, q[0]
			}
		}
		if bestW == nil {
			return
		}
		if q := f.queues[best][1:]; len(q) == 0 {
			delete(f.queues, best)
		} else {
			f.queues[best] = q
		}
		f.total++
		f.running[best]++
		close(bestW.ready)
	}
}

// waitingReason says why a job of group waits for a worker, as things stand now.
func (f *fairSlots) waitingReason(group string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waitingReasonLocked(group)
}

// waitingReasonLocked says why group's job waits for a worker, for reads and status/certs.
func (f *fairSlots) waitingReasonLocked(group string) string {
	waiting := len(f.queues[group])
	if f.running[group] >= f.perGroup {
		return fmt.Sprintf("queued: role %q already has %d jobs running, the most one role may have while others wait (%d of its jobs queued)", group, f.running[group], waiting)
	}
	return fmt.Sprintf("queued: all %d workers are busy (role %q: %d running, %d queued)", f.n, group, f.running[group], waiting)
}

// stats returns how many jobs run and wait, in all and per group.
func (f *fairSlots) stats() (running, waiting int, perGroup map[string][2]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	perGroup = map[string][2]int{}
	for g, r := range f.running {
		perGroup[g] = [2]int{r, len(f.queues[g])}
	}
	for g, q := range f.queues {
		waiting += len(q)
		if _, ok := perGroup[g]; !ok {
			perGroup[g] = [2]int{0, len(q)}
		}
	}
	return f.total, waiting, perGroup
}
