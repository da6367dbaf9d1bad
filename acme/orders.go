package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"golang.org/x/sync/errgroup"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers"
)

// OrderRequest asks for one certificate.
type OrderRequest struct {
	// Domains are canonical DNS names; the first is the subject.
	Domains []string
	// CSR is the DER certificate request for Domains.
	CSR []byte
	// Profile selects a CA certificate profile (draft-ietf-acme-profiles), empty for the default.
	Profile string
	// ReplacesCertID is the ARI certificate ID of the certificate being renewed, if any.
	ReplacesCertID string
	// ResumeOrderURL continues an order created earlier (after a crash) instead of creating one.
	ResumeOrderURL string
	// OnOrder is called with the order URL as soon as the order exists and before any challenge
	// or finalization, so the caller can persist it. An error aborts the issuance.
	OnOrder func(orderURL string) error
	// Challenge is the challenge type that proves the identifiers: ChallengeDNS01 (the default
	// when empty) or ChallengeHTTP01.
	Challenge string
	// Solver answers the DNS-01 challenges. It is given each authorization's identifier (a
	// wildcard name's base, without "*.").
	Solver solvers.Solver
	// HTTPSolver answers the HTTP-01 challenges.
	HTTPSolver HTTPSolver
	// PreferredChain is the issuer Common Name of the chain to take when the CA offers
	// alternates (preferredChain); empty: the CA's default chain.
	PreferredChain string
}

// Challenge types.
const (
	ChallengeDNS01  = "dns-01"
	ChallengeHTTP01 = "http-01"
)

// HTTPSolver publishes HTTP-01 key authorizations where the CA will fetch them
// (http://<identifier>/.well-known/acme-challenge/<token>).
type HTTPSolver interface {
	// Present publishes keyAuth under token for identifier.
	Present(ctx context.Context, identifier, token, keyAuth string) error
	// CleanUp withdraws what Present published for token.
	CleanUp(ctx context.Context, identifier, token string) error
}

// Certificate is an issued certificate as the CA delivered it.
type Certificate struct {
	// OrderURL and CertURL locate the order and certificate at the CA.
	OrderURL string
	CertURL  string
	// CertificatePEM is the leaf certificate.
	CertificatePEM []byte
	// IssuerPEM holds the issuer chain (one or more PEM certificates), leaf excluded.
	IssuerPEM []byte
}

// Obtain runs an order to completion: it creates (or resumes) the order, solves every pending
// authorization with DNS-01, finalizes with the CSR and downloads the certificate. Authorizations
// that share one DNS record name are solved one after another; all others in parallel. policy
// paces the polling; a zero PollPolicy means DefaultPollPolicy, and zero fields take their default.
//
// Failures from the CA are *Error values (see the sentinels); a failing Solver's error is wrapped.
func (c *Client) Obtain(ctx context.Context, req OrderRequest, policy PollPolicy) (*Certificate, error) {
	policy = policy.withDefaults()
	order, orderURL, err := c.openOrder(ctx, req)
	if err != nil {
		return nil, err
	}
	if order.Status == acme.StatusPending {
		if err := c.solveAuthorizations(ctx, order.Authorizations, req, policy); err != nil {
			return nil, err
		}
	}
	order, err = c.waitOrder(ctx, orderURL, policy, acme.StatusReady, acme.StatusValid)
	if err != nil {
		return nil, err
	}
	if order.Status == acme.StatusReady {
		if _, err := c.api().Orders.UpdateForCSR(order.Finalize, req.CSR); err != nil {
			return nil, classify(fmt.Errorf("acme: finalize order: %w", err))
		}
		order, err = c.waitOrder(ctx, orderURL, policy, acme.StatusValid)
		if err != nil {
			return nil, err
		}
	}
	if req.PreferredChain != "" {
		return c.downloadPreferred(orderURL, order.Certificate, req.PreferredChain)
	}
	leaf, issuer, err := c.api().Certificates.Get(order.Certificate, false)
	if err != nil {
		return nil, classify(fmt.Errorf("acme: download certificate: %w", err))
	}
	return &Certificate{OrderURL: orderURL, CertURL: order.Certificate, CertificatePEM: leaf, IssuerPEM: issuer}, nil
}

