package budget

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

var epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(epoch.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// AdvanceTo moves the clock to t unless it is already later.
func (c *fakeClock) AdvanceTo(t time.Time) {
	for {
		cur := c.ns.Load()
		if cur >= t.UnixNano() || c.ns.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

func lim(n int, d time.Duration) Limit { return Limit{Count: n, Period: d} }

// only returns limits where just one kind is limited.
func only(kind string, l Limit) Limits {
	var ls Limits
	switch kind {
	case "orders":
		ls.OrdersPerAccount = l
	case "domain":
		ls.CertsPerDomain = l
	case "duplicate":
		ls.DuplicateCerts = l
	case "failed":
		ls.FailedAuthzPerIdent = l
	}
	return ls
}

func newBudget(t testing.TB, limits map[string]Limits) (*Budget, *fakeClock) {
	t.Helper()
	c := newClock()
	b := New(c.Now)
	for a, l := range limits {
		if err := b.SetLimits(a, l); err != nil {
			t.Fatal(err)
		}
	}
	return b, c
}

func mustReserve(t *testing.T, b *Budget, r Request) {
	t.Helper()
	if ok, at, why := b.Reserve(r); !ok {
		t.Fatalf("Reserve(%+v) refused until %s: %s", r, at, why)
	}
}

func mustRefuse(t *testing.T, b *Budget, r Request, wantAt time.Time, wantWhy string) {
	t.Helper()
	ok, at, why := b.Reserve(r)
	if ok {
		t.Fatalf("Reserve(%+v) succeeded, want refusal until %s", r, wantAt)
	}
	if !wantAt.IsZero() && !at.Equal(wantAt) {
		t.Fatalf("Reserve(%+v) retryAt = %s, want %s (%s)", r, at, wantAt, why)
	}
	if !strings.Contains(why, wantWhy) {
		t.Fatalf("Reserve(%+v) why = %q, want it to contain %q", r, why, wantWhy)
	}
}

func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Limit
		wantErr string
	}{
		{in: "", want: Limit{}},
		{in: "0", want: Limit{}},
		{in: "0/1h", want: Limit{}},
		{in: "1/1s", want: lim(1, time.Second)},
		{in: "300/3h", want: lim(300, 3*time.Hour)},
		{in: "50/168h", want: lim(50, 168*time.Hour)},
		{in: "5/1h30m", want: lim(5, 90*time.Minute)},
		{in: "100000/8760h", want: lim(100000, 8760*time.Hour)},
		{in: "100001/1h", wantErr: "count \"100001\" must be a whole number from 0 to 100000"},
		{in: "5/0s", wantErr: "period \"0s\" must be from 1s to 8760h"},
		{in: "5/999ms", wantErr: "period \"999ms\" must be from 1s"},
		{in: "5/9000h", wantErr: "period \"9000h\" must be from 1s to 8760h"},
		{in: "5/-1h", wantErr: "period \"-1h\" must be from"},
		{in: "-1/1h", wantErr: "count \"-1\" must be a whole number"},
		{in: "+1/1h", wantErr: "count \"+1\" must be a whole number"},
		{in: "/1h", wantErr: "count \"\" must be a whole number"},
		{in: "5/", wantErr: "period \"\" is not a duration"},
		{in: "5", wantErr: "want COUNT/PERIOD"},
		{in: "5/1h/x", wantErr: "more than one '/'"},
		{in: " 5/1h ", wantErr: "remove the spaces"},
		{in: "5 per hour", wantErr: "remove the spaces"},
		{in: "5/hour", wantErr: "period \"hour\" is not a duration"},
		{in: "99999999999999999999/1h", wantErr: "must be a whole number"},
		{in: strings.Repeat("9", 10000) + "/1h", wantErr: "(10003 characters)"},
	} {
		t.Run(strconv.Quote(clipKey(tc.in)), func(t *testing.T) {
			got, err := ParseLimit(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseLimit(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseLimit(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if back, err := ParseLimit(got.String()); err != nil || back != got {
				t.Fatalf("ParseLimit(%q.String() = %q) = %+v, %v", tc.in, got.String(), back, err)
			}
		})
	}
}

func TestParseLimitErrorsClipInput(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("x", 100000),
		strings.Repeat("x", 35),
		"5/" + strings.Repeat("x", 35),
		strings.Repeat("7", 38) + "/1h",
		"5/" + strings.Repeat("é", 30),
	} {
		_, err := ParseLimit(in)
		if err == nil {
			t.Fatalf("ParseLimit(%.20q...) succeeded", in)
		}
		msg := err.Error()
		for _, run := range []string{strings.Repeat("x", 41), strings.Repeat("7", 41), strings.Repeat("é", 41)} {
			if strings.Contains(msg, run) {
				t.Fatalf("error echoes more than 40 characters of input: %q", msg)
			}
		}
		if len(msg) > 300 {
			t.Fatalf("error is %d bytes long: %q", len(msg), msg)
		}
	}
}

func TestLimitString(t *testing.T) {
	for _, tc := range []struct {
		l    Limit
		want string
	}{
		{Limit{}, "0"},
		{lim(300, 3*time.Hour), "300/3h"},
		{lim(5, 90*time.Minute), "5/90m"},
		{lim(5, 90*time.Second), "5/1m30s"},
		{lim(5, 1500*time.Millisecond), "5/1.5s"},
	} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.l, got, tc.want)
		}
	}
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"", "0", "300/3h", "5/1h/x", "1/1.5s", "100000/8760h", "-1/1h", " 5/1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimit(s)
		if err != nil {
			if len(err.Error()) > 300 {
				t.Fatalf("error too long: %q", err)
			}
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ParseLimit(%q) = %+v, which does not validate: %v", s, l, err)
		}
		if back, err := ParseLimit(l.String()); err != nil || back != l {
			t.Fatalf("round trip of %q: %q → %+v, %v", s, l.String(), back, err)
		}
	})
}

