package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

func TestDecide(t *testing.T) {
	now := time.Now()
	valid := storage.CertEntry{Certificate: "x", Generation: 1, IssuedGeneration: 1, RenewAt: now.Add(time.Hour)}
	cases := []struct {
		name string
		mod  func(c *storage.CertEntry)
		want action
	}{
		{"current, not due", func(c *storage.CertEntry) {}, actNone},
		{"never issued", func(c *storage.CertEntry) { c.Certificate = "" }, actIssue},
		{"spec changed", func(c *storage.CertEntry) { c.Generation = 2 }, actIssue},
		{"due", func(c *storage.CertEntry) { c.RenewAt = now.Add(-time.Second) }, actRenew},
		{"forced", func(c *storage.CertEntry) { c.ForceRenewal = true }, actRenew},
		{"ARI check due", func(c *storage.CertEntry) { c.ARICheckAt = now.Add(-time.Second) }, actARI},
		{"backing off", func(c *storage.CertEntry) {
			c.RenewAt, c.Attempts, c.NextAttemptAt = now.Add(-time.Hour), 2, now.Add(time.Minute)
		}, actNone},
		{"backoff over", func(c *storage.CertEntry) {
			c.RenewAt, c.Attempts, c.NextAttemptAt = now.Add(-time.Hour), 2, now.Add(-time.Second)
		}, actRenew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.mod(&c)
			require.Equal(t, tc.want, decide(&c, now))
		})
	}
}

func TestPlannedRenewal(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Extreme lives (an imported certificate valid 1900-2060, one ending before it starts): inside
	// the life, no overflow, no panic.
	old := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, na := range []time.Time{time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
		at := jitteredRenewal(old, na)
		require.True(t, at.After(old) && at.Before(na), "renewal %s of a certificate valid %s to %s", at, old, na)
	}
	require.NotPanics(t, func() { jitteredRenewal(nb, nb.Add(-time.Hour)) })
	require.NotPanics(t, func() { jitteredRenewal(nb, nb) })
	require.Equal(t, nb.Add(60*24*time.Hour), plannedRenewal(nb, nb.Add(90*24*time.Hour)), "90-day: a third left")
	require.Equal(t, nb.Add(3*24*time.Hour), plannedRenewal(nb, nb.Add(6*24*time.Hour)), "6-day: half left")
	for range 100 {
		at := jitteredRenewal(nb, nb.Add(90*24*time.Hour))
		require.False(t, at.After(nb.Add(60*24*time.Hour)))
		require.True(t, at.After(nb.Add(58*24*time.Hour)))
	}
}

func TestApplyWindow(t *testing.T) {
	now := time.Now().UTC()
	fresh := func() *storage.CertEntry {
		return &storage.CertEntry{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour), RenewAt: now.Add(59 * 24 * time.Hour)}
	}
	c := fresh()
	require.NotEmpty(t, applyWindow(c, &acme.RenewalWindow{Start: now.Add(48 * time.Hour), End: now.Add(24 * time.Hour)}, now), "end before start")
	require.Equal(t, fresh().RenewAt, c.RenewAt)
	require.NotEmpty(t, applyWindow(c, &acme.RenewalWindow{Start: now.Add(100 * 24 * time.Hour), End: now.Add(101 * 24 * time.Hour)}, now), "after expiry")

	c = fresh()
	require.Empty(t, applyWindow(c, &acme.RenewalWindow{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour)}, now))
	require.Equal(t, now, c.RenewAt, "a window in the past means now")

	c = fresh()
	c.LastEarlyRenewal = now.Add(-time.Hour)
	require.NotEmpty(t, applyWindow(c, &acme.RenewalWindow{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour)}, now),
		"a second early window right after an early renewal is ignored")

	c = fresh()
	w := &acme.RenewalWindow{Start: now.Add(50 * 24 * time.Hour), End: now.Add(52 * 24 * time.Hour), RetryAfter: 3 * time.Hour}
	require.Empty(t, applyWindow(c, w, now))
	require.False(t, c.RenewAt.Before(w.Start) || c.RenewAt.After(w.End))
	require.Equal(t, now.Add(3*time.Hour), c.ARICheckAt)
	drawn := c.RenewAt
	require.Empty(t, applyWindow(c, w, now.Add(3*time.Hour)))
	require.Equal(t, drawn, c.RenewAt, "the same window again keeps the point drawn from it")

	c = fresh()
	require.Empty(t, applyWindow(c, &acme.RenewalWindow{Start: now.Add(88 * 24 * time.Hour), End: now.Add(91 * 24 * time.Hour)}, now))
	require.False(t, c.RenewAt.After(c.NotAfter.Add(-9*24*time.Hour)), "never in the last tenth of the life")
}

