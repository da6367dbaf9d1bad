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
	"strings"
	"time"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/paths"
)

// Backoff after failed attempts: doubling from a minute, capped at a day (Let's Encrypt's advice
// for clients that fail repeatedly).
const (
	backoffBase = time.Minute
	backoffMax  = 24 * time.Hour
)

// job is one issuance in flight for one certificate name. done closes when it ends.
type job struct {
	done chan struct{}
	err  error
}

// startJob returns the job in flight for name, or starts one. At most one job per name runs at a
// time, and at most cap(b.slots) jobs run at once.
func (b *backend) startJob(name string) *job {
	b.jobsMu.Lock()
	defer b.jobsMu.Unlock()
	if j := b.jobs[name]; j != nil {
		return j
	}
	j := &job{done: make(chan struct{})}
	b.jobs[name] = j
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			b.jobsMu.Lock()
			delete(b.jobs, name)
			b.jobsMu.Unlock()
			close(j.done)
		}()
		select {
		case b.slots <- struct{}{}:
		case <-b.ctx.Done():
			j.err = b.ctx.Err()
			return
		}
		defer func() { <-b.slots }()
		j.err = b.issue(b.ctx, name)
	}()
	return j
}

// inFlight reports whether a job for name is running.
func (b *backend) inFlight(name string) bool {
	b.jobsMu.Lock()
	defer b.jobsMu.Unlock()
	return b.jobs[name] != nil
}

// EnsureCertificate starts issuance of the named certificate unless it is current, a job is in
// flight, or a failed attempt's backoff has not passed; then waits up to wait for the job.
func (b *backend) EnsureCertificate(ctx context.Context, name string, wait time.Duration) (*paths.CertEntry, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := paths.LoadCert(ctx, b.storage, name)
		if err != nil || c == nil || c.Current() {
			return c, err
		}
		if c.Status == paths.StatusFailed && time.Now().Before(c.NextAttemptAt) && !b.inFlight(name) {
			return c, nil
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
				return paths.LoadCert(ctx, b.storage, name)
			}
		case <-t.C:
			return paths.LoadCert(ctx, b.storage, name)
		case <-ctx.Done():
			t.Stop()
			return paths.LoadCert(context.WithoutCancel(ctx), b.storage, name)
		}
	}
}

// CertificateChanged is called after a certificate entry was written or deleted.
func (b *backend) CertificateChanged(name string) {}

// issuePlan is everything one attempt needs, loaded and checked.
type issuePlan struct {
	cert    *paths.CertEntry
	role    *paths.RoleEntry
	account *paths.AccountEntry
	dns     *paths.DNSConfigEntry
}

