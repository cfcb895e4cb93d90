package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"time"

	"kbbot/bot/feishufake"
)

var questions = []string{
	"模型训练的底层原理是什么？",
	"大语言模型的参数是怎么得到的？",
	"扩散模型是怎么生成图片的？",
	"训练 Llama2 70B 需要多少 GPU？",
	"怎么向机器人提问？",
	"如何开始一个新话题？",
	"What does the bot do when there is no answer?",
	"多模态模型的原理",
}

type sendOptions struct {
	url         string
	signer      feishufake.Signer
	rate        int
	duration    time.Duration
	dups        float64
	chats       int
	maxInFlight int
}

// sendResult is what the sender saw. Latencies are counted from each
// event's due time (start + i/rate), so a bot that answers slowly cannot
// hide its queueing by holding the sender up; fromSend, counted from when
// the request actually left, is there for comparison.
type sendResult struct {
	scheduled, sent, dups int
	start, lastSend       time.Time
	elapsed               time.Duration // until the last answer
	rate                  int           // asked

	fromDue, fromSend []time.Duration // per answered request
	late              []time.Duration // per request: send time − due time

	maxInFlight, peakInFlight int
	capWaits                  int // events that waited for a free in-flight slot

	buildErr          error // building the requests failed; nothing was sent
	statuses          map[int]int
	non200, transport int
	unique            []string             // message ids acknowledged at least once
	dueAt             map[string]time.Time // first due time of each message
}

// send runs an open-loop schedule: event i is due at start + i/rate and is
// sent then, in its own goroutine, whatever earlier requests are doing. A
// sender that falls behind sends at once to catch up; only the in-flight
// cap makes it wait, and each such wait is counted.
func send(ctx context.Context, o sendOptions) sendResult {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: o.maxInFlight, MaxIdleConnsPerHost: o.maxInFlight, IdleConnTimeout: 30 * time.Second,
	}}
	defer client.CloseIdleConnections()
	total := int(float64(o.rate) * o.duration.Seconds())
	res := sendResult{scheduled: total, rate: o.rate, maxInFlight: o.maxInFlight,
		statuses: map[int]int{}, dueAt: map[string]time.Time{}}

	events, err := build(ctx, o, total)
	if err != nil {
		res.buildErr = err
		return res
	}
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		wg       sync.WaitGroup
		slots    = make(chan struct{}, o.maxInFlight)
		inFlight int
	)
	res.start = time.Now()
	for i, ev := range events {
		due := res.start.Add(time.Duration(int64(i) * int64(time.Second) / int64(o.rate)))
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		if ev.redelivery {
			res.dups++
		} else {
			mu.Lock()
			res.dueAt[ev.m.MessageID] = due
			mu.Unlock()
		}
		select {
		case slots <- struct{}{}:
		default:
			res.capWaits++
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		res.sent++
		mu.Lock()
		inFlight++
		res.peakInFlight = max(res.peakInFlight, inFlight)
		mu.Unlock()
		wg.Add(1)
		go func(ev event, due time.Time) {
			defer func() {
				mu.Lock()
				inFlight--
				mu.Unlock()
				<-slots
				wg.Done()
			}()
			status, sent, err := post(ctx, client, o.url, ev)
			done := time.Now()
			mu.Lock()
			defer mu.Unlock()
			res.late = append(res.late, sent.Sub(due))
			res.lastSend = maxTime(res.lastSend, sent)
			if err != nil {
				res.transport++
				return
			}
			res.fromDue = append(res.fromDue, done.Sub(due))
			res.fromSend = append(res.fromSend, done.Sub(sent))
			res.statuses[status]++
			if status != http.StatusOK {
				res.non200++
				return
			}
			acked[ev.m.MessageID] = true
		}(ev, due)
	}
	wg.Wait()
	res.elapsed = time.Since(res.start)
	for id := range acked {
		res.unique = append(res.unique, id)
	}
	return res
}

// event is one request of the run.
type event struct {
	m          feishufake.Message
	redelivery bool // m was sent before, by this or another event id
	body       []byte
	header     http.Header
}

// build makes every request of the run, signed and encrypted, before the
// clock starts: the JSON, AES and SHA-256 work would otherwise compete
// with the bot for this machine's cores while it is measured (it was a
// third of the sender's CPU). Messages and redeliveries are chosen in
// order; the signing runs on every core. Signatures carry the build time,
// well inside the bot's timestamp window.
func build(ctx context.Context, o sendOptions, total int) ([]event, error) {
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	events := make([]event, total)
	var earlier []feishufake.Message
	for i := range events {
		if len(earlier) > 0 && rng.Float64() < o.dups {
			m := earlier[rng.IntN(len(earlier))]
			if rng.IntN(2) == 0 {
				m.EventID = fmt.Sprintf("ev_%s_%d_re", run, i) // same message, another event
			}
			events[i] = event{m: m, redelivery: true}
			continue
		}
		chat := rng.IntN(o.chats)
		m := feishufake.Message{
			EventID:   fmt.Sprintf("ev_%s_%d", run, i),
			MessageID: fmt.Sprintf("om_%s_%d", run, i),
			ChatID:    fmt.Sprintf("oc_%s_%d", run, chat),
			ChatType:  "p2p",
			Sender:    fmt.Sprintf("ou_load_%d", chat),
			Text:      questions[rng.IntN(len(questions))],
		}
		earlier = append(earlier, m)
		events[i] = event{m: m}
	}
	// Each worker signs every workers-th event; the first error wins.
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < total && errs[w] == nil; i += workers {
				req, err := o.signer.Request(ctx, o.url, o.signer.MessageEvent(events[i].m))
				if err == nil {
					events[i].body, err = io.ReadAll(req.Body)
					events[i].header = req.Header
				}
				if err != nil {
					errs[w] = fmt.Errorf("building request %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	return events, errors.Join(errs...)
}

// post sends ev and reads the answer. sent is when the request left.
func post(ctx context.Context, client *http.Client, url string, ev event) (status int, sent time.Time, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.body))
	sent = time.Now()
	if err != nil {
		return 0, sent, err
	}
	req.Header = ev.header
	resp, err := client.Do(req)
	if err != nil {
		return 0, sent, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, sent, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
