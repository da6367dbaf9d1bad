package solvers

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/solvers/internal/wire"
)

// ChildCommand is the first command-line argument the plugin binary is re-run
// with to act as a DNS solver child. The plugin's main must hand control to
// provider.Serve when os.Args[1] equals it.
const ChildCommand = wire.ChildCommand

// Timing of propagation checks: the defaults, and the bounds a configuration may set.
const (
	// DefaultPropagationTimeout applies when DNSConfig.PropagationTimeout is zero.
	DefaultPropagationTimeout = 2 * time.Minute
	// MaxPropagationTimeout bounds DNSConfig.PropagationTimeout.
	MaxPropagationTimeout = 30 * time.Minute
	// DefaultPollingInterval applies when DNSConfig.PollingInterval is zero.
	DefaultPollingInterval = 500 * time.Millisecond
	// MinPollingInterval and MaxPollingInterval bound DNSConfig.PollingInterval.
	MinPollingInterval = 50 * time.Millisecond
	MaxPollingInterval = time.Minute
	// maxPollBackoff caps the x1.5 back-off of propagation polls.
	maxPollBackoff = 5 * time.Second

	maxCredentialKeyLen = 128
	maxProviderNameLen  = 64
)

// DNSConfig is one stored DNS-01 configuration. A DNSConfig is a plain value;
// the package never modifies the maps or slices it is given.
type DNSConfig struct {
	// Provider is the lego provider name, e.g. "rfc2136", "cloudflare".
	Provider string
	// Credentials are env-style names from lego's docs, e.g. RFC2136_NAMESERVER,
	// mapped to their values. Each key must pass ValidateProviderCredentialKey
	// for Provider (an allow-list of the names lego documents for it), and
	// providers that would otherwise fall back to ambient credentials must be
	// given an explicit mode (see credentialModes).
	Credentials map[string]string
	// Resolvers are "host:port" (port defaults to 53) recursive resolvers used
	// for propagation checks and, in the child, for lego's zone/CNAME lookups.
	Resolvers []string
	// PropagationTimeout bounds WaitPropagation; DefaultPropagationTimeout when zero.
	PropagationTimeout time.Duration
	// PollingInterval is the first propagation poll interval (DefaultPollingInterval
	// when zero); it backs off x1.5 up to 5s.
	PollingInterval time.Duration
	// TTL, when > 0 and no *_TTL credential is set, is passed to the provider
	// under every *_TTL name the provider documents (see ProviderEnv).
	TTL int
	// Zones are the DNS zones (e.g. "example.com") this configuration may
	// write in. A record is presented or cleaned up only when its name, after
	// following _acme-challenge CNAMEs the way lego does, lies in one of them;
	// the domain itself must lie in one too. Empty means any zone.
	Zones []string
	// DelegatedDomains are names (and the names under them) outside Zones this
	// configuration may present records for because their _acme-challenge
	// records are CNAMEs into Zones (the acme-dns pattern): the record is
	// written at the CNAME's target, which must lie in Zones like any other.
	DelegatedDomains []string
}

// ConfigError is a caller's mistake in a DNSConfig or in the request that uses
// it. Its message says what to fix and never contains a credential value.
type ConfigError struct {
	msg string
}

// Error implements error.
func (e *ConfigError) Error() string { return e.msg }

func configErrorf(format string, args ...any) *ConfigError {
	return &ConfigError{msg: fmt.Sprintf(format, args...)}
}

// IsConfigError reports whether err is, or wraps, a *ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

var credentialKeyRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// reservedCredentialKeys are set by the plugin itself in the child's
// environment, or change how the child process runs.
var reservedCredentialKeys = map[string]bool{
	"PATH":                        true,
	"HOME":                        true,
	"TMPDIR":                      true,
	"AWS_EC2_METADATA_DISABLED":   true,
	"AWS_SHARED_CREDENTIALS_FILE": true,
	"AWS_CONFIG_FILE":             true,
	"GCE_METADATA_HOST":           true,
	// Google's SDKs read a credentials file from this path.
	"GOOGLE_APPLICATION_CREDENTIALS": true,
	wire.MagicCookieKey:              true,
}

// reservedCredentialPrefixes are environment namespaces of the dynamic
// loader, the Go runtime and toolchain, TLS roots, go-plugin, Vault, lego's
// own switches and cloud metadata endpoints.
var reservedCredentialPrefixes = []string{
	"LD_", "GO", "SSL_CERT_", "PLUGIN_", "VAULT_", "LEGO_",
	"AWS_EC2_METADATA_", "AWS_CONTAINER_",
}

// allowedReservedKeys are exceptions to reservedCredentialPrefixes.
var allowedReservedKeys = map[string]bool{
	"LEGO_DISABLE_CNAME_SUPPORT": true,
}

// allowedReservedPrefixes are lego provider namespaces that happen to start
// with a reserved prefix ("GO" is reserved for the Go runtime's GODEBUG,
// GOGC, GOMAXPROCS, ...).
var allowedReservedPrefixes = []string{"GODADDY_", "GOOGLE_DOMAINS_"}

