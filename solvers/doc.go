// Package solvers owns DNS-01 challenge solving for the plugin: it turns a
// stored DNS configuration into a Solver that presents and removes
// _acme-challenge TXT records and waits for them to propagate.
//
// Every DNS configuration's lego provider runs in its own child process (the
// plugin binary re-run with the argument "dns-solver", see package
// solvers/provider), served with hashicorp/go-plugin over net/rpc and started
// with an explicit, minimal environment that holds only that configuration's
// credentials. Nothing in this package calls os.Setenv or touches lego's
// package-level state, because the plugin process is shared by many tenants.
// Propagation checks run in the parent with miekg/dns directly.
//
// This package must not import Vault, the plugin backend, or lego's
// providers/dns (which would link every DNS provider into the parent's code
// paths); the backend imports it, never the other way round.
package solvers