func TestSetLimitsRefusesInvalid(t *testing.T) {
	b, _ := newBudget(t, nil)
	for _, l := range []Limits{
		{OrdersPerAccount: lim(-1, time.Hour)},
		{CertsPerDomain: lim(5, 0)},
		{DuplicateCerts: lim(MaxCount+1, time.Hour)},
		{FailedAuthzPerIdent: lim(5, MaxPeriod+1)},
	} {
		if err := b.SetLimits("a", l); err == nil {
			t.Errorf("SetLimits(%+v) accepted", l)
		}
	}
	if err := b.SetLimits("a", LetsEncrypt()); err != nil {
		t.Fatal(err)
	}
}

func TestLetsEncryptLimits(t *testing.T) {
	l := LetsEncrypt()
	for _, tc := range []struct {
		l        Limit
		str      string
		interval time.Duration
	}{
		{l.OrdersPerAccount, "300/3h", 36 * time.Second},
		{l.CertsPerDomain, "50/168h", 202*time.Minute - 24*time.Second},
		{l.DuplicateCerts, "5/168h", 1*24*time.Hour + 9*time.Hour + 36*time.Minute},
		{l.FailedAuthzPerIdent, "5/1h", 12 * time.Minute},
	} {
		if tc.l.String() != tc.str || time.Duration(tc.l.interval()) != tc.interval {
			t.Errorf("%s: interval %s, want %s", tc.l, time.Duration(tc.l.interval()), tc.interval)
		}
	}
}

// TestBurstThenRefusal spends each kind of bucket to empty with every other limit off and
// checks the exact instant of the next token.
func TestBurstThenRefusal(t *testing.T) {
	for _, tc := range []struct {
		kind string
		l    Limit
		next func(i int) Request // the i-th request; all use the bucket under test
		why  string
	}{
		{"orders", lim(300, 3*time.Hour), func(i int) Request {
			return Request{Account: "a", Identifiers: []string{fmt.Sprintf("h%d.example%d.com", i, i)}}
		}, "new orders per account (300/3h)"},
		{"domain", lim(50, 168*time.Hour), func(i int) Request {
			return Request{Account: fmt.Sprintf("acct%d", i%3), Identifiers: []string{fmt.Sprintf("h%d.example.co.uk", i)}}
		}, "certificates per registered domain example.co.uk (50/168h)"},
		{"duplicate", lim(5, 168*time.Hour), func(i int) Request {
			return Request{Account: fmt.Sprintf("acct%d", i%3), Identifiers: []string{"b.example.com", "A.example.com."}, Renewal: i > 0}
		}, "duplicate certificates for a.example.com,b.example.com (5/168h)"},
		{"tiny", lim(3, time.Second), func(i int) Request { return Request{Account: "a"} }, "new orders per account (3/1s)"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			kind := tc.kind
			if kind == "tiny" {
				kind = "orders"
			}
			ls := only(kind, tc.l)
			b, c := newBudget(t, map[string]Limits{"a": ls, "acct0": ls, "acct1": ls, "acct2": ls})
			for i := range tc.l.Count {
				mustReserve(t, b, tc.next(i))
			}
			interval := time.Duration(tc.l.interval())
			mustRefuse(t, b, tc.next(tc.l.Count), epoch.Add(interval), tc.why)
			c.Set(epoch.Add(interval - 1))
			mustRefuse(t, b, tc.next(tc.l.Count), epoch.Add(interval), tc.why)
			c.Set(epoch.Add(interval))
			mustReserve(t, b, tc.next(tc.l.Count))
			mustRefuse(t, b, tc.next(tc.l.Count+1), epoch.Add(2*interval), tc.why)
		})
	}
}

