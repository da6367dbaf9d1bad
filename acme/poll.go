package acme

import (
	"context"
	"fmt"
	"time"
)

// PollPolicy says how to wait for the CA while an authorization or order is being processed: start
// well under a second, grow by Factor up to Max, and never ask earlier than the CA's Retry-After.
type PollPolicy struct {
	// Initial is the first wait after the first check.
	Initial time.Duration
	// Factor multiplies the wait after every check (values below 1 count as 1).
	Factor float64
	// Max caps the wait (values below Initial count as Initial). A Retry-After from the CA may
	// exceed it.
	Max time.Duration
	// Timeout bounds the whole wait for one object. The last check happens at the deadline at
	// the latest; a Retry-After that ends past the deadline ends the wait at once.
	Timeout time.Duration
}

// DefaultPollPolicy is what Obtain uses when given a zero PollPolicy, and where a field is zero.
var DefaultPollPolicy = PollPolicy{Initial: 100 * time.Millisecond, Factor: 1.6, Max: 5 * time.Second, Timeout: 3 * time.Minute}

// withDefaults fills zero or nonsensical fields from DefaultPollPolicy, so that a partial policy
// can never poll the CA in a tight loop.
func (p PollPolicy) withDefaults() PollPolicy {
	if p.Initial <= 0 {
		p.Initial = DefaultPollPolicy.Initial
	}
	if p.Factor == 0 {
		p.Factor = DefaultPollPolicy.Factor
	}
	p.Factor = max(p.Factor, 1)
	if p.Max == 0 {
		p.Max = max(DefaultPollPolicy.Max, p.Initial)
	}
	p.Max = max(p.Max, p.Initial)
	if p.Timeout <= 0 {
		p.Timeout = DefaultPollPolicy.Timeout
	}
	return p
}

// clock is the time source of poll; tests replace it.
type clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done, and returns ctx.Err() in the latter case.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// poll calls check until it reports done, an error, or the policy's timeout passes. check returns
// the Retry-After the CA sent with its answer (0 if none). poll returns check's error as it is,
// ctx.Err() when ctx ends, and an *Error of kind ErrUnreachable on timeout (with RetryAfter set
// when the CA asked to wait past the deadline).
func (p PollPolicy) poll(ctx context.Context, what string, check func() (done bool, retryAfter time.Duration, err error)) error {
	return p.pollWith(ctx, realClock{}, what, check)
}

func (p PollPolicy) pollWith(ctx context.Context, clk clock, what string, check func() (bool, time.Duration, error)) error {
	p = p.withDefaults()
	deadline := clk.Now().Add(p.Timeout)
	interval := p.Initial
	for {
		done, retryAfter, err := check()
		if err != nil || done {
			return err
		}
		now := clk.Now()
		if retryAfter > 0 && now.Add(retryAfter).After(deadline) {
			return &Error{Kind: ErrUnreachable, RetryAfter: retryAfter,
				err: fmt.Errorf("acme: %s not done, and the CA asked to wait %s, past the %s poll timeout", what, retryAfter.Round(time.Second), p.Timeout)}
		}
		if !now.Before(deadline) {
			return &Error{Kind: ErrUnreachable, err: fmt.Errorf("acme: %s still not done after %s", what, p.Timeout)}
		}
		wait := min(max(interval, retryAfter), deadline.Sub(now))
		if err := clk.Sleep(ctx, wait); err != nil {
			return err
		}
		interval = min(time.Duration(float64(interval)*p.Factor), p.Max)
	}
}
