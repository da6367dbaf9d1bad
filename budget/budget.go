package budget

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// Bounds accepted for a Limit.
const (
	MaxCount  = 100000           // largest Count of a Limit
	MinPeriod = time.Second      // shortest Period of a limited Limit
	MaxPeriod = 8760 * time.Hour // longest Period of a limited Limit (one year)
)

// maxLimitLen is the longest string ParseLimit reads; "100000/8760h0m0.000000001s" fits.
const maxLimitLen = 40

// Limit is a token bucket of Count tokens that refills continuously at Count per Period:
// bursts of up to Count, then one token every Period/Count. Count 0 means unlimited.
type Limit struct {
	Count  int
	Period time.Duration
}

// ParseLimit parses "COUNT/PERIOD" such as "300/3h" or "50/168h", where PERIOD is a Go
// duration. "" and "0" mean unlimited. COUNT must be 0..MaxCount and PERIOD
// MinPeriod..MaxPeriod. Spaces are refused, not trimmed. Error messages quote at most
// 32 characters of s.
func ParseLimit(s string) (Limit, error) {
	if s == "" || s == "0" {
		return Limit{}, nil
	}
	if len(s) > maxLimitLen {
		return Limit{}, fmt.Errorf("invalid limit %s (%d characters): want COUNT/PERIOD such as 300/3h", clip(s), len(s))
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		return Limit{}, fmt.Errorf("invalid limit %s: remove the spaces; want COUNT/PERIOD such as 300/3h", clip(s))
	}
	count, period, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("invalid limit %s: want COUNT/PERIOD such as 300/3h, or 0 for unlimited", clip(s))
	}
	if strings.Contains(period, "/") {
		return Limit{}, fmt.Errorf("invalid limit %s: more than one '/'; want COUNT/PERIOD such as 300/3h", clip(s))
	}
	n, err := strconv.Atoi(count)
	if err != nil || count == "" || count[0] < '0' || count[0] > '9' || n > MaxCount {
		return Limit{}, fmt.Errorf("invalid limit %s: count %s must be a whole number from 0 to %d", clip(s), clip(count), MaxCount)
	}
	d, err := time.ParseDuration(period)
	if err != nil {
		return Limit{}, fmt.Errorf("invalid limit %s: period %s is not a duration such as 1h, 3h or 168h", clip(s), clip(period))
	}
	if d < MinPeriod || d > MaxPeriod {
		return Limit{}, fmt.Errorf("invalid limit %s: period %s must be from %s to %s", clip(s), clip(period), formatPeriod(MinPeriod), formatPeriod(MaxPeriod))
	}
	if n == 0 {
		return Limit{}, nil
	}
	return Limit{Count: n, Period: d}, nil
}

// String formats l as ParseLimit reads it: "300/3h", or "0" when unlimited.
func (l Limit) String() string {
	if l.Count == 0 {
		return "0"
	}
	return strconv.Itoa(l.Count) + "/" + formatPeriod(l.Period)
}

// Validate reports whether l is within the bounds ParseLimit accepts.
func (l Limit) Validate() error {
	if l.Count < 0 || l.Count > MaxCount {
		return fmt.Errorf("count %d must be from 0 to %d", l.Count, MaxCount)
	}
	if l.Count > 0 && (l.Period < MinPeriod || l.Period > MaxPeriod) {
		return fmt.Errorf("period %s must be from %s to %s", l.Period, formatPeriod(MinPeriod), formatPeriod(MaxPeriod))
	}
	return nil
}

// interval is the time one token takes to come back, in nanoseconds, rounded up so that the
// budget never refills faster than the CA. l must be limited and valid.
func (l Limit) interval() int64 {
	n := int64(l.Count)
	return (int64(l.Period) + n - 1) / n
}

// capacity is the time an empty bucket takes to fill again: Count intervals.
func (l Limit) capacity() int64 { return l.interval() * int64(l.Count) }

func formatPeriod(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return d.String()
	}
}

// clip quotes at most 32 bytes of s for an error message.
func clip(s string) string {
	if len(s) > 32 {
		s = s[:32]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		return strconv.Quote(s) + "…"
	}
	return strconv.Quote(s)
}

