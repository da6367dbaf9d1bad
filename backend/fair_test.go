package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hold acquires a worker for group in the background; the returned channel yields its release
// function once granted.
func hold(t *testing.T, f *fairSlots, ctx context.Context, group string) <-chan func() {
	t.Helper()
	ch := make(chan func(), 1)
	go func() {
		rel, err := f.acquire(ctx, group, nil)
		if err == nil {
			ch <- rel
		}
	}()
	return ch
}

func granted(ch <-chan func(), within time.Duration) (func(), bool) {
	select {
	case rel := <-ch:
		return rel, true
	case <-time.After(within):
		return nil, false
	}
}

func TestFairSlotsPerGroupLimit(t *testing.T) {
	for _, tc := range []struct{ n, per int }{{1, 1}, {2, 1}, {3, 2}, {4, 3}, {8, 6}, {16, 12}} {
		require.Equal(t, tc.per, newFairSlots(tc.n).perGroup, "n=%d", tc.n)
	}
}

// One tenant with 24 slow jobs holds at most 6 of 8 workers: another tenant's job starts at once.
func TestFairSlotsLeaveRoomForOthers(t *testing.T) {
	f := newFairSlots(8)
	ctx := context.Background()
	var a []<-chan func()
	for range 24 {
		a = append(a, hold(t, f, ctx, "team-a"))
	}
	started := 0
	for _, ch := range a {
		if _, ok := granted(ch, 50*time.Millisecond); ok {
			started++
		}
	}
	require.Equal(t, 6, started, "team-a holds its share, not every worker")
	running, waiting, per := f.stats()
	require.Equal(t, 6, running)
	require.Equal(t, 18, waiting)
	require.Equal(t, [2]int{6, 18}, per["team-a"])

	var reason string
	_, err := f.acquire(ctx, "team-b", func(r string) { reason = r })
	require.NoError(t, err, "team-b starts at once")
	require.Empty(t, reason, "team-b did not queue")
	var queuedWhy string
	done := make(chan struct{})
	go func() {
		defer close(done)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := f.acquire(cctx, "team-a", func(r string) { queuedWhy = r })
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}()
	<-done
	require.Contains(t, queuedWhy, `role "team-a" already has 6 jobs running`)
	_, waiting, _ = f.stats()
	require.Equal(t, 18, waiting, "a cancelled waiter leaves the queue")
}

// Freed workers go to the waiting group with the fewest running jobs, ties to the earliest waiter.
func TestFairSlotsShareFreedWorkers(t *testing.T) {
	f := newFairSlots(4) // per group: 3
	ctx := context.Background()
	var aRel []func()
	for range 3 {
		rel, ok := granted(hold(t, f, ctx, "a"), time.Second)
		require.True(t, ok)
		aRel = append(aRel, rel)
	}
	aMore := hold(t, f, ctx, "a") // waits: a has its 3
	time.Sleep(20 * time.Millisecond)
	bCh := []<-chan func(){hold(t, f, ctx, "b")}
	time.Sleep(20 * time.Millisecond)
	cCh := []<-chan func(){hold(t, f, ctx, "c")}
	bRel, ok := granted(bCh[0], time.Second)
	require.True(t, ok, "b gets the fourth worker")
	_, ok = granted(cCh[0], 50*time.Millisecond)
	require.False(t, ok, "c waits: all four are busy")
	aRel[0]()
	cRel, ok := granted(cCh[0], time.Second)
	require.True(t, ok, "c (none running) goes before a (two running), though a waited longer")
	_, ok = granted(aMore, 50*time.Millisecond)
	require.False(t, ok)
	bRel()
	_, ok = granted(aMore, time.Second)
	require.True(t, ok, "then a")
	cRel()
}

// Under load from many goroutines, never more than n jobs run, nor more than perGroup of one group.
func TestFairSlotsBoundsUnderLoad(t *testing.T) {
	f := newFairSlots(8)
	var total atomic.Int32
	var per [4]atomic.Int32
	var maxTotal, maxPer atomic.Int32
	var wg sync.WaitGroup
	for i := range 400 {
		g := i % 4
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := f.acquire(context.Background(), fmt.Sprint(g), nil)
			require.NoError(t, err)
			tot, p := total.Add(1), per[g].Add(1)
			for m := maxTotal.Load(); tot > m && !maxTotal.CompareAndSwap(m, tot); m = maxTotal.Load() {
			}
			for m := maxPer.Load(); p > m && !maxPer.CompareAndSwap(m, p); m = maxPer.Load() {
			}
			time.Sleep(time.Millisecond)
			per[g].Add(-1)
			total.Add(-1)
			rel()
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, maxTotal.Load(), int32(8))
	require.LessOrEqual(t, maxPer.Load(), int32(6))
	running, waiting, _ := f.stats()
	require.Zero(t, running)
	require.Zero(t, waiting)
}
