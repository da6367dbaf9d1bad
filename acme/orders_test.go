package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fastPoll keeps the tests quick: the fake CA moves on one step per request.
var fastPoll = PollPolicy{Initial: time.Millisecond, Factor: 2, Max: 5 * time.Millisecond, Timeout: 5 * time.Second}

// fakeSolver records what it is asked to do.
type fakeSolver struct {
	mu         sync.Mutex
	events     []string       // "present example.com", "wait example.com", "cleanup example.com", "order <url>"
	live       map[string]int // records present now, per domain
	maxLive    map[string]int
	presentErr error
	waitErr    error
}

func newFakeSolver() *fakeSolver {
	return &fakeSolver{live: map[string]int{}, maxLive: map[string]int{}}
}

func (s *fakeSolver) log(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *fakeSolver) Present(ctx context.Context, domain, token, keyAuth string) error {
	if token == "" || keyAuth == "" {
		return errors.New("fake solver: empty token or key authorization")
	}
	s.mu.Lock()
	s.events = append(s.events, "present "+domain)
	s.live[domain]++
	s.maxLive[domain] = max(s.maxLive[domain], s.live[domain])
	s.mu.Unlock()
	return s.presentErr
}

func (s *fakeSolver) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.mu.Lock()
	s.events = append(s.events, "cleanup "+domain)
	s.live[domain]--
	s.mu.Unlock()
	return nil
}

func (s *fakeSolver) WaitPropagation(ctx context.Context, domain, keyAuth string) error {
	s.log("wait " + domain)
	return s.waitErr
}

func (s *fakeSolver) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if len(e) >= len(prefix) && e[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

func (s *fakeSolver) index(e string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Index(s.events, e)
}

func orderRequest(t *testing.T, solver *fakeSolver, domains ...string) OrderRequest {
	t.Helper()
	key, err := EC256.Generate()
	require.NoError(t, err)
	csr, err := CreateCSR(key, domains)
	require.NoError(t, err)
	return OrderRequest{
		Domains: domains, CSR: csr, Solver: solver,
		OnOrder: func(u string) error { solver.log("order " + u); return nil },
	}
}

func parseLeaf(t *testing.T, c *Certificate) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(c.CertificatePEM)
	require.NotNil(t, block)
	assert.Empty(t, rest, "CertificatePEM holds the leaf only")
	leaf, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return leaf
}

func TestObtainNewOrder(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, "")
	_, _, err := c.Register(t.Context(), Registration{TermsOfServiceAgreed: true})
	require.NoError(t, err)
	solver := newFakeSolver()
	req := orderRequest(t, solver, "example.com", "*.example.com", "www.example.org")
	req.Profile, req.ReplacesCertID = "shortlived", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

	cert, err := c.Obtain(t.Context(), req, fastPoll)
	require.NoError(t, err)

	assert.Equal(t, ca.url("/order/1"), cert.OrderURL)
	assert.Equal(t, ca.url("/cert/1"), cert.CertURL)
	leaf := parseLeaf(t, cert)
	assert.ElementsMatch(t, req.Domains, leaf.DNSNames)
	issuer, _ := pem.Decode(cert.IssuerPEM)
	require.NotNil(t, issuer)
	assert.Equal(t, ca.caCert.Raw, issuer.Bytes)

	ca.with(func() {
		assert.Equal(t, 1, ca.newOrders)
		assert.Equal(t, "shortlived", ca.lastNewOrder["profile"])
		_, hasReplaces := ca.lastNewOrder["replaces"]
		assert.False(t, hasReplaces, "replaces is sent only to CAs that offer ARI")
	})

	// OnOrder ran before any record was presented.
	assert.Equal(t, 0, solver.index("order "+ca.url("/order/1")))
	// Every authorization was answered and every record removed.
	assert.Equal(t, 3, solver.count("present "))
	assert.Equal(t, 3, solver.count("wait "))
	assert.Equal(t, 3, solver.count("cleanup "))
	for d, n := range solver.live {
		assert.Zero(t, n, "record of %s left behind", d)
	}
	// example.com and *.example.com share a record name: never presented at the same time.
	assert.Equal(t, 1, solver.maxLive["example.com"])
	// The CA was polled (challenge processing → valid, order processing → valid).
	assert.GreaterOrEqual(t, ca.count("POST /order/1"), 2)
	assert.Equal(t, 1, ca.count("POST /finalize/1"))
}

func TestObtainSendsReplacesToARICA(t *testing.T) {
	ca := newFakeCA(t)
	ca.with(func() { ca.ari = true })
	c := ca.dial(t, "")
	solver := newFakeSolver()
	req := orderRequest(t, solver, "example.com")
	req.ReplacesCertID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
	_, err := c.Obtain(t.Context(), req, fastPoll)
	require.NoError(t, err)
	ca.with(func() { assert.Equal(t, req.ReplacesCertID, ca.lastNewOrder["replaces"]) })
}

