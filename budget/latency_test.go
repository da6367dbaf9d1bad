package budget

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// caBucket is the CA's side of one limit: the same token bucket, judged when each order arrives.
type caBucket struct {
	l    Limit
	full time.Time
}

func (c *caBucket) accept(at time.Time) bool {
	interval, capacity := time.Duration(c.l.interval()), time.Duration(c.l.capacity())
	if c.full.Sub(at) > capacity-interval {
		return false
	}
	if c.full.Before(at) {
		c.full = at
	}
	c.full = c.full.Add(interval)
	return true
}

// simulateOrders places n orders of one account as fast as a budget with l and latency allows,
// each reaching a CA that enforces l delay(i) after its Reserve, and returns how many the CA
// refused and when the last was reserved (after epoch).
func simulateOrders(t *testing.T, l Limit, latency time.Duration, n int, delay func(i int) time.Duration) (refused int, last time.Duration) {
	t.Helper()
	b, c := newBudget(t, map[string]Limits{"a": only("orders", l)})
	b.SetLatency(latency)
	ca := &caBucket{l: l}
	var arrivals []time.Time
	placed := 0
	for step := 0; placed < n || len(arrivals) > 0; step++ {
		if step > 1e6 {
			t.Fatal("the simulation does not end")
		}
		now := c.Now()
		slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
		for len(arrivals) > 0 && !arrivals[0].After(now) {
			if !ca.accept(arrivals[0]) {
				refused++
			}
			arrivals = arrivals[1:]
		}
		for placed < n {
			if ok, _, _ := b.Reserve(Request{Account: "a"}); !ok {
				break
			}
			arrivals = append(arrivals, now.Add(delay(placed)))
			last = now.Sub(epoch)
			placed++
		}
		c.Advance(10 * time.Millisecond)
	}
	return refused, last
}

// The orders of a burst that reach the CA late (a busy host) start its bucket's refill late; later
// orders that arrive at once then find the CA one token short whenever the budget says a token is
// back. SetLatency allows for it: no refusal for any delay within the latency, and the refill runs
// at the same rate, latency later.
func TestLatencyKeepsTheBudgetBehindTheCA(t *testing.T) {
	l := lim(10, 10*time.Second)
	slowBurst := func(i int) time.Duration {
		if i < 10 {
			return 400 * time.Millisecond
		}
		return 0
	}
	refused, _ := simulateOrders(t, l, 0, 30, slowBurst)
	if refused == 0 {
		t.Fatal("without an allowance for latency the CA should refuse some orders (the case SetLatency is for)")
	}
	refused, last := simulateOrders(t, l, 500*time.Millisecond, 30, slowBurst)
	if refused != 0 {
		t.Fatalf("with SetLatency(500ms) the CA refused %d orders", refused)
	}
	// 20 orders after the burst of 10, one per second, 500 ms late (and one 10 ms step).
	if want := 20*time.Second + 500*time.Millisecond; last < want-time.Millisecond || last > want+20*time.Millisecond {
		t.Fatalf("last order at +%s, want +%s: the refill runs at the same rate, latency later", last, want)
	}
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		latency := time.Duration(rng.IntN(1000)+1) * time.Millisecond
		random := func(int) time.Duration { return time.Duration(rng.Int64N(int64(latency) + 1)) }
		// Limits whose bucket takes at least twice the latency to give back all tokens but one
		// (allowance: shorter ones get less), or that hold a single token.
		count := rng.IntN(20) + 1
		period := time.Duration(rng.IntN(20)+1) * time.Second
		if l := lim(count, period); count > 1 && time.Duration(l.capacity()-l.interval()) < 2*latency {
			period += 2 * latency * time.Duration(count) / time.Duration(count-1)
		}
		if refused, _ := simulateOrders(t, lim(count, period), latency, 60, random); refused != 0 {
			t.Fatalf("seed %d: the CA refused %d of the orders (%d/%s) that reached it within the latency %s", seed, refused, count, period, latency)
		}
	}
}

