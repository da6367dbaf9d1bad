// Package dnstest is an in-process authoritative DNS server for the tests of
// the solvers packages: it serves one zone over UDP on 127.0.0.1, answers
// SOA, NS, A, CNAME and TXT queries, and accepts RFC 2136 updates, optionally
// requiring a TSIG signature. It is safe for concurrent use. Not for
// production code.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Record is one TXT value with the TTL it was added with.
type Record struct {
	Value string
	TTL   uint32
}

// Server is a fake authoritative server for one zone.
type Server struct {
	// Addr is "127.0.0.1:<port>".
	Addr string
	Zone string

	srv *dns.Server

	mu        sync.Mutex
	txt       map[string][]Record // lower-case fqdn -> values
	cname     map[string]string   // lower-case fqdn -> target
	cnameSeq  map[string][]string // lower-case fqdn -> targets still to answer, in turn
	hideTXT   int                 // answer this many TXT queries as if empty
	txtQuery  int
	updates   int
	badTSIG   int
	tsigKey   string
	tsigAlg   string
	nsAddress string
}

// Option configures a Server.
type Option func(*Server, *dns.Server)

// WithTSIG requires updates to be signed with key (a fqdn such as
// "tsig-key.") using algorithm and base64 secret.
func WithTSIG(key, algorithm, secret string) Option {
	return func(s *Server, ds *dns.Server) {
		s.tsigKey, s.tsigAlg = dns.Fqdn(key), dns.Fqdn(algorithm)
		ds.TsigSecret = map[string]string{dns.Fqdn(key): secret}
	}
}

// Start serves zone on 127.0.0.1:0 (UDP) until the test ends.
func Start(t testing.TB, zone string, opts ...Option) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dnstest: listen: %v", err)
	}
	s := &Server{
		Addr:      pc.LocalAddr().String(),
		Zone:      dns.Fqdn(strings.ToLower(zone)),
		txt:       map[string][]Record{},
		cname:     map[string]string{},
		cnameSeq:  map[string][]string{},
		nsAddress: "127.0.0.1",
	}
	ds := &dns.Server{PacketConn: pc, Handler: s, MsgAcceptFunc: acceptAll}
	for _, o := range opts {
		o(s, ds)
	}
	s.srv = ds
	started := make(chan struct{})
	ds.NotifyStartedFunc = func() { close(started) }
	go func() { _ = ds.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatalf("dnstest: server did not start")
	}
	t.Cleanup(func() { _ = ds.Shutdown() })
	return s
}

func acceptAll(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // a response
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// SetTXT replaces the TXT values at name.
func (s *Server) SetTXT(name string, values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rs []Record
	for _, v := range values {
		rs = append(rs, Record{Value: v, TTL: 60})
	}
	s.txt[key(name)] = rs
}

// SetCNAME makes name an alias of target.
func (s *Server) SetCNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cname[key(name)] = dns.Fqdn(target)
}

// SetCNAMESequence makes name an alias of targets[0] for the first query of
// name, of targets[1] for the next, and so on; the last target stays. It
// lets tests change an alias between two lookups.
func (s *Server) SetCNAMESequence(name string, targets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fq []string
	for _, t := range targets {
		fq = append(fq, dns.Fqdn(t))
	}
	s.cnameSeq[key(name)] = fq
	if len(fq) > 0 {
		s.cname[key(name)] = fq[len(fq)-1]
	}
}

// HideTXT makes the next n TXT queries see no TXT records.
func (s *Server) HideTXT(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hideTXT = n
}

// TXT returns the TXT records at name.
func (s *Server) TXT(name string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.txt[key(name)]...)
}

// TXTQueries returns how many TXT queries were answered.
func (s *Server) TXTQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txtQuery
}