func TestARIInterval(t *testing.T) {
	day90 := 90 * 24 * time.Hour
	require.Equal(t, 12*time.Hour, ariInterval(0, day90))
	require.Equal(t, time.Minute, ariInterval(time.Second, day90), "Retry-After is clamped up")
	require.Equal(t, 24*time.Hour, ariInterval(7*24*time.Hour, day90), "and down")
	require.Equal(t, 30*time.Second, ariInterval(0, 5*time.Minute), "a tenth of a short life")
}

// issueOne writes certs/web and returns its stored entry.
func issueOne(t *testing.T, b *backend, s logical.Storage) *storage.CertEntry {
	t.Helper()
	setup(t, b, s)
	resp := request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	require.Equal(t, storage.StatusValid, resp.Data["status"], resp.Data["last_error"])
	c, err := storage.LoadCert(context.Background(), s, "web")
	require.NoError(t, err)
	return c
}

func setRenewAt(t *testing.T, s logical.Storage, name string, at time.Time) {
	t.Helper()
	c, err := storage.LoadCert(context.Background(), s, name)
	require.NoError(t, err)
	c.RenewAt = at
	require.NoError(t, storage.StoreCert(context.Background(), s, name, c))
}

func waitJobs(t *testing.T, b *backend, name string) {
	t.Helper()
	b.jobsMu.Lock()
	j := b.jobs[name]
	b.jobsMu.Unlock()
	if j == nil {
		return
	}
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("job for %s did not end", name)
	}
}

func TestRenewalAtPlannedTimeWithReplaces(t *testing.T) {
	b, s, ca := getTestBackend(t)
	ca.window = &acme.RenewalWindow{Start: time.Now().Add(1000 * time.Hour), End: time.Now().Add(1001 * time.Hour)}
	first := issueOne(t, b, s)
	require.False(t, first.ARICheckAt.IsZero(), "the CA offers ARI")
	require.Zero(t, b.dispatchDue(time.Now()), "nothing due right after issuance")

	setRenewAt(t, s, "web", time.Now().Add(-time.Second))
	b.CertificateChanged("web")
	require.Equal(t, 1, b.dispatchDue(time.Now()))
	waitJobs(t, b, "web")
	c, err := storage.LoadCert(context.Background(), s, "web")
	require.NoError(t, err)
	require.Equal(t, 1, c.Renewals)
	require.NotEqual(t, first.SerialNumber, c.SerialNumber)
	require.True(t, c.RenewAt.After(time.Now().Add(58*24*time.Hour)), "the new certificate's renewal is planned anew")
	require.EqualValues(t, 2, ca.orders.Load())
	ca.mu.Lock()
	require.Empty(t, ca.replaces[0])
	require.NotEmpty(t, ca.replaces[1], "a renewal names the certificate it replaces")
	ca.mu.Unlock()
	require.Zero(t, b.dispatchDue(time.Now()), "renewed once per window")
}

