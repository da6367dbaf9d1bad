package acme

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock records the waits of poll and lets no real time pass.
type fakeClock struct {
	now   time.Time
	waits []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPoll(t *testing.T) {
	base := PollPolicy{Initial: 10 * time.Millisecond, Factor: 2, Max: 50 * time.Millisecond, Timeout: time.Hour}
	cases := []struct {
		name   string
		policy PollPolicy
		// answers are check's results in turn: retry-after in ms, -1 for done.
		answers   []int
		wantWaits []time.Duration
		wantErr   error // sentinel; nil means success
		wantRA    time.Duration
	}{
		{
			name: "starts at Initial, grows by Factor, capped at Max", policy: base,
			answers: []int{0, 0, 0, 0, 0, 0, -1}, wantWaits: ms(10, 20, 40, 50, 50, 50),
		},
		{
			name: "done at once", policy: base, answers: []int{-1}, wantWaits: ms(),
		},
		{
			name: "Retry-After longer than the interval wins", policy: base,
			answers: []int{0, 300, 0, -1}, wantWaits: ms(10, 300, 40),
		},
		{
			name: "Retry-After shorter than the interval is a floor only", policy: base,
			answers: []int{0, 0, 5, -1}, wantWaits: ms(10, 20, 40),
		},
		{
			name: "Retry-After may exceed Max", policy: base,
			answers: []int{2000, -1}, wantWaits: ms(2000),
		},
		{
			name: "stops at Timeout, with a last check at the deadline", policy: PollPolicy{Initial: 10 * time.Millisecond, Factor: 1, Max: 10 * time.Millisecond, Timeout: 35 * time.Millisecond},
			answers: []int{0, 0, 0, 0, 0, 0}, wantWaits: ms(10, 10, 10, 5), wantErr: ErrUnreachable,
		},
		{
			name: "a Retry-After past the deadline ends the wait at once", policy: PollPolicy{Initial: 10 * time.Millisecond, Factor: 2, Max: 50 * time.Millisecond, Timeout: time.Second},
			answers: []int{0, 5000}, wantWaits: ms(10), wantErr: ErrUnreachable, wantRA: 5 * time.Second,
		},
		{
			name: "zero Factor does not collapse the interval", policy: PollPolicy{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, Timeout: time.Hour},
			answers: []int{0, 0, 0, -1}, wantWaits: []time.Duration{10 * time.Millisecond, 16 * time.Millisecond, 25600 * time.Microsecond},
		},
		{
			name: "Factor below 1 counts as 1", policy: PollPolicy{Initial: 10 * time.Millisecond, Factor: 0.5, Max: 40 * time.Millisecond, Timeout: time.Hour},
			answers: []int{0, 0, 0, -1}, wantWaits: ms(10, 10, 10),
		},
		{
			name: "Max below Initial counts as Initial", policy: PollPolicy{Initial: 10 * time.Millisecond, Factor: 3, Max: time.Millisecond, Timeout: time.Hour},
			answers: []int{0, 0, -1}, wantWaits: ms(10, 10),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
			calls := 0
			err := tc.policy.pollWith(t.Context(), clk, "order", func() (bool, time.Duration, error) {
				require.Less(t, calls, len(tc.answers), "checked again after the end")
				a := tc.answers[calls]
				calls++
				if a < 0 {
					return true, 0, nil
				}
				return false, time.Duration(a) * time.Millisecond, nil
			})
			assert.Equal(t, tc.wantWaits, append([]time.Duration{}, clk.waits...))
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, len(tc.answers), calls)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			assert.Contains(t, err.Error(), "acme: order ")
			d, ok := RetryAfter(err)
			assert.Equal(t, tc.wantRA, d)
			assert.Equal(t, tc.wantRA > 0, ok)
		})
	}
}

func TestPollReturnsCheckError(t *testing.T) {
	boom := &Error{Kind: ErrChallengeFailed, Detail: "nope"}
	clk := &fakeClock{}
	calls := 0
	err := DefaultPollPolicy.pollWith(t.Context(), clk, "validation", func() (bool, time.Duration, error) {
		calls++
		if calls == 3 {
			return false, 0, boom
		}
		return false, 0, nil
	})
	assert.Same(t, boom, err)
	assert.Equal(t, 3, calls)
}

func TestPollContext(t *testing.T) {
	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		policy := PollPolicy{Initial: time.Hour, Factor: 1, Max: time.Hour, Timeout: 2 * time.Hour}
		start := time.Now()
		calls := 0
		err := policy.poll(ctx, "order", func() (bool, time.Duration, error) {
			calls++
			time.AfterFunc(5*time.Millisecond, cancel)
			return false, 0, nil
		})
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, calls)
		assert.Less(t, time.Since(start), time.Second)
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		err := PollPolicy{Initial: time.Millisecond, Factor: 1, Max: time.Millisecond, Timeout: time.Hour}.poll(ctx, "order",
			func() (bool, time.Duration, error) { return false, 0, nil })
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, errors.Is(err, ErrUnreachable))
	})
}

func TestPollPolicyDefaults(t *testing.T) {
	assert.Equal(t, DefaultPollPolicy, PollPolicy{}.withDefaults())
	assert.Equal(t, DefaultPollPolicy, DefaultPollPolicy.withDefaults())
	p := PollPolicy{Initial: 10 * time.Second}.withDefaults()
	assert.Equal(t, 10*time.Second, p.Initial)
	assert.Equal(t, 10*time.Second, p.Max, "Max never below Initial")
	assert.Equal(t, DefaultPollPolicy.Timeout, p.Timeout)
	assert.Equal(t, DefaultPollPolicy.Factor, p.Factor)
	assert.Less(t, DefaultPollPolicy.Initial, time.Second, "starts well under a second")
}
