package main

import (
	"log/slog"
	"testing"
	"time"

	"kbbot/config"
	"kbbot/store/redistest"
	"kbbot/store/state"
)

// KBBOT_RETENTION reaches the stores that keep feedback records.
func TestStatePartsKeepTheRetention(t *testing.T) {
	for name, redisURL := range map[string]func(t *testing.T) string{
		"memory": func(*testing.T) string { return "" },
		"redis":  func(t *testing.T) string { return redistest.URL(t) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(func(k string) string {
				return map[string]string{"KBBOT_RETENTION": "36h", "REDIS_URL": redisURL(t)}[k]
			})
			if err != nil {
				t.Fatal(err)
			}
			a := &app{cfg: cfg, log: slog.New(slog.DiscardHandler)}
			parts, err := a.openStateParts(t.Context(), redistest.Prefix(t))
			if err != nil {
				t.Fatal(err)
			}
			defer parts.closeFn()
			var got time.Duration
			switch st := parts.state.(type) {
			case *state.Memory:
				got = st.Retention
			case *state.Redis:
				got = st.Retention
			}
			if got != 36*time.Hour {
				t.Errorf("%T retention %v, want 36h", parts.state, got)
			}
		})
	}
}
