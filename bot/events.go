package bot

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/larksuite/oapi-sdk-go/v3/event/dispatcher/callback"
	larkim "github.com/larksuite/oapi-sdk-go/v3/service/im/v1"

	"kbbot/bot/cards"
	"kbbot/rag"
	"kbbot/store/queue"
)

// incoming is a received message the bot will act on. It travels in work
// items (queue.go), so the JSON names are a wire format.
type incoming struct {
	EventID   string `json:"event_id,omitempty"`
	MessageID string `json:"message_id"`
	ChatID    string `json:"chat_id"`
	ChatType  string `json:"chat_type,omitempty"` // p2p | group
	ThreadID  string `json:"thread_id,omitempty"`
	Sender    string `json:"sender,omitempty"` // open_id
	MsgType   string `json:"msg_type,omitempty"`
	Text      string `json:"text,omitempty"` // the question, mention placeholders removed, cut at rag.MaxQuestionRunes
	// ParentID is the message this one replies to: one of the bot's
	// answers, maybe. Inside a thread Feishu names the thread's root.
	ParentID string `json:"parent_id,omitempty"`
}

// conv is the conversation key: per chat, or per thread inside a chat.
func (m incoming) conv() string { return convKey(m.ChatID, m.ThreadID) }

func convKey(chatID, threadID string) string {
	if threadID != "" {
		return "chat:" + chatID + ":thread:" + threadID
	}
	return "chat:" + chatID
}

