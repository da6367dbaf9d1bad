package provider

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEHops is how many CNAMEs lego's dns01 follows from an
// _acme-challenge name (its getChallengeFQDN loop).
const maxCNAMEHops = 50

// pinningResolver is the only recursive nameserver lego's dns01 package sees
// in a child (the child points lego's recursive nameservers at it). It
// forwards every query to the configured resolvers the way lego asks a list of
// nameservers (in order, until one answers with records), so lego behaves as
// if it asked them itself. While pinned, the answer to each CNAME question is
// fixed the first time it is asked: the child's zone check and the lego
// provider it then calls see the same CNAME chain, so a CNAME changed in
// between cannot steer the provider past the check.
//
// It is safe for concurrent use.
type pinningResolver struct {
	upstream []string
	timeout  time.Duration
	addr     string
	servers  []*dns.Server

	mu      sync.Mutex
	pinning bool
	pinned  map[string]*dns.Msg // lower-case qname -> reply to a CNAME question
}

// startPinningResolver serves on 127.0.0.1 (UDP and TCP on one port).
func startPinningResolver(upstream []string, timeout time.Duration) (*pinningResolver, error) {
	p := &pinningResolver{upstream: upstream, timeout: timeout}
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dns solver child: starting its resolver: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			_ = pc.Close()
			lastErr = err
			continue
		}
		p.addr = pc.LocalAddr().String()
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: p}, {Listener: l, Handler: p}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { _ = srv.ActivateAndServe() }()
			<-started
			p.servers = append(p.servers, srv)
		}
		return p, nil
	}
	return nil, fmt.Errorf("dns solver child: starting its resolver: %w", lastErr)
}

// pin starts a pinning period with no CNAME answers fixed yet.
func (p *pinningResolver) pin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pinning = true
	p.pinned = map[string]*dns.Msg{}
}

// unpin ends the pinning period.
func (p *pinningResolver) unpin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pinning = false
	p.pinned = nil
}

// ServeDNS implements dns.Handler.
func (p *pinningResolver) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	cname := len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeCNAME
	key := ""
	if cname {
		key = strings.ToLower(r.Question[0].Name)
		p.mu.Lock()
		m, ok := p.pinned[key]
		p.mu.Unlock()
		if ok {
			reply := m.Copy()
			reply.Id = r.Id
			_ = w.WriteMsg(reply)
			return
		}
	}
	reply := p.forward(r)
	if cname {
		p.mu.Lock()
		if p.pinning {
			if prev, ok := p.pinned[key]; ok {
				reply = prev.Copy() // a concurrent question won
			} else {
				p.pinned[key] = reply.Copy()
			}
		}
		p.mu.Unlock()
	}
	reply.Id = r.Id
	_ = w.WriteMsg(reply)
}

// forward asks the upstream resolvers in turn until one answers with
// records, as lego's dnsQuery does; it returns the last reply, or SERVFAIL
// when the last resolver asked failed.
func (p *pinningResolver) forward(r *dns.Msg) *dns.Msg {
	var (
		reply *dns.Msg
		err   error
	)
	for _, up := range p.upstream {
		reply, err = exchange(r, up, p.timeout)
		if err == nil && len(reply.Answer) > 0 {
			break
		}
	}
	if err != nil || reply == nil {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		return m
	}
	return reply
}

func (p *pinningResolver) close() {
	for _, s := range p.servers {
		_ = s.Shutdown()
	}
}

// exchange sends m over UDP, then over TCP when the reply is truncated.
func exchange(m *dns.Msg, server string, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, server)
	if err == nil && r != nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.Exchange(m, server)
	}
	if err == nil && r == nil {
		err = fmt.Errorf("empty reply from %s", server)
	}
	return r, err
}

// systemResolvers returns what lego uses when no resolvers are configured:
// /etc/resolv.conf's nameservers, or lego's defaults.
func systemResolvers() []string {
	conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(conf.Servers) == 0 {
		return []string{"google-public-dns-a.google.com:53", "google-public-dns-b.google.com:53"}
	}
	port := conf.Port
	if port == "" {
		port = "53"
	}
	out := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		if _, _, err := net.SplitHostPort(s); err == nil {
			out = append(out, s)
		} else {
			out = append(out, net.JoinHostPort(s, port))
		}
	}
	return out
}

// cnameSupportDisabled mirrors lego's dns01: LEGO_DISABLE_CNAME_SUPPORT
// parsed as a boolean.
func cnameSupportDisabled() bool {
	ok, _ := strconv.ParseBool(os.Getenv("LEGO_DISABLE_CNAME_SUPPORT"))
	return ok
}

// zoneError is a refusal to write outside the configuration's zones.
type zoneError struct{ msg string }

func (e *zoneError) Error() string { return e.msg }

// effectiveFQDN follows the CNAME chain from _acme-challenge.<domain>. the
// way lego's dns01.GetChallengeInfo does (one CNAME question per hop to the
// recursive nameserver at addr, up to maxCNAMEHops), and returns the name
// lego will write and the chain. A loop or a chain longer than lego follows
// is a *zoneError.
func effectiveFQDN(addr, domain string, timeout time.Duration) (string, []string, error) {
	fqdn := "_acme-challenge." + domain + "."
	chain := []string{fqdn}
	if cnameSupportDisabled() {
		return fqdn, chain, nil
	}
	seen := map[string]bool{strings.ToLower(fqdn): true}
	for range maxCNAMEHops {
		m := new(dns.Msg)
		m.SetQuestion(fqdn, dns.TypeCNAME)
		m.SetEdns0(4096, false)
		r, err := exchange(m, addr, timeout)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			return fqdn, chain, nil
		}
		next := fqdn
		for _, rr := range r.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, fqdn) {
				next = cn.Target
				break
			}
		}
		if next == fqdn {
			return fqdn, chain, nil
		}
		chain = append(chain, next)
		if seen[strings.ToLower(next)] {
			return "", chain, &zoneError{msg: fmt.Sprintf("%s follows a CNAME loop (%s)", chain[0], strings.Join(chain, " -> "))}
		}
		seen[strings.ToLower(next)] = true
		fqdn = next
	}
	return "", chain, &zoneError{msg: fmt.Sprintf("%s follows more than %d CNAMEs", chain[0], maxCNAMEHops)}
}

// normaliseZones lower-cases zones and strips trailing dots and blanks.
func normaliseZones(in []string) []string {
	out := make([]string, 0, len(in))
	for _, z := range in {
		z = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(z)), ".")
		if z != "" {
			out = append(out, z)
		}
	}
	return out
}
