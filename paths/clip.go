package paths

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Bounds of what an error message may quote back. Messages quote the caller's input with %q so the
// caller sees what to fix; a 500 kB name must not come back whole.
const (
	maxQuotedLen  = 100  // a quoted value longer than this is shortened
	keepQuotedLen = 60   // characters kept of a shortened quoted value
	maxMessageLen = 1024 // a whole message longer than this is cut
)

// quotedRE matches a Go-quoted string as %q writes it.
var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// ClipMessage shortens every quoted value in msg longer than maxQuotedLen to its first
// keepQuotedLen characters and its length, and the whole message to maxMessageLen bytes.
func ClipMessage(msg string) string {
	if len(msg) <= maxQuotedLen {
		return msg
	}
	msg = quotedRE.ReplaceAllStringFunc(msg, func(q string) string {
		if len(q) <= maxQuotedLen+2 {
			return q
		}
		inner := q[1 : len(q)-1]
		return fmt.Sprintf(`"%s..." (%d characters, shortened)`, cutUTF8(inner, keepQuotedLen), len(inner))
	})
	if len(msg) > maxMessageLen {
		msg = cutUTF8(msg, maxMessageLen) + "... (message shortened)"
	}
	return msg
}

// cutUTF8 returns at most n bytes of s, not splitting a UTF-8 sequence or a backslash escape.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = strings.ToValidUTF8(s[:n], "")
	// Do not end inside an escape such as \x or \u00: drop a trailing partial escape.
	if i := strings.LastIndexByte(s, '\\'); i >= 0 && len(s)-i < 10 {
		s = s[:i]
	}
	return s
}

// ClipResponse applies ClipMessage to the error of an error response and to a handler's error,
// whatever produced them (our validators or Vault's field parser).
func ClipResponse(resp *logical.Response, err error) (*logical.Response, error) {
	if resp != nil && resp.Data != nil {
		if msg, ok := resp.Data["error"].(string); ok {
			resp.Data["error"] = ClipMessage(msg)
		}
	}
	if resp != nil {
		// Vault's framework warns about unknown parameters by name: a 1 MB name must not come back.
		for i, w := range resp.Warnings {
			resp.Warnings[i] = clipWarning(w)
		}
	}
	if err != nil && len(err.Error()) > maxQuotedLen {
		if clipped := ClipMessage(err.Error()); clipped != err.Error() {
			err = clipError(err, clipped)
		}
	}
	return resp, err
}

// clipWarning shortens a warning like an error message; unquoted lists (Vault's "Endpoint ignored
// these unrecognized parameters: [...]") are cut at maxQuotedLen per item by the whole-message bound.
func clipWarning(w string) string {
	if len(w) <= maxQuotedLen {
		return w
	}
	w = ClipMessage(w)
	if len(w) > maxMessageLen/4 {
		w = cutUTF8(w, maxMessageLen/4) + "... (warning shortened)"
	}
	return w
}

// clipError returns an error with message msg of the same kind as err, as far as Vault's plugin
// transport tells kinds apart (it switches on the type, not on errors.As).
func clipError(err error, msg string) error {
	switch e := err.(type) {
	case logical.HTTPCodedError:
		return logical.CodedError(e.Code(), msg)
	case *logical.StatusBadRequest:
		return &logical.StatusBadRequest{Err: msg}
	case errutil.UserError:
		return errutil.UserError{Err: msg}
	case errutil.InternalError:
		return errutil.InternalError{Err: msg}
	}
	return errors.New(msg)
}