// downloadPreferred downloads the certificate with every alternate chain the CA offers (RFC 8555
// §7.4.2, Link rel="alternate") and returns the first, the CA's default first, whose chain
// matches preferred (chainMatches); none matching: the default chain.
func (c *Client) downloadPreferred(orderURL, certURL, preferred string) (*Certificate, error) {
	all, err := c.api().Certificates.GetAll(certURL, false)
	if err != nil {
		return nil, classify(fmt.Errorf("acme: download certificate: %w", err))
	}
	urls := make([]string, 0, len(all))
	for u := range all {
		if u != certURL {
			urls = append(urls, u)
		}
	}
	slices.Sort(urls)
	urls = append([]string{certURL}, urls...)
	for _, u := range urls {
		if raw := all[u]; raw != nil && chainMatches(raw.Issuer, preferred) {
			return &Certificate{OrderURL: orderURL, CertURL: u, CertificatePEM: raw.Cert, IssuerPEM: raw.Issuer}, nil
		}
	}
	raw := all[certURL]
	if raw == nil {
		return nil, &Error{Kind: ErrUnreachable, err: errors.New("acme: download certificate: the CA returned no default chain")}
	}
	return &Certificate{OrderURL: orderURL, CertURL: certURL, CertificatePEM: raw.Cert, IssuerPEM: raw.Issuer}, nil
}

// chainMatches reports whether the PEM issuer chain ends at a certificate issued by the CA named
// cn (its top certificate's issuer Common Name), or holds a certificate whose subject is cn: the
// way Let's Encrypt documents choosing between its chains ("ISRG Root X1").
func chainMatches(issuerPEM []byte, cn string) bool {
	var top *x509.Certificate
	rest := issuerPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		crt, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return false
		}
		if crt.Subject.CommonName == cn {
			return true
		}
		top = crt
	}
	return top != nil && top.Issuer.CommonName == cn
}

// openOrder resumes req.ResumeOrderURL when the CA still has that order, it is not invalid and it
// is for exactly req.Domains; otherwise it creates a new order and reports it to req.OnOrder.
func (c *Client) openOrder(ctx context.Context, req OrderRequest) (acme.Order, string, error) {
	if err := ctx.Err(); err != nil {
		return acme.Order{}, "", err
	}
	if req.ResumeOrderURL != "" {
		// Any failure to read the old order (gone, expired, CA hiccup) just means a new order.
		o, err := c.api().Orders.Get(req.ResumeOrderURL)
		if err == nil && o.Status != acme.StatusInvalid && sameIdentifiers(o.Identifiers, req.Domains) {
			return o.Order, req.ResumeOrderURL, nil
		}
	}
	o, err := c.api().Orders.NewWithOptions(req.Domains, apiOrderOptions{Profile: req.Profile, ReplacesCertID: req.ReplacesCertID}.lego())
	if err != nil {
		return acme.Order{}, "", classify(fmt.Errorf("acme: new order: %w", err))
	}
	if o.Location == "" {
		return acme.Order{}, "", &Error{Kind: ErrUnreachable, err: errors.New("acme: new order: the CA returned no order URL")}
	}
	if req.OnOrder != nil {
		if err := req.OnOrder(o.Location); err != nil {
			return acme.Order{}, "", fmt.Errorf("acme: record order: %w", err)
		}
	}
	return o.Order, o.Location, nil
}