// Updates returns how many updates were applied; BadTSIG how many were
// refused for a missing or wrong signature.
func (s *Server) Updates() (applied, badTSIG int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates, s.badTSIG
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func (s *Server) inZone(name string) bool { return dns.IsSubDomain(s.Zone, key(name)) }

func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.Zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:      "ns1." + s.Zone,
		Mbox:    "hostmaster." + s.Zone,
		Serial:  1,
		Refresh: 60,
		Retry:   30,
		Expire:  600,
		Minttl:  5,
	}
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if r.Opcode == dns.OpcodeUpdate {
		m.Rcode = s.update(w, r)
		if t := r.IsTsig(); t != nil && w.TsigStatus() == nil {
			m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
		}
		_ = w.WriteMsg(m)
		return
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	s.answer(m, r.Question[0])
	_ = w.WriteMsg(m)
}

func (s *Server) answer(m *dns.Msg, q dns.Question) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := key(q.Name)
	if !s.inZone(name) {
		m.Rcode = dns.RcodeRefused
		return
	}
	if q.Qtype == dns.TypeTXT {
		s.txtQuery++
	}
	if seq := s.cnameSeq[name]; len(seq) > 1 {
		s.cnameSeq[name] = seq[1:]
		m.Answer = append(m.Answer, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 0},
			Target: seq[0],
		})
		return
	}
	if target, ok := s.cname[name]; ok {
		m.Answer = append(m.Answer, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60},
			Target: target,
		})
		return // like a server that does not chase aliases
	}
	switch q.Qtype {
	case dns.TypeSOA:
		if name == s.Zone {
			m.Answer = append(m.Answer, s.soa())
			return
		}
	case dns.TypeNS:
		if name == s.Zone {
			m.Answer = append(m.Answer, &dns.NS{
				Hdr: dns.RR_Header{Name: s.Zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 60},
				Ns:  "ns1." + s.Zone,
			})
			return
		}
	case dns.TypeA:
		if name == "ns1."+s.Zone {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(s.nsAddress),
			})
			return
		}
	case dns.TypeTXT:
		if s.hideTXT > 0 {
			s.hideTXT--
			break
		}
		for _, rec := range s.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: rec.TTL},
				Txt: []string{rec.Value},
			})
		}
		if len(m.Answer) > 0 {
			return
		}
	}
	// NODATA (or NXDOMAIN-like emptiness): SOA in the authority section.
	m.Ns = append(m.Ns, s.soa())
}

func (s *Server) update(w dns.ResponseWriter, r *dns.Msg) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tsigKey != "" {
		t := r.IsTsig()
		if t == nil || w.TsigStatus() != nil || !strings.EqualFold(t.Hdr.Name, s.tsigKey) || !strings.EqualFold(t.Algorithm, s.tsigAlg) {
			s.badTSIG++
			return dns.RcodeNotAuth
		}
	}
	if len(r.Question) != 1 || key(r.Question[0].Name) != s.Zone {
		return dns.RcodeNotAuth
	}
	for _, rr := range r.Ns {
		h := rr.Header()
		if !s.inZone(h.Name) {
			return dns.RcodeNotZone
		}
	}
	for _, rr := range r.Ns {
		h := rr.Header()
		name := key(h.Name)
		switch h.Class {
		case dns.ClassANY: // delete an RRset
			if h.Rrtype == dns.TypeTXT || h.Rrtype == dns.TypeANY {
				delete(s.txt, name)
			}
		case dns.ClassNONE: // delete one RR
			if txt, ok := rr.(*dns.TXT); ok {
				v := strings.Join(txt.Txt, "")
				kept := s.txt[name][:0]
				for _, rec := range s.txt[name] {
					if rec.Value != v {
						kept = append(kept, rec)
					}
				}
				if len(kept) == 0 {
					delete(s.txt, name)
				} else {
					s.txt[name] = kept
				}
			}
		case dns.ClassINET: // add
			if txt, ok := rr.(*dns.TXT); ok {
				v := strings.Join(txt.Txt, "")
				dup := false
				for _, rec := range s.txt[name] {
					dup = dup || rec.Value == v
				}
				if !dup {
					s.txt[name] = append(s.txt[name], Record{Value: v, TTL: h.Ttl})
				}
			}
		}
	}
	s.updates++
	return dns.RcodeSuccess
}
