package backend

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// The scheduler keeps, in memory, when each stored certificate next needs work (issue, renew,
// retry after a failure, fetch its ARI window). It is rebuilt from storage at Initialize and kept
// current on every write (CertificateChanged) and on Invalidate, so a tick costs O(due · log n)
// and reads no storage when nothing is due.

// minRedispatch is the shortest time between two dispatches of one certificate, so that no bug or
// odd CA answer can turn into a tight loop.
const minRedispatch = 10 * time.Second

// defaultFirstSweepJitter bounds the random delay of the first sweep after mount or unseal, so a
// fleet of clusters (or one cluster restarted) does not hit the CA all at once.
const defaultFirstSweepJitter = 10 * time.Second

type schedItem struct {
	name  string
	due   time.Time
	index int // position in the heap, -1 when not queued
	sum   paths.CertSummary
}

type itemHeap []*schedItem

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *itemHeap) Push(x any)        { it := x.(*schedItem); it.index = len(*h); *h = append(*h, it) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	it.index = -1
	*h = old[:len(old)-1]
	return it
}

// schedule is safe for concurrent use.
type schedule struct {
	mu    sync.Mutex
	items map[string]*schedItem
	queue itemHeap
	wake  chan struct{}
}

func newSchedule() *schedule {
	return &schedule{items: map[string]*schedItem{}, wake: make(chan struct{}, 1)}
}

// set records when name is next due (zero: never, until changed) and its summary.
func (s *schedule) set(name string, due time.Time, sum paths.CertSummary) {
	s.mu.Lock()
	it := s.items[name]
	if it == nil {
		it = &schedItem{name: name, index: -1}
		s.items[name] = it
	}
	it.sum = sum
	it.due = due
	switch {
	case due.IsZero() && it.index >= 0:
		heap.Remove(&s.queue, it.index)
	case !due.IsZero() && it.index >= 0:
		heap.Fix(&s.queue, it.index)
	case !due.IsZero():
		heap.Push(&s.queue, it)
	}
	first := s.queue.Len() > 0 && s.queue[0] == it
	s.mu.Unlock()
	if first {
		s.poke()
	}
}

func (s *schedule) remove(name string) {
	s.mu.Lock()
	if it := s.items[name]; it != nil {
		if it.index >= 0 {
			heap.Remove(&s.queue, it.index)
		}
		delete(s.items, name)
	}
	s.mu.Unlock()
}

func (s *schedule) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// popDue removes and returns the names due at now. They return to the queue when their entry is
// reloaded after the job (CertificateChanged).
func (s *schedule) popDue(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for s.queue.Len() > 0 && !s.queue[0].due.After(now) {
		it := heap.Pop(&s.queue).(*schedItem)
		names = append(names, it.name)
	}
	return names
}

// next returns the earliest due time, if any.
func (s *schedule) next() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue.Len() == 0 {
		return time.Time{}, false
	}
	return s.queue[0].due, true
}

// CertificateSummaries returns the scheduler's view of every certificate, with why its job waits.
func (b *backend) CertificateSummaries() map[string]paths.CertSummary {
	sums := b.sched.summaries()
	b.waiting.Range(func(k, v any) bool {
		if s, ok := sums[k.(string)]; ok {
			s.Waiting = b.waitReason(v.(waitState))
			sums[k.(string)] = s
		}
		return true
	})
	return sums
}

// waitState is why a certificate's job waits: queued for a worker under its role, or for the
// order budget (the reason, fixed until the next try).
type waitState struct {
	queuedRole string
	budget     string
}

// waitReason words w as it stands now (a queue position changes while the job waits).
func (b *backend) waitReason(w waitState) string {
	if w.budget != "" {
		return w.budget
	}
	return b.workers.waitingReason(w.queuedRole)
}

// CountCertificates returns how many stored certificates use role (from the schedule, which
// holds every stored certificate: O(certificates), no storage reads).
func (b *backend) CountCertificates(role string) int {
	b.sched.mu.Lock()
	defer b.sched.mu.Unlock()
	n := 0
	for _, it := range b.sched.items {
		if it.sum.Role == role {
			n++
		}
	}
	return n
}

// CertificateWaiting says why the named certificate's job waits, or "".
func (b *backend) CertificateWaiting(name string) string {
	if v, ok := b.waiting.Load(name); ok {
		return b.waitReason(v.(waitState))
	}
	return ""
}

// summaries returns a copy of every certificate's summary.
func (s *schedule) summaries() map[string]paths.CertSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]paths.CertSummary, len(s.items))
	for n, it := range s.items {
		out[n] = it.sum
	}
	return out
}

// dueAt says when c next needs work; zero means nothing is planned.
func dueAt(c *storage.CertEntry) time.Time {
	epoch := time.Unix(1, 0)
	switch {
	case c.Attempts > 0 && !c.NextAttemptAt.IsZero():
		return c.NextAttemptAt
	case !c.Current(), c.ForceRenewal:
		return epoch
	}
	due := c.RenewAt
	if !c.ARICheckAt.IsZero() && (due.IsZero() || c.ARICheckAt.Before(due)) {
		due = c.ARICheckAt
	}
	return due
}

