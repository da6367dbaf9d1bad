package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// KeyType names a private-key algorithm and size. These names are what the plugin stores and what
// users type; they never change meaning.
type KeyType string

// The supported key types. EC256 is the default for accounts and certificates.
const (
	EC256   KeyType = "ec256"
	EC384   KeyType = "ec384"
	RSA2048 KeyType = "rsa2048"
	RSA3072 KeyType = "rsa3072"
	RSA4096 KeyType = "rsa4096"
)

// DefaultKeyType is used when no key type is given.
const DefaultKeyType = EC256

// KeyTypes lists the supported key type names, in the order they are documented.
func KeyTypes() []string {
	return []string{string(EC256), string(EC384), string(RSA2048), string(RSA3072), string(RSA4096)}
}

// ErrUnknownKeyType is returned by ParseKeyType for a name that is not supported.
var ErrUnknownKeyType = errors.New("acme: unknown key type")

// ParseKeyType returns the key type named s (case-insensitive). An empty s yields DefaultKeyType.
func ParseKeyType(s string) (KeyType, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return DefaultKeyType, nil
	}
	for _, k := range KeyTypes() {
		if s == k {
			return KeyType(k), nil
		}
	}
	return "", fmt.Errorf("%w %q: use one of %s", ErrUnknownKeyType, s, strings.Join(KeyTypes(), ", "))
}

// Generate creates a new private key of this type.
func (k KeyType) Generate() (crypto.Signer, error) {
	switch k {
	case EC256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EC384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownKeyType, string(k))
	}
}

// Family returns "ec" or "rsa", the value Vault PKI reports as private_key_type.
func (k KeyType) Family() string {
	if strings.HasPrefix(string(k), "rsa") {
		return "rsa"
	}
	return "ec"
}

// KeyTypeOf reports the KeyType of an existing private key.
func KeyTypeOf(key crypto.Signer) (KeyType, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return EC256, nil
		case elliptic.P384():
			return EC384, nil
		}
		return "", errors.New("acme: unsupported elliptic curve: use P-256 or P-384")
	case *rsa.PrivateKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
		return "", fmt.Errorf("acme: unsupported RSA key size %d: use 2048, 3072 or 4096 bits", k.N.BitLen())
	}
	return "", errors.New("acme: unsupported key algorithm: use an EC (P-256, P-384) or RSA key")
}

// EncodeKey returns key as a PKCS #8 PEM block.
func EncodeKey(key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("acme: encode private key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// ErrBadKeyPEM is returned by ParseKey when the input is not a usable private key. Its text never
// contains the input.
var ErrBadKeyPEM = errors.New("acme: not a PEM-encoded private key (PKCS #8, SEC 1 EC or PKCS #1 RSA)")

// ParseKey decodes a PEM private key in PKCS #8, SEC 1 (EC) or PKCS #1 (RSA) form. Errors never
// echo key material.
func ParseKey(pemText string) (crypto.Signer, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block == nil || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, ErrBadKeyPEM
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, ErrBadKeyPEM
	}
	if err != nil {
		return nil, ErrBadKeyPEM
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, ErrBadKeyPEM
	}
	if _, err := KeyTypeOf(signer); err != nil {
		return nil, err
	}
	return signer, nil
}

// CreateCSR returns a DER certificate signing request for domains, signed by key. The first domain
// is the subject's common name when it fits (64 characters).
func CreateCSR(key crypto.Signer, domains []string) ([]byte, error) {
	if len(domains) == 0 {
		return nil, errors.New("acme: create CSR: no domains")
	}
	tmpl := &x509.CertificateRequest{DNSNames: domains}
	if len(domains[0]) <= 64 {
		tmpl.Subject.CommonName = domains[0]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("acme: create CSR: %w", err)
	}
	return der, nil
}