func TestRefillRate(t *testing.T) {
	b, c := newBudget(t, map[string]Limits{"a": only("orders", lim(300, 3*time.Hour))})
	r := Request{Account: "a"}
	for range 300 {
		mustReserve(t, b, r)
	}
	for _, wait := range []time.Duration{36 * time.Second, 10 * 36 * time.Second, 35 * time.Second, 3 * time.Hour} {
		c.Advance(wait)
		want := min(int(wait/(36*time.Second)), 300)
		got := 0
		for {
			if ok, _, _ := b.Reserve(r); !ok {
				break
			}
			got++
		}
		if got != want {
			t.Errorf("after %s: %d tokens, want %d", wait, got, want)
		}
		if left := b.Stats().Accounts["a"].OrdersLeft; left != 0 {
			t.Errorf("OrdersLeft = %d after spending all", left)
		}
	}
}

func TestAllOrNothing(t *testing.T) {
	ls := LetsEncrypt()
	ls.CertsPerDomain = lim(2, 168*time.Hour)
	b, _ := newBudget(t, map[string]Limits{"a": ls})
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"x.example.com", "y.other.org"}})
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"z.example.com"}})
	before := b.Stats()
	// other.org has a token left, example.com has none: nothing may be spent.
	r := Request{Account: "a", Identifiers: []string{"w.other.org", "v.example.com"}}
	mustRefuse(t, b, r, time.Time{}, "certificates per registered domain example.com (2/168h)")
	after := b.Stats()
	if after.Accounts["a"].OrdersLeft != before.Accounts["a"].OrdersLeft || after.Accounts["a"].OrdersLeft != 298 {
		t.Fatalf("orders left %d → %d, want 298 unchanged", before.Accounts["a"].OrdersLeft, after.Accounts["a"].OrdersLeft)
	}
	if after.DomainBuckets != 2 || after.DuplicateBuckets != 2 {
		t.Fatalf("a refused reserve created buckets: %+v", after)
	}
	// other.org still has its second token.
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"w.other.org"}})
}

