// Package acme is the plugin's ACME (RFC 8555) client, built on lego v4's low-level acme/api package.
//
// It owns account registration (with external account binding and imported keys), certificate orders
// that can be resumed from a stored order URL, challenge and order polling that starts well under a
// second and honours Retry-After, certificate download, and classification of CA problems into
// caller mistakes, rate limits and transient failures.
//
// It must not import Vault packages or any other package of this plugin: everything it persists is
// described by its own plain types (KeyType, Account, Certificate), never by lego's.
package acme
