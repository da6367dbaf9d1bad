package acme

import (
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-acme/lego/v4/acme"
	jose "github.com/go-jose/go-jose/v4"
)

// fakeAccounts is the fake CA's account state: accounts by key, key changes (RFC 8555 §7.3.5) and
// deactivation (§7.3.6). The fake CA's lock guards it.
type fakeAccounts struct {
	// verify makes the fake check the signature of every POST against the account's current key
	// (kid) or the embedded key (jwk), as a real CA does; without it only key changes are
	// checked and requests for unknown accounts are served as before.
	verify bool
	// noKeyChange leaves keyChange out of the directory.
	noKeyChange bool
	// loseKeyChangeAnswer makes the fake change the key and then answer 500, as if the answer
	// had been lost.
	loseKeyChangeAnswer bool

	accounts      []*fakeAccount
	keyChanges    int
	deactivations int
	// signedBy records, for every verified kid-signed POST, the thumbprint of the key it was
	// signed with, in order ("path thumbprint").
	signedBy []string
}

type fakeAccount struct {
	path    string // "/acct/N"
	key     *jose.JSONWebKey
	status  string
	contact []string
}

// signedRequest is a POST's JWS as the fake CA reads it.
type signedRequest struct {
	jws     *jose.JSONWebSignature
	payload string // "" for POST-as-GET
	kid     string
	jwk     *jose.JSONWebKey
	url     string
	nonce   string
}

var fakeAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256}

func parseSignedRequest(body string) (*signedRequest, error) {
	jws, err := jose.ParseSigned(body, fakeAlgs)
	if err != nil {
		return nil, err
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("not one signature")
	}
	h := jws.Signatures[0].Protected
	sr := &signedRequest{jws: jws, payload: string(jws.UnsafePayloadWithoutVerification()), kid: h.KeyID, jwk: h.JSONWebKey, nonce: h.Nonce}
	sr.url, _ = h.ExtraHeaders["url"].(string)
	return sr, nil
}

func thumbprint(k *jose.JSONWebKey) string {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "invalid key"
	}
	return string(tp)
}

func (f *fakeCA) accountByKey(k *jose.JSONWebKey) *fakeAccount {
	for _, a := range f.accounts {
		if thumbprint(a.key) == thumbprint(k) {
			return a
		}
	}
	return nil
}

func (f *fakeCA) accountByURL(u string) *fakeAccount {
	for _, a := range f.accounts {
		if f.url(a.path) == u {
			return a
		}
	}
	return nil
}

// accountKey returns the current public key of the account at URL u (nil if there is none).
func (f *fakeCA) accountKey(u string) *jose.JSONWebKey {
	var k *jose.JSONWebKey
	f.with(func() {
		if a := f.accountByURL(u); a != nil {
			k = a.key
		}
	})
	return k
}

// signedPost serves a POST: it reads the JWS, checks it (see fakeAccounts.verify), serves the
// account resources itself and passes everything else to post.
func (f *fakeCA) signedPost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.problem(w, http.StatusBadRequest, problemNS+"malformed", err.Error())
		return
	}
	sr, err := parseSignedRequest(string(body))
	if err != nil {
		f.problem(w, http.StatusBadRequest, problemNS+"malformed", "not a JWS: "+err.Error())
		return
	}
	path := r.URL.Path
	checked := f.verify || path == "/key-change"
	if checked && sr.url != f.url(path) {
		f.problem(w, http.StatusBadRequest, problemNS+"malformed", "JWS url header "+sr.url+" is not the request URL")
		return
	}
	var acct *fakeAccount
	switch {
	case sr.kid != "":
		acct = f.accountByURL(sr.kid)
		if acct == nil && checked {
			f.problem(w, http.StatusBadRequest, problemNS+"accountDoesNotExist", "no account "+sr.kid)
			return
		}
		if acct != nil && checked {
			if _, err := sr.jws.Verify(acct.key); err != nil {
				f.problem(w, http.StatusBadRequest, problemNS+"malformed", "JWS verification error")
				return
			}
			f.signedBy = append(f.signedBy, path+" "+thumbprint(acct.key))
		}
		if acct != nil && acct.status != acme.StatusValid {
			f.problem(w, http.StatusUnauthorized, problemNS+"unauthorized", "account is "+acct.status)
			return
		}
	case sr.jwk != nil:
		if checked {
			if _, err := sr.jws.Verify(sr.jwk); err != nil {
				f.problem(w, http.StatusBadRequest, problemNS+"malformed", "JWS verification error")
				return
			}
		}
	default:
		f.problem(w, http.StatusBadRequest, problemNS+"malformed", "JWS has neither kid nor jwk")
		return
	}
	switch {
	case path == "/new-account":
		f.newAccount(w, sr)
	case path == "/key-change":
		f.keyChange(w, sr, acct)
	case strings.HasPrefix(path, "/acct/"):
		f.updateAccount(w, path, sr)
	default:
		f.post(w, path, sr.payload)
	}
}

