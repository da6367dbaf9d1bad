package acme

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-acme/lego/v4/acme"
	jose "github.com/go-jose/go-jose/v4"
)

// maxAnswerSize bounds what this package reads of an answer to its own requests.
const maxAnswerSize = 64 << 10

// ErrKeyChangeNotSent is matched (errors.Is) by RolloverKey's error when it stopped before the key
// change was sent (the directory could not be fetched, the context ended while it waited for the
// validations in flight): the CA holds the old key for certain.
var ErrKeyChangeNotSent = errors.New("acme: the key change was not sent")

// RolloverKey replaces the account's key at the CA by newKey (RFC 8555 §7.3.5) and, once the CA
// has accepted it, signs everything that follows with newKey. lego has no key-change call, so the
// request is built here: an inner JWS signed by newKey (with its "jwk") over {"account", "oldKey"},
// inside an outer JWS signed by the current key with the account URL as "kid" and a fresh nonce,
// both for the directory's keyChange URL.
//
// Requests in flight on this Client do not fail: the rollover first waits until every
// authorization being answered has been validated (holdKey), then until every signed request in
// flight has its answer, and only then sends the key change; requests lego signed with the old key
// meanwhile are re-signed with the new one (signingTransport). If the answer to the key change is
// lost (connection reset, timeout, server error), the CA is asked whether newKey now owns the
// account, and that answer counts.
//
// An error means the CA did not take newKey: for certain with a *ValidationError, an error of kind
// ErrRejected or one matching ErrKeyChangeNotSent; otherwise (an *Error of kind ErrUnreachable, the
// context's error) whether it did is unknown, and the caller keeps newKey until it knows.
func (c *Client) RolloverKey(ctx context.Context, newKey crypto.Signer) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrKeyChangeNotSent, err)
	}
	if c.acct.URL == "" {
		return invalid(nil, "key rollover: the account is not registered")
	}
	if _, err := KeyTypeOf(newKey); err != nil {
		return err
	}
	changeURL := c.api().GetDirectory().KeyChangeURL
	if changeURL == "" {
		return &Error{Kind: ErrRejected, err: errors.New("acme: key rollover: the CA's directory offers no keyChange")}
	}
	// The new session first: building it fetches the directory, which may fail, and nothing has
	// changed yet.
	next, err := c.newSession(newKey)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyChangeNotSent, err)
	}
	if err := c.gate.Acquire(ctx, keyGateWeight); err != nil {
		return fmt.Errorf("%w: it waited for the validations in flight on this account: %w", ErrKeyChangeNotSent, err)
	}
	defer c.gate.Release(keyGateWeight)
	c.signMu.Lock()
	defer c.signMu.Unlock()
	// The current key only now: a rollover that held the gate before may have changed it.
	cur := c.sess.Load()
	if samePublicKey(cur.key, newKey) {
		return invalid(nil, "key rollover: the new key is the account's current key")
	}

	err = c.postKeyChange(ctx, changeURL, cur.key, newKey)
	if err != nil && ambiguous(err) {
		// The CA may have changed the key without our hearing of it: ask it with the new key,
		// with a context of its own, since ctx may be what ended the exchange.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		owner, lerr := c.lookupRaw(cctx, newKey)
		cancel()
		if lerr == nil && owner == c.acct.URL {
			err = nil
		}
	}
	if err != nil {
		return err
	}
	c.sess.Store(next)
	cur.retired.Store(true)
	return nil
}