func TestARIWindowInThePastRenewsOnce(t *testing.T) {
	b, s, ca := getTestBackend(t)
	ca.window = &acme.RenewalWindow{Start: time.Now().Add(-2 * time.Hour), End: time.Now().Add(-time.Hour)}
	issueOne(t, b, s)
	for round := range 4 {
		c, err := storage.LoadCert(context.Background(), s, "web")
		require.NoError(t, err)
		c.ARICheckAt = time.Now().Add(-time.Second)
		require.NoError(t, storage.StoreCert(context.Background(), s, "web", c))
		b.CertificateChanged("web")
		b.jobsMu.Lock()
		delete(b.lastDispatch, "web")
		b.jobsMu.Unlock()
		b.dispatchDue(time.Now())
		waitJobs(t, b, "web")
		_ = round
	}
	require.EqualValues(t, 2, ca.orders.Load(), "a CA that keeps saying 'renew now' gets one early renewal, not a loop")
}

func TestRenewalFailureBacksOffAndKeepsServing(t *testing.T) {
	b, s, ca := getTestBackend(t)
	first := issueOne(t, b, s)
	setRenewAt(t, s, "web", time.Now().Add(-time.Second))
	ca.fail = &acme.Error{Kind: acme.ErrRateLimited, RetryAfter: 2 * time.Hour}
	b.CertificateChanged("web")
	require.Equal(t, 1, b.dispatchDue(time.Now()))
	waitJobs(t, b, "web")

	read := request(t, b, s, logical.ReadOperation, "certs/web", nil)
	require.Equal(t, first.SerialNumber, read.Data["serial_number"], "the current certificate is still served")
	require.Equal(t, storage.StatusValid, read.Data["status"])
	require.Equal(t, 1, read.Data["attempts"])
	require.NotEmpty(t, read.Data["last_error"])
	next := read.Data["next_attempt_at"].(time.Time)
	require.WithinDuration(t, time.Now().Add(2*time.Hour), next, time.Minute, "rateLimited honours Retry-After")
	require.Zero(t, b.dispatchDue(time.Now().Add(time.Hour)), "no attempt before Retry-After")

	status := request(t, b, s, logical.ReadOperation, "status/certs", nil)
	require.Equal(t, []string{"web"}, status.Data["failing"])

	// A forced renewal clears the backoff, but not the CA's Retry-After: the account is held, the
	// renewal waits (no order is sent) and says why.
	ca.fail = nil
	orders := ca.orders.Load()
	resp := request(t, b, s, logical.UpdateOperation, "renew/web", map[string]any{"wait": 2})
	require.Contains(t, dataOf(t, resp)["waiting"], "rateLimited answer from the CA")
	require.Equal(t, orders, ca.orders.Load(), "nothing sent before Retry-After")
	c, err := storage.LoadCert(context.Background(), s, "web")
	require.NoError(t, err)
	require.Equal(t, 0, c.Attempts, "a wait is not a failure")
	require.Equal(t, first.SerialNumber, c.SerialNumber, "still served")

	// Once the hold is over (here: lifted by hand), the forced renewal goes through.
	b.budget.b.RemoveAccount("main")
	b.budget.forget("web")
	resp = request(t, b, s, logical.UpdateOperation, "renew/web", nil)
	require.Equal(t, storage.StatusValid, dataOf(t, resp)["status"])
	c, err = storage.LoadCert(context.Background(), s, "web")
	require.NoError(t, err)
	require.Equal(t, 1, c.Renewals)
}