func TestObtainResume(t *testing.T) {
	cases := []struct {
		name       string
		status     string   // status of the stored order
		domains    []string // domains of the stored order
		resumeURL  string   // overrides the stored order's URL
		wantResume bool
	}{
		{name: "valid order: download only", status: acme.StatusValid, domains: []string{"example.com", "www.example.com"}, wantResume: true},
		{name: "ready order: finalize only", status: acme.StatusReady, domains: []string{"example.com", "www.example.com"}, wantResume: true},
		{name: "pending order: solve", status: acme.StatusPending, domains: []string{"www.example.com", "example.com"}, wantResume: true},
		{name: "different identifiers", status: acme.StatusValid, domains: []string{"example.com"}},
		{name: "more identifiers", status: acme.StatusValid, domains: []string{"example.com", "www.example.com", "x.example.com"}},
		{name: "invalid order", status: acme.StatusInvalid, domains: []string{"example.com", "www.example.com"}},
		{name: "unknown order", resumeURL: "/order/404"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := newFakeCA(t)
			c := ca.dial(t, ca.url("/acct/1"))
			var stored string
			if tc.domains != nil {
				ca.with(func() { stored = ca.addOrderLocked(tc.status, tc.domains...) })
			}
			if tc.resumeURL != "" {
				stored = ca.url(tc.resumeURL)
			}
			solver := newFakeSolver()
			req := orderRequest(t, solver, "example.com", "www.example.com")
			req.ResumeOrderURL = stored

			cert, err := c.Obtain(t.Context(), req, fastPoll)
			require.NoError(t, err)
			assert.ElementsMatch(t, req.Domains, parseLeaf(t, cert).DNSNames)
			if tc.wantResume {
				assert.Zero(t, ca.numNewOrders(), "no new order")
				assert.Equal(t, stored, cert.OrderURL)
				assert.Zero(t, solver.count("order "), "OnOrder is for new orders")
			} else {
				assert.Equal(t, 1, ca.numNewOrders(), "a new order")
				assert.NotEqual(t, stored, cert.OrderURL)
				assert.Equal(t, 1, solver.count("order "+cert.OrderURL))
			}
			wantPresent := 2
			if tc.wantResume && tc.status != acme.StatusPending {
				wantPresent = 0
			}
			assert.Equal(t, wantPresent, solver.count("present "))
			wantFinalize := 1
			if tc.wantResume && tc.status == acme.StatusValid {
				wantFinalize = 0
			}
			assert.Equal(t, wantFinalize, ca.count("POST /finalize/"))
		})
	}
}