func summarize(c *storage.CertEntry) paths.CertSummary {
	return paths.CertSummary{Role: c.Role, Status: c.Status, NotBefore: c.NotBefore, NotAfter: c.NotAfter, RenewAt: c.RenewAt, Attempts: c.Attempts, LastError: c.LastError, NextAt: c.NextAttemptAt}
}

// refresh reloads the named certificate from storage into the schedule.
func (b *backend) refresh(ctx context.Context, name string) { b.reschedule(ctx, name, false) }

// reschedule reloads name into the schedule; jobEnding says the caller is the certificate's own job,
// finishing, so its being in flight does not hold the certificate back.
func (b *backend) reschedule(ctx context.Context, name string, jobEnding bool) {
	c, err := storage.LoadCert(ctx, b.storage, name)
	if err != nil {
		b.logger.Named("schedule").Warn("reloading a certificate failed; it is retried in a minute", "cert", name, "error", err)
		b.sched.set(name, time.Now().Add(time.Minute), paths.CertSummary{})
		return
	}
	if c == nil {
		b.sched.remove(name)
		b.budget.forget(name)
		b.waiting.Delete(name)
		if !jobEnding {
			b.cancelJob(name)
		}
		b.jobsMu.Lock()
		delete(b.lastDispatch, name)
		b.jobsMu.Unlock()
		return
	}
	due := dueAt(c)
	budgetWait := false
	if until := b.budget.deferredUntil(name, time.Now()); !due.IsZero() && due.Before(until) {
		// Waiting for the order budget, which names the time its next token is there: no
		// further floor (the budget itself stops any loop).
		due, budgetWait = until, true
	}
	if !due.IsZero() && !jobEnding && b.inFlight(name) {
		// The running job reloads the entry when it ends.
		due = time.Time{}
	}
	// A retry after a recorded failure keeps its own time (retryDelay: at least minRetryDelay,
	// and as little as a tenth of the remaining life); anything else due again within
	// minRedispatch of its last dispatch waits for that.
	retry := c.Attempts > 0 && !c.NextAttemptAt.IsZero() && due.Equal(c.NextAttemptAt)
	if !due.IsZero() && !budgetWait && !retry {
		if floor, ok := b.redispatchFloor(name); ok && due.Before(floor) {
			due = floor
		}
	}
	b.sched.set(name, due, summarize(c))
}

// redispatchFloor returns the earliest time name may be dispatched again (minRedispatch after its
// last dispatch), if it was dispatched within minRedispatch.
func (b *backend) redispatchFloor(name string) (time.Time, bool) {
	b.jobsMu.Lock()
	defer b.jobsMu.Unlock()
	last, ok := b.lastDispatch[name]
	if !ok || time.Since(last) >= minRedispatch {
		return time.Time{}, false
	}
	return last.Add(minRedispatch), true
}

// loadSchedule rebuilds the schedule from storage (Initialize), at every folder depth of certs/.
func (b *backend) loadSchedule(ctx context.Context, s logical.Storage) error {
	names, err := storage.CertNames(ctx, s)
	if err != nil {
		return err
	}
	// Each load is a storage round trip into Vault: overlap them, so that a mount of 10,000
	// certificates starts in a second or two. The loads also fill the certificate cache.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(scheduleLoaders)
	for _, name := range names {
		g.Go(func() error {
			c, err := storage.LoadCert(gctx, s, name)
			if err != nil {
				return err
			}
			if c != nil {
				b.sched.set(name, dueAt(c), summarize(c))
			}
			return nil
		})
	}
	return g.Wait()
}

// scheduleLoaders is how many certificate entries loadSchedule reads at once.
const scheduleLoaders = 16

// dispatchDue starts a job for every certificate that is due, if this node may write. It is cheap
// when nothing is due: one heap peek.
func (b *backend) dispatchDue(now time.Time) int {
	if !b.WriteSafe() {
		return 0
	}
	names := b.sched.popDue(now)
	b.jobsMu.Lock()
	for n, at := range b.lastDispatch {
		// Only dispatches within minRedispatch matter; forgetting older ones keeps the map as
		// small as the number of recent dispatches.
		if now.Sub(at) >= minRedispatch {
			delete(b.lastDispatch, n)
		}
	}
	for _, n := range names {
		b.lastDispatch[n] = now
	}
	b.jobsMu.Unlock()
	for _, n := range names {
		b.dispatch(n)
	}
	return len(names)
}

// periodic is the backend's PeriodicFunc, called by Vault about once a minute. Like the scheduler,
// it dispatches only where storage is writable.
func (b *backend) periodic(ctx context.Context, _ *logical.Request) error {
	b.dispatchDue(time.Now())
	if b.WriteSafe() {
		b.sweepHTTPChallenges(ctx, time.Now())
	}
	return nil
}

// runScheduler dispatches work at its due time between Vault's periodic ticks, so renewals are on
// time even for short-lived certificates. It stops when the backend's context ends.
func (b *backend) runScheduler() {
	defer b.wg.Done()
	first := time.NewTimer(rand.N(b.firstSweepJitter))
	select {
	case <-b.ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	for {
		b.dispatchDue(time.Now())
		wait := time.Minute
		if next, ok := b.sched.next(); ok {
			wait = min(max(time.Until(next), 50*time.Millisecond), time.Minute)
		}
		t := time.NewTimer(wait)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-b.sched.wake:
			t.Stop()
		case <-t.C:
		}
	}
}