// sameIdentifiers reports whether an order's identifiers are exactly domains, in any order.
func sameIdentifiers(ids []acme.Identifier, domains []string) bool {
	got := make([]string, 0, len(ids))
	for _, id := range ids {
		got = append(got, id.Value)
	}
	want := slices.Clone(domains)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// pendingAuthz is one authorization that needs an answer.
type pendingAuthz struct {
	url, domain, token, keyAuth, challengeURL string
}

// solveAuthorizations answers all pending authorizations with the request's challenge type.
// DNS-01 authorizations whose records share a name (example.com and *.example.com) go in separate
// waves, because some DNS providers replace the whole record set on present; HTTP-01 answers never
// collide and go in one.
func (c *Client) solveAuthorizations(ctx context.Context, urls []string, req OrderRequest, policy PollPolicy) error {
	// The account key must not change from the first key authorization until the CA has
	// validated the last (holdKey says why); a key rollover waits meanwhile.
	release, err := c.holdKey(ctx)
	if err != nil {
		return err
	}
	defer release()
	chType := req.Challenge
	if chType == "" {
		chType = ChallengeDNS01
	}
	var waves [][]pendingAuthz
	for _, u := range urls {
		authz, err := c.api().Authorizations.Get(u)
		if err != nil {
			return classify(fmt.Errorf("acme: get authorization: %w", err))
		}
		switch authz.Status {
		case acme.StatusValid:
			continue
		case acme.StatusPending:
		default:
			return &Error{Kind: ErrChallengeFailed, Identifier: authz.Identifier.Value, err: fmt.Errorf("acme: authorization for %s is %s", authz.Identifier.Value, authz.Status)}
		}
		p := pendingAuthz{url: u, domain: authz.Identifier.Value}
		for _, ch := range authz.Challenges {
			if ch.Type == chType {
				p.token, p.challengeURL = ch.Token, ch.URL
			}
		}
		if p.challengeURL == "" {
			return &Error{Kind: ErrRejected, err: fmt.Errorf("acme: the CA offers no %s challenge for %s", chType, p.domain)}
		}
		if p.keyAuth, err = c.api().GetKeyAuthorization(p.token); err != nil {
			return fmt.Errorf("acme: key authorization: %w", err)
		}
		placed := false
		for i := range waves {
			if chType == ChallengeHTTP01 || !hasDomain(waves[i], p.domain) {
				waves[i] = append(waves[i], p)
				placed = true
				break
			}
		}
		if !placed {
			waves = append(waves, []pendingAuthz{p})
		}
	}
	for _, wave := range waves {
		var err error
		if chType == ChallengeHTTP01 {
			err = c.solveHTTPWave(ctx, wave, req.HTTPSolver, policy)
		} else {
			err = c.solveWave(ctx, wave, req.Solver, policy)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// solveHTTPWave publishes every key authorization of the wave, accepts the challenges and waits
// until the CA has validated them; every answer published is withdrawn afterwards.
func (c *Client) solveHTTPWave(ctx context.Context, wave []pendingAuthz, solver HTTPSolver, policy PollPolicy) error {
	if solver == nil {
		return invalid(nil, "no HTTP-01 solver configured")
	}
	var presented []pendingAuthz
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, p := range presented {
			_ = solver.CleanUp(cctx, p.domain, p.token)
		}
	}()
	for _, p := range wave {
		if err := solver.Present(ctx, p.domain, p.token, p.keyAuth); err != nil {
			return fmt.Errorf("acme: publish the HTTP-01 answer for %s: %w", p.domain, err)
		}
		presented = append(presented, p)
	}
	return c.acceptAll(ctx, wave, policy)
}

// acceptAll tells the CA that the wave's challenges are ready and waits until all are valid.
func (c *Client) acceptAll(ctx context.Context, wave []pendingAuthz, policy PollPolicy) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range wave {
		g.Go(func() error {
			ch, err := c.api().Challenges.New(p.challengeURL)
			if err != nil {
				return classify(fmt.Errorf("acme: accept challenge for %s: %w", p.domain, err))
			}
			return c.waitChallenge(gctx, p, ch, policy)
		})
	}
	return g.Wait()
}

func hasDomain(wave []pendingAuthz, domain string) bool {
	for _, p := range wave {
		if p.domain == domain {
			return true
		}
	}
	return false
}

// solveWave presents every record of the wave, waits until all are visible, accepts the challenges
// and waits until the CA has validated them. Every record whose Present was attempted is removed
// afterwards, whatever happened.
func (c *Client) solveWave(ctx context.Context, wave []pendingAuthz, solver solvers.Solver, policy PollPolicy) error {
	if solver == nil {
		return invalid(nil, "no DNS-01 solver configured")
	}
	attempted := make([]bool, len(wave))
	defer func() {
		// Clean up with a context of its own: the records must go even when ctx was cancelled.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for i, p := range wave {
			if attempted[i] {
				_ = solver.CleanUp(cctx, p.domain, p.token, p.keyAuth)
			}
		}
	}()
	// Each errgroup's Wait returns the first error any of its goroutines returned; that also
	// cancels gctx, so the others stop early and their (context) errors are dropped.
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range wave {
		attempted[i] = true // before Present: a Present that fails halfway may leave a record
		g.Go(func() error {
			if err := solver.Present(gctx, p.domain, p.token, p.keyAuth); err != nil {
				what := "the DNS provider could not publish the challenge record"
				if solvers.IsConfigError(err) {
					// The configuration refused the record (outside its zones, a CNAME leading out
					// of them): its message names only zones and record names, and says what to fix.
					what = "the DNS configuration refused the challenge record: " + err.Error()
				}
				return dnsRecordError(gctx, p.domain, what, fmt.Errorf("acme: present DNS record for %s: %w", p.domain, err))
			}
			if err := solver.WaitPropagation(gctx, p.domain, p.keyAuth); err != nil { // its errors name the record
				return dnsRecordError(gctx, p.domain, "the challenge record did not become visible at the DNS configuration's resolvers in time", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return c.acceptAll(ctx, wave, policy)
}

// waitChallenge polls the challenge (whose response carries Retry-After) until it is valid.
func (c *Client) waitChallenge(ctx context.Context, p pendingAuthz, ch acme.ExtendedChallenge, policy PollPolicy) error {
	first := true
	return policy.poll(ctx, "validation of "+p.domain, func() (bool, time.Duration, error) {
		if !first {
			var err error
			if ch, err = c.api().Challenges.Get(p.challengeURL); err != nil {
				return false, 0, classify(fmt.Errorf("acme: get challenge for %s: %w", p.domain, err))
			}
		}
		first = false
		switch ch.Status {
		case acme.StatusValid:
			return true, 0, nil
		case acme.StatusInvalid:
			if ch.Error != nil {
				return false, 0, &Error{Kind: ErrChallengeFailed, ProblemType: ch.Error.Type, Detail: ch.Error.Detail, Identifier: p.domain,
					err: fmt.Errorf("acme: validation of %s failed: %s: %s", p.domain, ch.Error.Type, ch.Error.Detail)}
			}
			return false, 0, &Error{Kind: ErrChallengeFailed, Identifier: p.domain, err: fmt.Errorf("acme: validation of %s failed", p.domain)}
		}
		ra, _ := parseRetryAfter(ch.RetryAfter)
		return false, ra, nil
	})
}

// waitOrder polls the order until its status is one of want.
func (c *Client) waitOrder(ctx context.Context, orderURL string, policy PollPolicy, want ...string) (acme.Order, error) {
	var order acme.Order
	err := policy.poll(ctx, "order", func() (bool, time.Duration, error) {
		o, err := c.api().Orders.Get(orderURL)
		if err != nil {
			return false, 0, classify(fmt.Errorf("acme: get order: %w", err))
		}
		order = o.Order
		for _, w := range want {
			if o.Status == w {
				return true, 0, nil
			}
		}
		if o.Status == acme.StatusInvalid {
			if o.Error != nil {
				return false, 0, classify(fmt.Errorf("acme: order is invalid: %w", o.Error))
			}
			return false, 0, &Error{Kind: ErrRejected, err: errors.New("acme: order is invalid")}
		}
		return false, c.headers.RetryAfter(orderURL), nil
	})
	return order, err
}

// dnsRecordError classifies a solver failure for domain as ErrDNSRecord with what (this package's
// words) as its detail. A cancelled context passes through: the attempt was stopped, nothing failed.
func dnsRecordError(ctx context.Context, domain, what string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	return &Error{Kind: ErrDNSRecord, Detail: what, Identifier: domain, err: err}
}