func (m incoming) logger(log *slog.Logger) *slog.Logger {
	return log.With("event_id", m.EventID, "message_id", m.MessageID, "chat_id", m.ChatID)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Event types counted in metrics.
const (
	evMessage = "message"
	evClick   = "card_action"
	evWelcome = "p2p_chat_entered"
)

// errBusy makes the webhook answer 500 so Feishu redelivers later: neither
// the in-process answer queue nor the notice lane had room.
var errBusy = errors.New("overloaded: answer and notice queues are full")

// onMessage runs inside the webhook request: it decides whether the message
// is for us, counts it against the rate limits, and records the work: the
// claims and the queue entry together (queue.go), so the 200 goes out only
// once the work is recorded (durably, with Redis). Errors become a 500 and
// Feishu redelivers, so only return one when nothing was recorded.
func (b *Bot) onMessage(ctx context.Context, e *larkim.P2MessageReceiveV1) error {
	m, why := b.parseMessage(e)
	log := m.logger(b.log)
	b.cfg.Metrics.event(evMessage, outcomeReceived)
	if why != "" {
		log.Debug("message ignored", "reason", why)
		b.cfg.Metrics.event(evMessage, outcomeIgnored)
		return nil
	}
	it := item{Kind: kindMessage, Msg: &m}
	if v, limited := b.checkRate(ctx, log, m.Sender, m.ChatID); limited {
		b.cfg.Metrics.event(evMessage, outcomeLimited)
		if !v.First {
			// One card per window: a flood must not make the bot flood
			// the chat back.
			log.Info("rate limited; already told this window, so no card")
			return nil
		}
		it = item{Kind: kindLimited, Msg: &m, Limit: newLimitNote(v)}
	}
	keys := []string{"evt:" + m.EventID, "msg:" + m.MessageID}
	first, err := b.submit(ctx, b.work, it, keys...)
	switch {
	case errors.Is(err, queue.ErrQueueFull):
		if _, err := b.submit(ctx, b.notices, item{Kind: kindBusy, Msg: &m}); err == nil {
			// Claimed only once the asker is being told, so that a
			// redelivery after the queue drains is a duplicate, not a
			// question answered after its busy card. A failed claim
			// costs at most that second reply; claiming first would
			// need a release when the busy card cannot be queued, and
			// a failed release lost the question (see queue.Redis).
			if _, _, err := b.claim(ctx, keys...); err != nil {
				log.Warn("claiming a message refused as busy failed; a redelivery may be answered", "error", err)
			}
			log.Warn("answer queue full; sending a busy card")
			return nil
		}
		// No claim was taken, so the redelivery is a new question.
		log.Error("answer and notice queues full; asking Feishu to redeliver")
		return errBusy
	case err != nil:
		log.Error("recording the message failed; Feishu will redeliver", "error", err)
		return err
	case !first:
		log.Info("duplicate delivery skipped")
		b.cfg.Metrics.event(evMessage, outcomeDuplicate)
		return nil
	}
	log.Info("message queued", "kind", it.Kind, "chat_type", m.ChatType, "msg_type", m.MsgType)
	return nil
}

// parseMessage extracts the question, or says why the message is not ours.
func (b *Bot) parseMessage(e *larkim.P2MessageReceiveV1) (incoming, string) {
	var m incoming
	if e == nil || e.Event == nil || e.Event.Message == nil || e.Event.Sender == nil {
		return m, "incomplete event"
	}
	if e.EventV2Base != nil && e.EventV2Base.Header != nil {
		m.EventID = e.EventV2Base.Header.EventID
	}
	msg, snd := e.Event.Message, e.Event.Sender
	m.MessageID, m.ChatID, m.ChatType = str(msg.MessageId), str(msg.ChatId), str(msg.ChatType)
	m.ThreadID, m.MsgType, m.ParentID = str(msg.ThreadId), str(msg.MessageType), str(msg.ParentId)
	if snd.SenderId != nil {
		m.Sender = str(snd.SenderId.OpenId)
	}
	switch {
	case m.MessageID == "" || m.ChatID == "":
		return m, "no message or chat id"
	case str(snd.SenderType) != "user":
		return m, "sent by " + str(snd.SenderType)
	case m.Sender != "" && m.Sender == b.botOpenID:
		return m, "sent by this bot"
	}
	mentioned := false
	names := map[string]string{} // placeholder → replacement
	for _, mt := range msg.Mentions {
		if mt == nil || mt.Key == nil {
			continue
		}
		if mt.Id != nil && str(mt.Id.OpenId) == b.botOpenID && b.botOpenID != "" {
			mentioned = true
			names[*mt.Key] = ""
			continue
		}
		names[*mt.Key] = str(mt.Name) // someone else: keep who, drop the placeholder
	}
	if m.ChatType != "p2p" && !mentioned {
		return m, "group message without an @-mention of this bot"
	}
	switch m.MsgType {
	case "text":
		m.Text = textContent(str(msg.Content))
	case "post":
		m.Text = postContent(str(msg.Content))
	default:
		return m, ""
	}
	// Cut here, not only where the engine reads it: the text is stored in
	// the queue, the history and feedback records too.
	m.Text = rag.CutQuestion(stripMentions(m.Text, names))
	return m, ""
}

var placeholder = regexp.MustCompile(`@_user_\d+|@_all`)

func stripMentions(s string, names map[string]string) string {
	s = placeholder.ReplaceAllStringFunc(s, func(k string) string { return names[k] })
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func textContent(content string) string {
	var t struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal([]byte(content), &t)
	return t.Text
}

// postBody is a rich-text message: a title and paragraphs of inline nodes.
type postBody struct {
	Title   string       `json:"title"`
	Content [][]postNode `json:"content"`
}

type postNode struct {
	Tag    string `json:"tag"`
	Text   string `json:"text"`
	UserID string `json:"user_id"` // at: the placeholder, e.g. @_user_1
	Href   string `json:"href"`
}

// postContent reads a post in either shape: flat {"title","content"}, or
// wrapped in a locale key ({"zh_cn":{…}}), taking the first non-empty one.
func postContent(content string) string {
	var flat postBody
	if err := json.Unmarshal([]byte(content), &flat); err == nil && len(flat.Content) > 0 {
		return postText(flat)
	}
	var wrapped map[string]postBody
	if err := json.Unmarshal([]byte(content), &wrapped); err != nil {
		return ""
	}
	for _, loc := range []string{"zh_cn", "en_us", "ja_jp"} {
		if p, ok := wrapped[loc]; ok && len(p.Content) > 0 {
			return postText(p)
		}
	}
	for _, p := range wrapped {
		if len(p.Content) > 0 {
			return postText(p)
		}
	}
	return ""
}

func postText(p postBody) string {
	var lines []string
	if t := strings.TrimSpace(p.Title); t != "" {
		lines = append(lines, t)
	}
	for _, para := range p.Content {
		var sb strings.Builder
		for _, n := range para {
			switch n.Tag {
			case "text", "a", "md", "code_block":
				sb.WriteString(n.Text)
			case "at":
				sb.WriteString(" " + n.UserID + " ")
			}
		}
		if l := strings.TrimSpace(sb.String()); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// onP2PChatEntered welcomes a user opening a direct chat with the bot, once
// per chat.
func (b *Bot) onP2PChatEntered(ctx context.Context, e *larkim.P2ChatAccessEventBotP2pChatEnteredV1) error {
	if e == nil || e.Event == nil {
		return nil
	}
	chatID := str(e.Event.ChatId)
	var eventID string
	if e.EventV2Base != nil && e.EventV2Base.Header != nil {
		eventID = e.EventV2Base.Header.EventID
	}
	log := b.log.With("event_id", eventID, "chat_id", chatID)
	if chatID == "" {
		return nil
	}
	first, err := b.st.SeenChat(ctx, chatID)
	if err != nil {
		log.Error("recording the chat failed; Feishu will redeliver", "error", err)
		return err
	}
	if !first {
		log.Debug("chat seen before; no welcome")
		return nil
	}
	// The chat is marked seen already, so a redelivery would not welcome:
	// when the card cannot be queued it is dropped, not retried.
	it := item{Kind: kindWelcome, ChatID: chatID, EventID: eventID}
	_, err = b.submit(ctx, b.work, it)
	if errors.Is(err, queue.ErrQueueFull) {
		_, err = b.submit(ctx, b.notices, it)
	}
	if err != nil {
		log.Warn("welcome card dropped: it could not be queued", "error", err)
	}
	return nil
}

// claim takes every key, first to last. first is false when one was already
// taken (a duplicate). On a store error the keys taken so far are released,
// so a redelivery is processed.
func (b *Bot) claim(ctx context.Context, keys ...string) (taken []string, first bool, err error) {
	for _, k := range keys {
		if strings.HasSuffix(k, ":") { // no id to dedupe on
			continue
		}
		ok, err := b.st.Claim(ctx, k, claimTTL(k))
		if err != nil {
			b.release(b.log, taken)
			return nil, false, err
		}
		if !ok {
			return taken, false, nil
		}
		taken = append(taken, k)
	}
	return taken, true, nil
}

// claimTTL is how long a claim key dedupes: event and message ids outlive
// Feishu's redeliveries, clicks only catch double clicks, votes are once.
func claimTTL(k string) time.Duration {
	switch {
	case strings.HasPrefix(k, "click:"):
		return clickTTL
	case strings.HasPrefix(k, "vote:"):
		return voteTTL
	}
	return dedupTTL
}

func (b *Bot) release(log *slog.Logger, keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	for _, k := range keys {
		if err := b.st.Release(ctx, k); err != nil {
			log.Warn("releasing a claim failed", "key", k, "error", err)
		}
	}
}

// onCardAction answers a card button within Feishu's 3 s with a toast; any
// answer it needs is sent later as a new card.
func (b *Bot) onCardAction(ctx context.Context, e *callback.CardActionTriggerEvent) (*callback.CardActionTriggerResponse, error) {
	if e == nil || e.Event == nil || e.Event.Action == nil {
		return &callback.CardActionTriggerResponse{}, nil
	}
	c := click{}
	if e.EventV2Base != nil && e.EventV2Base.Header != nil {
		c.EventID = e.EventV2Base.Header.EventID
	}
	if e.Event.Operator != nil {
		c.Operator = e.Event.Operator.OpenID
	}
	if e.Event.Context != nil {
		c.MessageID, c.ChatID = e.Event.Context.OpenMessageID, e.Event.Context.OpenChatID
	}
	raw, _ := json.Marshal(e.Event.Action.Value)
	_ = json.Unmarshal(raw, &c.Value)
	c.Value.Conv = c.conv()
	log := b.log.With("event_id", c.EventID, "message_id", c.MessageID, "chat_id", c.ChatID, "action", c.Value.Action)
	if c.ChatID == "" {
		log.Warn("card action without a chat")
		return toast("warning", "无法识别这张卡片所在的会话"), nil
	}
	switch c.Value.Action {
	case cards.ActionAsk, cards.ActionRetry:
		return b.clickAsk(ctx, log, c), nil
	case cards.ActionReset:
		return b.clickReset(ctx, log, c), nil
	case cards.ActionFeedback:
		return b.clickFeedback(ctx, log, c), nil
	}
	log.Warn("unknown card action")
	return &callback.CardActionTriggerResponse{}, nil
}

// clickReset clears the card's conversation, once per callback: the claim
// on the event id makes a replayed callback (captured and re-sent within
// the timestamp window) do nothing, rather than wipe turns added since.
func (b *Bot) clickReset(ctx context.Context, log *slog.Logger, c click) *callback.CardActionTriggerResponse {
	keys, first, err := b.claim(ctx, "evt:"+c.EventID)
	switch {
	case err != nil:
		log.Error("claiming the reset failed", "error", err)
		return toast("error", "出错了，请稍后重试")
	case !first:
		log.Info("duplicate reset click skipped")
		return toast("success", "已开始新话题")
	}
	if err := b.st.ResetTurns(ctx, c.Value.Conv); err != nil {
		b.release(log, keys) // nothing was reset: the same callback may try again
		log.Error("reset failed", "error", err)
		return toast("error", "出错了，请稍后重试")
	}
	log.Info("conversation reset by button", "conv", c.Value.Conv)
	return toast("success", "已开始新话题")
}

// click is a decoded card.action.trigger.
type click struct {
	EventID   string
	Operator  string
	MessageID string // the card's message
	ChatID    string
	Value     cards.Value
}

// conv is the conversation the card belongs to. The value names it; it is
// only trusted when it is in the chat the click came from.
func (c click) conv() string {
	v := c.Value.Conv
	if v == "chat:"+c.ChatID || strings.HasPrefix(v, "chat:"+c.ChatID+":thread:") {
		return v
	}
	return convKey(c.ChatID, "")
}

func toast(typ, content string) *callback.CardActionTriggerResponse {
	return &callback.CardActionTriggerResponse{Toast: &callback.Toast{Type: typ, Content: content}}
}

func (b *Bot) clickAsk(ctx context.Context, log *slog.Logger, c click) *callback.CardActionTriggerResponse {
	q := rag.CutQuestion(strings.TrimSpace(c.Value.Q))
	if q == "" {
		return toast("warning", "这个按钮没有问题可以回答")
	}
	// Limited clicks are not claimed, so the same button works once the
	// window has passed.
	if v, limited := b.checkRate(ctx, log, c.Operator, c.ChatID); limited {
		b.cfg.Metrics.event(evClick, outcomeLimited)
		return toast("warning", cards.LimitToast(newLimitNote(v).view()))
	}
	cj := clickJob{EventID: c.EventID, Text: q, Conv: c.Value.Conv, ChatID: c.ChatID, Asker: c.Operator, Seed: "click:" + c.EventID}
	if strings.Contains(cj.Conv, ":thread:") {
		// Keep the answer in the card's thread, where its context lives.
		cj.ReplyTo, cj.InThread = c.MessageID, true
	}
	log = log.With("conv", cj.Conv)
	// A double click is two events; the click key catches it. Feishu does
	// not redeliver card callbacks ("不提供补推机制", the card callback
	// page), so the event key catches a replayed request, not a retry.
	keys := []string{"evt:" + c.EventID, "click:" + c.MessageID + ":" + c.Operator + ":" + shortHash(q)}
	first, err := b.submit(ctx, b.work, item{Kind: kindClick, Click: &cj}, keys...)
	switch {
	case errors.Is(err, queue.ErrQueueFull):
		// No claim was taken: the next click asks again.
		log.Warn("answer queue full; click refused")
		return toast("warning", "现在提问的人太多了，请稍后再点一次")
	case err != nil:
		log.Error("recording the click failed", "error", err)
		return toast("error", "出错了，请稍后重试")
	case !first:
		log.Info("duplicate click skipped")
		return toast("info", "正在回答…")
	}
	log.Info("click queued")
	return toast("info", "正在回答…")
}
