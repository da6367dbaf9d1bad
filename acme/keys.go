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
	"net"
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

// Sentinels for key errors. The errors themselves are *ValidationError values whose Kind is one
// of these.
var (
	// ErrUnknownKeyType means a key type name is not one of KeyTypes (ParseKeyType, Generate).
	ErrUnknownKeyType = errors.New("acme: unknown key type")
	// ErrUnsupportedKey means a private key parsed but its algorithm, curve or size is not one of
	// the supported key types (KeyTypeOf, ParseKey).
	ErrUnsupportedKey = errors.New("acme: unsupported private key")
)

// ParseKeyType returns the key type named s (case-insensitive). An empty s yields DefaultKeyType.
// An unknown name yields a *ValidationError matching ErrUnknownKeyType.
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
	return "", invalid(ErrUnknownKeyType, "unknown key type %q: use one of %s", s, strings.Join(KeyTypes(), ", "))
}

// keySpecs gives each key type's curve (EC) or modulus size (RSA); Generate and KeyTypeOf both
// read it, so they agree.
var keySpecs = map[KeyType]struct {
	curve elliptic.Curve
	bits  int
}{
	EC256:   {curve: elliptic.P256()},
	EC384:   {curve: elliptic.P384()},
	RSA2048: {bits: 2048},
	RSA3072: {bits: 3072},
	RSA4096: {bits: 4096},
}

// Generate creates a new private key of this type. An unknown type yields a *ValidationError
// matching ErrUnknownKeyType.
func (k KeyType) Generate() (crypto.Signer, error) {
	spec, ok := keySpecs[k]
	switch {
	case !ok:
		return nil, invalid(ErrUnknownKeyType, "unknown key type %q: use one of %s", string(k), strings.Join(KeyTypes(), ", "))
	case spec.curve != nil:
		return ecdsa.GenerateKey(spec.curve, rand.Reader)
	default:
		return rsa.GenerateKey(rand.Reader, spec.bits)
	}
}

// Family returns "ec" or "rsa", the value Vault PKI reports as private_key_type.
func (k KeyType) Family() string {
	if strings.HasPrefix(string(k), "rsa") {
		return "rsa"
	}
	return "ec"
}

// KeyTypeOf reports the KeyType of an existing private key. A key of no supported type yields a
// *ValidationError matching ErrUnsupportedKey.
func KeyTypeOf(key crypto.Signer) (KeyType, error) {
	if key == nil {
		return "", invalid(ErrUnsupportedKey, "no key")
	}
	return PublicKeyType(key.Public())
}

// PublicKeyType reports the KeyType of a public key (a certificate's, a CSR's). A key of no
// supported type yields a *ValidationError matching ErrUnsupportedKey.
func PublicKeyType(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		for kt, spec := range keySpecs {
			if spec.curve != nil && spec.curve == k.Curve {
				return kt, nil
			}
		}
		return "", invalid(ErrUnsupportedKey, "unsupported elliptic curve %s: use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		for kt, spec := range keySpecs {
			if spec.curve == nil && spec.bits == k.N.BitLen() {
				return kt, nil
			}
		}
		return "", invalid(ErrUnsupportedKey, "unsupported RSA key size %d: use 2048, 3072 or 4096 bits", k.N.BitLen())
	}
	return "", invalid(ErrUnsupportedKey, "unsupported key algorithm %T: use an EC (P-256, P-384) or RSA key", pub)
}