func TestObtainErrors(t *testing.T) {
	boom := errors.New("dns provider says no")
	cases := []struct {
		name  string
		setup func(ca *fakeCA, s *fakeSolver, req *OrderRequest) // runs holding ca.mu
		want  error                                              // sentinel
		check func(t *testing.T, ca *fakeCA, s *fakeSolver, err error)
	}{
		{
			name: "rate limited",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				ca.fail["/new-order"] = fakeFailure{status: http.StatusTooManyRequests, problem: acme.RateLimitedErr, retryAfter: "120"}
			},
			want: ErrRateLimited,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				d, ok := RetryAfter(err)
				assert.True(t, ok)
				assert.Equal(t, 120*time.Second, d)
				assert.Contains(t, err.Error(), "retry after 2m0s")
			},
		},
		{
			name: "rejected identifier",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				ca.fail["/new-order"] = fakeFailure{status: http.StatusBadRequest, problem: problemNS + "rejectedIdentifier"}
			},
			want: ErrRejected,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				var e *Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, problemNS+"rejectedIdentifier", e.ProblemType)
				assert.Equal(t, "canned failure of /new-order", e.Detail)
				assert.Contains(t, err.Error(), "acme: new order: ")
				_, ok := RetryAfter(err)
				assert.False(t, ok)
			},
		},
		{
			name: "server error",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				ca.fail["/new-order"] = fakeFailure{status: http.StatusInternalServerError, problem: problemNS + "serverInternal"}
			},
			want: ErrUnreachable,
		},
		{
			name: "gateway error without problem document",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				ca.fail["/new-order"] = fakeFailure{status: http.StatusBadGateway}
			},
			want: ErrUnreachable,
		},
		{
			name: "challenge invalid",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				ca.challengeError = &acme.ProblemDetails{Type: problemNS + "dns", Detail: "no TXT record found", HTTPStatus: 400}
			},
			want: ErrChallengeFailed,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				var e *Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, problemNS+"dns", e.ProblemType)
				assert.Equal(t, "no TXT record found", e.Detail)
				assert.Equal(t, s.count("present "), s.count("cleanup "), "records removed")
			},
		},
		{
			name: "no dns-01 offered",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				ca.noDNS01 = true
			},
			want: ErrRejected,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				assert.Contains(t, err.Error(), "no dns-01 challenge for example.com")
				assert.Zero(t, s.count("present "))
			},
		},
		{
			name: "present fails",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				s.presentErr = boom
			},
			want: boom,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				assert.Contains(t, err.Error(), "acme: present DNS record for ")
				assert.ErrorIs(t, err, ErrDNSRecord)
				var ae *Error
				require.ErrorAs(t, err, &ae)
				assert.Contains(t, ae.Detail, "could not publish")
				assert.NotContains(t, ae.Detail, boom.Error(), "Detail is this package's words, not the solver's")
				assert.NotEmpty(t, ae.Identifier)
				assert.Equal(t, s.count("present "), s.count("cleanup "), "a failed Present is cleaned up too")
				assert.Zero(t, ca.count("POST /chall/"), "no challenge accepted")
			},
		},
		{
			name: "propagation fails",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				s.waitErr = boom
			},
			want: boom,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				assert.ErrorIs(t, err, ErrDNSRecord)
				var ae *Error
				require.ErrorAs(t, err, &ae)
				assert.Contains(t, ae.Detail, "did not become visible")
				assert.Equal(t, s.count("present "), s.count("cleanup "))
				assert.Zero(t, ca.count("POST /chall/"), "no challenge accepted")
			},
		},
		{
			name: "no solver",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				req.Solver = nil
			},
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				var ve *ValidationError
				assert.ErrorAs(t, err, &ve)
			},
		},
		{
			name: "OnOrder fails",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				req.OnOrder = func(string) error { return boom }
			},
			want: boom,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				assert.Contains(t, err.Error(), "acme: record order: ")
				assert.Zero(t, s.count("present "))
			},
		},
		{
			name: "order invalid after finalize",
			setup: func(ca *fakeCA, s *fakeSolver, req *OrderRequest) {
				o := ca.newOrderLocked([]string{"example.com"})
				o.status = acme.StatusReady
				o.orderError = &acme.ProblemDetails{Type: problemNS + "caa", Detail: "CAA forbids issuance", HTTPStatus: 403}
				req.ResumeOrderURL = ca.url("/order/" + o.id)
			},
			want: ErrRejected,
			check: func(t *testing.T, ca *fakeCA, s *fakeSolver, err error) {
				assert.Contains(t, err.Error(), "CAA forbids issuance")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := newFakeCA(t)
			c := ca.dial(t, ca.url("/acct/1"))
			solver := newFakeSolver()
			req := orderRequest(t, solver, "example.com")
			ca.with(func() { tc.setup(ca, solver, &req) })
			cert, err := c.Obtain(t.Context(), req, fastPoll)
			assert.Nil(t, cert)
			require.Error(t, err)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, ca, solver, err)
			}
		})
	}
}

// TestObtainHonoursRetryAfter checks that a Retry-After on a challenge or an order answer makes the
// client wait: here it asks for longer than the poll timeout, so the wait ends at once.
func TestObtainHonoursRetryAfter(t *testing.T) {
	for _, path := range []string{"/chall/1-0", "/order/1"} {
		t.Run(path, func(t *testing.T) {
			ca := newFakeCA(t)
			ca.with(func() { ca.retryAfter[path] = "30" })
			c := ca.dial(t, ca.url("/acct/1"))
			solver := newFakeSolver()
			// Without Retry-After the fake CA would finish within this timeout.
			policy := PollPolicy{Initial: time.Millisecond, Factor: 2, Max: 5 * time.Millisecond, Timeout: 5 * time.Second}
			_, err := c.Obtain(t.Context(), orderRequest(t, solver, "example.com"), policy)
			require.ErrorIs(t, err, ErrUnreachable)
			d, ok := RetryAfter(err)
			assert.True(t, ok)
			assert.InDelta(t, 30*time.Second, d, float64(2*time.Second))
			assert.Contains(t, err.Error(), "the CA asked to wait 30s")
			assert.Equal(t, 1, solver.count("cleanup "))
		})
	}
}

func TestObtainContextCancelled(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, ca.url("/acct/1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Obtain(ctx, orderRequest(t, newFakeSolver(), "example.com"), fastPoll)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, ca.numNewOrders())
}

func TestSameIdentifiers(t *testing.T) {
	ids := func(vs ...string) []acme.Identifier {
		var out []acme.Identifier
		for _, v := range vs {
			out = append(out, acme.Identifier{Type: "dns", Value: v})
		}
		return out
	}
	cases := []struct {
		ids     []acme.Identifier
		domains []string
		want    bool
	}{
		{ids("a.example", "b.example"), []string{"b.example", "a.example"}, true},
		{ids("a.example"), []string{"a.example"}, true},
		{ids("a.example"), []string{"a.example", "b.example"}, false},
		{ids("a.example", "a.example"), []string{"a.example", "b.example"}, false},
		{ids("a.example", "b.example"), []string{"a.example", "a.example"}, false},
		{ids("*.example"), []string{"example"}, false},
		{nil, nil, true},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			assert.Equal(t, tc.want, sameIdentifiers(tc.ids, tc.domains))
		})
	}
}
