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
		acct, err = c.core.Accounts.NewEAB(msg, reg.EABKeyID, hmac)
	} else {
		acct, err = c.core.Accounts.New(msg)
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
	if _, err := c.core.Accounts.Update(c.acct.URL, msg); err != nil {
		return classify(fmt.Errorf("acme: update account contact: %w", err))
	}
	return nil
}
