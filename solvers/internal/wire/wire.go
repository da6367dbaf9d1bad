// Package wire is the private net/rpc protocol between the solvers package
// (parent side, in the plugin process) and the solvers/provider package
// (served side, in a dns-solver child process).
//
// Both ends are built from the same binary, so the protocol is versioned only
// through the go-plugin handshake. This package must stay free of lego's
// providers/dns import (the parent links it) and of Vault or backend imports.
package wire

import (
	"errors"
	"fmt"
	"net/rpc"
	"strings"

	plugin "github.com/hashicorp/go-plugin"
)

// ChildCommand is the first argument the plugin binary is re-run with to act
// as a DNS solver child.
const ChildCommand = "dns-solver"

// PluginName is the name the DNS service is dispensed under.
const PluginName = "dns01"

// MagicCookieKey is the environment variable carrying the handshake cookie.
// Tenants may not set it as a credential.
const MagicCookieKey = "LETSENCRYPT_VAULT_DNS_SOLVER_COOKIE"

// Handshake is the go-plugin handshake shared by parent and child. The cookie
// is not a security measure; it only stops the child mode from being entered
// by accident.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   MagicCookieKey,
	MagicCookieValue: "7f3c1e0a-letsencrypt-vault-dns01-solver",
}

// ConfigureArgs is sent once per child, right after it starts.
type ConfigureArgs struct {
	// Provider is the lego DNS provider name.
	Provider string
	// Resolvers are "host:port" recursive resolvers for lego's zone and CNAME
	// lookups; empty means lego's default (the child's /etc/resolv.conf).
	Resolvers []string
	// CredentialKeys name the environment variables that hold the
	// configuration's credentials: the child redacts their values from every
	// error it returns. Names are not secret.
	CredentialKeys []string
	// Zones are the DNS zones (lower-case, no trailing dot) the configuration
	// may write in. The child refuses to present or clean up a record whose
	// name, after following _acme-challenge CNAMEs, lies outside them. Empty
	// means any zone.
	Zones []string
}

// ChallengeArgs identifies one DNS-01 record. Domain never has a "*." prefix.
type ChallengeArgs struct {
	Domain  string
	Token   string
	KeyAuth string
}

// Result carries the outcome of a call. Errors travel as data rather than as
// net/rpc errors so that configuration mistakes can be told apart from
// provider failures and from transport failures.
type Result struct {
	// Err is the error text; empty on success.
	Err string
	// ConfigErr marks Err as the caller's configuration mistake.
	ConfigErr bool
}

// Service is implemented by the child. Implementations must be safe for
// concurrent use: net/rpc serves each call on its own goroutine.
type Service interface {
	Configure(args ConfigureArgs) Result
	Present(args ChallengeArgs) Result
	CleanUp(args ChallengeArgs) Result
}

// Plugin is the go-plugin net/rpc plugin. Impl is only set on the served side.
type Plugin struct {
	Impl Service
}

var _ plugin.Plugin = (*Plugin)(nil)

// Server implements plugin.Plugin.
func (p *Plugin) Server(*plugin.MuxBroker) (interface{}, error) {
	if p.Impl == nil {
		return nil, errors.New("wire: no service implementation")
	}
	return &RPCServer{impl: p.Impl}, nil
}

// Client implements plugin.Plugin.
func (p *Plugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (interface{}, error) {
	return &RPCClient{Client: c}, nil
}

// RPCServer adapts a Service to net/rpc. Its exported methods are the RPC
// surface; it is safe for concurrent use when the Service is.
type RPCServer struct {
	impl Service
}

// Configure is the RPC entry point for Service.Configure.
func (s *RPCServer) Configure(args ConfigureArgs, reply *Result) error {
	*reply = s.impl.Configure(args)
	return nil
}

// Present is the RPC entry point for Service.Present.
func (s *RPCServer) Present(args ChallengeArgs, reply *Result) error {
	*reply = s.impl.Present(args)
	return nil
}

// CleanUp is the RPC entry point for Service.CleanUp.
func (s *RPCServer) CleanUp(args ChallengeArgs, reply *Result) error {
	*reply = s.impl.CleanUp(args)
	return nil
}

// RPCClient is the parent's view of a child. It wraps a *rpc.Client, which is
// safe for concurrent use.
type RPCClient struct {
	*rpc.Client
}

// Method names on the wire.
const (
	MethodConfigure = "Plugin.Configure"
	MethodPresent   = "Plugin.Present"
	MethodCleanUp   = "Plugin.CleanUp"
)

// Go starts an asynchronous call; see rpc.Client.Go.
func (c *RPCClient) Go(method string, args any, reply *Result) *rpc.Call {
	return c.Client.Go(method, args, reply, make(chan *rpc.Call, 1))
}

// String describes a Result for logs and errors (never contains arguments).
func (r Result) String() string {
	if r.Err == "" {
		return "ok"
	}
	return fmt.Sprintf("error (config=%t)", r.ConfigErr)
}

// InZones reports whether name (with or without a trailing dot, any case)
// lies in one of zones (lower-case, no trailing dot, as in
// ConfigureArgs.Zones): it equals a zone or ends in "." plus a zone. Every
// name does when zones is empty.
func InZones(name string, zones []string) bool {
	if len(zones) == 0 {
		return true
	}
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	for _, z := range zones {
		if n == z || strings.HasSuffix(n, "."+z) {
			return true
		}
	}
	return false
}