func TestExemptions(t *testing.T) {
	tight := Limits{
		OrdersPerAccount:    lim(1, time.Hour),
		CertsPerDomain:      lim(1, time.Hour),
		DuplicateCerts:      lim(1, time.Hour),
		FailedAuthzPerIdent: lim(1, time.Hour),
	}
	ids := []string{"www.example.com"}
	for _, tc := range []struct {
		name    string
		spent   Limits // which bucket is empty before the request (only that one is tight)
		req     Request
		wantOK  bool
		wantWhy string
	}{
		{"renewal exempt from domain", only("domain", tight.CertsPerDomain), Request{Renewal: true}, true, ""},
		{"new cert not exempt from domain", only("domain", tight.CertsPerDomain), Request{}, false, "registered domain"},
		{"renewal not exempt from duplicate", only("duplicate", tight.DuplicateCerts), Request{Renewal: true}, false, "duplicate certificates"},
		{"renewal not exempt from orders", only("orders", tight.OrdersPerAccount), Request{Renewal: true}, false, "new orders"},
		{"renewal not exempt from failed authz", only("failed", tight.FailedAuthzPerIdent), Request{Renewal: true}, false, "failed authorizations"},
		{"ARI exempt from orders", only("orders", tight.OrdersPerAccount), Request{ARI: true}, true, ""},
		{"ARI exempt from domain", only("domain", tight.CertsPerDomain), Request{ARI: true}, true, ""},
		{"ARI exempt from duplicate", only("duplicate", tight.DuplicateCerts), Request{ARI: true, Renewal: true}, true, ""},
		{"ARI exempt from failed authz", only("failed", tight.FailedAuthzPerIdent), Request{ARI: true}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newBudget(t, map[string]Limits{"a": tc.spent})
			if tc.spent.FailedAuthzPerIdent.Count > 0 {
				b.Failed("a", ids[0])
			} else {
				mustReserve(t, b, Request{Account: "a", Identifiers: ids})
			}
			r := tc.req
			r.Account, r.Identifiers = "a", ids
			ok, _, why := b.Reserve(r)
			if ok != tc.wantOK || !strings.Contains(why, tc.wantWhy) {
				t.Fatalf("Reserve(%+v) = %v %q, want %v %q", r, ok, why, tc.wantOK, tc.wantWhy)
			}
		})
	}
	t.Run("ARI spends nothing", func(t *testing.T) {
		b, _ := newBudget(t, map[string]Limits{"a": tight})
		for range 10 {
			mustReserve(t, b, Request{Account: "a", Identifiers: ids, ARI: true})
		}
		mustReserve(t, b, Request{Account: "a", Identifiers: ids})
		if s := b.Stats(); s.Exempt != 10 || s.Reserved != 11 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestFailedAuthorizations(t *testing.T) {
	b, c := newBudget(t, nil) // LetsEncrypt(): 5 per hour, one back every 12 minutes
	for range 4 {
		b.Failed("a", "www.example.com")
	}
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"www.example.com"}})
	b.Failed("a", "WWW.example.com.")
	blocked := Request{Account: "a", Identifiers: []string{"api.example.com", "www.example.com"}}
	mustRefuse(t, b, blocked, epoch.Add(12*time.Minute), "failed authorizations per identifier www.example.com (5/1h)")
	mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"*.www.example.com", "www.example.com"}}, epoch.Add(12*time.Minute), "www.example.com")
	// The wildcard's authorization is for the base name.
	mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"*.www.example.com"}}, epoch.Add(12*time.Minute), "www.example.com")
	// Other identifiers of the account and the same identifier on other accounts go on.
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"api.example.com"}})
	mustReserve(t, b, Request{Account: "b", Identifiers: []string{"www.example.com"}})
	// Failures past empty do not push the wait further out.
	for range 20 {
		b.Failed("a", "www.example.com")
	}
	mustRefuse(t, b, blocked, epoch.Add(12*time.Minute), "failed authorizations")
	if got := b.Stats().Accounts["a"].BlockedIdentifiers; got != 1 {
		t.Fatalf("BlockedIdentifiers = %d, want 1", got)
	}
	c.Advance(12 * time.Minute)
	mustReserve(t, b, blocked)
	// Checking does not spend: the token is still there.
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"www.example.com"}})
	// Unlimited failed authorizations never block.
	if err := b.SetLimits("u", Limits{}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		b.Failed("u", "www.example.com")
	}
	mustReserve(t, b, Request{Account: "u", Identifiers: []string{"www.example.com"}})
}

func TestRateLimited(t *testing.T) {
	r := Request{Account: "a", Identifiers: []string{"www.example.com"}}
	t.Run("holds until retryAfter", func(t *testing.T) {
		b, c := newBudget(t, nil)
		until := epoch.Add(90 * time.Minute)
		b.RateLimited(r, until)
		mustRefuse(t, b, r, until, "rateLimited answer from the CA")
		mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"other.org"}, ARI: true}, until, "rateLimited")
		mustReserve(t, b, Request{Account: "b", Identifiers: []string{"other.org"}})
		// An earlier Retry-After does not shorten the hold.
		b.RateLimited(r, epoch.Add(time.Minute))
		c.Set(until.Add(-1))
		mustRefuse(t, b, r, until, "rateLimited")
		c.Set(until)
		mustReserve(t, b, r)
		// The orders bucket was emptied: one token at retryAfter, then the normal rate.
		mustRefuse(t, b, Request{Account: "a"}, until.Add(36*time.Second), "new orders per account (300/3h)")
		if h := b.Stats().Accounts["a"].HeldUntil; !h.IsZero() {
			t.Fatalf("HeldUntil = %s after the hold", h)
		}
	})
	t.Run("no Retry-After empties the orders bucket", func(t *testing.T) {
		b, _ := newBudget(t, nil)
		b.RateLimited(r, time.Time{})
		mustRefuse(t, b, r, epoch.Add(36*time.Second), "new orders per account")
	})
	t.Run("unlimited orders still held", func(t *testing.T) {
		b, c := newBudget(t, map[string]Limits{"a": {}})
		b.RateLimited(r, epoch.Add(time.Hour))
		mustRefuse(t, b, r, epoch.Add(time.Hour), "rateLimited")
		c.Advance(time.Hour)
		mustReserve(t, b, r)
		mustReserve(t, b, r)
	})
	t.Run("absurd Retry-After capped", func(t *testing.T) {
		b, _ := newBudget(t, nil)
		b.RateLimited(r, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
		mustRefuse(t, b, r, epoch.Add(MaxPeriod), "rateLimited")
		if err := New(newClock().Now).Restore(b.Snapshot()); err != nil {
			t.Fatalf("snapshot after a capped hold does not restore: %v", err)
		}
	})
}

