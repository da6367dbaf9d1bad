package acme

import (
	"context"
	"fmt"
	"time"
)

// PollPolicy says how to wait for the CA while an authorization or order is being processed: start
// well under a second, grow by Factor up to Max, and never ask earlier than the CA's Retry-After.
type PollPolicy struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
	// Timeout bounds the whole wait for one object.
	Timeout time.Duration
}

// DefaultPollPolicy is used when Options carry none.
var DefaultPollPolicy = PollPolicy{Initial: 100 * time.Millisecond, Factor: 1.6, Max: 5 * time.Second, Timeout: 3 * time.Minute}

// poll calls check until it reports done, an error, or the policy's timeout passes. check returns
// the Retry-After the CA sent with its answer (0 if none).
func (p PollPolicy) poll(ctx context.Context, what string, check func() (done bool, retryAfter time.Duration, err error)) error {
	deadline := time.Now().Add(p.Timeout)
	interval := p.Initial
	for {
		done, retryAfter, err := check()
		if err != nil || done {
			return err
		}
		wait := max(interval, retryAfter)
		if time.Now().Add(wait).After(deadline) {
			return &Error{Kind: ErrUnreachable, err: fmt.Errorf("acme: %s still not done after %s", what, p.Timeout)}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		interval = min(time.Duration(float64(interval)*p.Factor), p.Max)
	}
}