// Limits are the limits the budget applies on behalf of one ACME account.
type Limits struct {
	OrdersPerAccount    Limit // new orders per account
	CertsPerDomain      Limit // new certificates per registered domain, across all accounts; renewals exempt
	DuplicateCerts      Limit // certificates for the exact same identifier set, across all accounts
	FailedAuthzPerIdent Limit // failed authorizations per identifier per account
}

// LetsEncrypt returns Let's Encrypt's published production limits (2025).
func LetsEncrypt() Limits {
	return Limits{
		OrdersPerAccount:    Limit{Count: 300, Period: 3 * time.Hour},
		CertsPerDomain:      Limit{Count: 50, Period: 168 * time.Hour},
		DuplicateCerts:      Limit{Count: 5, Period: 168 * time.Hour},
		FailedAuthzPerIdent: Limit{Count: 5, Period: time.Hour},
	}
}

// Validate reports the first limit of l out of bounds, naming it.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		l    Limit
	}{
		{"orders per account", l.OrdersPerAccount},
		{"certificates per domain", l.CertsPerDomain},
		{"duplicate certificates", l.DuplicateCerts},
		{"failed authorizations per identifier", l.FailedAuthzPerIdent},
	} {
		if err := f.l.Validate(); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// Request describes a new order the engine is about to place.
type Request struct {
	Account     string   // the ACME account (the engine's name for it) placing the order
	Identifiers []string // DNS names (possibly "*.x") or IP addresses of the certificate
	Renewal     bool     // same identifier set as a certificate already issued: exempt from the per-domain limit
	ARI         bool     // an ARI renewal inside the CA's window (names the certificate it replaces): exempt from every limit
}

type kind uint8

const (
	kindOrders kind = iota
	kindDomain
	kindDuplicate
	kindFailedAuthz
	numKinds
)

var kindNames = [numKinds]string{"orders", "registered_domain", "duplicate", "failed_authz"}

// bucketKey names a bucket. account is empty for the buckets shared by all accounts
// (domain, duplicate); key is empty for the orders bucket.
type bucketKey struct {
	kind    kind
	account string
	key     string
}

type counters struct{ reserved, waited uint64 }

// Sweep tuning: full buckets are dropped when they are next touched, and all at once when
// the map has doubled since the last sweep or sweepEvery has passed, which keeps the cost
// amortised O(1) per call.
const (
	sweepEvery  = time.Minute
	minSweepLen = 1024
)

// Budget holds the token buckets of every account. A bucket is stored as the instant it
// will be full again (a GCRA "theoretical arrival time", Unix nanoseconds): it holds
// (capacity - (full - now)) / interval tokens. A full bucket is the same as no bucket, so
// the maps hold only partly spent ones. All methods are safe for concurrent use.
type Budget struct {
	now func() time.Time

	mu       sync.Mutex
	limits   map[string]Limits    // per account; accounts not listed get LetsEncrypt()
	buckets  map[bucketKey]int64  // instant each partly spent bucket is full again
	starts   map[bucketKey]int64  // with latency: instant each spent bucket's current burst began
	holds    map[string]int64     // account → instant before which the CA said to wait
	accounts map[string]*counters // per account reserve counters

	reserved, waited, exempt, refunded uint64 // totals for Stats

	latency int64 // how long after its Reserve an order may reach the CA (SetLatency), ns

	peak        int   // largest len(buckets) since the map was last rebuilt
	nextSweepN  int   // sweep when len(buckets) reaches this
	nextSweepAt int64 // or when the clock reaches this
}

// New returns an empty budget (every bucket full) reading time from now, or from
// time.Now when now is nil. Accounts get LetsEncrypt() limits until SetLimits.
func New(now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	return &Budget{
		now:        now,
		limits:     map[string]Limits{},
		buckets:    map[bucketKey]int64{},
		starts:     map[bucketKey]int64{},
		holds:      map[string]int64{},
		accounts:   map[string]*counters{},
		nextSweepN: minSweepLen,
	}
}

// SetLimits sets the limits applied to the requests of account. The shared buckets
// (registered domain, duplicate) are judged with the limits of the account that asks.
// Invalid limits are refused and the previous ones kept.
func (b *Budget) SetLimits(account string, l Limits) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("budget: limits of account %s: %w", clip(account), err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limits[account] = l
	return nil
}

// RemoveAccount forgets account: its limits, counters, CA hold, orders bucket and failed
// authorization buckets. The shared buckets keep what it spent.
func (b *Budget) RemoveAccount(account string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.limits, account)
	delete(b.accounts, account)
	delete(b.holds, account)
	for k := range b.buckets {
		if k.account == account {
			b.drop(k)
		}
	}
}