// EncodeKey returns key as a PKCS #8 PEM block.
func EncodeKey(key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("acme: encode private key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// ErrBadKeyPEM is matched (errors.Is) by ParseKey's error when the input is not one PEM-encoded
// private key it can decode. A key that decodes but is of an unsupported type matches
// ErrUnsupportedKey instead.
var ErrBadKeyPEM = errors.New("acme: " + badKeyPEMReason)

const badKeyPEMReason = "not a PEM-encoded private key (PKCS #8, SEC 1 EC or PKCS #1 RSA)"

// badKeyPEM is ParseKey's error for undecodable input. Its text never contains the input.
func badKeyPEM() error { return &ValidationError{Reason: badKeyPEMReason, Kind: ErrBadKeyPEM} }

// ParseKey decodes one PEM private key in PKCS #8, SEC 1 (EC) or PKCS #1 (RSA) form, of a supported
// key type; an EC PARAMETERS block before the key is skipped. Errors are *ValidationError values
// matching ErrBadKeyPEM or ErrUnsupportedKey; they never echo key material. (Our own decoding:
// acme imports no Vault package, so not certutil, and the standard library has no one-call parser.)
func ParseKey(pemText string) (crypto.Signer, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block != nil && block.Type == "EC PARAMETERS" {
		// "openssl ecparam -genkey" writes the curve's parameters before the key.
		block, rest = pem.Decode(rest)
	}
	if block == nil || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, badKeyPEM()
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
		return nil, badKeyPEM()
	}
	if err != nil {
		return nil, badKeyPEM()
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, invalid(ErrUnsupportedKey, "unsupported key algorithm %T: use an EC (P-256, P-384) or RSA key", key)
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
		return nil, invalid(nil, "create CSR: no domains")
	}
	tmpl := &x509.CertificateRequest{}
	for _, d := range domains {
		if ip := net.ParseIP(d); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, d)
		}
	}
	if len(domains[0]) <= 64 && net.ParseIP(domains[0]) == nil {
		// An IP address is never a subject Common Name (CAs refuse it; RFC 8738 identifiers
		// live in the SAN only).
		tmpl.Subject.CommonName = domains[0]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("acme: create CSR: %w", err)
	}
	return der, nil
}

// MaxCSRSize bounds a PEM certificate request.
const MaxCSRSize = 16 << 10

// CSR is a parsed certificate request that the engine can send as it is.
type CSR struct {
	// DER is the request as the CA receives it.
	DER []byte
	// Names are the request's identifiers as given: its subject Common Name (when set), DNS names
	// and IP addresses, each once.
	Names []string
	// DNSNames are the request's subject Common Name (when set) and DNS SANs, as written.
	DNSNames []string
	// KeyType is the type of the request's key.
	KeyType KeyType
	// PublicKey is the request's key.
	PublicKey crypto.PublicKey
}

// ParseCSR parses one PEM CERTIFICATE REQUEST, checks its signature and that it asks for nothing
// a server certificate from an ACME CA cannot hold (e-mail addresses, URIs). Errors are
// *ValidationError and never quote the input.
func ParseCSR(pemText string) (*CSR, error) {
	if len(pemText) > MaxCSRSize {
		return nil, invalid(nil, "csr is larger than %d bytes", MaxCSRSize)
	}
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, invalid(nil, "csr is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, invalid(nil, "csr holds more than one PEM block: give exactly one certificate request")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, invalid(nil, "csr does not parse as a certificate request (PKCS #10)")
	}
	if err := req.CheckSignature(); err != nil {
		return nil, invalid(nil, "csr's signature does not verify: sign the request with its own key")
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return nil, invalid(nil, "csr asks for e-mail addresses or URIs: an ACME CA certifies DNS names and IP addresses only")
	}
	kt, err := PublicKeyType(req.PublicKey)
	if err != nil {
		return nil, invalid(ErrUnsupportedKey, "csr's key: %s", err.(*ValidationError).Reason)
	}
	var names []string
	add := func(n string) {
		for _, have := range names {
			if strings.EqualFold(have, n) {
				return
			}
		}
		names = append(names, n)
	}
	var dnsNames []string
	if cn := req.Subject.CommonName; cn != "" {
		add(cn)
		dnsNames = append(dnsNames, cn)
	}
	for _, d := range req.DNSNames {
		add(d)
		dnsNames = append(dnsNames, d)
	}
	for _, ip := range req.IPAddresses {
		add(ip.String())
	}
	if len(names) == 0 {
		return nil, invalid(nil, "csr names no DNS name or IP address")
	}
	return &CSR{DER: block.Bytes, Names: names, DNSNames: dnsNames, KeyType: kt, PublicKey: req.PublicKey}, nil
}
