package acme

import (
	"context"
	"crypto"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// registered returns a client of the fake CA (which checks every signature) registered with a new
// key of type kt.
func registered(t *testing.T, ca *fakeCA, kt KeyType) (*Client, crypto.Signer) {
	t.Helper()
	ca.with(func() { ca.verify = true })
	key, err := kt.Generate()
	require.NoError(t, err)
	c, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle(), Key: key}, Options{})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	_, _, err = c.Register(t.Context(), Registration{TermsOfServiceAgreed: true, Contact: []string{"ops@example.com"}})
	require.NoError(t, err)
	return c, key
}

func thumbOf(t *testing.T, key crypto.Signer) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(tp)
}

// gatedSolver records key authorizations and holds Present until released.
type gatedSolver struct {
	presented chan string // key authorizations, as presented
	release   chan struct{}
}

func newGatedSolver() *gatedSolver {
	return &gatedSolver{presented: make(chan string, 16), release: make(chan struct{})}
}

func (s *gatedSolver) Present(ctx context.Context, _, _, keyAuth string) error {
	s.presented <- keyAuth
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (s *gatedSolver) CleanUp(context.Context, string, string, string) error { return nil }
func (s *gatedSolver) WaitPropagation(context.Context, string, string) error { return nil }

func orderFor(t *testing.T, key crypto.Signer, solver interface {
	Present(context.Context, string, string, string) error
	CleanUp(context.Context, string, string, string) error
	WaitPropagation(context.Context, string, string) error
}, domains ...string) OrderRequest {
	t.Helper()
	csr, err := CreateCSR(key, domains)
	require.NoError(t, err)
	return OrderRequest{Domains: domains, CSR: csr, Solver: solver}
}

func TestRolloverKey(t *testing.T) {
	for _, kt := range []KeyType{EC256, EC384, RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			ca := newFakeCA(t)
			c, oldKey := registered(t, ca, EC256)
			acctURL := ca.url("/acct/1")
			certKey, _ := EC256.Generate()
			_, err := c.Obtain(t.Context(), orderFor(t, certKey, newFakeSolver(), "a.example.com"), fastPoll)
			require.NoError(t, err)

			newKey, err := kt.Generate()
			require.NoError(t, err)
			require.NoError(t, c.RolloverKey(t.Context(), newKey))
			ca.with(func() { assert.Equal(t, 1, ca.keyChanges) })
			require.Equal(t, thumbOf(t, newKey), thumbprintB64(ca.accountKey(acctURL)), "the CA holds the new key")

			// Everything after the rollover is signed with the new key (the fake checks), and key
			// authorizations carry the new key's thumbprint.
			solver := newGatedSolver()
			close(solver.release)
			_, err = c.Obtain(t.Context(), orderFor(t, certKey, solver, "b.example.com"), fastPoll)
			require.NoError(t, err)
			assert.True(t, strings.HasSuffix(<-solver.presented, "."+thumbOf(t, newKey)))
			require.NoError(t, c.UpdateContact(t.Context(), []string{"new@example.com"}))

			// The old key is refused: the rollover happened at the CA.
			old, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle(), Key: oldKey, URL: acctURL}, Options{})
			require.NoError(t, err)
			defer old.Close()
			err = old.UpdateContact(t.Context(), []string{"old@example.com"})
			require.ErrorIs(t, err, ErrRejected)
			assert.Contains(t, err.Error(), "JWS verification error")

			// And a second rollover works from the new key.
			third, _ := EC256.Generate()
			require.NoError(t, c.RolloverKey(t.Context(), third))
			require.Equal(t, thumbOf(t, third), thumbprintB64(ca.accountKey(acctURL)))
		})
	}
}

func thumbprintB64(k *jose.JSONWebKey) string {
	if k == nil {
		return ""
	}
	tp, _ := k.Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(tp)
}

