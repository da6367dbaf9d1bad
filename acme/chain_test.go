package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chainCert returns a CA certificate named cn, signed by parent (itself when nil), as PEM.
func chainCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestChainMatches(t *testing.T) {
	root, rootKey, _ := chainCert(t, "Root X1", nil, nil)
	_, _, interPEM := chainCert(t, "Intermediate E5", root, rootKey)
	_, _, rootPEM := chainCert(t, "Root X2", nil, nil)

	require.True(t, chainMatches(interPEM, "Root X1"), "the top certificate's issuer")
	require.True(t, chainMatches(interPEM, "Intermediate E5"), "a certificate of the chain")
	require.False(t, chainMatches(interPEM, "Root X2"))
	require.False(t, chainMatches(interPEM, "root x1"), "names match exactly")
	require.True(t, chainMatches(append(interPEM, rootPEM...), "Root X2"))
	require.False(t, chainMatches(nil, "Root X1"))
	require.False(t, chainMatches([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "Root X1"))
}

func TestCreateCSRWithIPAddresses(t *testing.T) {
	key, err := EC256.Generate()
	require.NoError(t, err)
	der, err := CreateCSR(key, []string{"127.0.0.1", "www.example.test", "2001:db8::1"})
	require.NoError(t, err)
	req, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	require.Empty(t, req.Subject.CommonName, "an IP address is never the Common Name")
	require.Equal(t, []string{"www.example.test"}, req.DNSNames)
	require.Len(t, req.IPAddresses, 2)
	require.Equal(t, "127.0.0.1", req.IPAddresses[0].String())

	p, err := ParseCSR(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	require.NoError(t, err)
	require.Equal(t, []string{"www.example.test", "127.0.0.1", "2001:db8::1"}, p.Names)
	require.Equal(t, EC256, p.KeyType)
}
