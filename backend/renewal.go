package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// ARI re-check interval: about twice a day, never more often than the CA's Retry-After allows
// within [minARIInterval, maxARIInterval], and at most a tenth of the certificate's life so that
// short-lived certificates are checked often enough to matter.
const (
	defaultARIInterval = 12 * time.Hour
	minARIInterval     = time.Minute
	maxARIInterval     = 24 * time.Hour
	floorARIInterval   = 5 * time.Second
)

// action is what a job does for a certificate.
type action int

const (
	actNone  action = iota
	actIssue        // no certificate for the current specification: order one
	actRenew        // the current certificate is due for renewal
	actARI          // fetch the CA's renewal window, then renew if it says so
)

// decide says what c needs at now. A certificate in backoff needs nothing until its next attempt.
func decide(c *storage.CertEntry, now time.Time) action {
	switch {
	case c.Attempts > 0 && now.Before(c.NextAttemptAt):
		return actNone
	case !c.Current():
		return actIssue
	case c.ForceRenewal || c.Attempts > 0 || !now.Before(c.RenewAt):
		// A failed renewal is retried when its backoff ends, wherever renew_at has moved since.
		return actRenew
	case !c.ARICheckAt.IsZero() && !now.Before(c.ARICheckAt):
		return actARI
	}
	return actNone
}

// plannedRenewal is when a certificate valid from nb to na is renewed without ARI: with a third of
// its life left, or half for certificates under ten days.
func plannedRenewal(nb, na time.Time) time.Time {
	life := na.Sub(nb)
	if life < 10*24*time.Hour {
		return nb.Add(life / 2)
	}
	return nb.Add(life / 3 * 2) // not life*2/3: that overflows for lives over 146 years
}

// jitteredRenewal is plannedRenewal moved earlier by up to 2% of the life, so that certificates
// issued together do not all renew in the same second.
func jitteredRenewal(nb, na time.Time) time.Time {
	life := na.Sub(nb)
	// A certificate that ends before it starts (never stored: imports and issuance check validity)
	// must not panic the plugin here.
	return plannedRenewal(nb, na).Add(-time.Duration(rand.Int64N(int64(max(life/50, 0)) + 1)))
}

// importARISpread bounds how long after an import the CA is asked for the certificate's renewal
// window. The check is spread over it so that a mass import (make bench imports 10,000) does not
// start a job for every certificate in the same second — each waiting job holds a goroutine —
// but still learns within minutes of a certificate the CA wants replaced early.
const importARISpread = 5 * time.Minute

// PlanRenewal plans the renewal of an imported certificate like that of one just issued, and asks
// for the CA's renewal window soon: at a random point of the next importARISpread (of the next
// fiftieth of its life, if shorter). A CA without ARI clears the check.
func (b *backend) PlanRenewal(c *storage.CertEntry, now time.Time) {
	c.RenewAt = jitteredRenewal(c.NotBefore, c.NotAfter)
	spread := min(importARISpread, c.NotAfter.Sub(c.NotBefore)/50)
	c.ARICheckAt = now.Add(time.Duration(rand.Int64N(int64(max(spread, 0)) + 1)))
	c.ARIWindowStart, c.ARIWindowEnd = time.Time{}, time.Time{}
}

// ariInterval is when to ask the CA for the window again.
func ariInterval(retryAfter, life time.Duration) time.Duration {
	d := defaultARIInterval
	if retryAfter > 0 {
		d = min(max(retryAfter, minARIInterval), maxARIInterval)
	}
	d = min(d, life/10)
	return max(d, floorARIInterval)
}

