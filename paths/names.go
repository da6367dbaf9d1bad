package paths

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// Limits on names, from RFC 1035 and Let's Encrypt's limit of 100 names per certificate.
const (
	maxDomainLength   = 253
	maxLabelLength    = 63
	maxDomainsPerCert = 100
	maxCertNameLength = 256
	maxCertNameSegLen = 128
	// challengeLabel prefixes a name's DNS-01 record; the longest name DNS-01 can validate leaves
	// room for it (a wildcard *.x is validated at the record of x).
	challengeLabel     = "_acme-challenge."
	maxDNS01NameLength = maxDomainLength - len(challengeLabel)
)

// idnaProfile maps Unicode names to their ASCII (A-label) form the way browsers look them up.
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.BidiRule())

// CanonicalDomain returns the canonical form of a DNS name a certificate may carry: lower case,
// A-labels for internationalized names, no trailing dot, and at most one wildcard as the whole
// left-most label. The error says what is wrong with the name.
func CanonicalDomain(name string) (string, error) {
	raw := strings.TrimSpace(name)
	if raw == "" {
		return "", errors.New("a domain name is empty")
	}
	if _, err := netip.ParseAddr(strings.Trim(raw, "[]")); err == nil {
		return "", fmt.Errorf("%q is an IP address: DNS-01 can only validate DNS names", raw)
	}
	s := strings.TrimSuffix(raw, ".")
	wildcard := false
	if strings.HasPrefix(s, "*.") {
		wildcard = true
		s = s[2:]
	}
	if strings.Contains(s, "*") {
		return "", fmt.Errorf("%q has a misplaced wildcard: a wildcard must be the whole left-most label, as in *.example.com", raw)
	}
	ascii := strings.ToLower(s)
	if !isASCII(s) {
		a, err := idnaProfile.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid internationalized DNS name: %v", raw, err)
		}
		ascii = strings.ToLower(a)
	}
	if len(ascii)+2*btoi(wildcard) > maxDomainLength {
		return "", fmt.Errorf("%q is longer than %d characters", raw, maxDomainLength)
	}
	if len(ascii) > maxDNS01NameLength {
		return "", fmt.Errorf("%q is longer than %d characters: its DNS-01 record %s<name> would exceed DNS's limit of %d", raw, maxDNS01NameLength, challengeLabel, maxDomainLength)
	}
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("%q is not a fully qualified domain name: give at least two labels, as in www.example.com", raw)
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("%q: %v", raw, err)
		}
	}
	if strings.Contains(ascii, "xn--") {
		// An A-label must decode to a valid internationalized label (xn--x does not).
		if _, err := idnaProfile.ToUnicode(ascii); err != nil {
			return "", fmt.Errorf("%q has an A-label (xn--) that is not a valid internationalized label: %v", raw, err)
		}
	}
	if isNumeric(labels[len(labels)-1]) {
		return "", fmt.Errorf("%q ends in an all-numeric label: top-level domains are never numeric", raw)
	}
	if wildcard {
		return "*." + ascii, nil
	}
	return ascii, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label (two dots in a row, or a leading dot)")
	case len(l) > maxLabelLength:
		return fmt.Errorf("label %q is longer than %d characters", l, maxLabelLength)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has the character %q: use letters, digits and hyphens", l, string(c))
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CanonicalDomains canonicalizes a certificate's list of DNS names, keeping their order (the first
// is the subject), and rejects an empty list, duplicates and more than 100 names.
func CanonicalDomains(names []string) ([]string, error) {
	return canonicalAll(names, CanonicalDomain)
}

// CanonicalIdentifiers is CanonicalDomains for a list that may also hold IP addresses (RFC 8738),
// canonicalized by CanonicalIP.
func CanonicalIdentifiers(names []string) ([]string, error) {
	return canonicalAll(names, func(n string) (string, error) {
		if looksLikeIP(n) {
			return CanonicalIP(n)
		}
		return CanonicalDomain(n)
	})
}

// canonicalAll canonicalizes names with canonical, in order, refusing an empty list, duplicates
// and more than maxDomainsPerCert names.
func canonicalAll(names []string, canonical func(string) (string, error)) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("domains is required: give the names the certificate must cover, e.g. domains=www.example.com,example.com")
	}
	if len(names) > maxDomainsPerCert {
		return nil, fmt.Errorf("domains has %d names: a certificate may carry at most %d", len(names), maxDomainsPerCert)
	}
	out := make([]string, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		c, err := canonical(n)
		if err != nil {
			return nil, fmt.Errorf("domains: %v", err)
		}
		if seen[c] {
			return nil, fmt.Errorf("domains: %q is listed twice: give each name once", c)
		}
		seen[c] = true
		out = append(out, c)
	}
	return out, nil
}

// ValidateCertName checks a certificate's name (the part after certs/). Names may hold tenant
// prefixes separated by "/"; the last segment may not be an action name ("renew", "revoke").
func ValidateCertName(name string) error {
	if name == "" {
		return errors.New("the certificate name is empty: write to certs/<name>")
	}
	if len(name) > maxCertNameLength {
		return fmt.Errorf("the certificate name is longer than %d characters", maxCertNameLength)
	}
	segs := strings.Split(name, "/")
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("certificate name %q has an empty, \".\" or \"..\" segment", name)
		}
		if len(seg) > maxCertNameSegLen {
			return fmt.Errorf("certificate name %q has a segment longer than %d characters", name, maxCertNameSegLen)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("certificate name %q has the character %q: use letters, digits, '-', '_', '.' and '/'", name, string(c))
			}
		}
	}
	switch segs[len(segs)-1] {
	case "renew", "revoke":
		// Reserved so that a request for the old action path certs/<name>/renew is refused
		// instead of declaring a certificate of that name.
		return fmt.Errorf("certificate name %q ends in %q, which is reserved: the action is %s/<name>", name, segs[len(segs)-1], segs[len(segs)-1])
	}
	return nil
}

// ValidateEntryName checks the name of an account, DNS configuration or role.
func ValidateEntryName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("the %s name is empty", kind)
	}
	if len(name) > maxCertNameSegLen {
		return fmt.Errorf("the %s name is longer than %d characters", kind, maxCertNameSegLen)
	}
	return nil
}

// CanonicalIP returns the canonical text of an IP address a certificate may carry (RFC 8738):
// dotted quad for IPv4 (also when written as IPv4-mapped IPv6), RFC 5952 form for IPv6. Only the
// plain notations parse: no zones, no shortened, octal, hexadecimal or decimal IPv4 forms.
func CanonicalIP(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address: give it as 192.0.2.1 or 2001:db8::1", raw)
	}
	if a.Zone() != "" {
		return "", fmt.Errorf("%q has an IPv6 zone: certificates name addresses without one", raw)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "", fmt.Errorf("%q is not a unicast address: a certificate names a host's address", raw)
	}
	return a.String(), nil
}

// looksLikeIP reports whether a name given among domains is written as an IP address (so it is
// an RFC 8738 identifier, not a DNS name).
func looksLikeIP(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(s), "[]"))
	return err == nil
}

// nonPublicIPs are the ranges a public CA refuses to certify (besides private, loopback and
// link-local addresses): IANA's special-purpose registries' non-global entries.
var nonPublicIPs = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48"), netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/23"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("3fff::/20"), netip.MustParsePrefix("5f00::/16"),
}

// PublicIP reports whether the canonical address ip is one a public CA (Let's Encrypt) issues
// for: globally routable unicast, none of the special-purpose ranges.
func PublicIP(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublicIPs {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