func (f *fakeCA) accountJSON(w http.ResponseWriter, status int, a *fakeAccount) {
	w.Header().Set("Location", f.url(a.path))
	f.json(w, status, acme.Account{Status: a.status, Contact: a.contact})
}

func (f *fakeCA) newAccount(w http.ResponseWriter, sr *signedRequest) {
	var req acme.Account
	if !f.decode(w, sr.payload, &req) {
		return
	}
	if sr.jwk == nil {
		f.problem(w, http.StatusBadRequest, problemNS+"malformed", "newAccount needs a jwk")
		return
	}
	if a := f.accountByKey(sr.jwk); a != nil {
		if a.status != acme.StatusValid {
			f.problem(w, http.StatusUnauthorized, problemNS+"unauthorized", "the account of this key is "+a.status)
			return
		}
		f.accountJSON(w, http.StatusOK, a)
		return
	}
	if req.OnlyReturnExisting {
		f.problem(w, http.StatusBadRequest, problemNS+"accountDoesNotExist", "no account for this key")
		return
	}
	f.contact, f.eab = req.Contact, len(req.ExternalAccountBinding) > 0
	a := &fakeAccount{path: "/acct/" + strconv.Itoa(len(f.accounts)+1), key: sr.jwk, status: acme.StatusValid, contact: req.Contact}
	f.accounts = append(f.accounts, a)
	f.accountJSON(w, http.StatusCreated, a)
}

func (f *fakeCA) updateAccount(w http.ResponseWriter, path string, sr *signedRequest) {
	var req acme.Account
	if !f.decode(w, sr.payload, &req) {
		return
	}
	a := f.accountByURL(f.url(path))
	if a == nil {
		// An account the fake never registered (tests that dial with a made-up URL).
		a = &fakeAccount{path: path, status: acme.StatusValid}
	}
	if req.Status == acme.StatusDeactivated {
		a.status = acme.StatusDeactivated
		f.deactivations++
	} else {
		f.contact, a.contact = req.Contact, req.Contact
	}
	f.json(w, http.StatusOK, acme.Account{Status: a.status, Contact: a.contact})
}

// keyChange implements RFC 8555 §7.3.5 as a CA checks it: the outer JWS was verified with the
// account's key (signedPost); the inner must be signed by the new key given as its jwk, for the
// same URL, without nonce, over {"account": kid, "oldKey": the account's key}.
func (f *fakeCA) keyChange(w http.ResponseWriter, sr *signedRequest, acct *fakeAccount) {
	malformed := func(detail string) { f.problem(w, http.StatusBadRequest, problemNS+"malformed", detail) }
	if acct == nil {
		malformed("key change needs a kid")
		return
	}
	inner, err := parseSignedRequest(sr.payload)
	if err != nil {
		malformed("inner JWS: " + err.Error())
		return
	}
	if inner.jwk == nil || inner.kid != "" {
		malformed("inner JWS must carry a jwk and no kid")
		return
	}
	if inner.nonce != "" {
		malformed("inner JWS must not carry a nonce")
		return
	}
	if inner.url != sr.url {
		malformed("inner and outer url differ")
		return
	}
	payload, err := inner.jws.Verify(inner.jwk)
	if err != nil {
		malformed("inner JWS verification error")
		return
	}
	var body struct {
		Account string          `json:"account"`
		OldKey  jose.JSONWebKey `json:"oldKey"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		malformed("inner payload: " + err.Error())
		return
	}
	switch {
	case body.Account != sr.kid:
		malformed("inner account is not the kid")
		return
	case thumbprint(&body.OldKey) != thumbprint(acct.key):
		malformed("oldKey is not the account's key")
		return
	case thumbprint(inner.jwk) == thumbprint(acct.key):
		malformed("new and old key are identical")
		return
	}
	if other := f.accountByKey(inner.jwk); other != nil {
		w.Header().Set("Location", f.url(other.path))
		w.WriteHeader(http.StatusConflict)
		return
	}
	acct.key = inner.jwk
	f.keyChanges++
	if f.loseKeyChangeAnswer {
		f.problem(w, http.StatusInternalServerError, problemNS+"serverInternal", "the answer got lost")
		return
	}
	w.WriteHeader(http.StatusOK)
}
