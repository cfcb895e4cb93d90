package bot

import (
	"time"

	"kbbot/bot/wiki"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the bot's Prometheus series. A nil *Metrics records nothing,
// so tests and tools that don't scrape need not build one.
type Metrics struct {
	events *prometheus.CounterVec
	stages *prometheus.HistogramVec
	queue  *prometheus.GaugeVec
	oldest *prometheus.GaugeVec

	syncLast prometheus.Gauge
	syncDocs *prometheus.GaugeVec
	syncRuns *prometheus.CounterVec
	syncTook prometheus.Gauge
	deps     *prometheus.GaugeVec
	reject   *prometheus.CounterVec
}

// Event outcomes counted by kbbot_events_total.
const (
	outcomeReceived  = "received"
	outcomeDuplicate = "deduplicated"
	outcomeIgnored   = "ignored"
	outcomeRejected  = "rejected"
	outcomeAnswered  = "answered"
	outcomeFailed    = "failed"
	outcomeTooLate   = "too_late" // waited longer than Config.MaxAge in the queue
)

// Stages timed by kbbot_stage_seconds.
const (
	stageAck        = "ack"
	stageRetrieval  = "retrieval"
	stageFirstToken = "llm_first_token"
	stageLLM        = "llm_total"
	stageAnswer     = "answer_total"
	stageSend       = "feishu_send"
)

// NewMetrics registers the bot's series with reg (a registry main owns, not
// the global default).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kbbot_events_total",
			Help: "Feishu events and callbacks by type and outcome (received, deduplicated, ignored, rejected, answered, failed).",
		}, []string{"type", "outcome"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kbbot_stage_seconds",
			Help: "Latency of each stage: ack (webhook), retrieval, llm_first_token, llm_total, answer_total, feishu_send.",
			// 1 ms to ~65 s: acks live at the bottom, LLM answers at the top.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}, []string{"stage"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kbbot_queue_depth",
			Help: "Work items not yet done, by queue (with Redis: across the deployment).",
		}, []string{"queue"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kbbot_queue_oldest_seconds",
			Help: "How long the oldest work item not yet done has waited, by queue.",
		}, []string{"queue"}),
		deps: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kbbot_dependency_up",
			Help: "Whether a dependency answered its last check (1) or not (0): state (Redis or in-process) and knowledge (the index). Refreshed by /readyz and every 15 s.",
		}, []string{"dependency"}),
	}
	m.syncLast = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kbbot_sync_last_success_timestamp_seconds",
		Help: "When the last knowledge sync that completed ended (Unix time); alert when it is old.",
	})
	m.syncDocs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kbbot_sync_documents",
		Help: "Documents of the last completed sync, by state: read, unchanged, removed, failed, skipped.",
	}, []string{"state"})
	m.syncRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kbbot_sync_runs_total",
		Help: "Knowledge syncs run by this replica, by outcome (ok, failed: could not run or was cut short).",
	}, []string{"outcome"})
	m.syncTook = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kbbot_sync_duration_seconds",
		Help: "How long the last completed sync took.",
	})
	m.reject = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kbbot_webhook_rejected_total",
		Help: "Webhook requests rejected, by reason (every one gets the same answer; the log is rate-limited).",
	}, []string{"reason"})
	reg.MustRegister(m.events, m.stages, m.queue, m.oldest, m.deps, m.reject, m.syncLast, m.syncDocs, m.syncRuns, m.syncTook)
	return m
}

func (m *Metrics) event(typ, outcome string) {
	if m != nil {
		m.events.WithLabelValues(typ, outcome).Inc()
	}
}

func (m *Metrics) observe(stage string, d time.Duration) {
	if m != nil && d > 0 {
		m.stages.WithLabelValues(stage).Observe(d.Seconds())
	}
}

func (m *Metrics) rejected(reason string) {
	if m != nil {
		m.reject.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) dependencyUp(name string, up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.deps.WithLabelValues(name).Set(v)
	}
}

func (m *Metrics) queueDepth(name string, n int, oldest time.Duration) {
	if m != nil {
		m.queue.WithLabelValues(name).Set(float64(n))
		m.oldest.WithLabelValues(name).Set(oldest.Seconds())
	}
}

// SyncDone records a sync that ran (a wiki.Runner's Done).
func (m *Metrics) SyncDone(rep wiki.Report, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.syncRuns.WithLabelValues("failed").Inc()
		return
	}
	m.syncRuns.WithLabelValues("ok").Inc()
	m.syncLast.Set(float64(rep.Finished.Unix()))
	m.syncTook.Set(rep.Finished.Sub(rep.Started).Seconds())
	for state, n := range map[string]int{"read": rep.Read, "unchanged": rep.Unchanged, "removed": rep.Removed,
		"failed": len(rep.Failed), "skipped": len(rep.Skipped)} {
		m.syncDocs.WithLabelValues(state).Set(float64(n))
	}
}