func TestResumeRecordedOrder(t *testing.T) {
	b, s, ca := getTestBackend(t)
	setup(t, b, s)
	ca.fail = errors.New("connection reset")
	request(t, b, s, logical.CreateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	rec, err := storage.LoadOrder(context.Background(), s, "web")
	require.NoError(t, err)
	require.NotNil(t, rec, "the order is recorded as soon as it exists")

	ca.fail = nil
	var resumed atomic.Value
	ca.onObtain = func(req acme.OrderRequest) { resumed.Store(req.ResumeOrderURL) }
	request(t, b, s, logical.UpdateOperation, "certs/web", map[string]any{"role": "web", "domains": "www.example.com"})
	require.Equal(t, rec.OrderURL, resumed.Load(), "the next attempt resumes the recorded order")
	c, err := storage.LoadCert(context.Background(), s, "web")
	require.NoError(t, err)
	key, err := acme.ParseKey(c.PrivateKey)
	require.NoError(t, err)
	recKey, err := acme.ParseKey(rec.PrivateKey)
	require.NoError(t, err)
	requireSameKey(t, key.Public(), recKey.Public(), "with the recorded key")
}

// recordingSolver counts presented and removed records.
type recordingSolver struct {
	mu      sync.Mutex
	present map[string]bool
}

func (r *recordingSolver) Present(_ context.Context, domain, token, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.present[domain+"/"+token] = true
	return nil
}
func (r *recordingSolver) CleanUp(_ context.Context, domain, token, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.present, domain+"/"+token)
	return nil
}
func (r *recordingSolver) WaitPropagation(context.Context, string, string) error { return nil }

type oneSolverFactory struct {
	fakeSolvers
	s solvers.Solver
}

func (f *oneSolverFactory) Solver(context.Context, string, solvers.DNSConfig) (solvers.Solver, error) {
	return f.s, nil
}

func TestWALRollbackRemovesLeftoverRecord(t *testing.T) {
	b, s, _ := getTestBackend(t)
	setup(t, b, s)
	rec := &recordingSolver{present: map[string]bool{}}
	b.solvers = &oneSolverFactory{s: rec}
	w := b.walSolver("web", "ns", rec)
	ctx := context.Background()
	require.NoError(t, w.Present(ctx, "www.example.com", "tok1", "tok1.thumb"))
	require.NoError(t, w.Present(ctx, "example.com", "tok2", "tok2.thumb"))
	require.NoError(t, w.CleanUp(ctx, "example.com", "tok2", "tok2.thumb"))
	ids, err := framework.ListWAL(ctx, s)
	require.NoError(t, err)
	require.Len(t, ids, 1, "a cleaned-up record leaves no WAL entry")

	// A second backend instance (the plugin restarted after a kill) rolls the leftover back.
	b2, _, _ := getTestBackend(t)
	b2.storage, b2.solvers = s, &oneSolverFactory{s: rec}
	entry, err := framework.GetWAL(ctx, s, ids[0])
	require.NoError(t, err)
	require.NoError(t, b2.walRollback(ctx, &logical.Request{Storage: s}, entry.Kind, entry.Data))
	require.Empty(t, rec.present)

	// The same instance keeps the entry while the certificate's job runs.
	b.jobsMu.Lock()
	b.jobs["web"] = &job{done: make(chan struct{})}
	b.jobsMu.Unlock()
	require.Error(t, b.walRollback(ctx, &logical.Request{Storage: s}, entry.Kind, entry.Data))
	b.jobsMu.Lock()
	delete(b.jobs, "web")
	b.jobsMu.Unlock()
}

func TestScheduleRebuiltFromStorage(t *testing.T) {
	b, s, _ := getTestBackend(t)
	ctx := context.Background()
	for i := range 50 {
		c := &storage.CertEntry{Role: "web", Domains: []string{"www.example.com"}, Generation: 1, IssuedGeneration: 1, Certificate: "x",
			Status: storage.StatusValid, RenewAt: time.Now().Add(time.Duration(i-10) * time.Hour), NotAfter: time.Now().Add(1000 * time.Hour)}
		require.NoError(t, storage.StoreCert(ctx, s, fmt.Sprintf("team-%d/cert-%d", i%3, i), c))
	}
	require.NoError(t, b.loadSchedule(ctx, s))
	require.Len(t, b.sched.summaries(), 50)
	due := b.sched.popDue(time.Now())
	require.Len(t, due, 11, "renew_at at -10h … 0h are due")
}

