package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readKey(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

// testKey returns a key of type kt: generated for EC (fast), from testdata for RSA (generating
// 3072- and 4096-bit keys takes seconds under -race).
func testKey(t *testing.T, kt KeyType) crypto.Signer {
	t.Helper()
	if kt.Family() == "ec" {
		k, err := kt.Generate()
		require.NoError(t, err)
		return k
	}
	file := map[KeyType]string{RSA2048: "rsa2048-pkcs1.pem", RSA3072: "rsa3072.pem", RSA4096: "rsa4096.pem"}[kt]
	k, err := ParseKey(readKey(t, file))
	require.NoError(t, err)
	return k
}

func TestParseKeyType(t *testing.T) {
	for _, name := range KeyTypes() {
		kt, err := ParseKeyType(name)
		require.NoError(t, err)
		assert.Equal(t, KeyType(name), kt)
		kt, err = ParseKeyType("  " + strings.ToUpper(name) + " ")
		require.NoError(t, err)
		assert.Equal(t, KeyType(name), kt)
	}
	kt, err := ParseKeyType("")
	require.NoError(t, err)
	assert.Equal(t, DefaultKeyType, kt)
	for _, bad := range []string{"dsa1024", "ec521", "rsa", "ed25519"} {
		_, err := ParseKeyType(bad)
		assert.ErrorIs(t, err, ErrUnknownKeyType, bad)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Contains(t, ve.Reason, bad)
		assert.Contains(t, ve.Reason, "use one of ec256")
	}
}

func TestKeyTypeTable(t *testing.T) {
	assert.Equal(t, []string{"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"}, KeyTypes())
	assert.Len(t, keySpecs, len(KeyTypes()))
	for _, name := range KeyTypes() {
		kt := KeyType(name)
		spec, ok := keySpecs[kt]
		require.True(t, ok, name)
		if kt.Family() == "ec" {
			assert.Equal(t, map[KeyType]int{EC256: 256, EC384: 384}[kt], spec.curve.Params().BitSize)
		} else {
			assert.Equal(t, strings.TrimPrefix(name, "rsa"), strconv.Itoa(spec.bits))
		}
	}
	_, err := KeyType("dsa").Generate()
	assert.ErrorIs(t, err, ErrUnknownKeyType)
}

func TestKeyRoundTrip(t *testing.T) {
	for _, name := range KeyTypes() {
		kt := KeyType(name)
		t.Run(name, func(t *testing.T) {
			key := testKey(t, kt)
			got, err := KeyTypeOf(key)
			require.NoError(t, err)
			assert.Equal(t, kt, got)

			pemText, err := EncodeKey(key)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(pemText, "-----BEGIN PRIVATE KEY-----\n"), "PKCS #8")
			back, err := ParseKey(pemText)
			require.NoError(t, err)
			assert.True(t, back.(interface{ Equal(crypto.PrivateKey) bool }).Equal(key))
			again, err := EncodeKey(back)
			require.NoError(t, err)
			assert.Equal(t, pemText, again)

			// The legacy encodings parse to the same key.
			var legacy *pem.Block
			switch k := key.(type) {
			case *ecdsa.PrivateKey:
				der, err := x509.MarshalECPrivateKey(k)
				require.NoError(t, err)
				legacy = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
			case *rsa.PrivateKey:
				legacy = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
			}
			back, err = ParseKey("\n  " + string(pem.EncodeToMemory(legacy)) + "\n\n")
			require.NoError(t, err)
			assert.True(t, back.(interface{ Equal(crypto.PrivateKey) bool }).Equal(key))
		})
	}
}

func TestParseKeyWithECParameters(t *testing.T) {
	key := testKey(t, EC256)
	der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	// What "openssl ecparam -name prime256v1 -genkey" writes.
	params := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	got, err := ParseKey(params + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	require.NoError(t, err)
	assert.True(t, got.(*ecdsa.PrivateKey).Equal(key))
}

func TestParseKeyRejects(t *testing.T) {
	ec := testKey(t, EC256)
	pkcs8, err := EncodeKey(ec)
	require.NoError(t, err)
	body := strings.Split(pkcs8, "\n")[1] // a line of key material that must never be echoed
	corrupt := strings.Replace(pkcs8, body, strings.Repeat("A", len(body)), 1)

	cases := []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrBadKeyPEM},
		{"not PEM", "hello", ErrBadKeyPEM},
		{"base64 without armour", body, ErrBadKeyPEM},
		{"certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ErrBadKeyPEM},
		{"corrupt DER", corrupt, ErrBadKeyPEM},
		{"PKCS #1 label on PKCS #8", strings.ReplaceAll(pkcs8, "PRIVATE KEY", "RSA PRIVATE KEY"), ErrBadKeyPEM},
		{"two keys", pkcs8 + pkcs8, ErrBadKeyPEM},
		{"trailing junk", pkcs8 + "junk", ErrBadKeyPEM},
		{"RSA 1024", readKey(t, "rsa1024.pem"), ErrUnsupportedKey},
		{"P-521", readKey(t, "ec521.pem"), ErrUnsupportedKey},
		{"Ed25519", readKey(t, "ed25519.pem"), ErrUnsupportedKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParseKey(tc.in)
			assert.Nil(t, key)
			require.ErrorIs(t, err, tc.want)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, "acme: "+ve.Reason, err.Error())
			assert.False(t, strings.HasPrefix(ve.Reason, "acme:"))
			assert.NotContains(t, err.Error(), body[:16], "never echoes key material")
			if tc.in != "" && len(tc.in) > 40 {
				assert.NotContains(t, err.Error(), tc.in[30:40])
			}
		})
	}
	_, err = ParseKey(readKey(t, "ec521.pem"))
	assert.Equal(t, "acme: unsupported elliptic curve P-521: use P-256 or P-384", err.Error())
	_, err = ParseKey(readKey(t, "rsa1024.pem"))
	assert.Equal(t, "acme: unsupported RSA key size 1024: use 2048, 3072 or 4096 bits", err.Error())
}

func TestKeyTypeOfRejects(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	_, err = KeyTypeOf(p521)
	assert.ErrorIs(t, err, ErrUnsupportedKey)
	_, err = KeyTypeOf(nil)
	assert.ErrorIs(t, err, ErrUnsupportedKey)
}

func TestFamily(t *testing.T) {
	for kt, want := range map[KeyType]string{EC256: "ec", EC384: "ec", RSA2048: "rsa", RSA3072: "rsa", RSA4096: "rsa"} {
		assert.Equal(t, want, kt.Family(), string(kt))
	}
}

func TestCreateCSR(t *testing.T) {
	key := testKey(t, EC256)
	long := strings.Repeat("a", 60) + ".example.com"
	cases := []struct {
		domains []string
		cn      string
	}{
		{[]string{"example.com", "*.example.com"}, "example.com"},
		{[]string{long, "example.com"}, ""},
	}
	for _, tc := range cases {
		der, err := CreateCSR(key, tc.domains)
		require.NoError(t, err)
		csr, err := x509.ParseCertificateRequest(der)
		require.NoError(t, err)
		require.NoError(t, csr.CheckSignature())
		assert.Equal(t, tc.domains, csr.DNSNames)
		assert.Equal(t, tc.cn, csr.Subject.CommonName)
	}
	_, err := CreateCSR(key, nil)
	var ve *ValidationError
	assert.ErrorAs(t, err, &ve)
}
