package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store/queue"
	"kbbot/store/ratelimit"
	"kbbot/store/redistest"
)

// queueOpts extend harnessOpts with what the queue and limit tests vary.
type queueOpts struct {
	harnessOpts
	newQueue           func(t *testing.T, log *slog.Logger, st State) Queue // nil: the in-process default on the harness state
	limiter            Limiter
	rateUser, rateChat Rate
	hook               func(it item) // Bot.jobHook
}

// newQueueHarness is newHarness with a queue, limits and a job hook of the
// test's choosing.
func newQueueHarness(t *testing.T, o queueOpts) *harness {
	t.Helper()
	return startHarness(t, o, true)
}

// replicas are bots sharing one Redis (state, queue, limits), as several
// kbbot processes would.
type replicas struct {
	url, prefix string
}

func newReplicas(t *testing.T) replicas {
	return replicas{url: redistest.URL(t), prefix: redistest.Prefix(t)}
}

// open is one more replica's connection to the shared Redis.
func (r replicas) open(t *testing.T) redisReplica { return openRedisReplica(t, r.url, r.prefix) }

// redisQueueOn makes a Redis queue on rr for queueOpts.newQueue.
func redisQueueOn(rr redisReplica, opt queue.Options) func(t *testing.T, log *slog.Logger, st State) Queue {
	return func(t *testing.T, log *slog.Logger, _ State) Queue {
		if opt.Shards == 0 {
			opt.Shards = 8
		}
		if opt.Visibility == 0 {
			opt.Visibility = 5 * time.Second
		}
		opt.Workers, opt.Log = 2, log
		return queue.NewRedis(rr.conn, rr.st, opt)
	}
}

// replicaOpts runs fn with the default in-process queue and state, and
// with a Redis queue and state.
func replicaOpts(t *testing.T, fn func(t *testing.T, o queueOpts)) {
	t.Run("memory", func(t *testing.T) { fn(t, queueOpts{}) })
	t.Run("redis", func(t *testing.T) {
		rr := newReplicas(t).open(t)
		fn(t, queueOpts{harnessOpts: harnessOpts{state: rr.st}, newQueue: redisQueueOn(rr, queue.Options{})})
	})
}

// replyOrder is the order in which the given messages got their replies.
func replyOrder(fake *feishufake.Server, ids []string) []string {
	var out []string
	for _, r := range fake.Sent() {
		if r.Op == feishufake.OpReply && slices.Contains(ids, r.MessageID) {
			out = append(out, r.MessageID)
		}
	}
	return out
}

func slowAnswers() *fakeAnswerer {
	return &fakeAnswerer{AskFn: func(ctx context.Context, q string, _ []rag.Turn) (rag.Answer, error) {
		time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
		return cannedAnswer(q), nil
	}}
}

// A chat's answers keep the order of its questions, also when the
// questions reach different replicas and other chats' questions mingle.
func TestChatOrderAcrossReplicas(t *testing.T) {
	check := func(t *testing.T, hs []*harness) {
		const n = 8
		var ids []string
		for i := range n {
			h := hs[i%len(hs)]
			m := feishufake.Message{EventID: h.id("ev"), MessageID: h.id("om"), ChatID: "oc_ordered", ChatType: "p2p",
				Sender: "ou_ordered", Text: "第几个问题？" + string(rune('A'+i))}
			h.mustPost(h.signer.MessageEvent(m))
			ids = append(ids, m.MessageID)
			other := h.dm("别的会话的问题")
			other.ChatID = h.id("oc_other")
			h.mustPost(h.signer.MessageEvent(other))
		}
		fake := hs[0].fake
		testkit.Eventually(t, "every ordered question answered", func() bool { return len(replyOrder(fake, ids)) == n })
		if got := replyOrder(fake, ids); !slices.Equal(got, ids) {
			t.Errorf("replies in order %v,\nwant %v", got, ids)
		}
	}
	t.Run("memory", func(t *testing.T) {
		check(t, []*harness{newQueueHarness(t, queueOpts{harnessOpts: harnessOpts{ans: slowAnswers(), workers: 4}})})
	})
	t.Run("redis", func(t *testing.T) {
		r := newReplicas(t)
		fake := feishufake.New(testBotID)
		t.Cleanup(fake.Close)
		var hs []*harness
		for range 2 {
			st := r.open(t)
			hs = append(hs, newQueueHarness(t, queueOpts{
				harnessOpts: harnessOpts{state: st.st, fake: fake, ans: slowAnswers()},
				newQueue:    redisQueueOn(st, queue.Options{}),
			}))
		}
		check(t, hs)
	})
}

