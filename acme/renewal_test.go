package acme

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestARICertID(t *testing.T) {
	// RFC 9773 §4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4 and serial
	// 00:87:65:43:21 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
	aki := []byte{0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4}
	rfc := &x509.Certificate{AuthorityKeyId: aki, SerialNumber: big.NewInt(0x87654321)}
	id, err := ARICertID(rfc)
	require.NoError(t, err)
	assert.Equal(t, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", id)

	// Same as lego's own function, including serials that need (or do not need) a 0x00 pad.
	huge, _ := new(big.Int).SetString("00ffeeddccbbaa99887766554433221100", 16)
	for _, serial := range []*big.Int{big.NewInt(1), big.NewInt(0x7f), big.NewInt(0x80), big.NewInt(0x87654321), huge} {
		leaf := &x509.Certificate{AuthorityKeyId: aki[:8], SerialNumber: serial}
		ours, err := ARICertID(leaf)
		require.NoError(t, err)
		theirs, err := certificate.MakeARICertID(leaf)
		require.NoError(t, err)
		assert.Equal(t, theirs, ours, "serial %x", serial)
	}
	assert.Equal(t, "aYhba4dGQEE.AQ", must(ARICertID(&x509.Certificate{AuthorityKeyId: aki[:8], SerialNumber: big.NewInt(1)})))

	for name, leaf := range map[string]*x509.Certificate{
		"nil":    nil,
		"no AKI": {SerialNumber: big.NewInt(1)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ARICertID(leaf)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Contains(t, ve.Reason, "authority key identifier")
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// issued obtains a certificate from ca and returns its leaf.
func issued(t *testing.T, ca *fakeCA, c *Client) *x509.Certificate {
	t.Helper()
	cert, err := c.Obtain(t.Context(), orderRequest(t, newFakeSolver(), "example.com"), fastPoll)
	require.NoError(t, err)
	return parseLeaf(t, cert)
}

func TestRenewalInfo(t *testing.T) {
	t.Run("no ARI", func(t *testing.T) {
		ca := newFakeCA(t)
		c := ca.dial(t, ca.url("/acct/1"))
		assert.False(t, c.SupportsRenewalInfo())
		_, err := c.RenewalInfo(t.Context(), issued(t, ca, c))
		assert.ErrorIs(t, err, ErrNoRenewalInfo)
	})

	ca := newFakeCA(t)
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	ca.with(func() {
		ca.ari = true
		ca.window = acme.Window{Start: start, End: start.Add(48 * time.Hour)}
	})
	c := ca.dial(t, ca.url("/acct/1"))
	require.True(t, c.SupportsRenewalInfo())
	leaf := issued(t, ca, c)
	id := must(ARICertID(leaf))

	t.Run("window", func(t *testing.T) {
		ca.with(func() { ca.retryAfter["/renewalInfo/"+id] = "21600" })
		w, err := c.RenewalInfo(t.Context(), leaf)
		require.NoError(t, err)
		assert.Equal(t, start, w.Start)
		assert.Equal(t, start.Add(48*time.Hour), w.End)
		assert.Equal(t, ca.url("/why"), w.ExplanationURL)
		assert.Equal(t, 6*time.Hour, w.RetryAfter)
		ca.with(func() { assert.Equal(t, []string{id}, ca.renewalIDs, "asked with the RFC 9773 certificate ID") })
	})
	t.Run("problem document", func(t *testing.T) {
		ca.setFail("/renewalInfo/"+id, fakeFailure{status: http.StatusNotFound, problem: problemNS + "malformed", times: 1})
		_, err := c.RenewalInfo(t.Context(), leaf)
		assert.ErrorIs(t, err, ErrRejected)
	})
	t.Run("server error", func(t *testing.T) {
		ca.setFail("/renewalInfo/"+id, fakeFailure{status: http.StatusServiceUnavailable, times: 1})
		_, err := c.RenewalInfo(t.Context(), leaf)
		assert.ErrorIs(t, err, ErrUnreachable)
	})
	t.Run("no AKI", func(t *testing.T) {
		_, err := c.RenewalInfo(t.Context(), &x509.Certificate{SerialNumber: big.NewInt(1)})
		var ve *ValidationError
		assert.ErrorAs(t, err, &ve)
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.RenewalInfo(ctx, leaf)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

func TestRevoke(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, ca.url("/acct/1"))
	leaf := issued(t, ca, c)

	require.NoError(t, c.Revoke(t.Context(), leaf.Raw, RevocationReasons["keyCompromise"]))
	ca.with(func() {
		require.Len(t, ca.revoked, 1)
		der, err := base64.RawURLEncoding.DecodeString(ca.revoked[0].Certificate)
		require.NoError(t, err)
		assert.Equal(t, leaf.Raw, der)
		require.NotNil(t, ca.revoked[0].Reason)
		assert.Equal(t, uint(1), *ca.revoked[0].Reason)
	})

	ca.setFail("/revoke", fakeFailure{status: http.StatusBadRequest, problem: problemNS + "alreadyRevoked"})
	err := c.Revoke(t.Context(), leaf.Raw, 0)
	assert.ErrorIs(t, err, ErrRejected)
	assert.Contains(t, err.Error(), "acme: revoke certificate: ")
}

func TestRevocationReasons(t *testing.T) {
	// RFC 5280 §5.3.1 codes that ACME subscribers may use.
	assert.Equal(t, map[string]uint{"unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5}, RevocationReasons)
}
