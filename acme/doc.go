// Package acme is the plugin's ACME (RFC 8555) client, built on lego v4's low-level acme/api package.
//
// It owns:
//   - the per-account HTTP client, with the account's own trust roots (ParseCABundle, Dial);
//   - account registration, with external account binding and adoption of an imported key
//     (Register, LookupAccount, UpdateContact, ValidateEABKey), account keys as PEM or as certbot's
//     JSON Web Key (ParseAccountKey), key rollover that does not fail requests in flight
//     (RolloverKey) and deactivation (Deactivate);
//   - certificate orders that can be resumed from a stored order URL, DNS-01 authorizations
//     through a Solver, finalization and certificate download (Obtain);
//   - polling that starts well under a second, backs off and honours Retry-After (PollPolicy);
//   - renewal information (ARI, RFC 9773) and revocation (ARICertID, RenewalInfo, Revoke);
//   - key types, private keys and CSRs (KeyType, ParseKey, EncodeKey, CreateCSR);
//   - classification of failures: CA problems into caller mistakes, rate limits, challenge
//     failures and transient failures (*Error and its sentinels), bad input (*ValidationError);
//   - the redirection of lego's process-wide logger (SetLogger).
//
// It must not import Vault packages (github.com/hashicorp/vault/...) or any other package of this
// plugin; hclog and go-cleanhttp are fine. Everything it persists is described by its own plain
// types (KeyType, Account, Certificate), never by lego's.
package acme