// An item that panics every time is given up after MaxAttempts: the asker
// gets an error card with a retry button, and the chat goes on.
func TestDeadLetterSendsErrorCard(t *testing.T) {
	var runs atomic.Int64
	hook := func(it item) {
		if it.Msg != nil && it.Msg.Text == "会崩溃的问题" {
			runs.Add(1)
			panic("poisoned item")
		}
	}
	check := func(t *testing.T, h *harness) {
		bad, next := h.dm("会崩溃的问题"), h.dm("下一个问题")
		h.mustPost(h.signer.MessageEvent(bad))
		h.mustPost(h.signer.MessageEvent(next))
		r := h.replyTo(bad.MessageID)
		if text := feishufake.CardText(r.Card); !strings.Contains(text, "出错了") || len(feishufake.ButtonsWith(r.Card, cards.ActionRetry)) != 1 {
			t.Errorf("the poisoned question got %s, want an error card with a retry button", text)
		}
		h.replyTo(next.MessageID)
		if got := replyOrder(h.fake, []string{bad.MessageID, next.MessageID}); !slices.Equal(got, []string{bad.MessageID, next.MessageID}) {
			t.Errorf("reply order %v", got)
		}
		if n := runs.Load(); n != 3 {
			t.Errorf("the poisoned item ran %d times, want 3 (MaxAttempts)", n)
		}
		if h.ans.Asked(bad.Text) {
			t.Error("the answerer was asked the poisoned question")
		}
		if n := h.events(evMessage, outcomeFailed); n != 1 {
			t.Errorf("%d messages counted as failed, want the poisoned one", n)
		}
	}
	t.Run("memory", func(t *testing.T) {
		runs.Store(0)
		check(t, newQueueHarness(t, queueOpts{hook: hook, newQueue: func(t *testing.T, log *slog.Logger, st State) Queue {
			return queue.NewMemory(st, queue.Options{Workers: 2, MaxAttempts: 3, RetryBase: time.Millisecond, Log: log})
		}}))
	})
	t.Run("redis", func(t *testing.T) {
		runs.Store(0)
		st := newReplicas(t).open(t)
		check(t, newQueueHarness(t, queueOpts{harnessOpts: harnessOpts{state: st.st}, hook: hook,
			newQueue: redisQueueOn(st, queue.Options{MaxAttempts: 3, RetryBase: time.Millisecond})}))
	})
}