func TestRefund(t *testing.T) {
	b, _ := newBudget(t, nil)
	r := Request{Account: "a", Identifiers: []string{"www.example.com", "example.com"}}
	mustReserve(t, b, r)
	b.Refund(r)
	if s := b.Stats(); s.OrderBuckets+s.DomainBuckets+s.DuplicateBuckets != 0 || s.Accounts["a"].OrdersLeft != 300 {
		t.Fatalf("after refund: %+v", s)
	}
	// Refunding more than was taken never overfills a bucket.
	b.Refund(r)
	b.Refund(r)
	for range 5 {
		mustReserve(t, b, r)
	}
	mustRefuse(t, b, r, time.Time{}, "duplicate certificates")
}

// TestRetryAtIsExact drives random requests over few accounts and names and checks, every
// time a Reserve is refused, that the same Reserve is refused 1ns before retryAt and
// succeeds at retryAt.
func TestRetryAtIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	periods := []time.Duration{time.Second, 7 * time.Second, time.Minute, time.Hour, 168 * time.Hour}
	randLimit := func() Limit {
		if rng.IntN(6) == 0 {
			return Limit{}
		}
		return lim(1+rng.IntN(7), periods[rng.IntN(len(periods))]+time.Duration(rng.IntN(1000)))
	}
	accounts := []string{"a", "b", "c"}
	names := []string{"www.example.com", "api.example.com", "*.example.com", "x.example.co.uk", "y.example.co.uk", "foo.org", "192.0.2.1", "2001:db8::1", "2001:db8::2", "co.uk"}
	b, c := newBudget(t, nil)
	for _, a := range accounts {
		if err := b.SetLimits(a, Limits{randLimit(), randLimit(), randLimit(), randLimit()}); err != nil {
			t.Fatal(err)
		}
	}
	refusals := 0
	for range 5000 {
		r := Request{Account: accounts[rng.IntN(len(accounts))], Renewal: rng.IntN(3) == 0, ARI: rng.IntN(20) == 0}
		for range 1 + rng.IntN(4) {
			r.Identifiers = append(r.Identifiers, names[rng.IntN(len(names))])
		}
		switch rng.IntN(10) {
		case 0:
			b.Failed(r.Account, r.Identifiers[0])
			continue
		case 1:
			c.Advance(time.Duration(rng.Int64N(int64(time.Hour))))
		}
		ok, at, why := b.Reserve(r)
		if ok {
			continue
		}
		refusals++
		if !at.After(c.Now()) {
			t.Fatalf("refused with retryAt %s not after now %s", at, c.Now())
		}
		c.Set(at.Add(-1))
		if ok, at2, _ := b.Reserve(r); ok || !at2.Equal(at) {
			t.Fatalf("Reserve 1ns before retryAt: ok=%v retryAt=%s, want refusal until %s (%s)", ok, at2, at, why)
		}
		c.Set(at)
		if ok, at2, why2 := b.Reserve(r); !ok {
			t.Fatalf("Reserve at retryAt %s refused until %s: %s (first refused for %s)", at, at2, why2, why)
		}
	}
	if refusals < 100 {
		t.Fatalf("only %d refusals: the test exercises too little", refusals)
	}
}