// A failed renewal of a served certificate is retried within a tenth of its remaining life, so a
// retry after an outage never lands after expiry; once expired, within expiredRetryMax or a tenth
// of its life (not every minRetryDelay); the CA's Retry-After still wins.
func TestRetryDelayRacesTheClock(t *testing.T) {
	now := time.Now()
	served := func(life, left time.Duration) *storage.CertEntry {
		return &storage.CertEntry{Certificate: "x", NotBefore: now.Add(left - life), NotAfter: now.Add(left)}
	}
	cases := []struct {
		name     string
		c        *storage.CertEntry
		attempts int
		max, min time.Duration
	}{
		{"nothing served: plain backoff", &storage.CertEntry{}, 1, 66 * time.Second, 54 * time.Second},
		{"180 s certificate, 56 s left (the soak's case)", served(180*time.Second, 56*time.Second), 1, 5600 * time.Millisecond, 5 * time.Second},
		{"3 s left: the floor", served(180*time.Second, 3*time.Second), 1, minRetryDelay, minRetryDelay},
		{"90-day certificate, 30 days left, 5th failure: backoff", served(90*24*time.Hour, 30*24*time.Hour), 5, 18 * time.Minute, 14 * time.Minute},
		{"6-day certificate, 1 day left after a day-long outage", served(6*24*time.Hour, 24*time.Hour), 12, 24 * time.Hour / 10, 24*time.Hour/10 - time.Second},
		{"1 s left: the floor", served(90*24*time.Hour, time.Second), 30, minRetryDelay, minRetryDelay},
		{"180 s certificate expired 10 min ago, 300th failure: expiredRetryMin", served(180*time.Second, -10*time.Minute), 300, expiredRetryMin, expiredRetryMin},
		{"20-min certificate expired, 30th failure: a tenth of its life", served(20*time.Minute, -time.Minute), 30, 2 * time.Minute, 2 * time.Minute},
		{"90-day certificate expired an hour ago, 40th failure: expiredRetryMax", served(90*24*time.Hour, -time.Hour), 40, expiredRetryMax, expiredRetryMax},
		{"90-day certificate just expired, 1st failure: backoff", served(90*24*time.Hour, -time.Second), 1, 66 * time.Second, expiredRetryMin},
		{"expired, no start recorded: expiredRetryMax", &storage.CertEntry{Certificate: "x", NotAfter: now.Add(-time.Hour)}, 40, expiredRetryMax, expiredRetryMax},
		{"1 s certificate expired: expiredRetryMin", served(time.Second, -time.Minute), 40, expiredRetryMin, expiredRetryMin},
		{"60 s certificate expired, 1st failure: expiredRetryMin", served(time.Minute, -time.Second), 1, expiredRetryMin, expiredRetryMin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := retryDelay(tc.c, tc.attempts, now)
			require.LessOrEqual(t, d, tc.max)
			require.GreaterOrEqual(t, d, tc.min)
		})
	}
	// Recorded through the backend: the next attempt of a failing 3-minute certificate is seconds away.
	b, s, ca := getTestBackend(t)
	issueOne(t, b, s)
	c := loadCert(t, s, "web")
	c.NotBefore, c.NotAfter = now.Add(-124*time.Second), now.Add(56*time.Second)
	require.NoError(t, storage.StoreCert(context.Background(), s, "web", c))
	ca.fail = &acme.Error{Kind: acme.ErrUnreachable}
	b.recordFailure(context.Background(), "web", c, ca.fail)
	require.WithinDuration(t, now.Add(5600*time.Millisecond), loadCert(t, s, "web").NextAttemptAt, 700*time.Millisecond)
	// Retry-After wins over the clock.
	b.recordFailure(context.Background(), "web", loadCert(t, s, "web"), &acme.Error{Kind: acme.ErrRateLimited, RetryAfter: time.Minute})
	require.WithinDuration(t, time.Now().Add(time.Minute), loadCert(t, s, "web").NextAttemptAt, time.Second)
}

