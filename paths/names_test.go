package paths

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCanonicalDomain(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	cases := []struct {
		in, want, errHas string
	}{
		{in: "WWW.Example.COM.", want: "www.example.com"},
		{in: " www.example.com ", want: "www.example.com"},
		{in: "*.example.com", want: "*.example.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: long63 + ".example.com", want: long63 + ".example.com"},
		{in: "", errHas: "empty"},
		{in: "localhost", errHas: "two labels"},
		{in: "192.0.2.1", errHas: "IP address"},
		{in: "[2001:db8::1]", errHas: "IP address"},
		{in: "www.*.example.com", errHas: "misplaced wildcard"},
		{in: "*example.com", errHas: "misplaced wildcard"},
		{in: "*.*.example.com", errHas: "misplaced wildcard"},
		{in: "a_b.example.com", errHas: "a_b"},
		{in: "a!b.example.com", errHas: "a!b"},
		{in: "-a.example.com", errHas: "hyphen"},
		{in: "a..example.com", errHas: "example.com"},
		{in: strings.Repeat("a", 64) + ".example.com", errHas: "longer than 63"},
		{in: strings.Repeat(long63+".", 4) + "com", errHas: "longer than 253"},
		{in: "example.123", errHas: "numeric"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CanonicalDomain(tc.in)
			if tc.errHas != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.errHas)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestCanonicalDomains(t *testing.T) {
	got, err := CanonicalDomains([]string{"WWW.example.com", "*.example.com"})
	require.NoError(t, err)
	require.Equal(t, []string{"www.example.com", "*.example.com"}, got)

	_, err = CanonicalDomains(nil)
	require.ErrorContains(t, err, "domains is required")
	_, err = CanonicalDomains([]string{"www.example.com", "WWW.EXAMPLE.COM."})
	require.ErrorContains(t, err, "listed twice")
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("n%d.example.com", i)
	}
	_, err = CanonicalDomains(many)
	require.ErrorContains(t, err, "at most 100")
	_, err = CanonicalDomains(many[:100])
	require.NoError(t, err)
}

func TestValidateCertName(t *testing.T) {
	for _, ok := range []string{"web", "team-a/www", "team_a/x.y/z-1"} {
		require.NoError(t, ValidateCertName(ok), ok)
	}
	for in, errHas := range map[string]string{
		"":              "empty",
		"team-a/../x":   `".."`,
		"a//b":          "empty",
		"web/renew":     "reserved",
		"team-a/revoke": "reserved",
		"a b":           `" "`,
		"a/*":           `"*"`,
	} {
		err := ValidateCertName(in)
		require.Error(t, err, in)
		require.Contains(t, err.Error(), errHas, in)
	}
}

// FuzzCanonicalDomain checks that canonical names are stable and well-formed.
func FuzzCanonicalDomain(f *testing.F) {
	for _, s := range []string{"www.example.com", "*.Example.COM.", "bücher.example", "a..b", "*.*.x.y", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CanonicalDomain(in)
		if err != nil {
			return
		}
		again, err := CanonicalDomain(out)
		if err != nil || again != out {
			t.Fatalf("canonical form %q of %q is not stable: %q, %v", out, in, again, err)
		}
		if len(out) > maxDomainLength || strings.Count(out, "*") > 1 || out != strings.ToLower(out) {
			t.Fatalf("bad canonical form %q of %q", out, in)
		}
	})
}

// FuzzValidateCertName checks that accepted certificate names are safe storage keys.
func FuzzValidateCertName(f *testing.F) {
	for _, s := range []string{"web", "team-a/www", "a/../b", "x/renew", "a//b", "A.b_c-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateCertName(name) != nil {
			return
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", name, seg)
			}
		}
		if strings.HasSuffix(name, "/renew") || strings.HasSuffix(name, "/revoke") || len(name) > maxCertNameLength {
			t.Fatalf("accepted %q", name)
		}
	})
}