// The 11th question in a minute from one person gets the limit card, once,
// whichever replica they reach; a limited click gets a toast.
func TestRateLimitSharedAcrossReplicas(t *testing.T) {
	r := newReplicas(t)
	fake := feishufake.New(testBotID)
	t.Cleanup(fake.Close)
	var hs []*harness
	for range 2 {
		st := r.open(t)
		lim := ratelimit.NewRedis(st.conn)
		lim.Now = func() time.Time { return time.Date(2026, 11, 28, 10, 0, 5, 0, time.UTC) }
		hs = append(hs, newQueueHarness(t, queueOpts{
			harnessOpts: harnessOpts{state: st.st, fake: fake},
			newQueue:    redisQueueOn(st, queue.Options{}),
			limiter:     lim, rateUser: Rate{N: 10, Per: time.Minute}, rateChat: Rate{N: 30, Per: time.Minute},
		}))
	}
	var ms []feishufake.Message
	for i := range 12 {
		h := hs[i%2]
		m := h.dm("第 " + string(rune('a'+i)) + " 个问题")
		m.ChatID, m.Sender = "oc_limited", "ou_eager"
		h.mustPost(h.signer.MessageEvent(m))
		ms = append(ms, m)
	}
	for _, m := range ms[:10] {
		if text := feishufake.CardText(hs[0].replyTo(m.MessageID).Card); !strings.Contains(text, "答案在这里") {
			t.Errorf("question %q within the limit got %s", m.Text, text)
		}
	}
	card := hs[0].replyTo(ms[10].MessageID).Card
	if text := feishufake.CardText(card); !strings.Contains(text, "请稍后再问") || !strings.Contains(text, "每分钟最多回答 10 个问题") || !strings.Contains(text, "55 秒") {
		t.Errorf("the 11th question got %s, want the limit card", text)
	}
	if len(feishufake.ButtonsWith(card, cards.ActionRetry)) != 1 {
		t.Error("the limit card has no retry button")
	}
	// The 12th was refused before its 200, without a card.
	if n := hs[1].events(evMessage, outcomeLimited); n != 1 {
		t.Errorf("%d questions limited on the replica the 12th reached, want it", n)
	}
	if n := fake.Replies(ms[11].MessageID); n != 0 {
		t.Errorf("the 12th question got %d replies", n)
	}
	if hs[0].ans.Asked(ms[10].Text) {
		t.Error("the answerer was asked the limited question")
	}
	// A click is a question too.
	_, body := hs[0].post(hs[0].signer.CardActionEvent(feishufake.CardAction{EventID: hs[0].id("ev"), Operator: "ou_eager",
		MessageID: "om_card", ChatID: "oc_limited", Value: map[string]any{"action": cards.ActionAsk, "q": "再问一个", "conv": "chat:oc_limited"}}))
	if !strings.Contains(body, "提问太频繁了") {
		t.Errorf("a limited click answered %s", body)
	}
	// Someone else in another chat is not limited.
	other := hs[1].dm("别人的问题")
	hs[1].mustPost(hs[1].signer.MessageEvent(other))
	hs[1].replyTo(other.MessageID)
}

// Shutdown finishes the running answer when it can; at its deadline the
// answer stays queued in Redis and another replica gives it.
func TestShutdownFinishesOrLeavesPending(t *testing.T) {
	t.Run("finished", func(t *testing.T) {
		replicaOpts(t, func(t *testing.T, o queueOpts) {
			started, release := make(chan struct{}, 1), make(chan struct{})
			ans := &fakeAnswerer{AskFn: func(ctx context.Context, q string, _ []rag.Turn) (rag.Answer, error) {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return cannedAnswer(q), nil
			}}
			o.ans = ans
			h := newQueueHarness(t, o)
			m := h.dm("关机前的问题")
			h.mustPost(h.signer.MessageEvent(m))
			testkit.Receive(t, "the answer to start", started, 20*time.Second)
			h.srv.Close()
			stopped := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				stopped <- h.bot.Shutdown(ctx)
			}()
			close(release)
			if err := testkit.Receive(t, "Shutdown to return", stopped, 30*time.Second); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if n := h.fake.Replies(m.MessageID); n != 1 {
				t.Errorf("%d replies once Shutdown returned, want 1", n)
			}
		})
	})
	t.Run("pending", func(t *testing.T) {
		r := newReplicas(t)
		fake := feishufake.New(testBotID)
		t.Cleanup(fake.Close)
		started := make(chan struct{}, 1)
		stuck := &fakeAnswerer{AskFn: func(ctx context.Context, q string, _ []rag.Turn) (rag.Answer, error) {
			started <- struct{}{}
			<-ctx.Done()
			return rag.Answer{}, ctx.Err()
		}}
		st1 := r.open(t)
		h1 := newQueueHarness(t, queueOpts{harnessOpts: harnessOpts{state: st1.st, fake: fake, ans: stuck},
			newQueue: redisQueueOn(st1, queue.Options{Visibility: time.Minute})})
		m := h1.dm("关机时正在回答的问题")
		h1.mustPost(h1.signer.MessageEvent(m))
		testkit.Receive(t, "the answer to start", started, 20*time.Second)
		h1.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := h1.bot.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("shutdown: %v, want its deadline", err)
		}
		if n := fake.Calls(feishufake.OpReply); n != 0 {
			t.Fatalf("the interrupted answer sent %d replies (an error card?)", n)
		}
		// The visibility timeout is a minute: the answer only comes in time
		// because the stopped replica released its lease.
		st2 := r.open(t)
		h2 := newQueueHarness(t, queueOpts{harnessOpts: harnessOpts{state: st2.st, fake: fake},
			newQueue: redisQueueOn(st2, queue.Options{Visibility: time.Minute})})
		if text := feishufake.CardText(h2.replyTo(m.MessageID).Card); !strings.Contains(text, "答案在这里") {
			t.Errorf("the taken-over question got %s", text)
		}
		if n := fake.Replies(m.MessageID); n != 1 {
			t.Errorf("%d replies, want 1", n)
		}
	})
}

