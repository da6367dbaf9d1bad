package acme

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// ErrBadAccountKey is matched (errors.Is) by ParseAccountKey's error when the input is neither a
// PEM private key nor a JSON Web Key holding a private key. A key that decodes but is of an
// unsupported type matches ErrUnsupportedKey instead.
var ErrBadAccountKey = errors.New("acme: not a PEM private key or a private JSON Web Key")

// maxJWKSize bounds a JSON Web Key; an RSA 4096 private key in JSON is about 3.3 kB.
const maxJWKSize = 16 << 10

// ParseAccountKey decodes an account key given as PEM (ParseKey: PKCS #8, SEC 1, PKCS #1) or as a
// private JSON Web Key (RFC 7517), which is how certbot stores account keys
// (accounts/<server>/directory/<id>/private_key.json): RSA with n, e, d, p, q and optionally dp,
// dq, qi; EC on P-256 or P-384 with x, y, d. Errors are *ValidationError values matching
// ErrBadKeyPEM (PEM that does not decode), ErrBadAccountKey or ErrUnsupportedKey; they never quote
// the input or any part of the key.
func ParseAccountKey(text string) (crypto.Signer, error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "{") {
		if !strings.HasPrefix(text, "-----BEGIN") {
			return nil, badAccountKey("not a PEM private key (-----BEGIN ... PRIVATE KEY-----) or a JSON Web Key ({\"kty\": ...}, certbot's private_key.json)")
		}
		return ParseKey(text)
	}
	return parseJWK([]byte(text))
}

func badAccountKey(reason string) error {
	return &ValidationError{Reason: reason, Kind: ErrBadAccountKey}
}

// jwkMembers are the members of a JSON Web Key this package looks at before go-jose decodes it,
// so that its errors can say what is missing without quoting values.
type jwkMembers struct {
	Kty string  `json:"kty"`
	Crv string  `json:"crv"`
	D   *string `json:"d"`
	P   *string `json:"p"`
	Q   *string `json:"q"`
	Dp  *string `json:"dp"`
	Dq  *string `json:"dq"`
	Qi  *string `json:"qi"`
}

func parseJWK(raw []byte) (crypto.Signer, error) {
	if len(raw) > maxJWKSize {
		return nil, badAccountKey("the JSON Web Key is larger than 16 kB: give the account's private_key.json as it is")
	}
	var m jwkMembers
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil || dec.More() {
		// Not err's text: json's syntax errors quote the input.
		return nil, badAccountKey("starts like a JSON Web Key but is not one JSON object: give certbot's private_key.json as it is, or the key in PEM")
	}
	switch m.Kty {
	case "RSA":
		var missing []string
		for _, f := range []struct {
			name string
			v    *string
		}{{"d", m.D}, {"p", m.P}, {"q", m.Q}} {
			if f.v == nil {
				missing = append(missing, f.name)
			}
		}
		if len(missing) == 3 {
			return nil, badAccountKey("the JSON Web Key is a public key (no \"d\"): give the private key (certbot's private_key.json)")
		}
		if len(missing) > 0 {
			return nil, badAccountKey("the RSA JSON Web Key lacks " + strings.Join(missing, ", ") + ": give a private key with n, e, d, p and q (certbot's private_key.json)")
		}
	case "EC":
		if m.Crv != "P-256" && m.Crv != "P-384" {
			return nil, invalid(ErrUnsupportedKey, "the EC JSON Web Key is on curve %q: use P-256 or P-384", clip(m.Crv, 16))
		}
		if m.D == nil {
			return nil, badAccountKey("the JSON Web Key is a public key (no \"d\"): give the private key (certbot's private_key.json)")
		}
	case "":
		return nil, badAccountKey("the JSON Web Key has no \"kty\": give certbot's private_key.json as it is, or the key in PEM")
	default:
		return nil, invalid(ErrUnsupportedKey, "the JSON Web Key is of type %q: use an RSA or EC (P-256, P-384) key", clip(m.Kty, 16))
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		// go-jose's text names members but, like json's, may quote input: not passed on.
		return nil, badAccountKey("the " + m.Kty + " JSON Web Key does not decode: its members are not base64url-encoded values of a valid key")
	}
	var key crypto.Signer
	switch k := jwk.Key.(type) {
	case *ecdsa.PrivateKey:
		// go-jose checks that x, y lie on the curve, not that d is their private key.
		priv, err := k.ECDH()
		pub, perr := k.PublicKey.ECDH()
		if err != nil || perr != nil || !priv.PublicKey().Equal(pub) {
			return nil, badAccountKey("the EC JSON Web Key's d does not belong to its x and y: give the account's private_key.json as it is")
		}
		key = k
	case *rsa.PrivateKey:
		rk, err := checkedRSAKey(k, m)
		if err != nil {
			return nil, err
		}
		key = rk
	default:
		return nil, badAccountKey("the JSON Web Key holds no private key: give certbot's private_key.json")
	}
	if _, err := KeyTypeOf(key); err != nil {
		return nil, err
	}
	return key, nil
}

// checkedRSAKey rebuilds k from n, e, d, p and q, checks it, and checks dp, dq and qi (when
// given) against the values they must have.
func checkedRSAKey(k *rsa.PrivateKey, m jwkMembers) (*rsa.PrivateKey, error) {
	if _, err := PublicKeyType(&k.PublicKey); err != nil {
		return nil, err // checked before Validate, which costs time with absurd sizes
	}
	if len(k.Primes) != 2 {
		return nil, badAccountKey("the RSA JSON Web Key does not have two primes p and q")
	}
	key := &rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D, Primes: []*big.Int{k.Primes[0], k.Primes[1]}}
	if err := key.Validate(); err != nil {
		return nil, badAccountKey("the RSA JSON Web Key's values do not fit together (n, e, d, p, q): give the account's private_key.json as it is")
	}
	key.Precompute()
	for _, f := range []struct {
		given    *string
		got, exp *big.Int
	}{
		{m.Dp, k.Precomputed.Dp, key.Precomputed.Dp},
		{m.Dq, k.Precomputed.Dq, key.Precomputed.Dq},
		{m.Qi, k.Precomputed.Qinv, key.Precomputed.Qinv},
	} {
		if f.given != nil && (f.got == nil || f.got.Cmp(f.exp) != 0) {
			return nil, badAccountKey("the RSA JSON Web Key's dp, dq or qi do not match its other values: give the account's private_key.json as it is")
		}
	}
	return key, nil
}

// clip shortens s to n bytes for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
