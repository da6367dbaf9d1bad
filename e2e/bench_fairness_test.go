//go:build bench

package e2e

// The fairness benchmark (run by scripts/bench.sh: go test -tags bench -run '^TestBenchFairness$'):
// what one tenant's behaviour costs the others and the CA, with the engine's rules against a
// baseline without them, printed side by side.
//
//  1. Another tenant's issuance while one tenant has 24 slow jobs (records checked at a resolver
//     that never answers, propagation_timeout 15s): fair workers (the other tenant's own role) vs
//     a first-in-first-out queue, emulated by putting the 25th certificate in the slow role (what
//     a single queue per mount gave before; the role's share is 6 workers, the old pool had 8).
//  2. Orders placed at the CA by 25 renewals by hand right after issuance: the default
//     forced_renewal_interval (1h) vs forced_renewal_interval=0.
//  3. 20 certificates declared at once against a CA that enforces 5 new orders per 10 s (a token
//     bucket in the ACME proxy answering rateLimited with Retry-After): with the account's
//     order_limit=5/10s vs without a budget (order_limit=0).

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

func TestBenchFairness(t *testing.T) {
	root := env.RootClient(t)
	benchStart := time.Now()
	type row struct{ what, with, without string }
	var rows []row

	// 1. A slow tenant and another tenant.
	const slowJobs, slowTimeout = 24, 15 * time.Second
	acct := Unique("bfair") + "-acct"
	env.CreateAccount(t, root, acct, nil)
	slowDNS := Unique("bfair-slow-dns")
	env.CreateDNS(t, root, slowDNS, SlowDNSData(t, slowTimeout.String()))
	fastDNS := Unique("bfair-dns")
	env.CreateDNS(t, root, fastDNS, nil)

	fairSlow, fairFast := Unique("bfair-slow"), Unique("bfair-fast")
	CreateRole(t, root, fairSlow, TeamRole(acct, slowDNS, fairSlow, nil))
	CreateRole(t, root, fairFast, TeamRole(acct, fastDNS, fairFast, nil))
	slowNames := declareSlow(t, root, fairSlow, fairSlow, slowJobs)
	start := time.Now()
	w := MustDo(t, root, http.MethodPut, Mount+"/certs/"+fairFast+"/app", map[string]any{
		"role": fairFast, "domains": "app." + fairFast + "." + env.Zone, "wait": "60s",
	})
	fairTook := time.Since(start)
	require.Equal(t, http.StatusOK, w.Status, "%s", w)
	fmt.Printf("bench: fair workers: the other tenant's certificate issued in %.3fs\n", fairTook.Seconds())
	DeleteCertsAndDrain(t, root, slowNames)

	fifo := Unique("bfair-fifo")
	CreateRole(t, root, fifo, TeamRole(acct, slowDNS, fifo, nil))
	fifoNames := declareSlow(t, root, fifo, fifo, slowJobs)
	last := fifo + "/last"
	MustWrite(t, root, Mount+"/certs/"+last, map[string]any{"role": fifo, "domains": "last." + fifo + "." + env.Zone, "wait": "0s"})
	start = time.Now()
	waitFor(t, 10*slowTimeout, "the 25th job to leave the queue", func() (bool, string) {
		q := WaitingCerts(t, root, fifo+"/", "")
		_, waiting := q[last]
		return !waiting, fmt.Sprintf("%d of the role's jobs queued", len(q))
	})
	fifoWait := time.Since(start)
	fmt.Printf("bench: one queue: the 25th job waited %.3fs for a worker\n", fifoWait.Seconds())
	DeleteCertsAndDrain(t, root, append(fifoNames, last))
	rows = append(rows,
		row{fmt.Sprintf("other tenant's issuance, 24 slow jobs (%s each) ahead", slowTimeout), fmt.Sprintf("%.1fs", fairTook.Seconds()),
			fmt.Sprintf("%.1fs (%.1fs queued + issuance)", (fifoWait + fairTook).Seconds(), fifoWait.Seconds())},
		row{"  same, scaled to the default 2m propagation_timeout", fmt.Sprintf("%.1fs", fairTook.Seconds()),
			fmt.Sprintf("~%.0fs", fifoWait.Seconds()*(2*time.Minute).Seconds()/slowTimeout.Seconds())})

	// 2. 25 renewals by hand right after issuance.
	flood := func(interval any) (orders, refused int, took time.Duration) {
		proxy := env.NewPebbleProxy(t)
		team := Unique("bflood")
		is := ProxiedTeamIssuer(t, root, proxy, team, nil, map[string]any{"forced_renewal_interval": interval})
		name := team + "/app"
		IssueCert(t, root, name, map[string]any{"role": is.Role, "domains": "app." + team + "." + env.Zone}, 2*time.Minute)
		before := proxy.NewOrders()
		start := time.Now()
		for range 25 {
			r := MustDo(t, root, http.MethodPut, Mount+"/renew/"+name, map[string]any{"wait": "60s"})
			switch r.Status {
			case http.StatusTooManyRequests:
				refused++
			case http.StatusOK:
			default:
				t.Fatalf("renew: %s", r)
			}
		}
		took = time.Since(start)
		time.Sleep(time.Second)
		return proxy.NewOrders() - before, refused, took
	}
	o1, r1, d1 := flood(nil)
	fmt.Printf("bench: 25 renewals, default interval: %d orders, %d refused (429), %.3fs\n", o1, r1, d1.Seconds())
	o0, r0, d0 := flood("0s")
	fmt.Printf("bench: 25 renewals, interval 0: %d orders, %d refused (429), %.3fs\n", o0, r0, d0.Seconds())
	rows = append(rows, row{"orders from 25 renewals by hand after issuance", fmt.Sprintf("%d (%d x 429, %.1fs)", o1, r1, d1.Seconds()),
		fmt.Sprintf("%d (%d x 429, %.1fs)", o0, r0, d0.Seconds())})

	// 3. 20 certificates against a CA enforcing 5 orders per 10 s.
	const n, burst, refill = 20, 5, 2 * time.Second
	minimum := time.Duration(n-burst) * refill
	budgetRun := func(limit string) budgetResult {
		proxy := env.NewPebbleProxy(t)
		ca := &caLimit{burst: burst, refill: refill, path: proxy.NewOrderPath}
		proxy.SetFault(ca.fault)
		proxy.SetAnswerHook(ca.answer)
		team := Unique("bbudget")
		is := ProxiedTeamIssuer(t, root, proxy, team, map[string]any{"order_limit": limit}, nil)
		res := issueMany(t, root, team, is.Role, n, 100*time.Second)
		res.orders, res.caRefused = proxy.NewOrders(), ca.refusedCount()
		return res
	}
	withB := budgetRun("5/10s")
	fmt.Printf("bench: budget 5/10s: %+v\n", withB)
	without := budgetRun("0")
	fmt.Printf("bench: no budget: %+v\n", without)
	rows = append(rows,
		row{fmt.Sprintf("%d certs, CA allows 5 orders/10s: all issued after", n), withB.took(), without.took()},
		row{"  budget minimum (15 orders after the burst x 2s)", fmt.Sprintf("%.1fs", minimum.Seconds()), "-"},
		row{"  rateLimited (429) answers from the CA", fmt.Sprint(withB.caRefused), fmt.Sprint(without.caRefused)},
		row{"  certificates that recorded a failed attempt", fmt.Sprint(withB.failed), fmt.Sprint(without.failed)},
		row{"  orders created at the CA", fmt.Sprint(withB.orders), fmt.Sprint(without.orders)})

	fmt.Printf("\nbench: fairness and order budget (Pebble + BIND, one Vault mount, 8 workers), %s in all\n", time.Since(benchStart).Round(time.Second))
	fmt.Printf("%-58s %-40s %s\n", "", "with the rule", "without (baseline)")
	fmt.Printf("%-58s %-40s %s\n", "scenario", "(fair workers / 1h interval / budget)", "(one queue / interval 0 / no budget)")
	for _, r := range rows {
		fmt.Printf("%-58s %-40s %s\n", r.what, r.with, r.without)
	}
}

