package paths

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt/storage"
)

// ChallengePathPrefix is the unauthenticated path under which the mount answers HTTP-01
// challenges: a reverse proxy forwards http://<name>/.well-known/acme-challenge/<token> to
// /v1/<mount>/challenge/<token>.
const ChallengePathPrefix = "challenge/"

// maxTokenLen bounds an HTTP-01 token (RFC 8555 §8.3: base64url, at least 128 bits of entropy;
// CAs use 43 characters).
const maxTokenLen = 256

func challengePaths() []*framework.Path {
	return []*framework.Path{{
		Pattern:      ChallengePathPrefix + "(?P<token>.+)",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "http01-challenge"},
		Fields: map[string]*framework.FieldSchema{
			"token": {Type: framework.TypeString, Required: true, Description: "The HTTP-01 challenge token (the last segment of /.well-known/acme-challenge/<token>)."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: readChallenge, Summary: "Answer an HTTP-01 challenge (unauthenticated).",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{
					http.StatusOK:       {{Description: "The key authorization, as text/plain.", MediaType: "text/plain"}},
					http.StatusNotFound: {{Description: "No order of this mount is waiting for this token.", MediaType: "text/plain"}},
				}},
		},
		HelpSynopsis:    pathChallengeHelpSyn,
		HelpDescription: pathChallengeHelpDesc,
	}}
}

// readChallenge answers the key authorization of an order in flight for the token, as the raw
// text/plain body the CA expects; anything else is a plain 404. It needs no Vault token: a
// reverse proxy forwards the CA's unauthenticated request here.
func readChallenge(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	token := d.Get("token").(string)
	if !validToken(token) {
		return rawText(http.StatusNotFound, "not found\n"), nil
	}
	e, err := storage.LoadHTTPChallenge(ctx, req.Storage, token)
	if err != nil {
		return nil, err
	}
	if e == nil || e.Expired(time.Now()) {
		return rawText(http.StatusNotFound, "not found\n"), nil
	}
	return rawText(http.StatusOK, e.KeyAuthorization), nil
}

// validToken reports whether t has the form of an ACME token: base64url characters only.
func validToken(t string) bool {
	if t == "" || len(t) > maxTokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// rawText is a raw text/plain response with the given status.
func rawText(status int, body string) *logical.Response {
	return &logical.Response{Data: map[string]any{
		logical.HTTPContentType: "text/plain",
		logical.HTTPRawBody:     []byte(body),
		logical.HTTPStatusCode:  status,
	}}
}

const (
	pathChallengeHelpSyn  = "Answer HTTP-01 challenges of orders in flight (no Vault token needed)."
	pathChallengeHelpDesc = `Serves the key authorization of an HTTP-01 challenge that one of this mount's orders is waiting
for, as a raw text/plain body, and a plain 404 for any other token. It is the only path of the mount that
needs no Vault token: forward /.well-known/acme-challenge/ of your web server to it, e.g. with nginx
  location ~ "^/\.well-known/acme-challenge/([A-Za-z0-9_-]{1,256})$" {
    proxy_pass http://127.0.0.1:8200/v1/letsencrypt/challenge/$1;
  }
The answers live in Vault's storage, so any node of a cluster answers (standbys forward to the active node).`
)

// RefuseChallengeHelp refuses a help request (?help=1) for the unauthenticated challenge path with
// a 404 (Vault answers help as JSON, so an error rather than the raw 404 of an unknown token):
// without it, anyone a reverse proxy lets through could read the mount's help and learn what sits
// behind the proxy. nil for any other request.
func RefuseChallengeHelp(req *logical.Request) error {
	if req.Operation == logical.HelpOperation && strings.HasPrefix(req.Path, ChallengePathPrefix) {
		return logical.CodedError(http.StatusNotFound, "not found")
	}
	return nil
}