// A CA window reaching into the last third of the life (Pebble's short certificates get one
// spanning the whole life) yields a point before that third when the window leaves room; a
// window entirely in the last third keeps its point, but never in the last tenth.
func TestApplyWindowKeepsAThirdOfTheLife(t *testing.T) {
	now := time.Now().UTC()
	nb, na := now.Add(-time.Second), now.Add(180*time.Second-time.Second)
	life := na.Sub(nb)
	for range 200 {
		c := &storage.CertEntry{NotBefore: nb, NotAfter: na}
		require.Empty(t, applyWindow(c, &acme.RenewalWindow{Start: nb, End: na}, now))
		require.False(t, c.RenewAt.After(na.Add(-life/3)), "renew_at %s leaves less than a third", na.Sub(c.RenewAt))
		require.False(t, c.RenewAt.Before(now))
	}
	c := &storage.CertEntry{NotBefore: nb, NotAfter: na}
	require.Empty(t, applyWindow(c, &acme.RenewalWindow{Start: na.Add(-life / 4), End: na}, now))
	require.False(t, c.RenewAt.Before(na.Add(-life/4)), "inside the CA's window")
	require.False(t, c.RenewAt.After(na.Add(-life/10)), "never in the last tenth")
}

// Pebble gives short certificates a window spanning their whole life, and the plugin first asks
// for it a tenth of the life after issuance: the point is never in the past (which renewed at
// once: the soak's spurious orders with 85 % of the life left) and lies in the middle third.
func TestApplyWindowNoRenewalRightAfterIssuance(t *testing.T) {
	nb := time.Now().UTC().Add(-18 * time.Second)
	na := nb.Add(180 * time.Second)
	life := na.Sub(nb)
	now := nb.Add(18 * time.Second)
	for range 500 {
		c := &storage.CertEntry{NotBefore: nb, NotAfter: na}
		require.Empty(t, applyWindow(c, &acme.RenewalWindow{Start: nb, End: na}, now))
		require.False(t, c.RenewAt.Before(nb.Add(life/3)), "renew_at %s after issuance uses less than a third", c.RenewAt.Sub(nb))
		require.False(t, c.RenewAt.After(na.Add(-life/3)))
	}
	// Let's Encrypt-shaped window for 90 days: [60 d, 62 d] — drawn inside it, in the future.
	nb90 := now.Add(-59 * 24 * time.Hour)
	na90 := nb90.Add(90 * 24 * time.Hour)
	c := &storage.CertEntry{NotBefore: nb90, NotAfter: na90}
	w := &acme.RenewalWindow{Start: nb90.Add(60 * 24 * time.Hour), End: nb90.Add(62 * 24 * time.Hour)}
	require.Empty(t, applyWindow(c, w, now))
	require.False(t, c.RenewAt.Before(w.Start) || c.RenewAt.After(w.End))
	// A window wholly in the past (Pebble's answer for a revoked certificate) means now.
	c = &storage.CertEntry{NotBefore: nb, NotAfter: na}
	require.Empty(t, applyWindow(c, &acme.RenewalWindow{Start: now.Add(-time.Hour), End: now.Add(-time.Hour + time.Second)}, now))
	require.Equal(t, now, c.RenewAt)
	// An early window the CA asks for (inside the first third, e.g. before a mass revocation) is honoured.
	c = &storage.CertEntry{NotBefore: nb90, NotAfter: na90}
	early := &acme.RenewalWindow{Start: now.Add(time.Hour), End: now.Add(2 * time.Hour)}
	c.NotBefore = now.Add(-24 * time.Hour)
	require.Empty(t, applyWindow(c, early, now))
	require.False(t, c.RenewAt.Before(early.Start) || c.RenewAt.After(early.End), "inside the early window")
}