// SetLatency sets how long after its Reserve an order may reach the CA (d < 0 counts as 0; the
// default is 0). The CA's bucket starts refilling when the first order of a burst arrives there,
// which may be up to d after the budget reserved it; if later orders arrive faster, the CA's
// bucket holds one token fewer than the budget's whenever the budget says a token has just come
// back, and the CA answers rateLimited. So a token that came back since the bucket's burst began
// is usable only d after the budget's model says it is there: the burst itself is untouched, and
// the refill runs at the same rate, d later. A full bucket is forgotten only d after it is full.
// A bucket emptied by RateLimited needs no allowance (the CA said where it stands). A limit that
// refills completely in little more than d gets less (allowance), so that its bucket never fills
// up while an order waits for its allowance.
func (b *Budget) SetLatency(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latency = int64(max(d, 0))
}

// allowance is the latency allowance for a bucket of l: latency, at most half the time the bucket
// takes to give back all tokens but one (a bucket that refills completely while an order waits
// for its allowance would start a new burst behind the CA's and make every next token wait for
// the allowance again).
func (b *Budget) allowance(l Limit) int64 {
	if l.Count <= 1 {
		return b.latency
	}
	return min(b.latency, (l.capacity()-l.interval())/2)
}

// drop forgets bucket k.
func (b *Budget) drop(k bucketKey) {
	delete(b.buckets, k)
	delete(b.starts, k)
}

func (b *Budget) limitsOf(account string) Limits {
	if l, ok := b.limits[account]; ok {
		return l
	}
	return LetsEncrypt()
}

func (b *Budget) clock() int64 { return b.now().UnixNano() }

// need is one bucket a request uses: spent by Reserve, or only checked for a token.
type need struct {
	k     bucketKey
	l     Limit
	spend bool
}

func (n need) describe() string {
	switch n.k.kind {
	case kindOrders:
		return "new orders per account (" + n.l.String() + ")"
	case kindDomain:
		return "certificates per registered domain " + clipKey(n.k.key) + " (" + n.l.String() + ")"
	case kindDuplicate:
		return "duplicate certificates for " + clipKey(n.k.key) + " (" + n.l.String() + ")"
	default:
		return "failed authorizations per identifier " + clipKey(n.k.key) + " (" + n.l.String() + ")"
	}
}