// A rollover waits until the authorizations being answered are validated: the key authorization
// published carries the old key's thumbprint, and the CA compares at validation time.
func TestRolloverKeyWaitsForValidations(t *testing.T) {
	ca := newFakeCA(t)
	c, oldKey := registered(t, ca, EC256)
	certKey, _ := EC256.Generate()
	solver := newGatedSolver()
	obtained := make(chan error, 1)
	go func() {
		_, err := c.Obtain(t.Context(), orderFor(t, certKey, solver, "a.example.com"), fastPoll)
		obtained <- err
	}()
	keyAuth := <-solver.presented
	require.True(t, strings.HasSuffix(keyAuth, "."+thumbOf(t, oldKey)))

	newKey, _ := EC384.Generate()
	rolled := make(chan error, 1)
	go func() { rolled <- c.RolloverKey(t.Context(), newKey) }()
	select {
	case err := <-rolled:
		t.Fatalf("the rollover did not wait for the validation in flight: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	ca.with(func() { assert.Zero(t, ca.keyChanges) })

	// A solve that starts now waits for the rollover and then uses the new key.
	later := newGatedSolver()
	close(later.release)
	laterDone := make(chan error, 1)
	go func() {
		_, err := c.Obtain(t.Context(), orderFor(t, certKey, later, "b.example.com"), fastPoll)
		laterDone <- err
	}()

	close(solver.release)
	require.NoError(t, <-obtained, "the order in flight succeeds")
	require.NoError(t, <-rolled)
	require.NoError(t, <-laterDone)
	assert.True(t, strings.HasSuffix(<-later.presented, "."+thumbOf(t, newKey)), "the later order answers with the new key")

	// The in-flight order's challenge was accepted (signed with the old key) before the key
	// changed, and it was finalized after it, signed with the new key.
	ca.with(func() {
		assert.Equal(t, 1, ca.keyChanges)
		iChall, iChange, iFinal := -1, -1, -1
		for i, r := range ca.requests {
			switch {
			case r == "POST /chall/1-0" && iChall < 0:
				iChall = i
			case r == "POST /key-change":
				iChange = i
			case r == "POST /finalize/1":
				iFinal = i
			}
		}
		assert.True(t, iChall < iChange && iChange < iFinal, "challenge %d, key change %d, finalize %d", iChall, iChange, iFinal)
	})
}

// A request lego signed with the old key but that reaches the transport after the rollover is
// re-signed with the new key instead of being refused.
func TestRolloverKeyResignsRetiredSession(t *testing.T) {
	ca := newFakeCA(t)
	c, _ := registered(t, ca, EC256)
	certKey, _ := EC256.Generate()
	cert, err := c.Obtain(t.Context(), orderFor(t, certKey, newFakeSolver(), "a.example.com"), fastPoll)
	require.NoError(t, err)

	retired := c.api()
	newKey, _ := RSA2048.Generate()
	require.NoError(t, c.RolloverKey(t.Context(), newKey))
	require.NotSame(t, retired, c.api())
	o, err := retired.Orders.Get(cert.OrderURL)
	require.NoError(t, err, "a request of the retired session is re-signed with the new key")
	assert.Equal(t, "valid", o.Status)
	ca.with(func() {
		last := ca.signedBy[len(ca.signedBy)-1]
		assert.True(t, strings.HasPrefix(last, "/order/1 "))
	})
}

// When the answer to the key change is lost, the CA is asked which key owns the account.
func TestRolloverKeyLostAnswer(t *testing.T) {
	ca := newFakeCA(t)
	c, _ := registered(t, ca, EC256)
	ca.with(func() { ca.loseKeyChangeAnswer = true })
	newKey, _ := EC256.Generate()
	require.NoError(t, c.RolloverKey(t.Context(), newKey), "the CA confirms that the new key owns the account")
	require.NoError(t, c.UpdateContact(t.Context(), []string{"a@example.com"}), "signed with the new key")
	assert.Equal(t, 1, ca.count("POST /new-account")-1, "one onlyReturnExisting lookup after the registration")
}

func TestRolloverKeyRefused(t *testing.T) {
	ca := newFakeCA(t)
	c, oldKey := registered(t, ca, EC256)
	ca.setFail("/key-change", fakeFailure{status: http.StatusBadRequest, problem: problemNS + "badPublicKey", times: 1})
	newKey, _ := EC256.Generate()
	err := c.RolloverKey(t.Context(), newKey)
	require.ErrorIs(t, err, ErrRejected)
	assert.Contains(t, err.Error(), "acme: key rollover: ")
	require.Equal(t, thumbOf(t, oldKey), thumbprintB64(ca.accountKey(ca.url("/acct/1"))))
	require.NoError(t, c.UpdateContact(t.Context(), []string{"a@example.com"}), "the client still signs with the old key")

	// A server error the CA did not act on: the lookup finds the old key, so the error stands.
	ca.setFail("/key-change", fakeFailure{status: http.StatusServiceUnavailable, problem: problemNS + "serverInternal", times: 1})
	err = c.RolloverKey(t.Context(), newKey)
	require.ErrorIs(t, err, ErrUnreachable)
	require.NoError(t, c.UpdateContact(t.Context(), []string{"b@example.com"}))

	// The CA's answer to a key already used by another account.
	other, otherKey := registered(t, ca, EC256)
	_ = other
	err = c.RolloverKey(t.Context(), otherKey)
	require.ErrorIs(t, err, ErrRejected)
	assert.Contains(t, err.Error(), "belongs to another account")
}

func TestRolloverKeyInvalid(t *testing.T) {
	ca := newFakeCA(t)
	unregistered := ca.dial(t, "")
	newKey, _ := EC256.Generate()
	var ve *ValidationError
	require.ErrorAs(t, unregistered.RolloverKey(t.Context(), newKey), &ve)
	assert.Contains(t, ve.Reason, "not registered")

	c, key := registered(t, ca, EC256)
	require.ErrorAs(t, c.RolloverKey(t.Context(), key), &ve)
	assert.Contains(t, ve.Reason, "current key")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := c.RolloverKey(ctx, newKey)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, ErrKeyChangeNotSent)

	noKC := newFakeCA(t)
	noKC.with(func() { noKC.noKeyChange = true })
	c2, _ := registered(t, noKC, EC256)
	err = c2.RolloverKey(t.Context(), newKey)
	require.ErrorIs(t, err, ErrRejected)
	assert.Contains(t, err.Error(), "offers no keyChange")
	assert.Zero(t, ca.count("POST /key-change"))
}

// A rollover that cannot get the gate in time (an authorization in flight) changes nothing.
func TestRolloverKeyTimesOutWaiting(t *testing.T) {
	ca := newFakeCA(t)
	c, oldKey := registered(t, ca, EC256)
	certKey, _ := EC256.Generate()
	solver := newGatedSolver()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := c.Obtain(t.Context(), orderFor(t, certKey, solver, "a.example.com"), fastPoll)
		assert.NoError(t, err)
	}()
	<-solver.presented
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	newKey, _ := EC256.Generate()
	err := c.RolloverKey(ctx, newKey)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrKeyChangeNotSent)
	assert.Contains(t, err.Error(), "waited for the validations in flight")
	close(solver.release)
	wg.Wait()
	assert.Zero(t, ca.count("POST /key-change"))
	require.Equal(t, thumbOf(t, oldKey), thumbprintB64(ca.accountKey(ca.url("/acct/1"))))
}

