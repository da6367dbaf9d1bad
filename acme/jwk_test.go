package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// certbotJWK returns key as certbot writes private_key.json: a private JWK, members as josepy
// writes them (RSA: n, e, d, p, q, dp, dq, qi; EC: crv, x, y, d).
func certbotJWK(t testing.TB, key crypto.Signer) map[string]any {
	t.Helper()
	raw, err := (&jose.JSONWebKey{Key: key}).MarshalJSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func jsonOf(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	return string(b)
}

func TestParseAccountKeyJWK(t *testing.T) {
	for _, kt := range []KeyType{EC256, EC384, RSA2048, RSA3072} {
		t.Run(string(kt), func(t *testing.T) {
			key, err := kt.Generate()
			require.NoError(t, err)
			m := certbotJWK(t, key)
			got, err := ParseAccountKey("\n" + jsonOf(t, m) + "\n")
			require.NoError(t, err)
			assert.True(t, samePublicKey(key, got))
			gotType, err := KeyTypeOf(got)
			require.NoError(t, err)
			assert.Equal(t, kt, gotType)
			// It signs like the original (the stored PEM round-trips).
			p, err := EncodeKey(got)
			require.NoError(t, err)
			again, err := ParseKey(p)
			require.NoError(t, err)
			assert.True(t, samePublicKey(key, again))
			if kt.Family() == "rsa" {
				// certbot's keys always carry dp, dq and qi, but they are optional.
				delete(m, "dp")
				delete(m, "dq")
				delete(m, "qi")
				got, err := ParseAccountKey(jsonOf(t, m))
				require.NoError(t, err)
				assert.True(t, samePublicKey(key, got))
			}
		})
	}
	t.Run("PEM still works", func(t *testing.T) {
		key, _ := EC256.Generate()
		p, _ := EncodeKey(key)
		got, err := ParseAccountKey(p)
		require.NoError(t, err)
		assert.True(t, samePublicKey(key, got))
	})
}

func TestParseAccountKeyRefused(t *testing.T) {
	rsaKey, err := RSA2048.Generate()
	require.NoError(t, err)
	ecKey, err := EC256.Generate()
	require.NoError(t, err)
	rsaJWK := func(edit func(m map[string]any)) string {
		m := certbotJWK(t, rsaKey)
		edit(m)
		return jsonOf(t, m)
	}
	ecJWK := func(edit func(m map[string]any)) string {
		m := certbotJWK(t, ecKey)
		edit(m)
		return jsonOf(t, m)
	}
	other, _ := EC256.Generate()
	otherD := certbotJWK(t, other)["d"]
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	wrongDp := base64.RawURLEncoding.EncodeToString(big.NewInt(12345).Bytes())

	cases := []struct {
		name, in string
		kind     error
		want     string
	}{
		{"empty", "", ErrBadAccountKey, "not a PEM private key"},
		{"text", "hello " + secretMarker, ErrBadAccountKey, "not a PEM private key"},
		{"bad PEM", "-----BEGIN PRIVATE KEY-----\n" + secretMarker + "\n-----END PRIVATE KEY-----", ErrBadKeyPEM, "not a PEM-encoded private key"},
		{"broken JSON", `{"kty": "RSA", "n": "` + secretMarker, ErrBadAccountKey, "not one JSON object"},
		{"two objects", rsaJWK(func(map[string]any) {}) + "{}", ErrBadAccountKey, "not one JSON object"},
		{"no kty", `{"d": "` + secretMarker + `"}`, ErrBadAccountKey, `no "kty"`},
		{"symmetric", `{"kty": "oct", "k": "` + secretMarker + `"}`, ErrUnsupportedKey, `type "oct"`},
		{"Ed25519", `{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "` + secretMarker + `"}`, ErrUnsupportedKey, `type "OKP"`},
		{"public RSA", rsaJWK(func(m map[string]any) { delete(m, "d"); delete(m, "p"); delete(m, "q") }), ErrBadAccountKey, "public key"},
		{"RSA without p", rsaJWK(func(m map[string]any) { delete(m, "p") }), ErrBadAccountKey, "lacks p"},
		{"RSA with a wrong d", rsaJWK(func(m map[string]any) { m["d"] = m["dp"] }), ErrBadAccountKey, "RSA JSON Web Key"},
		{"RSA with a wrong dp", rsaJWK(func(m map[string]any) { m["dp"] = wrongDp }), ErrBadAccountKey, ""},
		{"RSA not base64url", rsaJWK(func(m map[string]any) { m["d"] = secretMarker + "+/=" }), ErrBadAccountKey, "does not decode"},
		{"RSA 1024", jsonOf(t, certbotJWK(t, small)), ErrUnsupportedKey, "unsupported RSA key size 1024"},
		{"public EC", ecJWK(func(m map[string]any) { delete(m, "d") }), ErrBadAccountKey, "public key"},
		{"EC P-521", jsonOf(t, certbotJWK(t, p521)), ErrUnsupportedKey, `curve "P-521"`},
		{"EC d of another key", ecJWK(func(m map[string]any) { m["d"] = otherD }), ErrBadAccountKey, "does not belong to its x and y"},
		{"EC off the curve", ecJWK(func(m map[string]any) { m["y"] = m["x"] }), ErrBadAccountKey, "does not decode"},
		{"huge", `{"kty": "RSA", "n": "` + strings.Repeat("A", 20000) + `"}`, ErrBadAccountKey, "larger than 16 kB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAccountKey(tc.in)
			require.Error(t, err)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.ErrorIs(t, err, tc.kind)
			assert.Contains(t, ve.Reason, tc.want)
			assert.NotContains(t, err.Error(), secretMarker)
			assert.Less(t, len(err.Error()), 300)
			// No value of the key is quoted.
			for _, k := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if v, ok := certbotJWK(t, rsaKey)[k].(string); ok {
					assert.NotContains(t, err.Error(), v[:12])
				}
			}
		})
	}
}

// secretMarker stands in for key material in refused inputs: no error may quote it.
const secretMarker = "S3CR3TKEYMATERIAL"

func FuzzParseAccountKey(f *testing.F) {
	key, _ := EC256.Generate()
	raw, _ := (&jose.JSONWebKey{Key: key}).MarshalJSON()
	f.Add(string(raw))
	f.Add(`{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB","p":"AQAB","q":"AQAB"}`)
	f.Add(`{"kty":"EC","crv":"P-256","x":"` + secretMarker + `","y":"AA","d":"AA"}`)
	f.Add("-----BEGIN EC PRIVATE KEY-----\n" + secretMarker + "\n-----END EC PRIVATE KEY-----")
	f.Fuzz(func(t *testing.T, in string) {
		k, err := ParseAccountKey(in)
		if err != nil {
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.NotContains(t, err.Error(), secretMarker)
			return
		}
		_, err = KeyTypeOf(k)
		require.NoError(t, err)
	})
}
