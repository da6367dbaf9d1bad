package solvers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
)

const (
	// queryTimeout bounds one DNS exchange during propagation checks.
	queryTimeout = 3 * time.Second
	// maxCNAMEHops bounds CNAME chains.
	maxCNAMEHops      = 10
	defaultResolvConf = "/etc/resolv.conf"
)

// propagationChecker waits for a TXT record to be visible. It uses its own
// miekg/dns clients and never touches lego's package state. It is immutable
// and safe for concurrent use.
type propagationChecker struct {
	// resolvers are the configured recursive resolvers (host:port). When
	// empty the zone's authoritative nameservers are asked instead.
	resolvers []string
	// systemResolvers returns the host's recursive resolvers, used to find
	// the authoritative nameservers.
	systemResolvers func() ([]string, error)
	// authPort is the port authoritative nameservers are asked on.
	authPort string
	logger   hclog.Logger
}

func resolvConfResolvers() ([]string, error) {
	conf, err := dns.ClientConfigFromFile(defaultResolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading system resolvers: %w", err)
	}
	if len(conf.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", defaultResolvConf)
	}
	port := conf.Port
	if port == "" {
		port = "53"
	}
	out := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		out = append(out, net.JoinHostPort(s, port))
	}
	return out, nil
}

// target is one nameserver that must see the record.
type target struct {
	label     string // shown in errors: "127.0.0.1:53" or "ns1.example.test. (192.0.2.1:53)"
	addr      string // host:port
	name      string // name to query (may already be a CNAME target)
	recursive bool
}

// wait blocks until every target answers a TXT record for domain's challenge
// name (following CNAMEs) with value, or timeout / ctx ends.
func (p *propagationChecker) wait(ctx context.Context, domain, keyAuth string, timeout, interval time.Duration) error {
	base, err := checkDomain(domain)
	if err != nil {
		return err
	}
	fqdn, value := ChallengeRecord(base, keyAuth)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var targets []target
	if len(p.resolvers) > 0 {
		for _, r := range p.resolvers {
			targets = append(targets, target{label: r, addr: r, name: fqdn, recursive: true})
		}
	}
	pending := map[string]string{} // label -> why not yet
	done := map[string]bool{}
	authLabel := "authoritative nameservers of " + fqdn

	for {
		if targets == nil {
			ts, err := p.authoritativeTargets(ctx, fqdn)
			if err != nil {
				pending = map[string]string{authLabel: err.Error()}
			} else {
				targets = ts
				delete(pending, authLabel)
			}
		}
		if targets != nil {
			p.checkAll(ctx, targets, done, pending, value)
			if len(pending) == 0 {
				p.logger.Debug("dns record propagated", "domain", base, "nameservers", len(targets), "elapsed", time.Since(start).Round(time.Millisecond).String())
				return nil
			}
		}
		p.logger.Debug("waiting for dns record propagation", "domain", base, "pending", len(pending), "next_poll", interval.String())

		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return propagationError(ctx, base, fqdn, pending, time.Since(start))
		case <-t.C:
		}
		interval = min(interval*3/2, maxPollBackoff)
	}
}

func (p *propagationChecker) checkAll(ctx context.Context, targets []target, done map[string]bool, pending map[string]string, value string) {
	type result struct {
		label, why string
		ok         bool
	}
	var wg sync.WaitGroup
	results := make(chan result, len(targets))
	for _, t := range targets {
		if done[t.label] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, why := p.checkTarget(ctx, t, value)
			results <- result{label: t.label, why: why, ok: ok}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.ok {
			done[r.label] = true
			delete(pending, r.label)
		} else {
			pending[r.label] = r.why
		}
	}
}

func propagationError(ctx context.Context, domain, fqdn string, pending map[string]string, elapsed time.Duration) error {
	labels := make([]string, 0, len(pending))
	for l := range pending {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s (%s)", l, pending[l]))
	}
	if len(parts) == 0 {
		parts = append(parts, "no nameserver answered yet")
	}
	cause := ctx.Err()
	what := "timed out"
	if errors.Is(cause, context.Canceled) {
		what = "was canceled"
	}
	return fmt.Errorf("waiting for DNS-01 record %s of %s %s after %s; not yet visible at: %s: %w",
		fqdn, domain, what, elapsed.Round(time.Millisecond), strings.Join(parts, "; "), cause)
}

// checkTarget asks one nameserver for the TXT record, following CNAMEs.
func (p *propagationChecker) checkTarget(ctx context.Context, t target, value string) (bool, string) {
	name := t.name
	for range maxCNAMEHops {
		r, err := exchange(ctx, t.addr, name, dns.TypeTXT, t.recursive)
		if err != nil {
			return false, "query failed: " + shortDNSError(err)
		}
		if r.Rcode != dns.RcodeSuccess {
			return false, fmt.Sprintf("%s for %s", dns.RcodeToString[r.Rcode], name)
		}
		cur := followCNAMEs(r.Answer, name)
		var seen int
		for _, rr := range r.Answer {
			if txt, ok := rr.(*dns.TXT); ok && strings.EqualFold(txt.Hdr.Name, cur) {
				seen++
				if strings.Join(txt.Txt, "") == value {
					return true, ""
				}
			}
		}
		if seen == 0 && !strings.EqualFold(cur, name) {
			// The answer stopped at a CNAME: ask for its target.
			name = cur
			continue
		}
		if seen == 0 {
			return false, "no TXT record at " + cur
		}
		return false, fmt.Sprintf("%d TXT record(s) at %s, none with the expected value", seen, cur)
	}
	return false, "too many CNAMEs from " + t.name
}