// ambiguous reports whether err leaves open whether the CA acted on the request: no answer, a
// server error, or the context ended.
func ambiguous(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func samePublicKey(a, b crypto.Signer) bool {
	pub, ok := a.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(b.Public())
}

// postKeyChange sends the key change request and reports the CA's refusal as an *Error.
func (c *Client) postKeyChange(ctx context.Context, changeURL string, oldKey, newKey crypto.Signer) error {
	inner, err := json.Marshal(struct {
		Account string          `json:"account"`
		OldKey  jose.JSONWebKey `json:"oldKey"`
	}{Account: c.acct.URL, OldKey: jose.JSONWebKey{Key: oldKey.Public()}})
	if err != nil {
		return fmt.Errorf("acme: key rollover: %w", err)
	}
	innerJWS, err := signJWS(newKey, map[string]any{"url": changeURL}, inner, true)
	if err != nil {
		return err
	}
	if _, err := c.postJWS(ctx, changeURL, oldKey, c.acct.URL, innerJWS); err != nil {
		return classify(fmt.Errorf("acme: key rollover: %w", err))
	}
	return nil
}

// lookupRaw asks the CA which account key owns (newAccount with onlyReturnExisting, RFC 8555
// §7.3.1) and returns its URL. It signs with key's "jwk", outside lego's core.
func (c *Client) lookupRaw(ctx context.Context, key crypto.Signer) (string, error) {
	resp, err := c.postJWS(ctx, c.api().GetDirectory().NewAccountURL, key, "", []byte(`{"onlyReturnExisting":true}`))
	if err != nil {
		return "", classify(fmt.Errorf("acme: look up account: %w", err))
	}
	if resp.location == "" {
		return "", &Error{Kind: ErrUnreachable, err: errors.New("acme: look up account: the CA returned no account URL")}
	}
	return resp.location, nil
}

// answer is what postJWS keeps of the CA's answer.
type answer struct {
	status   int
	location string
	body     []byte
}

// postJWS POSTs payload to target signed by key, with "kid" (or, when kid is empty, the key's
// "jwk"), a fresh nonce and "url". A badNonce answer is retried with the nonce it carries. An
// error status yields the CA's *acme.ProblemDetails, or an error without one; transport failures
// are returned as they are (classify sorts them).
//
// It uses the Client's own HTTP client beside lego's (same transport and roots), so a key change
// does not wait for the signing lock it holds.
func (c *Client) postJWS(ctx context.Context, target string, key crypto.Signer, kid string, payload []byte) (*answer, error) {
	if u, err := url.Parse(target); err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("HTTPS is required: %q", target)
	}
	nonce, err := c.fetchNonce(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		header := map[string]any{"nonce": nonce, "url": target}
		if kid != "" {
			header["kid"] = kid
		}
		body, err := signJWS(key, header, payload, kid == "")
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/jose+json")
		req.Header.Set("User-Agent", c.userAgent)
		resp, err := c.raw.Do(req)
		if err != nil {
			return nil, err
		}
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize))
		_ = resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		if resp.StatusCode < http.StatusBadRequest {
			return &answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: raw}, nil
		}
		pd := problemOf(resp, raw)
		if pd == nil {
			if resp.StatusCode == http.StatusConflict {
				// Pebble answers a key change to a key that another account holds with a bare 409.
				return nil, &acme.ProblemDetails{Type: problemNS + "malformed", HTTPStatus: http.StatusConflict,
					Detail: "the new key belongs to another account (" + resp.Header.Get("Location") + ")"}
			}
			return nil, fmt.Errorf("HTTP %d from %s without a problem document", resp.StatusCode, target)
		}
		if pd.Type == acme.BadNonceErr && attempt < 3 {
			if n := resp.Header.Get("Replay-Nonce"); n != "" {
				nonce = n
			} else if nonce, err = c.fetchNonce(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if pd.Type == acme.RateLimitedErr {
			return nil, &acme.RateLimitedError{ProblemDetails: pd, RetryAfter: resp.Header.Get("Retry-After")}
		}
		return nil, pd
	}
}

// problemOf parses an error answer's problem document, nil if it holds none.
func problemOf(resp *http.Response, body []byte) *acme.ProblemDetails {
	var pd acme.ProblemDetails
	if json.Unmarshal(body, &pd) != nil || pd.Type == "" {
		return nil
	}
	pd.Method, pd.URL = resp.Request.Method, resp.Request.URL.String()
	if pd.HTTPStatus == 0 {
		pd.HTTPStatus = resp.StatusCode
	}
	return &pd
}

// fetchNonce gets a fresh nonce from the directory's newNonce URL (HEAD, RFC 8555 §7.2).
func (c *Client) fetchNonce(ctx context.Context) (string, error) {
	target := c.api().GetDirectory().NewNonceURL
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, target, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.raw.Do(req)
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	nonce := resp.Header.Get("Replay-Nonce")
	if nonce == "" {
		return "", fmt.Errorf("no Replay-Nonce from %s (HTTP %d)", target, resp.StatusCode)
	}
	return strings.TrimSpace(nonce), nil
}
