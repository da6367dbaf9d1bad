package paths

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClipMessage(t *testing.T) {
	long := strings.Repeat("a", 500_000)
	cases := []struct {
		name, in   string
		keep, lose []string
		maxLen     int
	}{
		{"short message untouched", `"x.test" is not allowed`, []string{`"x.test" is not allowed`}, nil, 100},
		{"quoted value at the limit untouched", fmt.Sprintf("%q is bad", long[:maxQuotedLen]), []string{long[:maxQuotedLen]}, nil, 200},
		{"quoted value just over the limit shortened", fmt.Sprintf("%q is bad", long[:maxQuotedLen+1]), []string{"is bad", "101 characters"}, []string{long[:maxQuotedLen+1]}, 200},
		{"huge quoted value", fmt.Sprintf("domains: %q is longer than 253 characters", long+".test"), []string{"longer than 253", "500005 characters"}, []string{long[:keepQuotedLen+1]}, 200},
		{"two values", fmt.Sprintf("label %q in %q", long, long), []string{"label ", " in "}, []string{long[:keepQuotedLen+1]}, 300},
		{"escaped quotes inside", fmt.Sprintf("%q", `"`+long), []string{`\"`}, []string{long[:keepQuotedLen]}, 200},
		{"unquoted huge text cut", "error converting input " + long + " for field wait", []string{"error converting input", "message shortened"}, []string{long[:maxMessageLen]}, maxMessageLen + 40},
		{"multibyte not split", fmt.Sprintf("%q", strings.Repeat("é", 200)), []string{"é"}, nil, 300},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := ClipMessage(tc.in)
			assert.LessOrEqual(t, len(out), tc.maxLen)
			for _, k := range tc.keep {
				assert.Contains(t, out, k)
			}
			for _, l := range tc.lose {
				assert.NotContains(t, out, l)
			}
			assert.True(t, strings.ToValidUTF8(out, "?") == out, "valid UTF-8")
		})
	}
}

func TestClipResponseKeepsErrorKinds(t *testing.T) {
	long := fmt.Sprintf("%q is bad", strings.Repeat("b", 10_000))
	resp, err := ClipResponse(logical.ErrorResponse(long), nil)
	require.NoError(t, err)
	assert.Less(t, len(resp.Data["error"].(string)), 200)

	_, err = ClipResponse(nil, logical.CodedError(http.StatusTooManyRequests, long))
	var coded logical.HTTPCodedError
	require.True(t, errors.As(err, &coded))
	assert.Equal(t, http.StatusTooManyRequests, coded.Code())
	assert.Less(t, len(err.Error()), 200)

	_, err = ClipResponse(nil, &logical.StatusBadRequest{Err: long})
	_, ok := err.(*logical.StatusBadRequest)
	assert.True(t, ok, "still a StatusBadRequest: %T", err)

	// Sentinels are short and come back as they are (Vault compares them by identity).
	_, err = ClipResponse(nil, logical.ErrReadOnly)
	assert.Same(t, logical.ErrReadOnly, err)
}

// Vault's framework warns about unknown parameters by name; a huge name is not echoed whole.
func TestClipResponseWarnings(t *testing.T) {
	resp := &logical.Response{Warnings: []string{"short", "Endpoint ignored these unrecognized parameters: [" + strings.Repeat("B", 1_000_000) + "]"}}
	resp, _ = ClipResponse(resp, nil)
	require.Equal(t, "short", resp.Warnings[0])
	require.Less(t, len(resp.Warnings[1]), 400)
	require.Contains(t, resp.Warnings[1], "unrecognized parameters")
}
