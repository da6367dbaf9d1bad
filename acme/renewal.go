package acme

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certificate"
)

// ErrNoRenewalInfo means the CA does not offer ARI (RFC 9773).
var ErrNoRenewalInfo = errors.New("acme: the CA does not offer renewal information")

// RenewalWindow is the CA's suggested renewal window for one certificate (RFC 9773 §4.2).
type RenewalWindow struct {
	Start, End time.Time
	// ExplanationURL points to the CA's explanation of an unusual window, if any.
	ExplanationURL string
	// RetryAfter is how long from the answer until the CA wants to be asked again (0 if it did
	// not say).
	RetryAfter time.Duration
}

// ARICertID returns the RFC 9773 (§4.1) certificate identifier of leaf: base64url(AKI) "."
// base64url(serial), computed by lego. A certificate without an authority key identifier, for
// which no identifier exists, yields a *ValidationError.
func ARICertID(leaf *x509.Certificate) (string, error) {
	if leaf == nil || len(leaf.AuthorityKeyId) == 0 {
		return "", invalid(nil, "certificate has no authority key identifier, so it has no ARI certificate ID")
	}
	id, err := certificate.MakeARICertID(leaf)
	if err != nil {
		return "", fmt.Errorf("acme: ARI certificate ID: %w", err)
	}
	return id, nil
}

// RenewalInfo fetches the CA's suggested renewal window for leaf. It returns ErrNoRenewalInfo when
// the CA does not offer ARI, and an *Error for failures talking to the CA. ctx is checked before
// the request; the request itself is bounded by Options.RequestTimeout (lego's call takes no
// context).
func (c *Client) RenewalInfo(ctx context.Context, leaf *x509.Certificate) (*RenewalWindow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, err := ARICertID(leaf)
	if err != nil {
		return nil, err
	}
	resp, err := c.api().Certificates.GetRenewalInfo(id)
	if errors.Is(err, api.ErrNoARI) {
		return nil, ErrNoRenewalInfo
	}
	if err != nil {
		return nil, classify(fmt.Errorf("acme: get renewal info: %w", err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, classify(fmt.Errorf("acme: read renewal info: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		var pd acme.ProblemDetails
		if json.Unmarshal(body, &pd) == nil && pd.Type != "" {
			if pd.HTTPStatus == 0 {
				pd.HTTPStatus = resp.StatusCode
			}
			return nil, classify(fmt.Errorf("acme: get renewal info: %w", &pd))
		}
		return nil, &Error{Kind: ErrUnreachable, err: fmt.Errorf("acme: get renewal info: HTTP %d", resp.StatusCode)}
	}
	var info acme.RenewalInfoResponse
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, &Error{Kind: ErrUnreachable, err: fmt.Errorf("acme: renewal info is not valid JSON: %w", err)}
	}
	w := &RenewalWindow{Start: info.SuggestedWindow.Start.UTC(), End: info.SuggestedWindow.End.UTC(), ExplanationURL: info.ExplanationURL}
	w.RetryAfter, _ = api.ParseRetryAfter(resp.Header.Get("Retry-After"))
	return w, nil
}

// Revocation reasons (RFC 5280 §5.3.1) that ACME CAs accept from subscribers.
var RevocationReasons = map[string]uint{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
}

// Revoke revokes the DER certificate with the given RFC 5280 reason code, signed by the account key.
func (c *Client) Revoke(ctx context.Context, der []byte, reason uint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg := acme.RevokeCertMessage{Certificate: base64.RawURLEncoding.EncodeToString(der), Reason: &reason}
	if err := c.api().Certificates.Revoke(msg); err != nil {
		return classify(fmt.Errorf("acme: revoke certificate: %w", err))
	}
	return nil
}
