package backend

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/helper/certutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// Backoff after failed attempts: doubling from a minute, capped at a day (Let's Encrypt's advice
// for clients that fail repeatedly).
const (
	backoffBase = time.Minute
	backoffMax  = 24 * time.Hour
)

// job is one issuance in flight for one certificate name. done closes when it ends; cancel stops
// it (the certificate was deleted).
type job struct {
	done   chan struct{}
	cancel context.CancelFunc
	err    error
}

// startJob returns the job in flight for name, or starts one. At most one job per name runs at a
// time, and at most Options.Workers jobs run at once, shared fairly between roles (fairSlots).
func (b *backend) startJob(name string) *job {
	b.jobsMu.Lock()
	defer b.jobsMu.Unlock()
	if j := b.jobs[name]; j != nil {
		return j
	}
	ctx, cancel := context.WithCancel(b.ctx)
	j := &job{done: make(chan struct{}), cancel: cancel}
	b.jobs[name] = j
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer cancel()
		defer func() {
			// Leave the map first: a write that lands meanwhile then schedules for itself, and
			// the reload below cannot be overtaken by one that saw this job still running.
			b.jobsMu.Lock()
			delete(b.jobs, name)
			b.jobsMu.Unlock()
			b.reschedule(context.WithoutCancel(b.ctx), name, true)
			close(j.done)
		}()
		// Workers are shared fairly between roles (fairSlots): the job queues under its role.
		role := ""
		if c, err := storage.LoadCert(ctx, b.storage, name); err == nil && c != nil {
			role = c.Role
		}
		release, err := b.workers.acquire(ctx, role, func(string) { b.waiting.Store(name, waitState{queuedRole: role}) })
		b.waiting.Delete(name)
		if err != nil {
			j.err = err
			return
		}
		defer release()
		j.err = b.issue(ctx, name)
	}()
	return j
}

// cancelJob stops the job in flight for name, if any: its certificate is gone. The job cleans up
// its DNS records and discards its result (storeIssued finds no entry).
func (b *backend) cancelJob(name string) {
	b.jobsMu.Lock()
	defer b.jobsMu.Unlock()
	if j := b.jobs[name]; j != nil {
		j.cancel()
	}
}

// inFlight reports whether a job for name is running.
func (b *backend) inFlight(name string) bool {
	b.jobsMu.Lock()
	defer b.jobsMu.Unlock()
	return b.jobs[name] != nil
}

// EnsureCertificate starts issuance of the named certificate unless it is current, a job is in
// flight, or a failed attempt's backoff has not passed; then waits up to wait for the job.
func (b *backend) EnsureCertificate(ctx context.Context, name string, wait time.Duration) (*storage.CertEntry, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := storage.LoadCert(ctx, b.storage, name)
		if err != nil || c == nil || c.Current() {
			return c, err
		}
		if decide(c, time.Now()) == actNone && !b.inFlight(name) {
			return c, nil
		}
		if !b.budget.deferredUntil(name, time.Now()).IsZero() && !b.inFlight(name) {
			return c, nil // waiting for the order budget: the scheduler starts it when there is room
		}
		j := b.startJob(name)
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return c, nil
		}
		t := time.NewTimer(remaining)
		select {
		case <-j.done:
			t.Stop()
			if j.err != nil {
				return storage.LoadCert(ctx, b.storage, name)
			}
		case <-t.C:
			return storage.LoadCert(ctx, b.storage, name)
		case <-ctx.Done():
			t.Stop()
			return storage.LoadCert(context.WithoutCancel(ctx), b.storage, name)
		}
	}
}

// CertificateChanged is called after a certificate entry was written or deleted: the schedule
// reloads it.
func (b *backend) CertificateChanged(name string) { b.refresh(b.ctx, name) }

// issuePlan is everything one attempt needs, loaded and checked.
type issuePlan struct {
	cert    *storage.CertEntry
	role    *storage.RoleEntry
	account *storage.AccountEntry
	dns     *storage.DNSConfigEntry
}

// Event types sent on Vault's event bus.
const (
	eventIssued  = "letsencrypt/certificate-issued"
	eventRenewed = "letsencrypt/certificate-renewed"
	eventFailed  = "letsencrypt/certificate-failed"
)

