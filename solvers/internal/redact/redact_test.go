package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nasty is a credential value with a character of every class an encoder
// treats specially.
const nasty = `Pa$$ w0rd/+=&?"<>\`

func jsonNoHTML(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRedactEveryEncoding(t *testing.T) {
	q := url.QueryEscape(nasty)
	encodings := map[string]string{
		"literal":              nasty,
		"padded":               "  " + nasty + "\n",
		"query escape":         q,
		"query escape %20":     strings.ReplaceAll(q, "+", "%20"),
		"query escape lower":   strings.ToLower(q[:0]) + lowerPct(q),
		"path escape":          url.PathEscape(nasty),
		"path escape lower":    lowerPct(url.PathEscape(nasty)),
		"url.Values":           url.Values{"auth-password": {nasty}}.Encode(),
		"go quoted":            strconv.Quote(nasty),
		"go %q":                fmt.Sprintf("%q", nasty),
		"go quoted ascii":      strconv.QuoteToASCII(nasty),
		"json":                 mustJSON(nasty),
		"json upper":           strings.ReplaceAll(strings.ReplaceAll(mustJSON(nasty), `\u003c`, `\u003C`), `\u003e`, `\u003E`),
		"json no html":         jsonNoHTML(nasty),
		"base64 std":           base64.StdEncoding.EncodeToString([]byte(nasty)),
		"base64 raw std":       base64.RawStdEncoding.EncodeToString([]byte(nasty)),
		"base64 url":           base64.URLEncoding.EncodeToString([]byte(nasty)),
		"base64 raw url":       base64.RawURLEncoding.EncodeToString([]byte(nasty)),
		"hex":                  hex.EncodeToString([]byte(nasty)),
		"HEX":                  strings.ToUpper(hex.EncodeToString([]byte(nasty))),
		"encodeURIComponent":   strings.ReplaceAll(q, "+", "%20"),
		"json of query string": mustJSON("auth-password=" + q),
	}
	r := New(nasty)
	// Fragments of the value that must not survive in any encoding.
	fragments := []string{"Pa$$", "w0rd", "Pa%24%24", "UGEkJCB3MHJk"}
	for name, enc := range encodings {
		t.Run(name, func(t *testing.T) {
			in := "error: request with " + enc + " failed"
			out := r.Clean(in)
			assert.Contains(t, out, Text, "input %q", in)
			for _, f := range fragments {
				assert.NotContains(t, out, f, "input %q", in)
			}
			assert.True(t, strings.HasPrefix(out, "error: request with "), out)
			assert.True(t, strings.HasSuffix(out, " failed"), out)
		})
	}
}

func lowerPct(s string) string { return pctHex.ReplaceAllStringFunc(s, strings.ToLower) }

func TestRedactLongestFirstAndShortValues(t *testing.T) {
	r := New("s3cr3t-value", "abc", "s3cr3t-value-long", "  padded  ", "")
	out := r.String("auth failed for s3cr3t-value-long and s3cr3t-value (abc) padded")
	assert.Equal(t, "auth failed for [redacted] and [redacted] (abc) [redacted]", out)
	assert.Equal(t, "x", New().String("x"))
	var nilR *Redactor
	assert.Equal(t, "x", nilR.String("x"))
	assert.Empty(t, Forms("ab "), "a value shorter than MinLen after trimming has no forms")
}

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://api.cloudns.net/dns/add-record.json?auth-id=1&auth-password=x", "https://api.cloudns.net/dns/add-record.json?[query removed]"},
		{"https://user:pa55@host.example:8443/p?q=1#frag", "https://[userinfo removed]@host.example:8443/p?[query removed]"},
		{"https://host.example/p#access_token=abc", "https://host.example/p#[fragment removed]"},
		{"https://tok@host.example", "https://[userinfo removed]@host.example"},
		{"https://host.example/a@b", "https://host.example/a@b"},
		{"https://host.example/p?%zz=%", "https://host.example/p?[query removed]"},
		{"no url here", "no url here"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, URL(tt.in), tt.in)
	}
}

func TestURLsInText(t *testing.T) {
	in := `cloudns: Get "https://api.cloudns.net/dns/add-record.json?auth-id=1&auth-password=Pa%24%24": dial tcp: lookup api.cloudns.net: no such host; see https://go-acme.github.io/lego/dns/cloudns/ and HTTP://u:p@x.example/y?z`
	want := `cloudns: Get "https://api.cloudns.net/dns/add-record.json?[query removed]": dial tcp: lookup api.cloudns.net: no such host; see https://go-acme.github.io/lego/dns/cloudns/ and HTTP://[userinfo removed]@x.example/y?[query removed]`
	assert.Equal(t, want, URLs(in))
	assert.Equal(t, want, URLs(URLs(in)), "sanitizing twice changes nothing")
}

func TestURLErrorIsRebuilt(t *testing.T) {
	secret := "Pa$$ w0rd"
	u := "https://api.cloudns.net/dns/add-record.json?auth-id=1&auth-password=" + url.QueryEscape(secret)
	ue := &url.Error{Op: "Get", URL: u, Err: errors.New("dial tcp 192.0.2.1:443: connect: connection refused")}

	clean := SanitizeError(ue)
	var got *url.Error
	require.True(t, errors.As(clean, &got), "a *url.Error stays a *url.Error")
	assert.Equal(t, "https://api.cloudns.net/dns/add-record.json?[query removed]", got.URL)
	assert.Equal(t, "Get", got.Op)
	assert.NotContains(t, clean.Error(), "auth-password")

	wrapped := fmt.Errorf("cloudns: add record: %w", ue)
	assert.Equal(t, `cloudns: add record: Get "https://api.cloudns.net/dns/add-record.json?[query removed]": dial tcp 192.0.2.1:443: connect: connection refused`,
		SanitizeError(wrapped).Error())

	joined := errors.Join(errors.New("first"), wrapped)
	assert.NotContains(t, New(secret).Error(joined), "auth-password")
	assert.NotContains(t, New(secret).Error(joined), "w0rd")
	assert.Nil(t, SanitizeError(nil))
	assert.Equal(t, "", New(secret).Error(nil))
}

// A value with a space inside a URL query must not be split by the URL rule
// before the redactor sees it.
func TestRedactBeforeURLRule(t *testing.T) {
	r := New("Pa$$ w0rd")
	out := r.Clean("request to https://h.example/p?password=Pa$$ w0rd failed")
	assert.NotContains(t, out, "w0rd")
	assert.NotContains(t, out, "Pa$$")
}

func FuzzRedact(f *testing.F) {
	f.Add(nasty, "prefix ")
	f.Add("abcd", "")
	f.Fuzz(func(t *testing.T, v, prefix string) {
		t0 := strings.TrimSpace(v)
		// Skip values the replacement text or the probe's own text could form.
		if len(t0) < MinLen || strings.Contains(prefix, t0) || strings.ContainsAny(v, "[]!") || strings.Contains(Text, t0) {
			return
		}
		r := New(v)
		for _, form := range Forms(v) {
			out := r.String(prefix + form + "!")
			if strings.Contains(out, t0) {
				t.Fatalf("value %q survived in %q (form %q)", v, out, form)
			}
		}
	})
}