// A retry after a recorded failure is scheduled at its own next_attempt_at, even within
// minRedispatch of the dispatch that failed (the soak showed retries held to 10 s while a tenth of
// the remaining life was 6 s); anything else due again that soon waits for minRedispatch.
func TestRetryIsNotHeldByTheRedispatchFloor(t *testing.T) {
	b, s, _ := getTestBackend(t)
	issueOne(t, b, s)
	now := time.Now()
	c := loadCert(t, s, "web")
	c.NotBefore, c.NotAfter = now.Add(-124*time.Second), now.Add(56*time.Second)
	require.NoError(t, storage.StoreCert(context.Background(), s, "web", c))
	b.jobsMu.Lock()
	b.lastDispatch["web"] = now
	b.jobsMu.Unlock()
	b.recordFailure(context.Background(), "web", c, &acme.Error{Kind: acme.ErrUnreachable})
	b.reschedule(context.Background(), "web", true)
	next := loadCert(t, s, "web").NextAttemptAt
	due, ok := b.sched.next()
	require.True(t, ok)
	require.Equal(t, next, due, "scheduled at next_attempt_at")
	require.Less(t, due.Sub(now), minRedispatch, "sooner than the redispatch floor")

	// Without a failure, a certificate due again right after its dispatch waits for the floor.
	c = loadCert(t, s, "web")
	c.Attempts, c.NextAttemptAt, c.RenewAt = 0, time.Time{}, now
	require.NoError(t, storage.StoreCert(context.Background(), s, "web", c))
	b.reschedule(context.Background(), "web", true)
	due, _ = b.sched.next()
	require.Equal(t, now.Add(minRedispatch), due)
}

// A CA that refuses a renewal's order because of its "replaces" (Pebble cannot find the replaced
// certificate's order when its serial's DER has a leading zero; a CA may say it was replaced
// already) does not stall the renewal: it is ordered again at once without "replaces".
func TestRenewalOrdersWithoutReplacesWhenRefused(t *testing.T) {
	b, s, ca := getTestBackend(t)
	ca.window = &acme.RenewalWindow{Start: time.Now().Add(1000 * time.Hour), End: time.Now().Add(1001 * time.Hour)}
	first := issueOne(t, b, s)
	ca.refuseReplaces = true
	setRenewAt(t, s, "web", time.Now().Add(-time.Second))
	b.CertificateChanged("web")
	require.Equal(t, 1, b.dispatchDue(time.Now()))
	waitJobs(t, b, "web")
	c := loadCert(t, s, "web")
	require.NotEqual(t, first.SerialNumber, c.SerialNumber, "renewed")
	require.Zero(t, c.Attempts, "no failure recorded")
	ca.mu.Lock()
	defer ca.mu.Unlock()
	require.Len(t, ca.replaces, 3, "the first issuance, the refused order, the order without replaces")
	require.NotEmpty(t, ca.replaces[1])
	require.Empty(t, ca.replaces[2])
}

// An import asks the CA for the renewal window within importARISpread (or a fiftieth of a short
// life), at spread-out moments, with the renewal planned as for an issued certificate.
func TestPlanRenewalSpreadsImportARIChecks(t *testing.T) {
	b := &backend{}
	now := time.Now()
	for _, life := range []time.Duration{90 * 24 * time.Hour, 6 * 24 * time.Hour, 180 * time.Second, 0} {
		spread := min(importARISpread, life/50)
		seen := map[time.Time]bool{}
		for range 200 {
			c := storage.CertEntry{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(-time.Minute + life), ARIWindowStart: now}
			b.PlanRenewal(&c, now)
			require.False(t, c.ARICheckAt.Before(now), "life %s: ARI check %s before the import", life, c.ARICheckAt)
			require.False(t, c.ARICheckAt.After(now.Add(spread)), "life %s: ARI check %s later than %s after the import", life, c.ARICheckAt, spread)
			require.True(t, c.ARIWindowStart.IsZero())
			require.False(t, c.RenewAt.After(plannedRenewal(c.NotBefore, c.NotAfter)))
			seen[c.ARICheckAt] = true
		}
		if spread > time.Second {
			require.Greater(t, len(seen), 100, "life %s: 200 imports' ARI checks at only %d moments", life, len(seen))
		}
	}
}
