package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/budget"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// The order budget keeps the engine inside the CA's published rate limits (budget package): an
// order that would exceed them waits, visibly, instead of burning the account into rateLimited
// answers. A wait is not a failure: it counts no attempt and starts no backoff.

// errBudgetWait is returned by obtain when the account's budget has no room for the order.
type errBudgetWait struct {
	until time.Time
	why   string
	// queue names the orders bucket the wait is likely for (the account's, or the role's own
	// under roleBudgetKey) and interval is its refill interval; zero when it has no limit.
	queue    string
	interval time.Duration
}

func (e *errBudgetWait) Error() string {
	return fmt.Sprintf("the order budget has no room (%s) until %s", e.why, e.until.Format(time.RFC3339))
}

// orderBudget is the mount's budget and what it defers.
type orderBudget struct {
	b *budget.Budget

	mu sync.Mutex
	// deferred: certificates waiting for the budget, and until when.
	deferred map[string]time.Time
	// turns: for each orders bucket with certificates waiting for it, the next free turn.
	turns map[string]time.Time
	// saveMu serialises snapshots to storage, so an older one never overwrites a newer one.
	saveMu sync.Mutex
}

// orderLatency is how long after its reservation a new order may reach the CA (a nonce, a
// badNonce retry, a busy host). The CA's bucket starts refilling when the first order of a burst
// arrives, so the budget uses a token that came back since a burst began that much later than its
// own model has it, and is never fuller than the CA's bucket (budget.SetLatency; without it, orders
// that arrived faster than the burst's first met 429s in the order budget benchmark). Against Let's
// Encrypt's intervals (36 s per order, 202 min per domain) it costs nothing measurable.
const orderLatency = 2 * time.Second

func newOrderBudget() *orderBudget {
	b := budget.New(nil)
	b.SetLatency(orderLatency)
	return &orderBudget{b: b, deferred: map[string]time.Time{}, turns: map[string]time.Time{}}
}

// deferredUntil returns when name may try again, or zero.
func (o *orderBudget) deferredUntil(name string, now time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	until, ok := o.deferred[name]
	if ok && !now.Before(until) {
		delete(o.deferred, name)
		return time.Time{}
	}
	return until
}

// deferName defers name until its turn at w's orders bucket, and moves w.until there. Without
// turns every certificate waiting for a bucket would wait for the same instant, its next token,
// and all would be dispatched then for one of them to get it (a thundering herd: some 70,000 job
// runs and twice as many log lines for 1,000 certificates waiting 105 s in the order budget
// benchmark, against about one each with turns).
// So waiters of one bucket get one refill interval each, in the order they asked: the first its
// next token, then one interval later each. A wait for something slower (a registered domain, the
// CA's Retry-After) keeps its own time unless the queue reaches past it.
func (o *orderBudget) deferName(name string, w *errBudgetWait, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w.queue != "" && w.interval > 0 {
		next := o.turns[w.queue]
		switch {
		case next.After(now) && !w.until.After(next):
			w.until = next
			o.turns[w.queue] = next.Add(w.interval)
		case w.until.Sub(now) <= w.interval+orderLatency:
			// The bucket's next token (the budget gives it orderLatency late): first in line.
			o.turns[w.queue] = w.until.Add(w.interval)
		}
		for q, t := range o.turns {
			if !t.After(now) {
				delete(o.turns, q) // no one waits there any more
			}
		}
	}
	o.deferred[name] = w.until
}

// refillInterval is the time l takes to give one token back (0 when unlimited), rounded up as the
// budget rounds it.
func refillInterval(l budget.Limit) time.Duration {
	if l.Count <= 0 {
		return 0
	}
	return (l.Period + time.Duration(l.Count) - 1) / time.Duration(l.Count)
}

func (o *orderBudget) forget(name string) {
	o.mu.Lock()
	delete(o.deferred, name)
	o.mu.Unlock()
}

// budgetRequest is what an order for p counts against. A renewal (same names as the certificate
// it replaces) is exempt from the per-domain limit; an ARI renewal inside the CA's window from all.
func budgetRequest(p *issuePlan, renewing, ari bool) budget.Request {
	return budget.Request{Account: p.role.Account, Identifiers: p.cert.Domains, Renewal: renewing, ARI: ari}
}

// roleBudgetKey is the budget's key of a role's own order bucket (role order_limit); it cannot
// collide with an account name, which has no NUL.
func roleBudgetKey(role string) string { return "role\x00" + role }

