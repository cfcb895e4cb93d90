package wiki

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"kbbot/store/state"
)

// Leaser hands out the lease that keeps syncs one at a time
// (state.Redis across replicas, state.Memory in one process).
type Leaser interface {
	TryLease(ctx context.Context, name string, ttl time.Duration) (*state.Lease, error)
}

// ErrBusy means another sync is running (here or on another replica).
var ErrBusy = errors.New("a sync is already running")

// leaseTTL is how long a crashed replica's sync lease outlives it; the
// holder renews it every third of that.
const leaseTTL = 30 * time.Second

// Runner runs syncs at start and every Interval (Loop), and on demand
// (Now), never two at once in the deployment.
type Runner struct {
	Syncer interface {
		Run(context.Context) (Report, error)
	} // a *Syncer

	Leases   Leaser
	Interval time.Duration // 0: Loop syncs once, at start
	Log      *slog.Logger
	// Done, when set, is told about every sync that ran (for metrics).
	Done func(Report, error)
}

// Now runs one sync, unless one is running: then ErrBusy. The sync stops
// when ctx ends or the lease is lost.
func (r *Runner) Now(ctx context.Context) (Report, error) {
	l, err := r.Leases.TryLease(ctx, "wiki-sync", leaseTTL)
	if err != nil {
		return Report{}, err
	}
	if l == nil {
		return Report{}, ErrBusy
	}
	defer l.Release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Done():
			cancel() // lost: another replica may start one
		case <-ctx.Done():
		}
	}()
	rep, err := r.Syncer.Run(ctx)
	if r.Done != nil {
		r.Done(rep, err)
	}
	return rep, err
}

// Loop syncs at once and then every Interval until ctx ends. A replica
// that finds another syncing skips its turn.
func (r *Runner) Loop(ctx context.Context) {
	for {
		rep, err := r.Now(ctx)
		switch {
		case errors.Is(err, ErrBusy):
			r.Log.Debug("sync skipped: another replica is syncing")
		case err != nil && ctx.Err() == nil:
			r.Log.Error("knowledge sync failed", "error", err)
		case err == nil:
			r.Log.Info("knowledge synced", "documents", rep.Documents, "read", rep.Read, "unchanged", rep.Unchanged,
				"removed", rep.Removed, "failed", len(rep.Failed), "skipped", len(rep.Skipped), "took", rep.Finished.Sub(rep.Started).Round(time.Millisecond))
		}
		if r.Interval <= 0 {
			return
		}
		t := time.NewTimer(r.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