// followCNAMEs walks a CNAME chain inside an answer section.
func followCNAMEs(answer []dns.RR, name string) string {
	cur := name
	for range maxCNAMEHops {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		cur = next
	}
	return cur
}

// authoritativeTargets finds, through the system resolvers, the zone of fqdn
// (after following CNAMEs) and addresses of its authoritative nameservers.
func (p *propagationChecker) authoritativeTargets(ctx context.Context, fqdn string) ([]target, error) {
	sys, err := p.systemResolvers()
	if err != nil {
		return nil, err
	}
	effective := fqdn
	if r, err := exchangeAny(ctx, sys, fqdn, dns.TypeCNAME); err == nil && r.Rcode == dns.RcodeSuccess {
		effective = followCNAMEs(r.Answer, fqdn)
		// A resolver may return a single CNAME per answer; keep asking.
		for range maxCNAMEHops {
			r, err := exchangeAny(ctx, sys, effective, dns.TypeCNAME)
			if err != nil || r.Rcode != dns.RcodeSuccess {
				break
			}
			next := followCNAMEs(r.Answer, effective)
			if strings.EqualFold(next, effective) {
				break
			}
			effective = next
		}
	}
	zone, err := findZone(ctx, sys, effective)
	if err != nil {
		return nil, err
	}
	r, err := exchangeAny(ctx, sys, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("NS lookup for zone %s failed: %s", zone, shortDNSError(err))
	}
	var hosts []string
	for _, rr := range r.Answer {
		if ns, ok := rr.(*dns.NS); ok {
			hosts = append(hosts, strings.ToLower(ns.Ns))
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("zone %s has no NS records", zone)
	}
	sort.Strings(hosts)
	var targets []target
	var failures []string
	for _, h := range hosts {
		ip := glueAddress(r.Extra, h)
		if ip == "" {
			ip = lookupAddress(ctx, sys, h)
		}
		if ip == "" {
			failures = append(failures, h)
			continue
		}
		addr := net.JoinHostPort(ip, p.authPort)
		targets = append(targets, target{label: fmt.Sprintf("%s (%s)", h, addr), addr: addr, name: effective})
	}
	if len(failures) > 0 {
		return nil, fmt.Errorf("no address for nameserver(s) %s of zone %s", strings.Join(failures, ", "), zone)
	}
	return targets, nil
}

// findZone walks up fqdn's labels until a name has an SOA record, as lego does.
func findZone(ctx context.Context, servers []string, fqdn string) (string, error) {
	var lastErr error
	for off, end := 0, false; !end; off, end = dns.NextLabel(fqdn, off) {
		name := fqdn[off:]
		r, err := exchangeAny(ctx, servers, name, dns.TypeSOA)
		if err != nil {
			lastErr = err
			continue
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			return "", fmt.Errorf("SOA lookup for %s returned %s", name, dns.RcodeToString[r.Rcode])
		}
		if r.Rcode != dns.RcodeSuccess || followCNAMEs(r.Answer, name) != name {
			continue
		}
		for _, rr := range r.Answer {
			if soa, ok := rr.(*dns.SOA); ok {
				return soa.Hdr.Name, nil
			}
		}
	}
	if lastErr != nil {
		return "", fmt.Errorf("could not find the zone of %s: %s", fqdn, shortDNSError(lastErr))
	}
	return "", fmt.Errorf("could not find the zone of %s", fqdn)
}

func glueAddress(extra []dns.RR, host string) string {
	var v6 string
	for _, rr := range extra {
		switch a := rr.(type) {
		case *dns.A:
			if strings.EqualFold(a.Hdr.Name, host) {
				return a.A.String()
			}
		case *dns.AAAA:
			if strings.EqualFold(a.Hdr.Name, host) && v6 == "" {
				v6 = a.AAAA.String()
			}
		}
	}
	return v6
}

func lookupAddress(ctx context.Context, servers []string, host string) string {
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := exchangeAny(ctx, servers, host, qt)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			continue
		}
		if ip := glueAddress(r.Answer, followCNAMEs(r.Answer, host)); ip != "" {
			return ip
		}
	}
	return ""
}

// exchangeAny asks servers in turn until one gives a reply with answers, or
// returns the last reply/error.
func exchangeAny(ctx context.Context, servers []string, name string, qtype uint16) (*dns.Msg, error) {
	var (
		last    *dns.Msg
		lastErr = errors.New("no nameservers")
	)
	for _, s := range servers {
		r, err := exchange(ctx, s, name, qtype, true)
		if err != nil {
			lastErr = err
			continue
		}
		if len(r.Answer) > 0 {
			return r, nil
		}
		last, lastErr = r, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, lastErr
}

func exchange(ctx context.Context, server, name string, qtype uint16, recursive bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = recursive
	m.SetEdns0(4096, false)
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: queryTimeout}
	r, _, err := c.ExchangeContext(qctx, m, server)
	if err == nil && r != nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(qctx, m, server)
	}
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("empty reply")
	}
	return r, nil
}

// shortDNSError trims network error chains to their last, useful part.
func shortDNSError(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return err.Error()
}