// TestRetryAtIsExactConcurrent has goroutines with buckets of their own (and a shared
// mutex and clock) drain them; each refusal's retryAt must be honoured despite the others
// moving the clock.
func TestRetryAtIsExactConcurrent(t *testing.T) {
	const workers, rounds = 16, 300
	b, c := newBudget(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		acct := fmt.Sprintf("acct%d", w)
		ls := Limits{
			OrdersPerAccount:    lim(3+w%4, time.Duration(w+1)*time.Minute+7),
			CertsPerDomain:      lim(2+w%3, time.Hour),
			DuplicateCerts:      lim(5, 168*time.Hour),
			FailedAuthzPerIdent: lim(2, time.Hour),
		}
		if err := b.SetLimits(acct, ls); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range rounds {
				r := Request{Account: acct, Identifiers: []string{
					fmt.Sprintf("h%d.w%d-a.example", i, w), fmt.Sprintf("h%d.w%d-b.co.uk", i%5, w), fmt.Sprintf("w%d-c.org", w),
				}}
				if i%7 == 0 {
					b.Failed(acct, r.Identifiers[2])
				}
				ok, at, why := b.Reserve(r)
				if ok {
					continue
				}
				c.AdvanceTo(at)
				if ok, at2, why2 := b.Reserve(r); !ok {
					errs <- fmt.Errorf("%s: refused until %s (%s), then at %s refused until %s (%s)", acct, at, why, c.Now(), at2, why2)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestConcurrentSharedBuckets checks that goroutines racing for the same buckets never get
// more than the limits allow.
func TestConcurrentSharedBuckets(t *testing.T) {
	b, c := newBudget(t, nil)
	var got atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				r := Request{Account: "shared", Identifiers: []string{fmt.Sprintf("g%d-%d.example%d.net", g, i, i)}}
				if ok, _, _ := b.Reserve(r); ok {
					got.Add(1)
				}
				switch i % 10 {
				case 3:
					b.Failed("shared", "unrelated.example.org")
				case 5:
					_ = b.Stats()
				case 7:
					_ = b.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	if got.Load() != 300 {
		t.Fatalf("%d orders reserved at one instant, want exactly 300", got.Load())
	}
	// Racing the clock forward: no more than the burst plus what refilled.
	var more atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c.Advance(time.Second)
				if ok, _, _ := b.Reserve(Request{Account: "shared", Identifiers: []string{fmt.Sprintf("g%d-%d.example.io", g, i)}, Renewal: true}); ok {
					more.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if elapsed := c.Now().Sub(epoch); more.Load() > int64(elapsed/(36*time.Second)) {
		t.Fatalf("%d orders in %s, more than one per 36s", more.Load(), elapsed)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	b, c := newBudget(t, nil)
	reqs := []Request{
		{Account: "a", Identifiers: []string{"www.example.com", "*.example.com"}},
		{Account: "b", Identifiers: []string{"x.example.co.uk"}},
		{Account: "a", Identifiers: []string{"www.example.com", "*.example.com"}, Renewal: true},
	}
	for _, r := range reqs {
		mustReserve(t, b, r)
	}
	b.Failed("a", "www.example.com")
	b.RateLimited(Request{Account: "c"}, epoch.Add(time.Hour))
	c.Advance(time.Minute)

	raw, err := json.Marshal(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	b2 := New(c.Now)
	if err := b2.Restore(s); err != nil {
		t.Fatal(err)
	}
	raw2, _ := json.Marshal(b2.Snapshot())
	if string(raw) != string(raw2) {
		t.Fatalf("round trip differs:\n%s\n%s", raw, raw2)
	}
	for _, a := range []string{"a", "b", "c"} { // list every account in both Stats
		_ = b.SetLimits(a, LetsEncrypt())
		_ = b2.SetLimits(a, LetsEncrypt())
	}
	st1, st2 := b.Stats(), b2.Stats()
	for _, a := range []string{"a", "b", "c"} {
		x, y := st1.Accounts[a], st2.Accounts[a]
		if x.OrdersLeft != y.OrdersLeft || x.BlockedIdentifiers != y.BlockedIdentifiers || !x.HeldUntil.Equal(y.HeldUntil) {
			t.Errorf("account %s: %+v before, %+v after", a, x, y)
		}
	}
	// Restoring twice (or over a live budget) merges rather than double counting.
	if err := b2.Restore(s); err != nil {
		t.Fatal(err)
	}
	raw3, _ := json.Marshal(b2.Snapshot())
	if string(raw3) != string(raw) {
		t.Fatalf("second restore changed state:\n%s\n%s", raw, raw3)
	}
	// A snapshot restored after everything refilled holds nothing.
	c.Advance(169 * time.Hour)
	b3 := New(c.Now)
	if err := b3.Restore(s); err != nil {
		t.Fatal(err)
	}
	if got := b3.Snapshot(); len(got.Buckets)+len(got.Holds) != 0 {
		t.Fatalf("stale snapshot restored %+v", got)
	}
}

func TestRestoreRefusesGarbage(t *testing.T) {
	future := epoch.Add(time.Hour)
	for _, tc := range []struct {
		name string
		s    State
		json string
	}{
		{name: "zero state", s: State{}},
		{name: "future version", s: State{Version: 2}},
		{name: "unknown kind", s: State{Version: 1, Buckets: []BucketState{{Kind: "bogus", Key: "k", FullAt: future}}}},
		{name: "domain without key", s: State{Version: 1, Buckets: []BucketState{{Kind: "registered_domain", FullAt: future}}}},
		{name: "domain with account", s: State{Version: 1, Buckets: []BucketState{{Kind: "registered_domain", Account: "a", Key: "example.com", FullAt: future}}}},
		{name: "orders with key", s: State{Version: 1, Buckets: []BucketState{{Kind: "orders", Account: "a", Key: "x", FullAt: future}}}},
		{name: "failed authz without key", s: State{Version: 1, Buckets: []BucketState{{Kind: "failed_authz", Account: "a", FullAt: future}}}},
		{name: "far future", s: State{Version: 1, Buckets: []BucketState{
			{Kind: "orders", Account: "b", FullAt: future},
			{Kind: "orders", Account: "a", FullAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
		}}},
		{name: "twice", s: State{Version: 1, Buckets: []BucketState{{Kind: "orders", Account: "a", FullAt: future}, {Kind: "orders", Account: "a", FullAt: future}}}},
		{name: "huge key", s: State{Version: 1, Buckets: []BucketState{{Kind: "duplicate", Key: strings.Repeat("k", maxKeyLen+1), FullAt: future}}}},
		{name: "hold far future", s: State{Version: 1, Holds: []Hold{{Account: "a", Until: epoch.Add(2 * MaxPeriod)}}}},
		{name: "hold twice", s: State{Version: 1, Holds: []Hold{{Account: "a", Until: future}, {Account: "a", Until: future}}}},
		{name: "json wrong types", json: `{"version":1,"buckets":[{"kind":3,"full_at":"x"}]}`},
		{name: "json not an object", json: `[1,2,3]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newBudget(t, map[string]Limits{"a": only("orders", lim(2, time.Hour))})
			s := tc.s
			if tc.json != "" {
				if err := json.Unmarshal([]byte(tc.json), &s); err == nil {
					t.Fatalf("json %s decoded", tc.json)
				}
				s.Version = 1
				s.Buckets = append(s.Buckets, BucketState{Kind: "orders", Account: "a", Key: "garbage", FullAt: future})
			}
			err := b.Restore(s)
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("Restore = %v, want ErrBadState", err)
			}
			if len(err.Error()) > 300 {
				t.Fatalf("error too long: %d bytes", len(err.Error()))
			}
			// Nothing was restored: the buckets are full.
			if got := b.Snapshot(); len(got.Buckets)+len(got.Holds) != 0 {
				t.Fatalf("a refused Restore changed state: %+v", got)
			}
			mustReserve(t, b, Request{Account: "a"})
			mustReserve(t, b, Request{Account: "a"})
		})
	}
}

func FuzzRestore(f *testing.F) {
	f.Add([]byte(`{"version":1,"buckets":[{"kind":"orders","account":"a","full_at":"2025-06-01T13:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"holds":[{"account":"a","until":"2025-06-01T13:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"buckets":[{"kind":"registered_domain","key":"example.com","full_at":"0001-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if json.Unmarshal(data, &s) != nil {
			return
		}
		b, _ := newBudget(t, nil)
		if err := b.Restore(s); err != nil {
			if got := b.Snapshot(); len(got.Buckets)+len(got.Holds) != 0 {
				t.Fatalf("a refused Restore changed state: %+v", got)
			}
			return
		}
		// Whatever was accepted must survive its own round trip.
		b2, _ := newBudget(t, nil)
		if err := b2.Restore(b.Snapshot()); err != nil {
			t.Fatalf("own snapshot refused: %v", err)
		}
		b.Reserve(Request{Account: "a", Identifiers: []string{"www.example.com"}})
	})
}

// TestFullBucketsAreDropped spends 100k distinct buckets, lets them refill and checks that
// the next calls drop them and give the map's memory back.
func TestFullBucketsAreDropped(t *testing.T) {
	b, c := newBudget(t, map[string]Limits{"a": {
		CertsPerDomain:      lim(50, 168*time.Hour),
		FailedAuthzPerIdent: lim(5, time.Hour),
	}})
	const n = 100000
	for i := range n {
		b.Failed("a", fmt.Sprintf("h%d.example.com", i))
		if i%2 == 0 {
			mustReserve(t, b, Request{Account: "a", Identifiers: []string{fmt.Sprintf("d%d.com", i)}})
		}
	}
	if got := len(b.buckets); got < n {
		t.Fatalf("%d buckets held, want at least %d before refill", got, n)
	}
	c.Advance(time.Hour) // the failed authorization buckets are full again
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"new.example.org"}})
	if s := b.Stats(); s.FailedAuthzBuckets != 0 || s.DomainBuckets != n/2+1 {
		t.Fatalf("after 1h: %+v", s)
	}
	c.Advance(168 * time.Hour)
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"new.example.org"}})
	if got := len(b.buckets); got > 5 {
		t.Fatalf("%d buckets held after all refilled, want only the newest", got)
	}
	if b.peak > minSweepLen {
		t.Fatalf("map not rebuilt after shrinking: peak %d", b.peak)
	}
	// Snapshot drops full buckets too.
	c.Advance(168 * time.Hour)
	if s := b.Snapshot(); len(s.Buckets) != 0 || len(b.buckets) != 0 {
		t.Fatalf("snapshot kept %d buckets, map %d", len(s.Buckets), len(b.buckets))
	}
}

func TestRegisteredDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"www.example.com", "example.com"},
		{"WWW.Example.COM.", "example.com"},
		{"*.example.com", "example.com"},
		{"*.www.example.com", "example.com"},
		{"example.com", "example.com"},
		{"a.b.example.co.uk", "example.co.uk"},
		{"*.example.co.uk", "example.co.uk"},
		{"co.uk", "co.uk"},   // a bare public suffix counts as itself
		{"*.co.uk", "co.uk"}, // so does a wildcard under one
		{"com", "com"},       // a TLD
		{"localhost", "localhost"},
		{"a.b.github.io", "b.github.io"},                           // private section of the list
		{"xn--85x722f.xn--55qx5d.cn", "xn--85x722f.xn--55qx5d.cn"}, // IDN under the IDN suffix 公司.cn
		{"www.xn--mnchen-3ya.de", "xn--mnchen-3ya.de"},
		{"xn--55qx5d.cn", "xn--55qx5d.cn"},
		{"192.0.2.1", "192.0.2.1"},
		{"2001:db8:0:0:1::1", "2001:db8::/64"},
		{"2001:DB8::ffff", "2001:db8::/64"},
		{"a..example.com", "a..example.com"},
	} {
		if got := registeredDomain(normalize(tc.in)); got != tc.want {
			t.Errorf("registeredDomain(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Names under one registered domain share its bucket across accounts.
	ls := only("domain", lim(2, 168*time.Hour))
	b, _ := newBudget(t, map[string]Limits{"a": ls, "b": ls})
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"www.example.co.uk"}})
	mustReserve(t, b, Request{Account: "b", Identifiers: []string{"*.example.co.uk", "example.co.uk"}})
	mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"api.EXAMPLE.co.uk."}}, time.Time{}, "registered domain example.co.uk")
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"other.co.uk"}})
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"2001:db8::1"}})
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"2001:db8::2"}})
	mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"2001:db8::3"}}, time.Time{}, "2001:db8::/64")
}