// issue runs one attempt for the named certificate: check again that it needs issuing, resolve its
// role, account and DNS configuration, order, and store the result or the failure.
func (b *backend) issue(ctx context.Context, name string) error {
	log := b.logger.Named("issue").With("cert", name)
	plan, err := b.plan(ctx, name)
	if err != nil || plan == nil {
		if err != nil {
			b.recordFailure(ctx, name, -1, err)
		}
		return err
	}
	gen := plan.cert.Generation
	start := time.Now()
	issued, key, err := b.obtain(ctx, name, plan)
	if err != nil {
		log.Warn("issuance failed", "error", err, "duration", time.Since(start).Round(time.Millisecond))
		b.recordFailure(ctx, name, gen, err)
		return err
	}
	if err := b.storeIssued(ctx, name, gen, issued, key); err != nil {
		log.Error("storing the issued certificate failed", "error", err)
		b.recordFailure(ctx, name, gen, err)
		return err
	}
	log.Info("certificate issued", "domains", strings.Join(plan.cert.Domains, ","), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// errPlan marks failures found before talking to the CA (a role or account gone, a name no longer
// allowed).
var errPlan = errors.New("cannot issue")

// plan loads and checks what an attempt needs. It returns nil, nil when nothing is to be done.
func (b *backend) plan(ctx context.Context, name string) (*issuePlan, error) {
	c, err := paths.LoadCert(ctx, b.storage, name)
	if err != nil || c == nil || c.Current() {
		return nil, err
	}
	p := &issuePlan{cert: c}
	if p.role, err = paths.LoadRole(ctx, b.storage, c.Role); err != nil {
		return nil, err
	}
	if p.role == nil {
		return nil, fmt.Errorf("%w: role %q no longer exists", errPlan, c.Role)
	}
	if !p.role.AllowsCertName(name) {
		return nil, fmt.Errorf("%w: role %q no longer allows certificate name %q", errPlan, c.Role, name)
	}
	for _, d := range c.Domains {
		if !p.role.AllowsDomain(d) {
			return nil, fmt.Errorf("%w: role %q no longer allows %q", errPlan, c.Role, d)
		}
	}
	if p.account, err = paths.LoadAccount(ctx, b.storage, p.role.Account); err != nil {
		return nil, err
	}
	if p.account == nil {
		return nil, fmt.Errorf("%w: account %q of role %q no longer exists", errPlan, p.role.Account, c.Role)
	}
	if p.dns, err = paths.LoadDNSConfig(ctx, b.storage, p.role.DNS); err != nil {
		return nil, err
	}
	if p.dns == nil {
		return nil, fmt.Errorf("%w: DNS configuration %q of role %q no longer exists", errPlan, p.role.DNS, c.Role)
	}
	for _, d := range c.Domains {
		if !p.dns.Covers(d) {
			return nil, fmt.Errorf("%w: %q is outside the zones of DNS configuration %q", errPlan, d, p.role.DNS)
		}
	}
	return p, nil
}

// obtain orders the certificate, resuming a recorded order of the same generation if there is one.
func (b *backend) obtain(ctx context.Context, name string, p *issuePlan) (*acme.Certificate, crypto.Signer, error) {
	client, err := b.accountClient(p.role.Account, p.account)
	if err != nil {
		return nil, nil, err
	}
	solver, err := b.solvers.Solver(ctx, p.role.DNS, p.dns.SolverConfig())
	if err != nil {
		return nil, nil, err
	}
	gen := p.cert.Generation
	var key crypto.Signer
	resume := ""
	if rec, err := loadOrder(ctx, b.storage, name); err != nil {
		return nil, nil, err
	} else if rec != nil && rec.Generation == gen && slices.Equal(rec.Domains, p.cert.Domains) {
		if k, err := acme.ParseKey(rec.PrivateKey); err == nil {
			key, resume = k, rec.OrderURL
		}
	}
	if key == nil {
		kt, err := acme.ParseKeyType(p.cert.KeyType)
		if err != nil {
			return nil, nil, err
		}
		if key, err = kt.Generate(); err != nil {
			return nil, nil, err
		}
	}
	keyPEM, err := acme.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	csr, err := acme.CreateCSR(key, p.cert.Domains)
	if err != nil {
		return nil, nil, err
	}
	cert, err := client.Obtain(ctx, acme.OrderRequest{
		Domains:        p.cert.Domains,
		CSR:            csr,
		ResumeOrderURL: resume,
		Solver:         solver,
		OnOrder: func(orderURL string) error {
			// Record the order before any challenge or finalization, so a crash resumes it.
			return storeOrder(ctx, b.storage, name, &orderRecord{
				OrderURL: orderURL, Generation: gen, PrivateKey: keyPEM, Domains: p.cert.Domains, CreatedAt: time.Now().UTC(),
			})
		},
	}, b.poll)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// storeIssued parses the CA's certificate, checks it against the key, and stores it, unless the
// certificate was deleted or its specification changed meanwhile. The order record goes last: a
// crash between the two writes leaves a record that the next attempt finds already served.
func (b *backend) storeIssued(ctx context.Context, name string, gen int64, issued *acme.Certificate, key crypto.Signer) error {
	leaf, chain, err := parseIssued(issued)
	if err != nil {
		return err
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return errors.New("the CA's certificate does not match the requested key")
	}
	keyPEM, err := acme.EncodeKey(key)
	if err != nil {
		return err
	}
	lock := paths.CertLock(name)
	lock.Lock()
	defer lock.Unlock()
	c, err := paths.LoadCert(ctx, b.storage, name)
	if err != nil {
		return err
	}
	if c == nil || c.Generation != gen {
		b.logger.Named("issue").Info("certificate changed while it was being issued; result discarded", "cert", name)
		return deleteOrder(ctx, b.storage, name)
	}
	now := time.Now().UTC()
	c.Certificate = string(issued.CertificatePEM)
	c.Chain = chain
	c.PrivateKey = keyPEM
	c.SerialNumber = formatSerial(leaf.SerialNumber.Bytes())
	c.NotBefore, c.NotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	c.IssuedAt, c.IssuedGeneration = now, gen
	c.OrderURL, c.CertURL = issued.OrderURL, issued.CertURL
	c.Status, c.LastError, c.Attempts, c.NextAttemptAt, c.UpdatedAt = paths.StatusValid, "", 0, time.Time{}, now
	if err := paths.StoreCert(ctx, b.storage, name, c); err != nil {
		return err
	}
	return deleteOrder(ctx, b.storage, name)
}

// recordFailure stores a failed attempt with its backoff. gen -1 means "whatever generation is
// stored" (failures found before the attempt had one).
func (b *backend) recordFailure(ctx context.Context, name string, gen int64, cause error) {
	ctx = context.WithoutCancel(ctx)
	lock := paths.CertLock(name)
	lock.Lock()
	defer lock.Unlock()
	c, err := paths.LoadCert(ctx, b.storage, name)
	if err != nil || c == nil || (gen >= 0 && c.Generation != gen) {
		return
	}
	now := time.Now().UTC()
	c.Attempts++
	delay := backoff(c.Attempts)
	if d, ok := acme.RetryAfter(cause); ok && d > delay {
		delay = d
	}
	c.Status, c.LastError = paths.StatusFailed, cause.Error()
	c.NextAttemptAt, c.UpdatedAt = now.Add(delay), now
	if err := paths.StoreCert(ctx, b.storage, name, c); err != nil {
		b.logger.Named("issue").Error("recording a failed attempt failed", "cert", name, "error", err)
	}
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

// parseIssued returns the leaf and the issuer chain as separate PEM blocks.
func parseIssued(issued *acme.Certificate) (*x509.Certificate, []string, error) {
	block, _ := pem.Decode(issued.CertificatePEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, errors.New("the CA returned no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the CA's certificate: %w", err)
	}
	var chain []string
	rest := issued.IssuerPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, string(pem.EncodeToMemory(b)))
		}
	}
	return leaf, chain, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// formatSerial renders a serial number as Vault PKI does: lower-case hex pairs joined by colons.
func formatSerial(b []byte) string {
	if len(b) == 0 {
		return "00"
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}
