package bot

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the bot's Prometheus series. A nil *Metrics records nothing,
// so tests and tools that don't scrape need not build one.
type Metrics struct {
	events *prometheus.CounterVec
	stages *prometheus.HistogramVec
	queue  *prometheus.GaugeVec
	deps   *prometheus.GaugeVec
	reject *prometheus.CounterVec
}

// Event outcomes counted by kbbot_events_total.
const (
	outcomeReceived  = "received"
	outcomeDuplicate = "deduplicated"
	outcomeIgnored   = "ignored"
	outcomeRejected  = "rejected"
	outcomeAnswered  = "answered"
	outcomeFailed    = "failed"
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
			Help: "Work items waiting for a worker, by queue.",
		}, []string{"queue"}),
		deps: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kbbot_dependency_up",
			Help: "Whether a dependency answered its last check (1) or not (0): state (Redis or in-process) and knowledge (the index). Refreshed by /readyz and every 15 s.",
		}, []string{"dependency"}),
	}
	m.reject = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kbbot_webhook_rejected_total",
		Help: "Webhook requests rejected, by reason (every one gets the same answer; the log is rate-limited).",
	}, []string{"reason"})
	reg.MustRegister(m.events, m.stages, m.queue, m.deps, m.reject)
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

func (m *Metrics) queueDepth(name string, n int) {
	if m != nil {
		m.queue.WithLabelValues(name).Set(float64(n))
	}
}
