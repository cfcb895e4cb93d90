package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"kbbot/bot/feishufake"
)

// quantiles is p50, p99 and max of ds, nearest rank.
func quantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return percentile(s, 0.50), percentile(s, 0.99), percentile(s, 1)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second || d < -time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond || d < -time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func fmtQuantiles(ds []time.Duration) string {
	p50, p99, mx := quantiles(ds)
	return fmt.Sprintf("p50 %v  p99 %v  max %v", round(p50), round(p99), round(mx))
}

// achievedRate is events sent per second of the schedule they were sent
// over: the asked rate when the sender kept up.
func (r sendResult) achievedRate() float64 {
	if r.sent == 0 {
		return 0
	}
	span := r.lastSend.Sub(r.start) + time.Second/time.Duration(r.rate)
	return float64(r.sent) / span.Seconds()
}

func (r sendResult) print(w io.Writer, target string) {
	fmt.Fprintf(w, "target: %s\n", target)
	fmt.Fprintf(w, "sent: %d of %d scheduled events (%d redeliveries) at %.1f events/s (asked %d/s); last answer after %.2fs\n",
		r.sent, r.scheduled, r.dups, r.achievedRate(), r.rate, r.elapsed.Seconds())
	fmt.Fprintf(w, "ack latency from due time:  %s\n", fmtQuantiles(r.fromDue))
	fmt.Fprintf(w, "ack latency from send time: %s\n", fmtQuantiles(r.fromSend))
	fmt.Fprintf(w, "sender lateness (send − due): %s; peak %d in flight\n", fmtQuantiles(r.late), r.peakInFlight)
	if r.capWaits > 0 {
		fmt.Fprintf(w, "SENDER FELL BEHIND: %d events waited for one of the %d in-flight slots (-max-inflight); the latency from due time includes that wait\n", r.capWaits, r.maxInFlight)
	}
	var codes []string
	for c, n := range r.statuses {
		if c != http.StatusOK {
			codes = append(codes, fmt.Sprintf("%d×%d", n, c))
		}
	}
	slices.Sort(codes)
	fmt.Fprintf(w, "non-200: %d %s  transport errors: %d\n", r.non200, strings.Join(codes, " "), r.transport)
}

func (r sendResult) err() error {
	if r.buildErr != nil {
		return r.buildErr
	}
	if r.non200 > 0 || r.transport > 0 {
		return fmt.Errorf("%d non-200 answers, %d transport errors", r.non200, r.transport)
	}
	return nil
}

// ackHistogram is the bot's own ack histogram: the time from a request
// reaching the bot to its response, without the load generator's
// scheduling (which shares this machine's cores).
type ackHistogram struct {
	url     string
	total   int
	buckets []bucket
}

type bucket struct {
	le    float64 // seconds
	count float64
}

// readServerAck reads the ack histogram from the first of urls that has
// it, and prints it. Buckets make it an upper bound: "p99 ≤ 4ms".
func readServerAck(ctx context.Context, w io.Writer, urls []string) *ackHistogram {
	var tried []string
	for _, u := range urls {
		h, err := fetchAckHistogram(ctx, u)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", u, err))
			continue
		}
		fmt.Fprintf(w, "server-side ack (bot's /metrics histogram, %d requests): p50 %s  p99 %s\n", h.total, h.bound(0.5), h.bound(0.99))
		return h
	}
	fmt.Fprintf(w, "server-side ack: unavailable (%s)\n", strings.Join(tried, "; "))
	return nil
}

func fetchAckHistogram(ctx context.Context, url string) (*ackHistogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	h := &ackHistogram{url: url}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, `kbbot_stage_seconds_bucket{stage="ack",le="`)
		if !ok {
			continue
		}
		le, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		if le == "+Inf" {
			h.total = int(n)
			continue
		}
		if f, err := strconv.ParseFloat(le, 64); err == nil {
			h.buckets = append(h.buckets, bucket{f, n})
		}
	}
	if h.total == 0 || len(h.buckets) == 0 {
		return nil, fmt.Errorf("no ack histogram")
	}
	return h, nil
}

