// Package provider is the served side of DNS-01 solving: it runs inside a
// dns-solver child process (the plugin binary re-run with the argument
// "dns-solver") and serves exactly one lego DNS provider, built from the
// environment the parent gave the process, over hashicorp/go-plugin net/rpc.
//
// Because a child serves a single DNS configuration, this package may set
// lego's package-level state (recursive nameservers, DNS timeout, logger).
// lego's recursive nameserver is a resolver the child runs on 127.0.0.1
// (pinningResolver), which lets the child check, before each provider call,
// that the name lego will write after following CNAMEs lies in the
// configuration's zones, and makes lego see the CNAMEs the check saw. Error
// text leaves the child with credential values (in every encoding) and URL
// queries removed; the parent removes them again.
// It imports lego's providers/dns (every provider); the parent-side package
// solvers must not. This package must not import Vault or the plugin backend.
package provider

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/challenge"
	"github.com/go-acme/lego/v4/challenge/dns01"
	legolog "github.com/go-acme/lego/v4/log"
	"github.com/go-acme/lego/v4/providers/dns"
	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/redact"
	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/wire"
)

// Subcommand is the first command-line argument that selects child mode.
const Subcommand = wire.ChildCommand

// dnsTimeout is lego's per-query timeout for its zone and CNAME lookups.
const dnsTimeout = 5 * time.Second

// extraProviders are providers known only to this package's tests
// (export_test.go); nil in every real build.
var extraProviders map[string]func() (challenge.Provider, error)

// forbidden providers run host programs or read stdin; the parent rejects
// them too.
var forbidden = map[string]bool{"exec": true, "manual": true}

// Serve runs the dns-solver child: it serves one lego DNS provider over
// go-plugin until the parent disconnects, then exits the process. It never
// returns. The plugin's main calls it when os.Args[1] == Subcommand; run
// directly (without the parent's handshake cookie) it prints a notice and
// exits with status 1.
func Serve() {
	// Logs go to the real stderr, which go-plugin forwards to the parent's
	// logger (redacted there). Created before plugin.Serve swaps os.Stderr.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "dns-solver",
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	legolog.Logger = logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})

	// The child never reads stdin (go-plugin hands it the parent's).
	_ = os.Stdin.Close()

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         plugin.PluginSet{wire.PluginName: &wire.Plugin{Impl: newService(logger)}},
		Logger:          logger,
	})
	os.Exit(0)
}

// service implements wire.Service around one lego provider. It is safe for
// concurrent use; Present and CleanUp are serialised because lego providers
// are written for lego's sequential pre-solve loop and not all of them are
// safe for concurrent use. lego's Sequential() interval is not applied.
type service struct {
	logger hclog.Logger

	mu       sync.RWMutex // guards the fields below, set once by Configure
	provider challenge.Provider
	redact   *redact.Redactor
	zones    []string
	resolver *pinningResolver

	callMu sync.Mutex // serialises provider calls
}

func newService(logger hclog.Logger) *service {
	return &service{logger: logger}
}

func configErr(format string, args ...any) wire.Result {
	return wire.Result{Err: fmt.Sprintf(format, args...), ConfigErr: true}
}

// redactorFor redacts the values of the environment variables named by keys.
func redactorFor(keys []string) *redact.Redactor {
	vals := make([]string, 0, len(keys))
	for _, k := range keys {
		vals = append(vals, os.Getenv(k))
	}
	return redact.New(vals...)
}

// Configure builds the provider from the process environment. It may be
// called once per process.
func (s *service) Configure(args wire.ConfigureArgs) (res wire.Result) {
	defer recoverResult(s.logger, "configure", &res)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return wire.Result{Err: "dns solver child is already configured"}
	}
	name := args.Provider
	if forbidden[strings.ToLower(name)] {
		return configErr("provider %q is not allowed", name)
	}
	red := redactorFor(args.CredentialKeys)

	// lego asks only the pinning resolver, which forwards to the configured
	// resolvers (or the system's): see pinningResolver.
	upstream := args.Resolvers
	if len(upstream) == 0 {
		upstream = systemResolvers()
	}
	resolver, err := startPinningResolver(upstream, dnsTimeout)
	if err != nil {
		return wire.Result{Err: red.Error(err)}
	}
	_ = dns01.AddRecursiveNameservers([]string{resolver.addr})(nil)
	// lego's timeout covers the resolver's own tries of every upstream.
	_ = dns01.AddDNSTimeout(time.Duration(2*len(upstream))*dnsTimeout + time.Second)(nil)

	p, err := newProvider(name)
	if err != nil {
		resolver.close()
		if strings.HasPrefix(err.Error(), "unrecognized DNS provider") {
			return configErr("provider %q is not a lego DNS provider", name)
		}
		return configErr("%s", red.Error(err))
	}
	s.provider = p
	s.redact = red
	s.zones = normaliseZones(args.Zones)
	s.resolver = resolver
	s.logger.Info("dns provider ready", "resolvers", len(args.Resolvers), "zones", len(s.zones))
	return wire.Result{}
}

func newProvider(name string) (challenge.Provider, error) {
	if ctor, ok := extraProviders[name]; ok {
		return ctor()
	}
	return dns.NewDNSChallengeProviderByName(name)
}

// configured is what Configure set; p is nil before.
type configured struct {
	p        challenge.Provider
	redact   *redact.Redactor
	zones    []string
	resolver *pinningResolver
}