// issue runs one job for the named certificate: check again what it needs (issue, renew, fetch the
// renewal window or nothing), resolve its role, account and DNS configuration, order, and store
// the result or the failure.
func (b *backend) issue(ctx context.Context, name string) error {
	log := b.logger.Named("issue").With("cert", name)
	c, err := storage.LoadCert(ctx, b.storage, name)
	if err != nil || c == nil {
		return err
	}
	act := decide(c, time.Now())
	if act == actNone {
		return nil
	}
	p, err := b.plan(ctx, name, c)
	if err != nil {
		b.recordFailure(ctx, name, c, err)
		return err
	}
	if act == actARI {
		due, err := b.checkARI(ctx, name, p)
		if err != nil || !due {
			return err
		}
		act = actRenew
	}
	log.Info("attempt starts", attemptLogArgs(p.cert, act, time.Now())...)
	renewing := act == actRenew
	start := time.Now()
	issued, key, supportsARI, err := b.obtain(ctx, name, p, renewing)
	var wait *errBudgetWait
	if errors.As(err, &wait) {
		// Not a failure: the order waits for the account's budget.
		b.counters.budgetWaits.Add(1)
		b.budget.deferName(name, wait, time.Now())
		b.waiting.Store(name, waitState{budget: budgetWaitReason(p.role.Account, wait)})
		log.Info("waiting for the order budget", "until", wait.until.UTC().Format(time.RFC3339), "limit", wait.why)
		return nil
	}
	if err == nil {
		if err = b.storeIssued(ctx, name, p.cert, issued, key, supportsARI); err != nil {
			err = fmt.Errorf("storing the issued certificate: %w", err)
		}
	}
	if err != nil {
		if ctx.Err() == nil { // not stopped by a deletion or shutdown
			b.counters.ordersFailed.Add(1)
		}
		b.recordFailure(ctx, name, p.cert, err, "renewal", renewing, "duration", time.Since(start).Round(time.Millisecond).String())
		return err
	}
	b.counters.ordersIssued.Add(1)
	ev := eventIssued
	if renewing {
		ev = eventRenewed
	}
	b.certEvent(ctx, ev, name, true)
	log.Info("certificate stored", "renewal", renewing, "domains", strings.Join(p.cert.Domains, ","), "duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// attemptLogArgs says why an attempt for c starts and how much of the served certificate's life
// is left, for the log: every order can be explained from it.
func attemptLogArgs(c *storage.CertEntry, act action, now time.Time) []any {
	var why string
	switch {
	case c.ForceRenewal:
		why = "forced renewal"
	case c.Attempts > 0:
		why = fmt.Sprintf("retry after %d failed attempt(s)", c.Attempts)
	case act == actIssue && c.Certificate == "":
		why = "new certificate"
	case act == actIssue:
		why = "changed specification"
	case !c.ARIWindowStart.IsZero():
		why = "renewal at the point drawn from the CA's ARI window"
	default:
		why = "planned renewal"
	}
	args := []any{"reason", why}
	if c.Certificate != "" && c.NotAfter.After(c.NotBefore) {
		left := c.NotAfter.Sub(now)
		args = append(args, "life_left", left.Round(time.Second).String(),
			"life_left_fraction", fmt.Sprintf("%.3f", float64(left)/float64(c.NotAfter.Sub(c.NotBefore))))
	}
	if !c.RenewAt.IsZero() {
		args = append(args, "renew_at", c.RenewAt.UTC().Format(time.RFC3339))
	}
	return args
}

// errPlan marks failures found before talking to the CA (a role or account gone, a name no longer
// allowed).
var errPlan = errors.New("cannot issue")

// plan loads and checks what an attempt for c needs: the role must still allow the certificate's
// name and domains, and its account and DNS configuration must exist and cover the domains.
func (b *backend) plan(ctx context.Context, name string, c *storage.CertEntry) (*issuePlan, error) {
	p := &issuePlan{cert: c}
	var err error
	if p.role, err = storage.LoadRole(ctx, b.storage, c.Role); err != nil {
		return nil, err
	}
	if p.role == nil {
		return nil, fmt.Errorf("%w: role %q no longer exists", errPlan, c.Role)
	}
	if !p.role.AllowsCertName(name) {
		return nil, fmt.Errorf("%w: role %q no longer allows certificate name %q", errPlan, c.Role, name)
	}
	for _, d := range c.Domains {
		if !p.role.AllowsIdentifier(d) {
			return nil, fmt.Errorf("%w: role %q no longer allows %q", errPlan, c.Role, d)
		}
	}
	if !p.role.AllowsKeyType(c.KeyType) {
		return nil, fmt.Errorf("%w: role %q no longer allows key type %q", errPlan, c.Role, c.KeyType)
	}
	if !p.role.AllowsProfile(c.Profile) {
		return nil, fmt.Errorf("%w: role %q no longer allows profile %q", errPlan, c.Role, c.Profile)
	}
	if p.account, err = b.loadAccount(ctx, p.role.Account); err != nil {
		return nil, err
	}
	if p.account == nil {
		return nil, fmt.Errorf("%w: account %q of role %q no longer exists", errPlan, p.role.Account, c.Role)
	}
	if p.account.Status == storage.AccountStatusDeactivated {
		return nil, fmt.Errorf("%w: account %q of role %q is deactivated at its CA: point the role at another account", errPlan, p.role.Account, c.Role)
	}
	if !p.role.AllowsChallenge(c.ChallengeType()) {
		return nil, fmt.Errorf("%w: role %q no longer allows the %s challenge", errPlan, c.Role, c.ChallengeType())
	}
	if c.ChallengeType() == storage.ChallengeHTTP01 {
		return p, nil
	}
	if p.dns, err = storage.LoadDNSConfig(ctx, b.storage, p.role.DNS); err != nil {
		return nil, err
	}
	if p.dns == nil {
		return nil, fmt.Errorf("%w: DNS configuration %q of role %q no longer exists", errPlan, p.role.DNS, c.Role)
	}
	for _, d := range c.Domains {
		if !p.dns.Covers(d) {
			return nil, fmt.Errorf("%w: %q is outside the zones and delegated domains of DNS configuration %q", errPlan, d, p.role.DNS)
		}
	}
	return p, nil
}

// obtain orders the certificate, resuming a recorded order of the same generation if there is one.
// A renewal names the certificate it replaces (ARI) when the CA supports it.
func (b *backend) obtain(ctx context.Context, name string, p *issuePlan, renewing bool) (*acme.Certificate, crypto.Signer, bool, error) {
	client, err := b.accountClient(p.role.Account, p.account)
	if err != nil {
		return nil, nil, false, err
	}
	gen := p.cert.Generation
	req := acme.OrderRequest{
		Domains:        p.cert.Domains,
		Profile:        p.cert.Profile,
		Challenge:      p.cert.ChallengeType(),
		PreferredChain: p.role.PreferredChain,
	}
	if req.Challenge == storage.ChallengeHTTP01 {
		req.HTTPSolver = &httpSolver{b: b, cert: name}
	} else {
		solver, err := b.solvers.Solver(ctx, p.role.DNS, solverConfig(p.dns))
		if err != nil {
			return nil, nil, false, err
		}
		req.Solver = b.walSolver(name, p.role.DNS, solver)
	}
	var key crypto.Signer
	if rec, err := storage.LoadOrder(ctx, b.storage, name); err != nil {
		return nil, nil, false, err
	} else if rec != nil && rec.Generation == gen && slices.Equal(rec.Domains, p.cert.Domains) {
		if p.cert.CSR != "" {
			req.ResumeOrderURL = rec.OrderURL
		} else if k, err := acme.ParseKey(rec.PrivateKey); err == nil {
			key, req.ResumeOrderURL = k, rec.OrderURL
		}
	}
	keyPEM := ""
	if p.cert.CSR != "" {
		// The certificate is defined by its CSR: sent as it is, no key made or stored.
		csr, err := acme.ParseCSR(p.cert.CSR)
		if err != nil {
			return nil, nil, false, err
		}
		req.CSR = csr.DER
	} else {
		if key == nil {
			kt, err := acme.ParseKeyType(p.cert.KeyType)
			if err != nil {
				return nil, nil, false, err
			}
			if key, err = kt.Generate(); err != nil {
				return nil, nil, false, err
			}
		}
		if keyPEM, err = acme.EncodeKey(key); err != nil {
			return nil, nil, false, err
		}
		if req.CSR, err = acme.CreateCSR(key, p.cert.Domains); err != nil {
			return nil, nil, false, err
		}
	}
	resume := req.ResumeOrderURL
	req.OnOrder = func(orderURL string) error {
		// Record the order before any challenge or finalization, so a crash resumes it.
		return storage.StoreOrder(ctx, b.storage, name, &storage.OrderEntry{
			OrderURL: orderURL, Generation: gen, PrivateKey: keyPEM, Domains: p.cert.Domains, CreatedAt: time.Now().UTC(),
		})
	}
	supportsARI := client.SupportsRenewalInfo()
	if renewing && supportsARI && p.cert.Certificate != "" {
		if leaf, err := p.cert.Leaf(); err == nil {
			req.ReplacesCertID, _ = acme.ARICertID(leaf)
		}
	}
	if resume != "" {
		// The order exists: it was counted when it was placed.
		cert, err := client.Obtain(ctx, req, b.poll)
		return cert, key, supportsARI, err
	}
	now := time.Now()
	ari := req.ReplacesCertID != "" && !p.cert.ARIWindowStart.IsZero() && !now.Before(p.cert.ARIWindowStart)
	breq := budgetRequest(p, renewing, ari)
	if err := b.reserve(p, breq); err != nil {
		return nil, nil, false, err
	}
	placed := false
	onOrder := req.OnOrder
	req.OnOrder = func(orderURL string) error {
		placed = true
		return onOrder(orderURL)
	}
	cert, err := client.Obtain(ctx, req, b.poll)
	if err != nil && !placed && req.ReplacesCertID != "" && ctx.Err() == nil && refusedReplaces(err) {
		// The CA refused the new order that names the certificate it replaces (it may have
		// replaced it already, or not know its order: Pebble loses it for serials whose DER has
		// a leading zero). The renewal must not hang on that: order again without "replaces",
		// which is then an ordinary order for the budget.
		b.logger.Named("issue").Warn("the CA refused the order naming the certificate it replaces; ordering without it",
			"cert", name, "error", err)
		b.settle(p, breq, false, nil)
		breq.ARI, req.ReplacesCertID = false, ""
		if err := b.reserve(p, breq); err != nil {
			b.saveBudget(context.WithoutCancel(ctx))
			return nil, nil, false, err
		}
		cert, err = client.Obtain(ctx, req, b.poll)
	}
	b.settle(p, breq, placed, err)
	b.saveBudget(context.WithoutCancel(ctx))
	if err != nil {
		return nil, nil, false, err
	}
	return cert, key, supportsARI, nil
}

// refusedReplaces reports whether err is the CA's answer (a problem document) refusing a new
// order, other than a rate limit: what a CA says when it will not take the order's "replaces".
func refusedReplaces(err error) bool {
	var ae *acme.Error
	return errors.As(err, &ae) && ae.ProblemType != "" && !errors.Is(err, acme.ErrRateLimited)
}

// storeIssued parses the CA's certificate, checks it against the key, and stores it with its
// renewal plan, unless the certificate was deleted (and perhaps written anew) or its
// specification changed since spec was loaded. The
// order record goes last: a crash between the two writes leaves a record that the next attempt
// finds already served (the entry is current), and it is then removed.
func (b *backend) storeIssued(ctx context.Context, name string, spec *storage.CertEntry, issued *acme.Certificate, key crypto.Signer, supportsARI bool) error {
	leaf, chain, err := parseIssued(issued)
	if err != nil {
		return err
	}
	var pub crypto.PublicKey
	keyPEM, source := "", storage.KeySourceVault
	if key != nil {
		pub = key.Public()
		if keyPEM, err = acme.EncodeKey(key); err != nil {
			return err
		}
	} else {
		csr, err := acme.ParseCSR(spec.CSR)
		if err != nil {
			return fmt.Errorf("the certificate's CSR: %w", err)
		}
		pub, source = csr.PublicKey, storage.KeySourceCSR
	}
	if same, err := certutil.ComparePublicKeysAndType(leaf.PublicKey, pub); err != nil || !same {
		return errors.New("the CA's certificate does not match the requested key")
	}
	lock := b.locks.Cert(name)
	lock.Lock()
	defer lock.Unlock()
	c, err := storage.LoadCert(ctx, b.storage, name)
	if err != nil {
		return err
	}
	if c == nil || !c.SameSpec(spec) {
		b.logger.Named("issue").Info("certificate changed while it was being issued; result discarded", "cert", name)
		return storage.DeleteOrder(ctx, b.storage, name)
	}
	gen := spec.Generation
	now := time.Now().UTC()
	if c.Certificate != "" && c.IssuedGeneration == gen {
		c.Renewals++
		if !c.RenewAt.IsZero() && c.RenewAt.Before(plannedRenewal(c.NotBefore, c.NotAfter).Add(-c.NotAfter.Sub(c.NotBefore)/20)) {
			c.LastEarlyRenewal = now
		}
	}
	c.Certificate = string(issued.CertificatePEM)
	c.Chain = chain
	c.PrivateKey, c.KeySource = keyPEM, source
	c.SerialNumber = certutil.GetHexFormatted(leaf.SerialNumber.Bytes(), ":") // as Vault PKI shows it
	c.NotBefore, c.NotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	c.IssuedAt, c.IssuedGeneration = now, gen
	c.OrderURL, c.CertURL = issued.OrderURL, issued.CertURL
	c.Status, c.LastError, c.Attempts, c.NextAttemptAt, c.UpdatedAt = storage.StatusValid, "", 0, time.Time{}, now
	c.ForceRenewal = false
	c.RenewAt = jitteredRenewal(c.NotBefore, c.NotAfter)
	c.ARIWindowStart, c.ARIWindowEnd, c.ARICheckAt = time.Time{}, time.Time{}, time.Time{}
	if supportsARI {
		life := c.NotAfter.Sub(c.NotBefore)
		c.ARICheckAt = now.Add(min(ariInterval(0, life), time.Hour))
	}
	if err := storage.StoreCert(ctx, b.storage, name, c); err != nil {
		return err
	}
	return storage.DeleteOrder(ctx, b.storage, name)
}

// recordFailure logs a failed attempt under a new reference and stores, with its backoff (the CA's
// Retry-After when longer), a summary that names the reference (failureSummary) — unless the entry
// is no longer the one spec was loaded from. An attempt stopped because its certificate was
// deleted or the mount is shutting down (ctx cancelled) is not a failure.
func (b *backend) recordFailure(ctx context.Context, name string, spec *storage.CertEntry, cause error, logArgs ...any) {
	if ctx.Err() != nil {
		return
	}
	b.counters.failure(cause)
	ref := newFailureRef()
	b.logger.Named("issue").Warn("attempt failed", append([]any{"cert", name, "ref", ref, "error", cause}, logArgs...)...)
	ctx = context.WithoutCancel(ctx)
	lock := b.locks.Cert(name)
	lock.Lock()
	defer lock.Unlock()
	c, err := storage.LoadCert(ctx, b.storage, name)
	if err != nil || c == nil || !c.SameSpec(spec) {
		return
	}
	now := time.Now().UTC()
	c.Attempts++
	delay := retryDelay(c, c.Attempts, now)
	if d, ok := acme.RetryAfter(cause); ok && d > 0 && (d > delay || errors.Is(cause, acme.ErrRateLimited)) {
		// The CA's word wins, even against the clock; after a rateLimited answer it is the whole
		// story (the account is held until then, nothing to back off from).
		delay = d
	}
	if !c.Current() {
		// A certificate that is still served stays valid; last_error and attempts tell of the
		// failing renewal.
		c.Status = storage.StatusFailed
	}
	c.LastError = failureSummary(cause, ref)
	c.NextAttemptAt, c.UpdatedAt = now.Add(delay), now
	c.ForceRenewal = false
	if err := storage.StoreCert(ctx, b.storage, name, c); err != nil {
		b.logger.Named("issue").Error("recording a failed attempt failed", "cert", name, "error", err)
		return
	}
	b.certEvent(ctx, eventFailed, name, false, "attempts", strconv.Itoa(c.Attempts), "retry_at", c.NextAttemptAt.Format(time.RFC3339))
}

// Retries of a served certificate's renewal race its expiry: the delay after a failure is never
// more than a tenth of the remaining life, and never under minRetryDelay. Once the certificate has
// expired the race is lost and retries slow down again, to at most expiredRetryMax (or a tenth of
// the certificate's life, if shorter) and never under expiredRetryMin (a tenant's imported
// certificate may claim a life of seconds: a hundred of them would otherwise fail every few
// seconds each for as long as the CA is away).
const (
	retryLifeFraction = 10
	minRetryDelay     = 2 * time.Second
	expiredRetryMax   = 5 * time.Minute
	expiredRetryMin   = time.Minute
)

// retryDelay is the delay after the n-th consecutive failed attempt for c at now: the doubling
// backoff, cut to a tenth of the time the served certificate has left, so that a retry after an
// outage never lands after expiry (a 6-day certificate renewed with 2 days left still retries
// every few hours at the end of a day-long outage; a 3-minute one every few seconds). After
// expiry the backoff is cut to expiredRetryMax or a tenth of the certificate's life instead:
// retrying every minRetryDelay for as long as a fault lasts would only hammer the CA and the DNS
// provider (and spend the CA's failed-validation limit), while a retry every few minutes still
// brings the certificate back soon after the fault ends.
func retryDelay(c *storage.CertEntry, n int, now time.Time) time.Duration {
	d := backoff(n)
	if c.Certificate == "" || c.NotAfter.IsZero() {
		return d
	}
	left := c.NotAfter.Sub(now)
	if left > 0 {
		return max(min(d, left/retryLifeFraction), minRetryDelay)
	}
	limit := expiredRetryMax
	if life := c.NotAfter.Sub(c.NotBefore); life > 0 {
		limit = min(limit, life/retryLifeFraction)
	}
	return max(min(d, limit), expiredRetryMin)
}

// backoff is the delay after the n-th consecutive failure, with ±10% jitter.
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// parseIssued returns the leaf and the issuer chain as separate PEM blocks. certutil checks that
// the chain links (each certificate signed by the next).
func parseIssued(issued *acme.Certificate) (*x509.Certificate, []string, error) {
	bundle, err := certutil.ParsePEMBundle(string(issued.CertificatePEM) + "\n" + string(issued.IssuerPEM))
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	if bundle.Certificate == nil || bundle.PrivateKey != nil {
		return nil, nil, errors.New("the CA returned no PEM certificate")
	}
	chain := make([]string, 0, len(bundle.CAChain))
	for _, ca := range bundle.CAChain {
		chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Bytes})))
	}
	return bundle.Certificate, chain, nil
}