// Over KBBOT_QUEUE_MAX_PENDING (questions recorded but not yet answered,
// across the deployment) a new question gets the busy card at once, and a
// redelivery of it gets nothing more, while the queue is full or after it
// drained.
func TestBusyCardOverMaxPending(t *testing.T) {
	rr := newReplicas(t).open(t)
	release := make(chan struct{})
	ans := &fakeAnswerer{AskFn: func(ctx context.Context, q string, _ []rag.Turn) (rag.Answer, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return cannedAnswer(q), nil
	}}
	h := newQueueHarness(t, queueOpts{harnessOpts: harnessOpts{state: rr.st, ans: ans},
		newQueue: redisQueueOn(rr, queue.Options{MaxPending: 2})})
	var ms []feishufake.Message
	for i := range 3 {
		m := h.dm(fmt.Sprint("排队的问题 ", i))
		m.ChatID = fmt.Sprint("oc_pending_", i) // other chats: other shards, so nothing waits behind a chat
		h.mustPost(h.signer.MessageEvent(m))
		ms = append(ms, m)
	}
	r := h.replyTo(ms[2].MessageID)
	if text := feishufake.CardText(r.Card); !strings.Contains(text, "现在有点忙") || len(feishufake.ButtonsWith(r.Card, cards.ActionRetry)) != 1 {
		t.Errorf("the question over the cap got %s, want the busy card", text)
	}
	h.mustPost(h.signer.MessageEvent(ms[2])) // Feishu redelivers it
	close(release)
	for _, m := range ms[:2] {
		h.replyTo(m.MessageID)
	}
	h.mustPost(h.signer.MessageEvent(ms[2])) // and again, with room in the queue
	h.sentinel()
	if n := replyRequests(h.fake, ms[2].MessageID); n != 1 {
		t.Errorf("%d replies sent to the refused question, want the one busy card", n)
	}
	if h.ans.Asked(ms[2].Text) {
		t.Error("the refused question was answered")
	}
}

// A question that waited longer than MaxAge gets the "too long" card and
// no answer; the next one is answered as usual.
func TestTooLateCard(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	enqueued := now.Add(-11 * time.Minute)
	var mu sync.Mutex
	h := newQueueHarness(t, queueOpts{harnessOpts: harnessOpts{workers: 1, now: func() time.Time { return now }},
		newQueue: func(t *testing.T, log *slog.Logger, st State) Queue {
			q := queue.NewMemory(st, queue.Options{Workers: 1, Log: log})
			q.Now = func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				return enqueued
			}
			return q
		}})
	old := h.dm("排了很久的问题")
	h.mustPost(h.signer.MessageEvent(old))
	r := h.replyTo(old.MessageID)
	if text := feishufake.CardText(r.Card); !strings.Contains(text, "等待太久了") || len(feishufake.ButtonsWith(r.Card, cards.ActionRetry)) != 1 {
		t.Errorf("the stale question got %s, want the too-long card", text)
	}
	if h.ans.Asked(old.Text) {
		t.Error("the stale question was answered")
	}
	mu.Lock()
	enqueued = now.Add(-time.Minute)
	mu.Unlock()
	fresh := h.dm("刚问的问题")
	h.mustPost(h.signer.MessageEvent(fresh))
	if text := feishufake.CardText(h.replyTo(fresh.MessageID).Card); !strings.Contains(text, "答案在这里") {
		t.Errorf("a fresh question got %s", text)
	}
}
