package acme

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegister(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, "")
	url, status, err := c.Register(t.Context(), Registration{Contact: []string{"admin@example.com", "ops@example.com"}, TermsOfServiceAgreed: true})
	require.NoError(t, err)
	assert.Equal(t, ca.url("/acct/1"), url)
	assert.Equal(t, "valid", status)
	ca.with(func() {
		assert.Equal(t, []string{"mailto:admin@example.com", "mailto:ops@example.com"}, ca.contact)
		assert.False(t, ca.eab)
	})

	// Later requests are signed for the new account: UpdateContact works on the same client.
	require.NoError(t, c.UpdateContact(t.Context(), []string{"new@example.com"}))
	ca.with(func() { assert.Equal(t, []string{"mailto:new@example.com"}, ca.contact) })
	require.NoError(t, c.UpdateContact(t.Context(), nil))
	ca.with(func() { assert.Empty(t, ca.contact, "an empty list removes all contacts") })
	assert.Equal(t, 1, ca.count("POST /new-account"))
	assert.Equal(t, 2, ca.count("POST /acct/1"))
}

func TestRegisterEAB(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, "")
	hmac := base64.URLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")) // padded
	_, _, err := c.Register(t.Context(), Registration{TermsOfServiceAgreed: true, EABKeyID: "kid-1", EABHMACKey: hmac})
	require.NoError(t, err)
	ca.with(func() { assert.True(t, ca.eab, "externalAccountBinding sent") })
}

func TestRegisterErrors(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, "")
	ca.setFail("/new-account", fakeFailure{status: http.StatusForbidden, problem: problemNS + "externalAccountRequired", times: 1})
	_, _, err := c.Register(t.Context(), Registration{TermsOfServiceAgreed: true})
	require.ErrorIs(t, err, ErrRejected)
	assert.Contains(t, err.Error(), "acme: register account: ")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err = c.Register(ctx, Registration{TermsOfServiceAgreed: true})
	assert.ErrorIs(t, err, context.Canceled)
}

func TestUpdateContactUnregistered(t *testing.T) {
	ca := newFakeCA(t)
	c := ca.dial(t, "")
	err := c.UpdateContact(t.Context(), []string{"a@example.com"})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Zero(t, ca.count("POST /acct/"))
}

func TestValidateEABKey(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef\xff\xfe")
	for _, ok := range []string{
		base64.RawURLEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
	} {
		assert.NoError(t, ValidateEABKey(ok), ok)
	}
	for _, bad := range []string{
		base64.StdEncoding.EncodeToString(key), // '+' and '/' are not base64url
		"not base64!",
		"secret value with spaces",
	} {
		err := ValidateEABKey(bad)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve, bad)
		assert.True(t, strings.HasPrefix(ve.Reason, "eab_hmac_key "))
		assert.NotContains(t, err.Error(), bad, "never echoes the key")
	}
}