// RenewCertificate runs a job for the named certificate (marked ForceRenewal by the caller) and
// waits up to wait for it to end.
func (b *backend) RenewCertificate(ctx context.Context, name string, wait time.Duration) (*storage.CertEntry, error) {
	if !b.WriteSafe() {
		return nil, logical.ErrReadOnly
	}
	j := b.startJob(name)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-j.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return storage.LoadCert(context.WithoutCancel(ctx), b.storage, name)
}

// RevokeCertificate revokes c's current certificate at the CA of its role's account.
func (b *backend) RevokeCertificate(ctx context.Context, name string, c *storage.CertEntry, reason uint) error {
	role, err := storage.LoadRole(ctx, b.storage, c.Role)
	if err != nil {
		return err
	}
	if role == nil {
		return fmt.Errorf("%w: role %q no longer exists, so its account is unknown", errPlan, c.Role)
	}
	acct, err := storage.LoadAccount(ctx, b.storage, role.Account)
	if err != nil {
		return err
	}
	if acct == nil {
		return fmt.Errorf("%w: account %q of role %q no longer exists", errPlan, role.Account, c.Role)
	}
	client, err := b.accountClient(role.Account, acct)
	if err != nil {
		return err
	}
	leaf, err := c.Leaf()
	if err != nil {
		return err
	}
	if err := client.Revoke(ctx, leaf.Raw, reason); err != nil {
		return err
	}
	b.logger.Named("revoke").Info("certificate revoked", "cert", name, "serial_number", c.SerialNumber, "reason", reason)
	return nil
}