func TestStats(t *testing.T) {
	b, _ := newBudget(t, map[string]Limits{"idle": LetsEncrypt(), "free": {}})
	mustReserve(t, b, Request{Account: "a", Identifiers: []string{"www.example.com"}})
	b.Refund(Request{Account: "zzz", Identifiers: []string{"nothing.example"}})
	for range 5 {
		mustReserve(t, b, Request{Account: "a", Identifiers: []string{"x.example.com"}})
	}
	mustRefuse(t, b, Request{Account: "a", Identifiers: []string{"x.example.com"}}, time.Time{}, "duplicate")
	s := b.Stats()
	if s.Reserved != 6 || s.Waited != 1 || s.Refunded != 1 || s.OrderBuckets != 1 || s.DomainBuckets != 1 || s.DuplicateBuckets != 2 {
		t.Fatalf("stats %+v", s)
	}
	want := map[string]AccountStats{
		"a":    {OrdersLeft: 294, Reserved: 6, Waited: 1},
		"idle": {OrdersLeft: 300},
		"free": {OrdersLeft: -1},
	}
	for a, w := range want {
		if got := s.Accounts[a]; got != w {
			t.Errorf("account %s: %+v, want %+v", a, got, w)
		}
	}
	b.RemoveAccount("a")
	if s := b.Stats(); s.OrderBuckets != 0 || s.DomainBuckets != 1 {
		t.Fatalf("after RemoveAccount: %+v", s)
	}
}

// TestImportsAreLeaf enforces the package's allow-list (boundaries_test.go only forbids).
func TestImportsAreLeaf(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") && p != "golang.org/x/net/publicsuffix" {
				t.Errorf("%s imports %s: budget may use only the standard library and golang.org/x/net/publicsuffix", name, p)
			}
		}
	}
}

// BenchmarkReserve10kAccounts reserves round-robin over 10k accounts with a few names each
// while the clock moves on.
func BenchmarkReserve10kAccounts(b *testing.B) {
	const accounts = 10000
	bg, c := newBudget(b, nil)
	reqs := make([]Request, accounts)
	for i := range reqs {
		reqs[i] = Request{Account: fmt.Sprintf("acct-%d", i), Identifiers: []string{
			fmt.Sprintf("www.tenant%d.example.com", i), fmt.Sprintf("tenant%d.example.com", i),
		}, Renewal: i%2 == 0}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c.Advance(time.Millisecond)
		bg.Reserve(reqs[i%accounts])
		i++
	}
}