// The allowance leaves a burst whole and delays only the tokens that came back since it began.
func TestLatencyLeavesTheBurstWhole(t *testing.T) {
	b, c := newBudget(t, map[string]Limits{"a": only("orders", lim(3, 30*time.Second))})
	b.SetLatency(2 * time.Second)
	r := Request{Account: "a"}
	for range 3 {
		mustReserve(t, b, r)
	}
	mustRefuse(t, b, r, epoch.Add(10*time.Second+2*time.Second), "new orders per account")
	c.Set(epoch.Add(12 * time.Second))
	mustReserve(t, b, r)
	mustRefuse(t, b, r, epoch.Add(22*time.Second), "new orders per account")
	// Full again (and at the CA however late the last order was): a new burst, whole.
	c.Set(epoch.Add(40*time.Second + 2*time.Second))
	for range 3 {
		mustReserve(t, b, r)
	}
	// A refund gives the token back at once.
	b.Refund(r)
	mustReserve(t, b, r)
}

// A bucket that gives back all tokens but one in less than twice the latency gets half that as
// its allowance, so that it never fills up while an order waits for the allowance.
func TestLatencyAllowanceOfShortLimits(t *testing.T) {
	b, c := newBudget(t, map[string]Limits{"a": only("orders", lim(4, time.Second))})
	b.SetLatency(2 * time.Second)
	r := Request{Account: "a"}
	for range 4 {
		mustReserve(t, b, r)
	}
	next := epoch.Add(250*time.Millisecond + 375*time.Millisecond)
	for i := range 8 {
		mustRefuse(t, b, r, next, "new orders per account")
		c.Set(next)
		mustReserve(t, b, r)
		next = next.Add(250 * time.Millisecond)
		if i == 7 && next.Sub(epoch) != 2625*time.Millisecond {
			t.Fatalf("the refill runs at one per 250 ms: next at +%s", next.Sub(epoch))
		}
	}
	// A limit of one token gets the whole latency: its bucket is full when the token is back.
	b2, c2 := newBudget(t, map[string]Limits{"a": only("orders", lim(1, time.Second))})
	b2.SetLatency(2 * time.Second)
	mustReserve(t, b2, r)
	mustRefuse(t, b2, r, epoch.Add(3*time.Second), "new orders per account")
	c2.Set(epoch.Add(3 * time.Second))
	mustReserve(t, b2, r)
}

// After a rateLimited answer the CA has said where its bucket stands: no allowance on top.
func TestLatencyNotAddedAfterRateLimited(t *testing.T) {
	b, c := newBudget(t, map[string]Limits{"a": only("orders", lim(300, 3*time.Hour))})
	b.SetLatency(2 * time.Second)
	r := Request{Account: "a"}
	until := epoch.Add(time.Minute)
	b.RateLimited(r, until)
	c.Set(until)
	mustReserve(t, b, r)
	mustRefuse(t, b, r, until.Add(36*time.Second), "new orders per account")
	// A refund after it does not undo the CA's word.
	b.Refund(r)
	mustReserve(t, b, r)
	mustRefuse(t, b, r, until.Add(36*time.Second), "new orders per account")
}

// An order the CA refused with rateLimited spent none of the shared tokens: RefundRefused gives the
// per-domain and duplicate tokens back and keeps the orders token spent.
func TestRefundRefused(t *testing.T) {
	b, _ := newBudget(t, map[string]Limits{"a": {
		OrdersPerAccount: lim(10, time.Hour),
		CertsPerDomain:   lim(1, time.Hour),
		DuplicateCerts:   lim(1, time.Hour),
	}})
	r := Request{Account: "a", Identifiers: []string{"www.example.com"}}
	mustReserve(t, b, r)
	mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"api.example.com"}}, epoch.Add(time.Hour), "certificates per registered domain example.com")
	b.RefundRefused(r)
	if s := b.Stats(); s.DomainBuckets != 0 || s.DuplicateBuckets != 0 || s.Accounts["a"].OrdersLeft != 9 {
		t.Fatalf("after RefundRefused: %d domain and %d duplicate buckets spent, %d orders left; want 0, 0, 9",
			s.DomainBuckets, s.DuplicateBuckets, s.Accounts["a"].OrdersLeft)
	}
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"api.example.com"}})
}
