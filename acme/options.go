package acme

import (
	"time"

	"github.com/go-acme/lego/v4/acme/api"
)

// apiOrderOptions keeps lego's option type out of the package's exported API.
type apiOrderOptions struct {
	Profile        string
	ReplacesCertID string
}

func (o apiOrderOptions) lego() *api.OrderOptions {
	return &api.OrderOptions{Profile: o.Profile, ReplacesCertID: o.ReplacesCertID}
}

func parseRetryAfter(v string) (time.Duration, error) { return api.ParseRetryAfter(v) }