func (s *service) current() configured {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return configured{p: s.provider, redact: s.redact, zones: s.zones, resolver: s.resolver}
}

// Present creates the record through the provider.
func (s *service) Present(args wire.ChallengeArgs) (res wire.Result) {
	return s.run("present", args, func(p challenge.Provider) error {
		return p.Present(args.Domain, args.Token, args.KeyAuth)
	})
}

// CleanUp removes the record through the provider.
func (s *service) CleanUp(args wire.ChallengeArgs) (res wire.Result) {
	return s.run("cleanup", args, func(p challenge.Provider) error {
		return p.CleanUp(args.Domain, args.Token, args.KeyAuth)
	})
}

func (s *service) run(op string, args wire.ChallengeArgs, fn func(challenge.Provider) error) (res wire.Result) {
	defer recoverResult(s.logger, op, &res)
	c := s.current()
	if c.p == nil {
		return wire.Result{Err: "dns solver child is not configured"}
	}
	if strings.HasPrefix(args.Domain, "*.") || args.Domain == "" {
		return configErr("domain %q must be given without a wildcard label", args.Domain)
	}
	s.callMu.Lock()
	defer s.callMu.Unlock()

	// The CNAME answers lego sees are fixed from the zone check until the
	// provider returns.
	c.resolver.pin()
	defer c.resolver.unpin()
	if r := s.checkZones(c, op, args); r.Err != "" {
		return r
	}

	start := time.Now()
	err := fn(c.p)
	elapsed := time.Since(start).Round(time.Millisecond).String()
	if err != nil {
		s.logger.Warn("dns provider call failed", "op", op, "domain", args.Domain, "elapsed", elapsed)
		return wire.Result{Err: c.redact.Error(err)}
	}
	s.logger.Debug("dns provider call done", "op", op, "domain", args.Domain, "elapsed", elapsed)
	return wire.Result{}
}

// checkZones refuses a record whose name, after following CNAMEs as lego
// will, lies outside the configuration's zones, or whose CNAME chain loops.
// It runs inside the pinning period, so lego's own resolution in the
// provider call that follows sees the same chain.
func (s *service) checkZones(c configured, op string, args wire.ChallengeArgs) wire.Result {
	nothing := "no record was written"
	if op == "cleanup" {
		nothing = "no record was removed"
	}
	fqdn, chain, err := effectiveFQDN(c.resolver.addr, args.Domain, dnsTimeout)
	if err != nil {
		s.logger.Warn("dns record name refused", "op", op, "domain", args.Domain, "reason", "cname chain")
		return configErr("%s; %s", err.Error(), nothing)
	}
	if !wire.InZones(fqdn, c.zones) {
		s.logger.Warn("dns record name refused", "op", op, "domain", args.Domain, "target", fqdn)
		if len(chain) > 1 {
			return configErr("%s follows a CNAME to %s, outside this DNS configuration's zones (%s); %s",
				chain[0], fqdn, strings.Join(c.zones, ", "), nothing)
		}
		return configErr("%s is outside this DNS configuration's zones (%s); %s", fqdn, strings.Join(c.zones, ", "), nothing)
	}
	if !wire.InZones(args.Domain, c.zones) {
		// A delegated name (outside the zones; the parent allowed it through delegated_domains):
		// its record may only land at a name derived from itself, <name>.<...zone> (or
		// _acme-challenge.<name>.<...zone>), never at any name of the zones a CNAME points to —
		// providers such as rfc2136 replace the whole TXT set at the name they write, so a CNAME
		// to another name (the zone's apex, another tenant's record) would wipe it.
		d := strings.ToLower(strings.TrimSuffix(args.Domain, "."))
		t := strings.ToLower(strings.TrimSuffix(fqdn, "."))
		if !strings.HasPrefix(t, d+".") && !strings.HasPrefix(t, "_acme-challenge."+d+".") {
			s.logger.Warn("dns record name refused", "op", op, "domain", args.Domain, "target", fqdn, "reason", "delegation target not derived from the name")
			return configErr("%s follows a CNAME to %s: a delegated name's CNAME must point to a name of its own in the zones, %s.<zone> (e.g. %s.acme.%s); %s",
				"_acme-challenge."+d, fqdn, d, d, firstZone(c.zones), nothing)
		}
	}
	// lego resolves again inside the provider; with the answers pinned it
	// must reach the same name. Checked here too, in case lego changes how
	// it follows CNAMEs.
	if info := dns01.GetChallengeInfo(args.Domain, args.KeyAuth); !strings.EqualFold(info.EffectiveFQDN, fqdn) {
		s.logger.Error("dns record name mismatch", "op", op, "domain", args.Domain, "checked", fqdn, "lego", info.EffectiveFQDN)
		return wire.Result{Err: fmt.Sprintf("the record name for %s resolved to %s in the zone check but to %s in lego; %s",
			args.Domain, fqdn, info.EffectiveFQDN, nothing)}
	}
	return wire.Result{}
}

// recoverResult turns a provider panic into an error result instead of
// killing the child. The panic value is not logged (it could hold secrets).
func recoverResult(logger hclog.Logger, op string, res *wire.Result) {
	if r := recover(); r != nil {
		logger.Error("dns provider panicked", "op", op)
		*res = wire.Result{Err: "dns provider panicked during " + op}
	}
}

func firstZone(zones []string) string {
	if len(zones) == 0 {
		return "<zone>"
	}
	return zones[0]
}