func (h *ackHistogram) bound(p float64) string {
	for _, b := range h.buckets {
		if b.count >= p*float64(h.total) {
			return "≤ " + time.Duration(b.le*float64(time.Second)).String()
		}
	}
	return "> " + time.Duration(h.buckets[len(h.buckets)-1].le*float64(time.Second)).String()
}

type replyReport struct {
	unique, once, none, many, busy, errs int
	waited                               time.Duration
}

// checkReplies waits (up to settle) until every acknowledged message has a
// reply, then looks for messages with none or more than one.
func checkReplies(ctx context.Context, fake *feishufake.Server, unique []string, settle time.Duration) replyReport {
	start := time.Now()
	deadline := start.Add(settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		counts := fake.ReplyCounts()
		missing := 0
		for _, id := range unique {
			if counts[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A duplicate would be sent about as fast as the first reply; give any
	// straggler a moment to show up before counting.
	time.Sleep(500 * time.Millisecond)
	rep := replyReport{unique: len(unique), waited: time.Since(start)}
	counts := fake.ReplyCounts()
	for _, id := range unique {
		switch n := counts[id]; {
		case n == 0:
			rep.none++
		case n == 1:
			rep.once++
		default:
			rep.many++
		}
	}
	for _, r := range fake.Sent() {
		switch {
		case strings.HasPrefix(r.UUID, "busy-"):
			rep.busy++
		case strings.HasPrefix(r.UUID, "error-"):
			rep.errs++
		}
	}
	return rep
}

func (r replyReport) print(w io.Writer) {
	fmt.Fprintf(w, "replies: %d unique messages: %d answered exactly once, %d with no reply, %d with more than one (busy cards %d, error cards %d; settled in %.1fs)\n",
		r.unique, r.once, r.none, r.many, r.busy, r.errs, r.waited.Seconds())
}

func (r replyReport) err() error {
	if r.none > 0 || r.many > 0 {
		return fmt.Errorf("%d messages without a reply, %d with more than one", r.none, r.many)
	}
	return nil
}

// cardLatency is, from the fake Open API's records, how long after its
// event was due each message's first card appeared, and, for answers that
// streamed, how long its first text took beyond the model's own time to
// first token.
type cardLatency struct {
	ttft       time.Duration
	card, over []time.Duration
}

func measureCards(fake *feishufake.Server, dueAt map[string]time.Time, ttft time.Duration) cardLatency {
	firstCard := map[string]feishufake.Request{}
	firstText := map[string]time.Time{}
	for _, r := range fake.Requests() {
		switch {
		case r.Op == feishufake.OpReply && r.Status == http.StatusOK:
			if _, ok := firstCard[r.MessageID]; !ok {
				firstCard[r.MessageID] = r
			}
		case r.Op == feishufake.OpCardContent && r.Status == http.StatusOK:
			if _, ok := firstText[r.CardID]; !ok {
				firstText[r.CardID] = r.At
			}
		}
	}
	cl := cardLatency{ttft: ttft}
	for id, r := range firstCard {
		due, ok := dueAt[id]
		if !ok {
			continue
		}
		cl.card = append(cl.card, r.At.Sub(due))
		if t, ok := firstText[r.CardID]; ok && r.CardID != "" {
			cl.over = append(cl.over, t.Sub(due)-ttft)
		}
	}
	return cl
}

func (cl cardLatency) print(w io.Writer) {
	card, over := slices.Clone(cl.card), slices.Clone(cl.over)
	slices.Sort(card)
	slices.Sort(over)
	fmt.Fprintf(w, "first visible card after the event was due: p50 %v  p90 %v  (%d messages)\n",
		round(percentile(card, 0.5)), round(percentile(card, 0.9)), len(card))
	fmt.Fprintf(w, "first streamed text, beyond the LLM's own %v to first token: p50 %v  p90 %v  (%d streamed answers)\n",
		cl.ttft, round(percentile(over, 0.5)), round(percentile(over, 0.9)), len(over))
}