func clipKey(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// needs lists the buckets r uses under its account's limits; nil for ARI renewals.
func (b *Budget) needs(r Request) []need {
	if r.ARI {
		return nil
	}
	l := b.limitsOf(r.Account)
	ids := normalizeAll(r.Identifiers)
	ns := make([]need, 0, 2+2*len(ids))
	if l.OrdersPerAccount.Count > 0 {
		ns = append(ns, need{bucketKey{kindOrders, r.Account, ""}, l.OrdersPerAccount, true})
	}
	if len(ids) == 0 {
		return ns
	}
	if !r.Renewal && l.CertsPerDomain.Count > 0 {
		from := len(ns)
		for _, id := range ids {
			if k := (bucketKey{kindDomain, "", registeredDomain(id)}); !has(ns[from:], k) {
				ns = append(ns, need{k, l.CertsPerDomain, true})
			}
		}
	}
	if l.DuplicateCerts.Count > 0 {
		ns = append(ns, need{bucketKey{kindDuplicate, "", strings.Join(ids, ",")}, l.DuplicateCerts, true})
	}
	if l.FailedAuthzPerIdent.Count > 0 {
		from := len(ns)
		for _, id := range ids {
			if k := (bucketKey{kindFailedAuthz, r.Account, authzIdentifier(id)}); !has(ns[from:], k) {
				ns = append(ns, need{k, l.FailedAuthzPerIdent, false})
			}
		}
	}
	return ns
}

// has reports whether ns holds k. A linear scan: a request has at most ~100 identifiers.
func has(ns []need, k bucketKey) bool {
	for _, n := range ns {
		if n.k == k {
			return true
		}
	}
	return false
}

// readyAt returns the first instant at which n's bucket holds a token (at most now when it
// holds one already), dropping the bucket when it is full.
func (b *Budget) readyAt(n need, now int64) int64 {
	full, ok := b.buckets[n.k]
	if !ok {
		return now
	}
	if full+b.allowance(n.l) <= now {
		b.drop(n.k)
		return now
	}
	// A token is there when full - now <= capacity - interval.
	t := full - (n.l.capacity() - n.l.interval())
	if b.latency > 0 && n.spend {
		// A token that came back since the burst began, rather than one left of it, is
		// usable latency later (SetLatency).
		if start, ok := b.starts[n.k]; !ok || t > start {
			t += b.allowance(n.l)
		}
	}
	return t
}

func (b *Budget) set(k bucketKey, full int64) {
	b.buckets[k] = full
	if len(b.buckets) > b.peak {
		b.peak = len(b.buckets)
	}
}

func (b *Budget) counter(account string) *counters {
	c := b.accounts[account]
	if c == nil {
		c = &counters{}
		b.accounts[account] = c
	}
	return c
}

// Reserve takes one token from every bucket r needs, all or nothing. It reports ok (with a
// zero retryAt and why) when it took them. Otherwise it takes none and returns the instant at which every needed bucket
// will hold a token again (a Reserve of r at that instant succeeds if nothing else spends
// them meanwhile) and which limit blocks last, such as "new orders per account (300/3h)".
// A hold set by RateLimited blocks every request of the account, ARI renewals included.
func (b *Budget) Reserve(r Request) (ok bool, retryAt time.Time, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	b.maybeSweep(now)
	latest := now
	if h, held := b.holds[r.Account]; held {
		if h > now {
			latest = h
			why = "rateLimited answer from the CA for this account (wait until " + time.Unix(0, h).UTC().Format(time.RFC3339) + ")"
		} else {
			delete(b.holds, r.Account)
		}
	}
	ns := b.needs(r)
	for _, n := range ns {
		if t := b.readyAt(n, now); t > latest {
			latest, why = t, n.describe()
		}
	}
	c := b.counter(r.Account)
	if latest > now {
		b.waited++
		c.waited++
		return false, time.Unix(0, latest).UTC(), why
	}
	for _, n := range ns {
		if n.spend {
			full, ok := b.buckets[n.k]
			if !ok && b.latency > 0 {
				b.starts[n.k] = now // a burst begins: its tokens are at the CA too
			}
			b.set(n.k, max(full, now)+n.l.interval())
		}
	}
	b.reserved++
	c.reserved++
	if r.ARI {
		b.exempt++
	}
	return true, time.Time{}, ""
}

// Refund gives back the tokens a successful Reserve of r took, for when the caller did not
// place the order after all (it failed before contacting the CA). Refunding what was not
// reserved gives away capacity that others spent; a bucket never holds more than its size.
func (b *Budget) Refund(r Request) { b.refund(r, true) }

// RefundRefused gives back the tokens a successful Reserve of r took from the buckets shared by
// all accounts (registered domain, duplicate), for an order the CA refused with rateLimited: it
// created no order, so it spent none of them, and a per-domain token lost here would cost every
// further certificate of that domain a whole refill interval (202 minutes at Let's Encrypt). The
// account's orders bucket keeps the refusal: RateLimited empties it.
func (b *Budget) RefundRefused(r Request) { b.refund(r, false) }

func (b *Budget) refund(r Request, orders bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	for _, n := range b.needs(r) {
		full, ok := b.buckets[n.k]
		if !n.spend || !ok || !orders && n.k.kind == kindOrders {
			continue
		}
		if full -= n.l.interval(); full+b.allowance(n.l) <= now {
			b.drop(n.k)
		} else {
			b.buckets[n.k] = full
		}
	}
	b.refunded++
}

// Failed records a failed authorization (validation) of identifier for account: one token
// of its failed authorizations bucket. While that bucket is empty, Reserve refuses orders
// of account that include identifier. "*.x" counts as x, as the CA's authorization does.
func (b *Budget) Failed(account, identifier string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.limitsOf(account).FailedAuthzPerIdent
	id := normalize(identifier)
	if l.Count == 0 || id == "" {
		return
	}
	now := b.clock()
	b.maybeSweep(now)
	k := bucketKey{kindFailedAuthz, account, authzIdentifier(id)}
	// Failures past empty do not push the bucket further: the CA's bucket is empty too.
	b.set(k, min(max(b.buckets[k], now)+l.interval(), now+l.capacity()))
}

// RateLimited records that the CA answered a request of r.Account with rateLimited and a
// Retry-After of retryAfter (zero if none). No request of the account (ARI included) is
// allowed before retryAfter, and its orders bucket is emptied so that its next token comes
// at retryAfter, or after one refill interval when retryAfter is not in the future.
// retryAfter is capped at MaxPeriod from now.
func (b *Budget) RateLimited(r Request, retryAfter time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	until := now
	if retryAfter.After(time.Unix(0, now)) {
		until = time.Unix(0, now).Add(min(retryAfter.Sub(time.Unix(0, now)), MaxPeriod)).UnixNano()
		if until > b.holds[r.Account] {
			b.holds[r.Account] = until
		}
	}
	if l := b.limitsOf(r.Account).OrdersPerAccount; l.Count > 0 {
		k := bucketKey{kindOrders, r.Account, ""}
		next := max(until, now+l.interval())
		if full := next + l.capacity() - l.interval(); full > b.buckets[k] {
			b.set(k, full)
			if b.latency > 0 {
				b.starts[k] = math.MaxInt64 // the CA said where it stands: no allowance
			}
		}
	}
}

func (b *Budget) maybeSweep(now int64) {
	if len(b.buckets) < b.nextSweepN && now < b.nextSweepAt {
		return
	}
	b.sweep(now)
}

// sweep drops full buckets and past holds, and rebuilds the map when it has shrunk to a
// quarter of its peak (Go maps do not give memory back on delete).
func (b *Budget) sweep(now int64) {
	for k, full := range b.buckets {
		if full+b.latency <= now {
			b.drop(k)
		}
	}
	for a, h := range b.holds {
		if h <= now {
			delete(b.holds, a)
		}
	}
	if n := len(b.buckets); b.peak > minSweepLen && n < b.peak/4 {
		m := make(map[bucketKey]int64, n)
		for k, v := range b.buckets {
			m[k] = v
		}
		starts := make(map[bucketKey]int64, len(b.starts))
		for k, v := range b.starts {
			starts[k] = v
		}
		b.buckets, b.starts, b.peak = m, starts, n
	}
	b.nextSweepN = max(2*len(b.buckets), minSweepLen)
	b.nextSweepAt = now + int64(sweepEvery)
}

// normalize lower-cases id, drops a trailing dot and writes IP addresses canonically.
func normalize(id string) string {
	id = strings.ToLower(strings.TrimSuffix(id, "."))
	if a, err := netip.ParseAddr(id); err == nil {
		return a.String()
	}
	return id
}

// normalizeAll returns the sorted set of normalised, non-empty identifiers.
func normalizeAll(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id = normalize(id); id != "" {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// authzIdentifier is the identifier the CA authorizes for id: "*.x" is authorized as x.
func authzIdentifier(id string) string { return strings.TrimPrefix(id, "*.") }

// registeredDomain is the key of the per-domain bucket for a normalised identifier: its
// eTLD+1 by the Public Suffix List (the name itself when it is a public suffix or has no
// eTLD+1), an IPv4 address itself, or an IPv6 address's /64.
func registeredDomain(id string) string {
	id = authzIdentifier(id)
	if a, err := netip.ParseAddr(id); err == nil {
		if a.Is4() {
			return a.String()
		}
		p, _ := a.Prefix(64)
		return p.String()
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(id); err == nil {
		return d
	}
	return id
}

// StateVersion is the Version of the State that Snapshot writes and Restore reads.
const StateVersion = 1

// State is the persistable state of a Budget: its partly spent buckets and CA holds. It
// marshals to JSON. Limits and counters are not part of it.
type State struct {
	Version int           `json:"version"`
	Buckets []BucketState `json:"buckets,omitempty"`
	Holds   []Hold        `json:"holds,omitempty"`
}

// BucketState is one partly spent bucket: the instant it is full again.
type BucketState struct {
	Kind    string    `json:"kind"`              // "orders", "registered_domain", "duplicate" or "failed_authz"
	Account string    `json:"account,omitempty"` // for orders and failed_authz
	Key     string    `json:"key,omitempty"`     // registered domain, identifier set or identifier
	FullAt  time.Time `json:"full_at"`
}

// Hold is a wait the CA imposed on an account with a rateLimited answer.
type Hold struct {
	Account string    `json:"account"`
	Until   time.Time `json:"until"`
}

// Snapshot returns the state to persist, dropping full buckets first. Its order is stable.
func (b *Budget) Snapshot() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	b.sweep(now)
	s := State{Version: StateVersion}
	for k, full := range b.buckets {
		s.Buckets = append(s.Buckets, BucketState{Kind: kindNames[k.kind], Account: k.account, Key: k.key, FullAt: time.Unix(0, full).UTC()})
	}
	for a, h := range b.holds {
		s.Holds = append(s.Holds, Hold{Account: a, Until: time.Unix(0, h).UTC()})
	}
	slices.SortFunc(s.Buckets, func(x, y BucketState) int {
		return strings.Compare(x.Kind+"\x00"+x.Account+"\x00"+x.Key, y.Kind+"\x00"+y.Account+"\x00"+y.Key)
	})
	slices.SortFunc(s.Holds, func(x, y Hold) int { return strings.Compare(x.Account, y.Account) })
	return s
}

// maxKeyLen bounds restored keys: 100 identifiers of 253 characters and their commas.
const maxKeyLen = 1 << 15

// ErrBadState is wrapped by the errors of Restore.
var ErrBadState = errors.New("budget: bad state")

// Restore merges s into the budget: each bucket keeps the emptier of its current and
// restored states, and each hold the later instant. Entries already full are skipped. It
// validates all of s first and changes nothing when s is invalid (a new Budget then keeps
// its full buckets): unknown version or kind, missing or misplaced keys, duplicate
// entries, or instants further ahead than any limit allows.
func (b *Budget) Restore(s State) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	nowT := time.Unix(0, now)
	// A bucket emptied by RateLimited is full again at most 2*MaxPeriod (+ rounding) ahead.
	horizon := nowT.Add(2*MaxPeriod + time.Hour)
	if s.Version != StateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadState, s.Version, StateVersion)
	}
	buckets := make(map[bucketKey]int64, len(s.Buckets))
	seen := make(map[bucketKey]bool, len(s.Buckets))
	for i, e := range s.Buckets {
		k, err := e.key()
		if err != nil {
			return fmt.Errorf("%w: bucket %d: %w", ErrBadState, i, err)
		}
		if seen[k] {
			return fmt.Errorf("%w: bucket %d: %s %s %s appears twice", ErrBadState, i, e.Kind, clip(e.Account), clip(e.Key))
		}
		seen[k] = true
		if e.FullAt.After(horizon) {
			return fmt.Errorf("%w: bucket %d: full_at %s is too far ahead", ErrBadState, i, e.FullAt.UTC().Format(time.RFC3339))
		}
		if e.FullAt.After(nowT) {
			buckets[k] = e.FullAt.UnixNano()
		}
	}
	holds := make(map[string]int64, len(s.Holds))
	for i, h := range s.Holds {
		if _, dup := holds[h.Account]; dup {
			return fmt.Errorf("%w: hold %d: account %s appears twice", ErrBadState, i, clip(h.Account))
		}
		if len(h.Account) > maxKeyLen {
			return fmt.Errorf("%w: hold %d: account name too long", ErrBadState, i)
		}
		if h.Until.After(nowT.Add(MaxPeriod + time.Hour)) {
			return fmt.Errorf("%w: hold %d: until %s is too far ahead", ErrBadState, i, h.Until.UTC().Format(time.RFC3339))
		}
		holds[h.Account] = 0
		if h.Until.After(nowT) {
			holds[h.Account] = h.Until.UnixNano()
		}
	}
	for k, full := range buckets {
		if full > b.buckets[k] {
			b.set(k, full)
		}
	}
	for a, h := range holds {
		if h > b.holds[a] {
			b.holds[a] = h
		}
	}
	return nil
}