func TestLookupAccount(t *testing.T) {
	ca := newFakeCA(t)
	_, key := registered(t, ca, EC256)

	c, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle(), Key: key}, Options{})
	require.NoError(t, err)
	defer c.Close()
	info, err := c.LookupAccount(t.Context())
	require.NoError(t, err)
	assert.Equal(t, AccountInfo{URL: ca.url("/acct/1"), Status: "valid", Contact: []string{"ops@example.com"}}, info)
	require.NoError(t, c.UpdateContact(t.Context(), []string{"x@example.com"}), "later requests are signed for the account found")
	var ve *ValidationError
	_, err = c.LookupAccount(t.Context())
	require.ErrorAs(t, err, &ve, "only for a client without an account URL")

	unknown := ca.dial(t, "")
	_, err = unknown.LookupAccount(t.Context())
	require.ErrorIs(t, err, ErrAccountNotFound)
	require.ErrorIs(t, err, ErrRejected)
	ca.with(func() { assert.Len(t, ca.accounts, 1, "a lookup creates nothing") })
}

func TestDeactivate(t *testing.T) {
	ca := newFakeCA(t)
	c, key := registered(t, ca, EC256)
	require.NoError(t, c.Deactivate(t.Context()))
	ca.with(func() { assert.Equal(t, 1, ca.deactivations) })

	err := c.UpdateContact(t.Context(), []string{"x@example.com"})
	require.ErrorIs(t, err, ErrRejected, "the CA refuses a deactivated account")
	lookup, err := Dial(Account{DirectoryURL: ca.url("/directory"), CABundle: ca.bundle(), Key: key}, Options{})
	require.NoError(t, err)
	defer lookup.Close()
	_, err = lookup.LookupAccount(t.Context())
	require.ErrorIs(t, err, ErrRejected)
	assert.NotErrorIs(t, err, ErrAccountNotFound)

	var ve *ValidationError
	require.ErrorAs(t, ca.dial(t, "").Deactivate(t.Context()), &ve)
}

// Two rollovers at once on one client run one after the other, each from the key the other left.
func TestRolloverKeyConcurrent(t *testing.T) {
	ca := newFakeCA(t)
	c, _ := registered(t, ca, EC256)
	k1, _ := EC256.Generate()
	k2, _ := EC384.Generate()
	var wg sync.WaitGroup
	for _, k := range []crypto.Signer{k1, k2} {
		wg.Go(func() { assert.NoError(t, c.RolloverKey(t.Context(), k)) })
	}
	wg.Wait()
	ca.with(func() { assert.Equal(t, 2, ca.keyChanges) })
	atCA := thumbprintB64(ca.accountKey(ca.url("/acct/1")))
	assert.Equal(t, thumbOf(t, c.sess.Load().key), atCA, "the client signs with the key the CA holds")
	require.NoError(t, c.UpdateContact(t.Context(), []string{"a@example.com"}))
}
