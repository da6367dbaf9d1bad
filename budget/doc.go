// Package budget owns the engine's order budget: an in-memory model of the ACME CA's rate
// limits (Let's Encrypt's token buckets for new orders per account, certificates per
// registered domain, duplicate certificates and failed authorizations per identifier), so
// the engine waits for capacity instead of spending an ACME account into rateLimited (429)
// answers. The state can be snapshotted to JSON and restored so it survives restarts.
//
// The package is a leaf: it imports only the standard library and
// golang.org/x/net/publicsuffix, and must not import Vault, lego or any package of this
// module (boundaries_test.go enforces it). Storage of snapshots, locking of orders and
// logging belong to the callers.
package budget
