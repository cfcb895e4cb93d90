package feishufake

import (
	"encoding/json"
	"strconv"
	"time"
)

// Payload builders for the events and callbacks kbbot handles, shaped like
// Feishu's schema 2.0 payloads.

type header struct {
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	CreateTime string `json:"create_time"`
	Token      string `json:"token"`
	AppID      string `json:"app_id"`
	TenantKey  string `json:"tenant_key"`
}

func (s Signer) header(eventID, eventType string) header {
	return header{EventID: eventID, EventType: eventType, CreateTime: strconv.FormatInt(time.Now().UnixMilli(), 10),
		Token: s.Token, AppID: "cli_fake", TenantKey: "tenant_fake"}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Challenge is the url_verification request Feishu sends when the webhook
// URL is saved.
func (s Signer) Challenge(challenge string) []byte {
	return mustJSON(map[string]string{"challenge": challenge, "token": s.Token, "type": "url_verification"})
}

// Message is an im.message.receive_v1 event. Zero fields get defaults: a
// p2p text message from a user.
type Message struct {
	EventID    string
	MessageID  string
	ChatID     string
	ChatType   string // p2p (default) | group
	ThreadID   string
	ParentID   string // the message replied to; in a thread, its root, as Feishu sends it
	RootID     string // default: ParentID
	Sender     string // open_id
	SenderType string // user (default) | bot | app
	MsgType    string // text (default) | post | image …
	Content    string // the message content JSON; default: Text as a text message
	Text       string
	Mentions   []Mention
}

// Mention is one @ in a message; Key is the placeholder in the text
// (@_user_1).
type Mention struct {
	Key    string
	OpenID string
	Name   string
}

// TextContent is the content JSON of a text message.
func TextContent(text string) string {
	return string(mustJSON(map[string]string{"text": text}))
}

// MessageEvent is the event JSON for m.
func (s Signer) MessageEvent(m Message) []byte {
	if m.ChatType == "" {
		m.ChatType = "p2p"
	}
	if m.SenderType == "" {
		m.SenderType = "user"
	}
	if m.MsgType == "" {
		m.MsgType = "text"
	}
	if m.Content == "" && m.MsgType == "text" {
		m.Content = TextContent(m.Text)
	}
	if m.Sender == "" {
		m.Sender = "ou_user"
	}
	type id struct {
		OpenID  string `json:"open_id"`
		UnionID string `json:"union_id,omitempty"`
		UserID  string `json:"user_id,omitempty"`
	}
	type mention struct {
		Key       string `json:"key"`
		ID        id     `json:"id"`
		Name      string `json:"name"`
		TenantKey string `json:"tenant_key"`
	}
	var mentions []mention
	for _, mt := range m.Mentions {
		mentions = append(mentions, mention{Key: mt.Key, ID: id{OpenID: mt.OpenID}, Name: mt.Name, TenantKey: "tenant_fake"})
	}
	ms := strconv.FormatInt(time.Now().UnixMilli(), 10)
	msg := map[string]any{
		"message_id": m.MessageID, "chat_id": m.ChatID, "chat_type": m.ChatType,
		"message_type": m.MsgType, "content": m.Content, "create_time": ms, "update_time": ms,
	}
	if m.ThreadID != "" {
		msg["thread_id"] = m.ThreadID
	}
	if m.ParentID != "" {
		msg["parent_id"], msg["root_id"] = m.ParentID, m.ParentID
		if m.RootID != "" {
			msg["root_id"] = m.RootID
		}
	}
	if len(mentions) > 0 {
		msg["mentions"] = mentions
	}
	return mustJSON(map[string]any{
		"schema": "2.0",
		"header": s.header(m.EventID, "im.message.receive_v1"),
		"event": map[string]any{
			"sender":  map[string]any{"sender_id": id{OpenID: m.Sender}, "sender_type": m.SenderType, "tenant_key": "tenant_fake"},
			"message": msg,
		},
	})
}

// CardAction is a card.action.trigger callback: someone clicked a button
// whose callback value is Value.
type CardAction struct {
	EventID   string
	Operator  string // open_id
	MessageID string // the card's message
	ChatID    string
	Value     map[string]any
}

// CardActionEvent is the callback JSON for c.
func (s Signer) CardActionEvent(c CardAction) []byte {
	return mustJSON(map[string]any{
		"schema": "2.0",
		"header": s.header(c.EventID, "card.action.trigger"),
		"event": map[string]any{
			"operator": map[string]any{"open_id": c.Operator, "tenant_key": "tenant_fake"},
			"token":    "c-" + c.EventID,
			"host":     "im_message",
			"action":   map[string]any{"tag": "button", "value": c.Value},
			"context":  map[string]any{"open_message_id": c.MessageID, "open_chat_id": c.ChatID},
		},
	})
}

// ChatEnteredEvent is im.chat.access_event.bot_p2p_chat_entered_v1: a user
// opened a direct chat with the bot.
func (s Signer) ChatEnteredEvent(eventID, chatID, openID string) []byte {
	return mustJSON(map[string]any{
		"schema": "2.0",
		"header": s.header(eventID, "im.chat.access_event.bot_p2p_chat_entered_v1"),
		"event": map[string]any{
			"chat_id":     chatID,
			"operator_id": map[string]string{"open_id": openID},
		},
	})
}