// declareSlow writes n certificates team/sNN with role (wait=0) and waits until all but the
// role's share of workers (6) queue.
func declareSlow(t *testing.T, root *vaultapi.Client, team, role string, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s/s%02d", team, i)
		names = append(names, name)
		MustWrite(t, root, Mount+"/certs/"+name, map[string]any{"role": role, "domains": fmt.Sprintf("s%02d.%s.%s", i, team, env.Zone), "wait": "0s"})
	}
	waitFor(t, 30*time.Second, "the slow jobs to queue", func() (bool, string) {
		q := WaitingCerts(t, root, team+"/", "queued")
		return len(q) >= n-6, fmt.Sprintf("%d queued", len(q))
	})
	return names
}

type budgetResult struct {
	total, issued     int
	failed            int
	elapsed           time.Duration
	orders, caRefused int
	complete          bool
}

func (r budgetResult) took() string {
	if !r.complete {
		return fmt.Sprintf("only %d/%d in %.1fs", r.issued, r.total, r.elapsed.Seconds())
	}
	return fmt.Sprintf("%.1fs", r.elapsed.Seconds())
}

// issueMany declares n certificates team/cN at once (wait=0) and watches status/certs until none
// is pending or timeout passes.
func issueMany(t *testing.T, root *vaultapi.Client, team, role string, n int, timeout time.Duration) budgetResult {
	t.Helper()
	start := time.Now()
	for i := range n {
		MustWrite(t, root, Mount+"/certs/"+fmt.Sprintf("%s/c%d", team, i), map[string]any{"role": role, "domains": fmt.Sprintf("c%d.%s.%s", i, team, env.Zone), "wait": "0s"})
	}
	failed := map[string]bool{}
	res := budgetResult{total: n}
	for {
		st := MustDo(t, root, http.MethodGet, Mount+"/status/certs", nil)
		require.Equal(t, http.StatusOK, st.Status, "%s", st)
		for _, name := range stringList(st.Data["failing"]) {
			if strings.HasPrefix(name, team+"/") {
				failed[name] = true
			}
		}
		pending := 0
		for _, name := range stringList(st.Data["pending"]) {
			if strings.HasPrefix(name, team+"/") {
				pending++
			}
		}
		res.issued, res.failed, res.elapsed = n-pending, len(failed), time.Since(start)
		if pending == 0 {
			res.complete = true
			return res
		}
		if res.elapsed > timeout {
			return res
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// caLimit emulates a CA's new-order rate limit: a token bucket of burst orders refilled one per
// refill; a new-order without a token is answered 429 rateLimited with Retry-After. A token spent
// on a new-order that Pebble then refuses (its deliberate badNonce answers, which clients retry)
// is given back (answer), as at Let's Encrypt, where the nonce is checked before the limits.
type caLimit struct {
	burst  int
	refill time.Duration
	path   func() string

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	refused int
	held    map[*orderPayload]bool // new-orders that spent a token, until Pebble answers
}

func (c *caLimit) fault(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || r.URL.Path != c.path() {
		return false
	}
	c.mu.Lock()
	now := time.Now()
	if c.last.IsZero() {
		c.tokens = float64(c.burst)
	} else {
		c.tokens = min(float64(c.burst), c.tokens+now.Sub(c.last).Seconds()/c.refill.Seconds())
	}
	c.last = now
	if c.tokens >= 1 {
		c.tokens--
		if op, ok := r.Context().Value(orderPayloadKey{}).(*orderPayload); ok {
			if c.held == nil {
				c.held = map[*orderPayload]bool{}
			}
			c.held[op] = true
		}
		c.mu.Unlock()
		return false
	}
	c.refused++
	retry := time.Duration((1 - c.tokens) * float64(c.refill))
	c.mu.Unlock()
	writeProblem(w, http.StatusTooManyRequests, "urn:ietf:params:acme:error:rateLimited", "bench: too many new orders (5 per 10s)", retry)
	return true
}

// answer gives back the token of a new-order Pebble did not create (SetAnswerHook).
func (c *caLimit) answer(resp *http.Response) {
	op, ok := resp.Request.Context().Value(orderPayloadKey{}).(*orderPayload)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[op] && resp.StatusCode != http.StatusCreated {
		c.tokens = min(float64(c.burst), c.tokens+1)
	}
	delete(c.held, op)
}

func (c *caLimit) refusedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}