// applyWindow decides c.RenewAt from the CA's window w, fetched at now. It ignores malformed
// windows (end before start, start after expiry) and an early window that follows an early
// renewal too closely, so a broken or hostile CA cannot make the plugin renew in a loop. It
// returns a reason when it ignored the window.
func applyWindow(c *storage.CertEntry, w *acme.RenewalWindow, now time.Time) string {
	life := c.NotAfter.Sub(c.NotBefore)
	c.ARICheckAt = now.Add(ariInterval(w.RetryAfter, life))
	if !w.End.After(w.Start) || !w.Start.Before(c.NotAfter) {
		return "malformed window"
	}
	if w.Start.Equal(c.ARIWindowStart) && w.End.Equal(c.ARIWindowEnd) {
		// The same window as before: keep the point already drawn from it, so that repeated checks
		// do not pull the renewal towards the window's start.
		return ""
	}
	// The point is drawn uniformly from the part of the CA's window that is still ahead (drawing
	// from the part already past would renew at once, right after issuance when the window starts
	// there), bounded so that:
	//   - it leaves a third of the life when the window leaves room before that last third (short
	//     certificates get windows spanning their whole life), and never less than a tenth;
	//   - it uses at least a third of the life when the window reaches past that point: a window
	//     opening at issuance is not a request to renew right after it.
	// A window wholly in the past (the CA wants the certificate replaced, e.g. revoked) means now.
	latest := c.NotAfter.Add(-life / 10)
	if lastThird := c.NotAfter.Add(-life / 3); w.Start.Before(lastThird) {
		latest = lastThird
	}
	end := w.End
	if end.After(latest) {
		end = latest
	}
	start := w.Start
	if start.Before(now) {
		start = now
	}
	if firstThird := c.NotBefore.Add(life / 3); start.Before(firstThird) && firstThird.Before(end) {
		start = firstThird
	}
	at := now
	if end.After(start) {
		at = start.Add(time.Duration(rand.Int64N(int64(end.Sub(start)))))
	} else if end.After(now) {
		at = end
	}
	// Early: the CA asks for a renewal within the first third of the life (the window does not
	// reach past it). Twice in a row soon after an early renewal is ignored, so a broken or
	// hostile CA cannot make the plugin renew in a loop; a point drawn from a window that does
	// reach past the first third is not early (it uses at least a third of the life).
	early := at.Before(c.NotBefore.Add(life / 3))
	if early && !c.LastEarlyRenewal.IsZero() && now.Sub(c.LastEarlyRenewal) < min(12*time.Hour, life/2) {
		return "early window right after an early renewal"
	}
	c.RenewAt, c.ARIWindowStart, c.ARIWindowEnd = at, w.Start, w.End
	return ""
}

// checkARI fetches the CA's renewal window of the current certificate and stores the renewal time
// it implies. It reports whether the certificate is now due.
func (b *backend) checkARI(ctx context.Context, name string, p *issuePlan) (bool, error) {
	log := b.logger.Named("renew").With("cert", name)
	client, err := b.accountClient(p.role.Account, p.account)
	if err != nil {
		return false, err
	}
	leaf, err := p.cert.Leaf()
	if err != nil {
		return false, err
	}
	w, ariErr := client.RenewalInfo(ctx, leaf)
	now := time.Now().UTC()

	lock := b.locks.Cert(name)
	lock.Lock()
	defer lock.Unlock()
	c, err := storage.LoadCert(ctx, b.storage, name)
	if err != nil || c == nil || c.SerialNumber != p.cert.SerialNumber {
		return false, err
	}
	life := c.NotAfter.Sub(c.NotBefore)
	switch {
	case errors.Is(ariErr, acme.ErrNoRenewalInfo):
		c.ARICheckAt = time.Time{}
	case ariErr != nil:
		log.Debug("fetching the renewal window failed; keeping the planned renewal", "error", ariErr)
		c.ARICheckAt = now.Add(ariInterval(0, life))
	default:
		if reason := applyWindow(c, w, now); reason != "" {
			log.Warn("ignoring the CA's renewal window", "reason", reason, "window_start", w.Start, "window_end", w.End)
		}
	}
	if err := storage.StoreCert(ctx, b.storage, name, c); err != nil {
		return false, err
	}
	p.cert = c
	return !now.Before(c.RenewAt), nil
}
