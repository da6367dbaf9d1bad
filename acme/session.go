package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/go-acme/lego/v4/acme/api"
	jose "github.com/go-jose/go-jose/v4"
)

// session is what a Client signs with: lego's core, whose JWS signer holds the account key (and,
// once registered, the account URL), and the same key for this package's own requests. A session
// never changes its key; a key rollover installs a new session (Client.sess) and retires the old.
type session struct {
	core *api.Core
	key  crypto.Signer
	// retired is set when a key rollover has replaced this session's key at the CA: whatever the
	// session still sends is re-signed with the current key (signingTransport).
	retired atomic.Bool
}

// api returns lego's core of the current session. Callers take it afresh for every request, so
// that requests after a key rollover are signed with the new key.
func (c *Client) api() *api.Core { return c.sess.Load().core }

// newSession builds a session that signs with key for the client's account URL. It fetches the
// CA's directory (lego's api.New does), which is why a key rollover builds it before it changes
// anything.
func (c *Client) newSession(key crypto.Signer) (*session, error) {
	s := &session{key: key}
	// Each session needs its own http.Client: api.New wraps the client's transport in lego's
	// HTTPS-only check. All of them share the Client's transport (and its connection pool).
	hc := &http.Client{Transport: &signingTransport{c: c, s: s, next: c.headers}, Timeout: c.timeout}
	core, err := api.New(hc, c.userAgent, c.acct.DirectoryURL, c.acct.URL, key)
	if err != nil {
		return nil, classifyTransport(fmt.Errorf("acme: fetch directory %s: %w", c.acct.DirectoryURL, err))
	}
	s.core = core
	return s, nil
}

// signingTransport sits under lego's HTTPS check for one session. Every POST (every signed
// request) holds the Client's signing lock shared while it is exchanged with the CA, so that a
// key change (which takes it exclusively) never crosses a signed request in flight. A request
// that a retired session signed — lego signed it before the rollover installed the new session,
// but it reaches the transport after — is re-signed with the current key and the same nonce,
// which the CA has not seen yet: it would be refused otherwise.
type signingTransport struct {
	c    *Client
	s    *session
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost {
		return t.next.RoundTrip(req)
	}
	t.c.signMu.RLock()
	defer t.c.signMu.RUnlock()
	if t.s.retired.Load() && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("acme: read request body: %w", err)
		}
		if body, err = resignJWS(body, t.c.sess.Load().key); err != nil {
			return nil, fmt.Errorf("acme: re-sign a request after the key rollover: %w", err)
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return t.next.RoundTrip(req)
}

// flatJWS is a JWS in the flattened JSON serialization, the form ACME uses (RFC 8555 §6.2).
type flatJWS struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// resignJWS returns body, a flattened JWS signed with an account's "kid", signed by key instead,
// with the same protected header (kid, nonce, url) and payload. A JWS that carries a "jwk" instead
// of a "kid" is not an account's request and is returned as it is.
func resignJWS(body []byte, key crypto.Signer) ([]byte, error) {
	var in flatJWS
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("not a flattened JWS: %w", err)
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(in.Protected)
	if err != nil {
		return nil, fmt.Errorf("protected header: %w", err)
	}
	var header map[string]any
	if err := json.Unmarshal(rawHeader, &header); err != nil {
		return nil, fmt.Errorf("protected header: %w", err)
	}
	if _, ok := header["kid"].(string); !ok {
		return body, nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(in.Payload)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	delete(header, "alg")
	return signJWS(key, header, payload, false)
}

// jwsAlgorithm returns the JWS algorithm of an account key: ES256 or ES384 for EC P-256 or P-384
// keys, RS256 for RSA keys (RFC 8555 §6.2 asks every CA to support ES256 and RS256).
func jwsAlgorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case *rsa.PrivateKey:
		return jose.RS256, nil
	}
	return "", invalid(ErrUnsupportedKey, "no JWS algorithm for key %T: use an EC (P-256, P-384) or RSA key", key)
}

// signJWS signs payload with key into a flattened JWS whose protected header holds header's
// members, "alg", and with embedJWK the key's public JWK ("jwk", for requests not yet bound to
// an account URL and for the inner JWS of a key change).
func signJWS(key crypto.Signer, header map[string]any, payload []byte, embedJWK bool) ([]byte, error) {
	alg, err := jwsAlgorithm(key)
	if err != nil {
		return nil, err
	}
	extra := make(map[jose.HeaderKey]any, len(header))
	for k, v := range header {
		extra[jose.HeaderKey(k)] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, &jose.SignerOptions{EmbedJWK: embedJWK, ExtraHeaders: extra})
	if err != nil {
		return nil, fmt.Errorf("acme: JWS signer: %w", err)
	}
	sig, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("acme: sign JWS: %w", err)
	}
	return []byte(sig.FullSerialize()), nil
}

// keyGateWeight is what a key rollover acquires of Client.gate: all of it, so that it waits for
// every holder and every later holder waits for it.
const keyGateWeight = 1 << 30

// holdKey keeps the account key from changing until release is called; Obtain holds it while it
// answers authorizations.
//
// Why: a key authorization is "token.thumbprint(account key)", and the CA checks the answer
// against the account's key when it validates, not when the record was published. Pebble computes
// the expected value in its validation worker from the account's current key (which a key change
// replaces in place); Boulder when the challenge is accepted. A rollover between computing the key
// authorization and the end of validation would therefore make the CA compare a record published
// with the old thumbprint against the new one, and the renewal would fail. So a rollover waits
// (Client.RolloverKey acquires the whole gate) until every authorization in flight on this Client
// has been validated, and solves that start meanwhile wait for the rollover (the semaphore is
// FIFO, so a rollover is never starved) and then compute their key authorizations with the new key.
func (c *Client) holdKey(ctx context.Context) (release func(), err error) {
	if err := c.gate.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return func() { c.gate.Release(1) }, nil
}