func (e BucketState) key() (bucketKey, error) {
	k := bucketKey{account: e.Account, key: e.Key}
	switch e.Kind {
	case "orders":
		k.kind = kindOrders
	case "registered_domain":
		k.kind = kindDomain
	case "duplicate":
		k.kind = kindDuplicate
	case "failed_authz":
		k.kind = kindFailedAuthz
	default:
		return k, fmt.Errorf("unknown kind %s", clip(e.Kind))
	}
	perAccount := k.kind == kindOrders || k.kind == kindFailedAuthz
	switch {
	case len(e.Account) > maxKeyLen || len(e.Key) > maxKeyLen:
		return k, errors.New("account or key too long")
	case !perAccount && e.Account != "":
		return k, fmt.Errorf("kind %s takes no account", e.Kind)
	case k.kind == kindOrders && e.Key != "":
		return k, errors.New("kind orders takes no key")
	case k.kind != kindOrders && e.Key == "":
		return k, fmt.Errorf("kind %s needs a key", e.Kind)
	}
	return k, nil
}

// Stats is a view of the budget for monitoring.
type Stats struct {
	Reserved uint64 // Reserve calls that succeeded (ARI renewals included)
	Exempt   uint64 // of which ARI renewals
	Waited   uint64 // Reserve calls refused
	Refunded uint64 // Refund calls

	// Partly spent buckets held in memory, by kind.
	OrderBuckets, DomainBuckets, DuplicateBuckets, FailedAuthzBuckets int

	Accounts map[string]AccountStats // accounts with limits set, reserves, a hold or a partly spent bucket
}