// roleRequest is the request against the role's own order bucket, or false when the role sets
// no order_limit (then only the account's budget applies).
func roleRequest(p *issuePlan, req budget.Request) (budget.Request, budget.Limit, bool) {
	l, err := budget.ParseLimit(p.role.OrderLimit)
	if err != nil || l.Count == 0 {
		return budget.Request{}, budget.Limit{}, false
	}
	return budget.Request{Account: roleBudgetKey(p.cert.Role), Renewal: req.Renewal, ARI: req.ARI}, l, true
}

// reserve takes the order's tokens — from the role's own bucket when it sets order_limit, and
// from the account's budget — all or nothing, or returns an *errBudgetWait.
func (b *backend) reserve(p *issuePlan, req budget.Request) error {
	limits := paths.AccountLimits(p.account)
	if err := b.budget.b.SetLimits(req.Account, limits); err != nil {
		return fmt.Errorf("order budget of account %q: %w", req.Account, err)
	}
	rreq, rl, perRole := roleRequest(p, req)
	if perRole {
		if err := b.budget.b.SetLimits(rreq.Account, budget.Limits{OrdersPerAccount: rl}); err != nil {
			return fmt.Errorf("order_limit of role %q: %w", p.cert.Role, err)
		}
		if ok, until, _ := b.budget.b.Reserve(rreq); !ok {
			return &errBudgetWait{until: until, why: fmt.Sprintf("orders of role %q (%s)", p.cert.Role, rl),
				queue: rreq.Account, interval: refillInterval(rl)}
		}
	}
	ok, until, why := b.budget.b.Reserve(req)
	if !ok {
		if perRole {
			b.budget.b.Refund(rreq)
		}
		return &errBudgetWait{until: until, why: why, queue: req.Account, interval: refillInterval(limits.OrdersPerAccount)}
	}
	return nil
}

// settle tells the budget how an order ended: nothing spent when no order was placed; a
// rateLimited answer holds the account until the CA's Retry-After; a failed validation spends the
// name's failed-authorization token.
func (b *backend) settle(p *issuePlan, req budget.Request, placed bool, err error) {
	if rreq, _, perRole := roleRequest(p, req); perRole && !placed {
		b.budget.b.Refund(rreq) // a role's tokens pay only for orders placed
	}
	if errors.Is(err, acme.ErrRateLimited) {
		// Usually the answer to the new order itself (so none was placed): hold either way, and
		// give no orders token back — a refund would refill the bucket RateLimited just emptied,
		// and each refusal would make room for the next burst. The per-domain and duplicate
		// tokens of a refused order go back when the CA said when to retry (the hold keeps the
		// account from trying before): the CA spent none of them.
		d, ok := acme.RetryAfter(err)
		if !placed && ok {
			b.budget.b.RefundRefused(req)
		}
		b.budget.b.RateLimited(req, time.Now().Add(d))
		return
	}
	if !placed {
		b.budget.b.Refund(req)
		return
	}
	var ae *acme.Error
	if errors.Is(err, acme.ErrChallengeFailed) && errors.As(err, &ae) && ae.Identifier != "" {
		b.budget.b.Failed(req.Account, ae.Identifier)
	}
}

// saveBudget stores the budget's state; a failure is logged (the budget still holds in memory).
func (b *backend) saveBudget(ctx context.Context) {
	b.budget.saveMu.Lock()
	defer b.budget.saveMu.Unlock()
	if err := storage.StoreBudget(ctx, b.storage, b.budget.b.Snapshot()); err != nil {
		b.logger.Named("budget").Warn("storing the order budget failed", "error", err)
	}
}

// loadBudget restores the stored budget state (Initialize). A state that cannot be read is
// logged and ignored: the budget then starts full, as on a new mount.
func (b *backend) loadBudget(ctx context.Context) {
	raw, err := storage.LoadBudget(ctx, b.storage)
	if err != nil || raw == nil {
		if err != nil {
			b.logger.Named("budget").Warn("loading the order budget failed; it starts full", "error", err)
		}
		return
	}
	var st budget.State
	err = json.Unmarshal(raw, &st)
	if err == nil {
		err = b.budget.b.Restore(st)
	}
	if err != nil {
		b.logger.Named("budget").Warn("the stored order budget is unusable; it starts full", "error", err)
	}
}

// budgetWaitReason is what a certificate deferred by the budget shows on reads and status/certs.
func budgetWaitReason(account string, w *errBudgetWait) string {
	return fmt.Sprintf("waiting for the order budget of account %q: %s; the next order may start at %s",
		account, w.why, w.until.UTC().Format(time.RFC3339))
}
