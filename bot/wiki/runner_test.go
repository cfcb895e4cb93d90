package wiki

import (
	"context"
	"sync"
	"testing"
	"time"

	"kbbot/deploy/testkit"
	"kbbot/store/redistest"
	"kbbot/store/state"
)

// overlapSyncer is a sync that takes a while and notes whether another was
// running meanwhile.
type overlapSyncer struct {
	mu      *sync.Mutex
	running *int
	overlap *bool
	runs    *int
}

func (s overlapSyncer) Run(ctx context.Context) (Report, error) {
	s.mu.Lock()
	*s.running++
	*s.runs++
	if *s.running > 1 {
		*s.overlap = true
	}
	s.mu.Unlock()
	select {
	case <-time.After(30 * time.Millisecond):
	case <-ctx.Done():
	}
	s.mu.Lock()
	*s.running--
	s.mu.Unlock()
	return Report{}, nil
}

// Two replicas syncing every few milliseconds on one Redis: never two
// syncs at once, and both get turns.
func TestRunnersNeverSyncAtOnce(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	var (
		mu            sync.Mutex
		running, runs int
		overlap       bool
	)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	perReplica := make([]int, 2)
	for i := range 2 {
		leases := state.NewRedis(redistest.Open(t, url, prefix))
		r := &Runner{Syncer: overlapSyncer{&mu, &running, &overlap, &runs}, Leases: leases, Interval: 5 * time.Millisecond,
			Log: testkit.Logger(t), Done: func(Report, error) { mu.Lock(); perReplica[i]++; mu.Unlock() }}
		wg.Go(func() { r.Loop(ctx) })
	}
	testkit.Eventually(t, "both replicas to have synced", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return perReplica[0] > 0 && perReplica[1] > 0 && runs >= 10
	})
	cancel()
	wg.Wait()
	if overlap {
		t.Error("two syncs ran at once")
	}
}

// Now on a busy deployment says so and runs nothing.
func TestRunnerNowBusy(t *testing.T) {
	leases := state.NewMemory()
	hold, err := leases.TryLease(t.Context(), "wiki-sync", time.Minute)
	if err != nil || hold == nil {
		t.Fatal(hold, err)
	}
	defer hold.Release()
	ran := 0
	r := &Runner{Syncer: overlapSyncer{&sync.Mutex{}, new(int), new(bool), &ran}, Leases: leases, Log: testkit.Logger(t)}
	if _, err := r.Now(t.Context()); err != ErrBusy || ran != 0 {
		t.Errorf("Now while another syncs: %v, %d runs; want ErrBusy and none", err, ran)
	}
}