// pathSuffixes mark variables whose value is a host file path: lego reads
// secrets from files named by *_FILE (and a few providers from *_PATH or
// *_LOCATION), so a tenant-supplied path would read the host's files.
var pathSuffixes = []string{"_FILE", "_PATH", "_LOCATION"}

// ValidateCredentialKey reports whether k may be used as a credential name in
// DNSConfig.Credentials. It returns a *ConfigError naming the key and the rule
// it breaks. Keys are not secret; values are never passed here. Safe for
// concurrent use.
func ValidateCredentialKey(k string) error {
	switch {
	case k == "":
		return configErrorf("credential name must not be empty")
	case len(k) > maxCredentialKeyLen:
		return configErrorf("credential name %q is longer than %d characters", truncate(k, 40), maxCredentialKeyLen)
	case !credentialKeyRE.MatchString(k):
		return configErrorf("credential name %q is invalid: use upper-case letters, digits and '_', starting with a letter", k)
	}
	if base, ok := strings.CutSuffix(k, "_FILE"); ok {
		return configErrorf("credential name %q is not allowed: *_FILE names make lego read a file on the Vault host; set the secret itself as %s", k, base)
	}
	for _, s := range pathSuffixes {
		if strings.HasSuffix(k, s) {
			return configErrorf("credential name %q is not allowed: names ending in %s refer to files on the Vault host, which tenants may not choose", k, s)
		}
	}
	if reservedCredentialKeys[k] {
		return configErrorf("credential name %q is reserved: the plugin sets or forbids it", k)
	}
	if allowedReservedKeys[k] {
		return nil
	}
	for _, p := range allowedReservedPrefixes {
		if strings.HasPrefix(k, p) {
			return nil
		}
	}
	for _, p := range reservedCredentialPrefixes {
		if strings.HasPrefix(k, p) {
			return configErrorf("credential name %q is reserved: names starting with %s are not allowed", k, p)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

var providerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// forbiddenProviders run host programs or read the plugin's stdin.
var forbiddenProviders = map[string]string{
	"exec":   "it runs programs on the Vault host",
	"manual": "it waits for input on the plugin's terminal",
}

// checkedConfig is a validated, normalised DNSConfig.
type checkedConfig struct {
	DNSConfig
	resolvers []string // normalised host:port
	zones     []string // lower-case, no trailing dot
	delegated []string // DelegatedDomains, likewise
	hash      [32]byte // identifies what the child process depends on
}

func checkConfig(cfg DNSConfig) (*checkedConfig, error) {
	name := cfg.Provider
	if name == "" {
		return nil, configErrorf("provider must be set to a lego DNS provider name")
	}
	if why, bad := forbiddenProviders[strings.ToLower(name)]; bad {
		return nil, configErrorf("provider %q is not allowed: %s", name, why)
	}
	if _, known := ProviderNames(name); !known || len(name) > maxProviderNameLen || !providerNameRE.MatchString(name) {
		return nil, configErrorf("provider %q is not a lego DNS provider", truncate(name, maxProviderNameLen))
	}
	keys := make([]string, 0, len(cfg.Credentials))
	for k := range cfg.Credentials {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first bad key is reported, the same one every time
	for _, k := range keys {
		if err := ValidateProviderCredentialKey(name, k); err != nil {
			return nil, err
		}
		if strings.IndexByte(cfg.Credentials[k], 0) >= 0 {
			return nil, configErrorf("credential %s contains a NUL byte", k)
		}
	}
	if err := checkCredentialMode(name, cfg.Credentials); err != nil {
		return nil, err
	}
	if cfg.TTL < 0 {
		return nil, configErrorf("ttl must not be negative")
	}
	if cfg.PropagationTimeout < 0 || cfg.PropagationTimeout > MaxPropagationTimeout {
		return nil, configErrorf("propagation_timeout must be between 1s and %s", MaxPropagationTimeout)
	}
	if cfg.PollingInterval != 0 && (cfg.PollingInterval < MinPollingInterval || cfg.PollingInterval > MaxPollingInterval) {
		return nil, configErrorf("polling_interval must be between %s and %s, e.g. 500ms", MinPollingInterval, MaxPollingInterval)
	}
	resolvers, err := ParseResolvers(cfg.Resolvers)
	if err != nil {
		return nil, err
	}
	zones, err := parseZones(cfg.Zones)
	if err != nil {
		return nil, err
	}
	if cfg.PropagationTimeout == 0 {
		cfg.PropagationTimeout = DefaultPropagationTimeout
	}
	if cfg.PollingInterval == 0 {
		cfg.PollingInterval = DefaultPollingInterval
	}
	delegated, err := parseZones(cfg.DelegatedDomains)
	if err != nil {
		return nil, err
	}
	cc := &checkedConfig{DNSConfig: cfg, resolvers: resolvers, zones: zones, delegated: delegated}
	cc.hash = childHash(cfg.Provider, cfg.Credentials, resolvers, zones, cfg.TTL)
	return cc, nil
}

// parseZones lower-cases zones, strips a trailing dot and checks that each
// is a DNS name without a wildcard.
func parseZones(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, z := range in {
		n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(z)), ".")
		if n == "" {
			continue
		}
		if strings.ContainsAny(n, " \t\r\n*/\\@") || strings.HasPrefix(n, ".") || strings.Contains(n, "..") || len(n) > 253 {
			return nil, configErrorf("zone %q is not a DNS name such as example.com", truncate(z, 64))
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseResolvers validates resolver addresses, "ip" or "ip:port" (IPv6 in brackets when a port
// is given), and returns them as ip:port with the default port 53 added. Resolvers are IP
// addresses, not names: a name would need the host's own resolver to find them.
func ParseResolvers(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, r := range in {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if ap, err := netip.ParseAddrPort(r); err == nil && ap.Port() != 0 {
			out = append(out, ap.String())
			continue
		}
		if a, err := netip.ParseAddr(r); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53).String())
			continue
		}
		return nil, configErrorf("resolver %q is not an IP address with an optional port, e.g. 192.0.2.53 or 192.0.2.53:5353", truncate(r, 64))
	}
	return out, nil
}

// childHash identifies everything a child process depends on. It is kept in
// memory only and compared in constant time.
func childHash(provider string, creds map[string]string, resolvers, zones []string, ttl int) [32]byte {
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(provider)
	keys := make([]string, 0, len(creds))
	for k := range creds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	put(strconv.Itoa(len(keys)))
	for _, k := range keys {
		put(k)
		put(creds[k])
	}
	put(strconv.Itoa(len(resolvers)))
	for _, r := range resolvers {
		put(r)
	}
	put(strconv.Itoa(len(zones)))
	for _, z := range zones {
		put(z)
	}
	put(strconv.Itoa(ttl))
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func sameHash(a, b [32]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// fixedChildEnv is set by the plugin in every child after the credentials, so
// it always wins. It stops cloud SDKs from finding the host's own identity.
var fixedChildEnv = []string{
	"HOME=/nonexistent",
	"AWS_EC2_METADATA_DISABLED=true",
	"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	"AWS_CONFIG_FILE=/dev/null",
	"GCE_METADATA_HOST=127.0.0.1:1",
}

// childEnv builds the complete environment of a child: credentials, TTL
// variables, the provider's credential-mode variables (see credentialModes),
// the fixed variables and TMPDIR. Later entries win (os/exec keeps the last
// value of a name). go-plugin appends only its own
// PLUGIN_* variables and the handshake cookie (SkipHostEnv is set).
func childEnv(cc *checkedConfig, tmpDir string) []string {
	keys := make([]string, 0, len(cc.Credentials))
	for k := range cc.Credentials {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+len(fixedChildEnv)+4)
	for _, k := range keys {
		env = append(env, k+"="+cc.Credentials[k])
	}
	env = append(env, ttlEnv(cc.Provider, keys, cc.TTL)...)
	env = append(env, providerEnvFor(cc.Provider)...)
	env = append(env, fixedChildEnv...)
	env = append(env, "TMPDIR="+tmpDir)
	return env
}

// ttlEnv returns NAME=<ttl> for every *_TTL name lego documents for provider
// (e.g. RFC2136_TTL and DNSUPDATE_TTL for rfc2136), unless ttl is 0 or a
// credential already ends in _TTL.
func ttlEnv(provider string, credKeys []string, ttl int) []string {
	if ttl <= 0 {
		return nil
	}
	for _, k := range credKeys {
		if strings.HasSuffix(k, "_TTL") {
			return nil
		}
	}
	names, _ := ProviderNames(provider)
	var out []string
	for _, name := range names {
		if !strings.HasSuffix(name, "_TTL") || ValidateCredentialKey(name) != nil {
			continue // never set a reserved name
		}
		out = append(out, name+"="+strconv.Itoa(ttl))
	}
	return out
}

// ChallengeRecord returns the DNS-01 record for domain and keyAuth:
// fqdn is "_acme-challenge.<domain without "*." and trailing dot>." and value
// is base64url-without-padding(sha256(keyAuth)). CNAMEs are not followed.
// Safe for concurrent use.
func ChallengeRecord(domain, keyAuth string) (fqdn, value string) {
	sum := sha256.Sum256([]byte(keyAuth))
	return "_acme-challenge." + baseDomain(domain) + ".", base64.RawURLEncoding.EncodeToString(sum[:])
}

// baseDomain strips a wildcard label and a trailing dot: ACME authorizations
// for "*.example.test" carry the identifier "example.test", and lego presents
// records for the identifier.
func baseDomain(domain string) string {
	d := strings.TrimSpace(domain)
	d = strings.TrimPrefix(d, "*.")
	return strings.TrimSuffix(d, ".")
}

func checkDomain(domain string) (string, error) {
	d := baseDomain(domain)
	if d == "" || strings.ContainsAny(d, " \t\r\n*/\\") || strings.HasPrefix(d, ".") || strings.Contains(d, "..") || len(d) > 253 {
		return "", configErrorf("domain %q is not a valid DNS name", truncate(domain, 64))
	}
	return d, nil
}
