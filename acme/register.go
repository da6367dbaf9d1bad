package acme

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/go-acme/lego/v4/acme"
)

// Registration describes a new-account request.
type Registration struct {
	// Contact holds e-mail addresses (without "mailto:").
	Contact []string
	// TermsOfServiceAgreed must be true; the CA rejects the request otherwise.
	TermsOfServiceAgreed bool
	// EABKeyID and EABHMACKey bind the account to an external account (both or neither).
	EABKeyID   string
	EABHMACKey string
}

// ValidateEABKey checks that an EAB HMAC key is base64url (padded or not). The error is a
// *ValidationError and never echoes the key.
func ValidateEABKey(k string) error {
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k, "=")); err != nil {
		return invalid(nil, "eab_hmac_key is not base64url-encoded: paste the HMAC key exactly as the CA gave it")
	}
	return nil
}

// Register creates the account at the CA, or finds the existing one for this key (which is how an
// imported certbot key is adopted). It returns the account URL and the account's status, and signs
// every later request of this Client with that URL, so it must not run concurrently with other
// methods of the same Client. Refusals by the CA are *Error values of kind ErrRejected.
func (c *Client) Register(ctx context.Context, reg Registration) (accountURL, status string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	msg := acme.Account{TermsOfServiceAgreed: reg.TermsOfServiceAgreed}
	for _, e := range reg.Contact {
		msg.Contact = append(msg.Contact, "mailto:"+e)
	}
	var acct acme.ExtendedAccount
	if reg.EABKeyID != "" {
		hmac := strings.TrimRight(reg.EABHMACKey, "=")
		acct, err = c.api().Accounts.NewEAB(msg, reg.EABKeyID, hmac)
	} else {
		acct, err = c.api().Accounts.New(msg)
	}
	if err != nil {
		return "", "", classify(fmt.Errorf("acme: register account: %w", err))
	}
	if acct.Location == "" {
		return "", "", &Error{Kind: ErrUnreachable, err: errors.New("acme: register account: the CA returned no account URL")}
	}
	c.acct.URL = acct.Location
	return acct.Location, acct.Status, nil
}

// UpdateContact replaces the account's contact addresses (e-mail addresses without "mailto:") at
// the CA. The client must have an account URL (from Account.URL or Register).
func (c *Client) UpdateContact(ctx context.Context, contact []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.acct.URL == "" {
		return invalid(nil, "update account contact: the account is not registered")
	}
	msg := acme.Account{Contact: []string{}}
	for _, e := range contact {
		msg.Contact = append(msg.Contact, "mailto:"+e)
	}
	if _, err := c.api().Accounts.Update(c.acct.URL, msg); err != nil {
		return classify(fmt.Errorf("acme: update account contact: %w", err))
	}
	return nil
}

// ErrAccountNotFound is matched (errors.Is) by LookupAccount's error when the CA has no account
// for the key. The error is also an *Error of kind ErrRejected with the CA's problem document.
var ErrAccountNotFound = errors.New("acme: the CA has no account for this key")

// AccountInfo is an account as the CA describes it.
type AccountInfo struct {
	// URL is the account URL (the JWS "kid").
	URL string
	// Status is "valid", "deactivated" or "revoked".
	Status string
	// Contact holds the account's e-mail addresses, without "mailto:"; other contact URLs are
	// left out.
	Contact []string
}

// LookupAccount asks the CA for the existing account of the client's key without creating one
// (newAccount with onlyReturnExisting, RFC 8555 §7.3.1), and, like Register, signs every later
// request of this Client with its URL. It is for a Client dialed without an account URL, and must
// not run concurrently with other methods of the same Client. A CA without an account for the key
// yields an error matching ErrAccountNotFound.
func (c *Client) LookupAccount(ctx context.Context) (AccountInfo, error) {
	if err := ctx.Err(); err != nil {
		return AccountInfo{}, err
	}
	if c.acct.URL != "" {
		return AccountInfo{}, invalid(nil, "look up account: the client already acts for %s", c.acct.URL)
	}
	acct, err := c.api().Accounts.New(acme.Account{OnlyReturnExisting: true})
	if err != nil {
		err = classify(fmt.Errorf("acme: look up account: %w", err))
		var ae *Error
		if errors.As(err, &ae) && ae.ProblemType == problemNS+"accountDoesNotExist" {
			ae.err = fmt.Errorf("%w: %w", ErrAccountNotFound, ae.err)
		}
		return AccountInfo{}, err
	}
	if acct.Location == "" {
		return AccountInfo{}, &Error{Kind: ErrUnreachable, err: errors.New("acme: look up account: the CA returned no account URL")}
	}
	c.acct.URL = acct.Location
	info := AccountInfo{URL: acct.Location, Status: acct.Status}
	for _, ct := range acct.Contact {
		if e, ok := strings.CutPrefix(ct, "mailto:"); ok {
			info.Contact = append(info.Contact, e)
		}
	}
	return info, nil
}

// Deactivate deactivates the account at the CA (RFC 8555 §7.3.6). The CA refuses every later
// request of the account, and the account cannot be activated again. The client must have an
// account URL.
func (c *Client) Deactivate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.acct.URL == "" {
		return invalid(nil, "deactivate account: the account is not registered")
	}
	if err := c.api().Accounts.Deactivate(c.acct.URL); err != nil {
		return classify(fmt.Errorf("acme: deactivate account: %w", err))
	}
	return nil
}