// AccountStats is the state of one account's own buckets.
type AccountStats struct {
	OrdersLeft         int       // tokens left in the orders bucket; -1 when unlimited
	BlockedIdentifiers int       // identifiers whose failed authorization bucket is empty
	HeldUntil          time.Time // the CA's Retry-After still running; zero if none
	Reserved, Waited   uint64
}

// tokens is the whole number of tokens a bucket full at full holds at now.
func tokens(full, now int64, l Limit) int {
	if full <= now {
		return l.Count
	}
	return int(max(l.capacity()-(full-now), 0) / l.interval())
}

// Stats returns counters and the tokens left in each account's buckets.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	s := Stats{Reserved: b.reserved, Exempt: b.exempt, Waited: b.waited, Refunded: b.refunded, Accounts: map[string]AccountStats{}}
	account := func(a string) AccountStats {
		if st, ok := s.Accounts[a]; ok {
			return st
		}
		st := AccountStats{OrdersLeft: -1}
		if l := b.limitsOf(a).OrdersPerAccount; l.Count > 0 {
			st.OrdersLeft = tokens(b.buckets[bucketKey{kindOrders, a, ""}], now, l)
		}
		if c := b.accounts[a]; c != nil {
			st.Reserved, st.Waited = c.reserved, c.waited
		}
		if h := b.holds[a]; h > now {
			st.HeldUntil = time.Unix(0, h).UTC()
		}
		return st
	}
	for a := range b.limits {
		s.Accounts[a] = account(a)
	}
	for a := range b.accounts {
		s.Accounts[a] = account(a)
	}
	for a := range b.holds {
		s.Accounts[a] = account(a)
	}
	for k, full := range b.buckets {
		if full <= now {
			continue
		}
		switch k.kind {
		case kindOrders:
			s.OrderBuckets++
			s.Accounts[k.account] = account(k.account)
		case kindDomain:
			s.DomainBuckets++
		case kindDuplicate:
			s.DuplicateBuckets++
		case kindFailedAuthz:
			s.FailedAuthzBuckets++
			st := account(k.account)
			if l := b.limitsOf(k.account).FailedAuthzPerIdent; l.Count > 0 && tokens(full, now, l) == 0 {
				st.BlockedIdentifiers++
			}
			s.Accounts[k.account] = st
		}
	}
	return s
}
