package paths

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/helper/certutil"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/acme"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// Bounds of what an import may send.
const (
	maxImportCertSize = 64 << 10
	maxImportKeySize  = 16 << 10
)

// importedCert is an existing certificate, its key and chain, checked and ready to store.
type importedCert struct {
	names   []string // the leaf's DNS names and IP addresses (its Common Name without SANs)
	keyType acme.KeyType
	entry   storage.CertEntry // the certificate fields only
}

// parseImport checks an existing certificate for import: certPEM is the leaf, optionally followed
// by its chain (certbot's fullchain.pem); chainPEM more of the chain (chain.pem, lecertvend's
// chain); keyPEM its private key. The leaf must be valid at now, not a CA, and match the key; a
// chain must link (each certificate signed by the next). Errors are inputErrors that never quote
// the input.
func parseImport(certPEM, keyPEM, chainPEM string, now time.Time) (*importedCert, error) {
	if len(certPEM)+len(chainPEM) > maxImportCertSize {
		return nil, badInput("certificate and chain together are larger than %d bytes", maxImportCertSize)
	}
	if strings.TrimSpace(keyPEM) == "" {
		return nil, badInput("private_key is required with certificate: give the certificate's key (PEM), e.g. private_key=@privkey.pem")
	}
	if len(keyPEM) > maxImportKeySize {
		return nil, badInput("private_key is larger than %d bytes", maxImportKeySize)
	}
	for field, text := range map[string]string{"certificate": certPEM, "chain": chainPEM} {
		if strings.Contains(text, "PRIVATE KEY") {
			return nil, badInput("%s holds a private key: give the key only in private_key", field)
		}
	}
	bundle, err := certutil.ParsePEMBundle(strings.TrimSpace(certPEM) + "\n" + strings.TrimSpace(chainPEM))
	if err != nil || bundle.Certificate == nil {
		return nil, badInput("certificate is not a PEM certificate followed by its chain in order (leaf first, each signed by the next): give cert.pem or fullchain.pem, and chain.pem as chain")
	}
	leaf := bundle.Certificate
	key, err := acme.ParseKey(keyPEM)
	if err != nil {
		return nil, badInput("private_key is not a PEM private key (PKCS #8, SEC 1 EC or PKCS #1 RSA) of a supported type")
	}
	if same, err := certutil.ComparePublicKeysAndType(leaf.PublicKey, key.Public()); err != nil || !same {
		return nil, badInput("private_key does not belong to the certificate: give the key the certificate was issued for")
	}
	kt, err := acme.KeyTypeOf(key)
	if err != nil {
		return nil, fieldError("private_key", err)
	}
	switch {
	case leaf.IsCA:
		return nil, badInput("certificate is a CA certificate: import a server (leaf) certificate")
	case now.After(leaf.NotAfter):
		return nil, badInput("certificate expired at %s: there is nothing to import; write role and domains to issue a new one", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, badInput("certificate is not valid before %s: import it once it is", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	names := certIdentifiers(leaf)
	if len(names) == 0 {
		return nil, badInput("certificate names no DNS name or IP address")
	}
	keyText, err := acme.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	chain := make([]string, 0, len(bundle.CAChain))
	for _, ca := range bundle.CAChain {
		chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Bytes})))
	}
	return &importedCert{names: names, keyType: kt, entry: storage.CertEntry{
		Certificate:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
		Chain:        chain,
		PrivateKey:   keyText,
		SerialNumber: certutil.GetHexFormatted(leaf.SerialNumber.Bytes(), ":"),
		NotBefore:    leaf.NotBefore.UTC(),
		NotAfter:     leaf.NotAfter.UTC(),
		KeySource:    storage.KeySourceImported,
	}}, nil
}

// certIdentifiers are the names a certificate is for: its DNS names and IP addresses, or its
// subject's common name when it has neither.
func certIdentifiers(leaf *x509.Certificate) []string {
	var names []string
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName}
	}
	return names
}
