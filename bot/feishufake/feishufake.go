// Package feishufake stands in for Feishu in tests and the load tool: a
// fake Open API on 127.0.0.1 (feishufake.go) that issues tenant tokens,
// answers bot/v3/info, accepts message reply, create and patch, and keeps
// CardKit card entities with Feishu's sequence rules, recording every
// request with its decoded card and failing the next N calls on demand;
// wiki spaces and docx documents behind the same fake, with Feishu's
// paging, rate limits and errors (wiki.go; documents built with docx.go,
// whole spaces with wikigen.go); a fake long-connection gateway (gateway.go) that speaks the SDK's
// WebSocket frames; and Signer (signer.go, events.go), which makes webhook
// requests signed and encrypted the way Feishu sends them. Only tests and
// cmd/kbbot-loadtest import it.
package feishufake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Operations, for Request.Op and Fault.Op.
const (
	OpToken   = "token"
	OpBotInfo = "botinfo"
	OpReply   = "reply"
	OpCreate  = "create"
	OpPatch   = "patch"

	OpCardCreate   = "card_create"     // POST cardkit/v1/cards
	OpCardContent  = "card_content"    // PUT cardkit/v1/cards/:card_id/elements/:element_id/content
	OpCardUpdate   = "card_update"     // PUT cardkit/v1/cards/:card_id
	OpCardSettings = "card_settings"   // PATCH cardkit/v1/cards/:card_id/settings
	OpCardIDOf     = "card_id_convert" // POST cardkit/v1/cards/id_convert: the card a message shows
)

// CardKit error codes the fake answers with, as Feishu documents them.
const (
	CodeCardNotFound = 200740 // no such card entity
	CodeUUIDConflict = 200770 // a uuid reused for a different operation
	CodeCardTooLarge = 200860
	CodeStreamingOff = 300309 // a text update while streaming_mode is off
	CodeSequence     = 300317 // sequence not strictly increasing
	// CodeCardSentTwice is the fake's own: Feishu sends an entity once.
	CodeCardSentTwice = 230099
)

// MaxCardBytes is Feishu's limit on a card's content.
const MaxCardBytes = 30 * 1024

// Request is one call the fake received and what it answered.
type Request struct {
	Op        string
	Method    string
	Path      string
	Query     url.Values
	Auth      string // Authorization header
	Body      []byte
	MessageID string // reply, patch: the message in the path
	ReceiveID string // create: the chat
	MsgType   string
	UUID      string
	InThread  bool
	Content   string         // the content string as sent
	Card      map[string]any // Content decoded (interactive messages)
	Status    int            // HTTP status answered
	Code      int            // Open API code answered
	// Delivered is true when the call made a new message: not a failure and
	// not a repeat of an earlier uuid.
	Delivered bool
	SentID    string // the message id answered

	// CardKit: the card entity (also on a reply or create that sends one),
	// the element, and the operation's sequence. Replay marks a repeat of an
	// applied operation (same uuid and sequence), answered without effect.
	CardID    string
	ElementID string
	Sequence  int
	Settings  map[string]any // card_settings: the settings decoded
	Replay    bool
	At        time.Time // when the fake received it
}

// Fault makes the next Times calls of Op (or every op, for "*") fail.
type Fault struct {
	Op         string
	Times      int
	Status     int    // e.g. 500, 429
	Code       int    // Open API code in the body; default 2200 (5xx) or 99991400 (429)
	RetryAfter string // Retry-After header for 429s; default "0"
	// Applied makes the call take effect before failing, like an answer
	// lost on the way back: a retry must be idempotent.
	Applied bool
}

// Server is a running fake. Its zero value is not usable; call New.
type Server struct {
	URL       string
	BotOpenID string // what bot/v3/info answers
	AppName   string
	// Now is the fake's clock: uuid windows, obj_edit_time and the
	// rate-limit windows (Feishu's times are in seconds, so two edits in
	// one second of Now show the same obj_edit_time, as they would
	// there); nil is time.Now. Set it before the calls it applies to.
	Now func() time.Time
	// Lean keeps the fake cheap under load: cards are only checked to be
	// JSON, not decoded into Request.Card, and request bodies are not kept.
	// The load tool sets it so the fake does not steal CPU from the bot.
	// Lean skips the markdown checks of content.go but not the size limit.
	Lean bool
	// AtAllAllowed says the group owner lets the bot @all: cards with
	// <at id=all> are accepted (see content.go).
	AtAllAllowed bool

	srv *httptest.Server

	mu      sync.Mutex
	reqs    []Request
	faults  []*Fault
	byUUID  map[string]uuidUse // uuid → the message it sent: Feishu sends a uuid once an hour
	replies map[string]int     // replied-to message id → delivered replies
	creates map[string]int     // chat id → delivered new messages
	seq     int

	cards   map[string]*cardEntity
	cardSeq int
	patched map[string]string // message id → the card it was patched to

	// Wiki shapes the wiki and docx answers (wiki.go).
	Wiki WikiOptions
	wiki wikiState
}

// cardEntity is a CardKit card: its JSON (not kept in Lean mode), whether it
// is streaming, the last sequence applied, and when each operation landed.
type cardEntity struct {
	raw       string
	streaming bool
	// settled: the card shows its final content to the user: created
	// without streaming, or updated whole after streaming ended (kbbot
	// turns streaming off first, then puts the final card in).
	settled bool
	seq     int
	uuids   map[string]int // uuid → the sequence it applied
	ops     []time.Time
	sentAs  string // message id once sent
}

type uuidUse struct {
	id string
	at time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// New starts a fake on 127.0.0.1 with bot open_id botOpenID. Close it when
// done.
func New(botOpenID string) *Server {
	s := &Server{BotOpenID: botOpenID, AppName: "kbbot", byUUID: map[string]uuidUse{},
		replies: map[string]int{}, creates: map[string]int{}, cards: map[string]*cardEntity{}, patched: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /open-apis/auth/v3/tenant_access_token/internal", s.token)
	mux.HandleFunc("POST /open-apis/auth/v3/app_access_token/internal", s.token)
	mux.HandleFunc("GET /open-apis/bot/v3/info", s.botInfo)
	mux.HandleFunc("POST /open-apis/im/v1/messages/{message_id}/reply", s.send(OpReply))
	mux.HandleFunc("POST /open-apis/im/v1/messages", s.send(OpCreate))
	mux.HandleFunc("PATCH /open-apis/im/v1/messages/{message_id}", s.send(OpPatch))
	mux.HandleFunc("POST /open-apis/cardkit/v1/cards", s.cardCreate)
	mux.HandleFunc("POST /open-apis/cardkit/v1/cards/id_convert", s.cardIDOf)
	mux.HandleFunc("PUT /open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content", s.cardOp(OpCardContent))
	mux.HandleFunc("PUT /open-apis/cardkit/v1/cards/{card_id}", s.cardOp(OpCardUpdate))
	mux.HandleFunc("PATCH /open-apis/cardkit/v1/cards/{card_id}/settings", s.cardOp(OpCardSettings))
	s.wikiRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "msg": "feishufake: no such API: " + r.Method + " " + r.URL.Path})
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Fail queues a fault.
func (s *Server) Fail(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Requests is every call so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// Sent is every delivered message (replies and creates), in order, as the
// user finally sees it. A message that sends a CardKit card entity counts
// once the card has settled — streaming_mode turned off, or the message
// patched — and its Card is then the entity's card (or the patch), not the
// {"type":"card"} reference: until then the user watches it being written.
func (s *Server) Sent() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.reqs {
		if !r.Delivered || (r.Op != OpReply && r.Op != OpCreate) {
			continue
		}
		if r.CardID != "" {
			raw, ok := s.settledLocked(r)
			if !ok {
				continue
			}
			r.Card = nil
			if !s.Lean {
				_ = json.Unmarshal([]byte(raw), &r.Card)
			}
		}
		out = append(out, r)
	}
	return out
}

// settledLocked is the card JSON a delivered message r finally shows, and
// false while it is a card entity still streaming.
func (s *Server) settledLocked(r Request) (string, bool) {
	if p, ok := s.patched[r.SentID]; ok {
		return p, true
	}
	if r.CardID == "" {
		return r.Content, true
	}
	e := s.cards[r.CardID]
	if e == nil || !e.settled {
		return "", false
	}
	return e.raw, true
}

// Calls counts the calls of op, failed ones included.
func (s *Server) Calls(op string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Op == op {
			n++
		}
	}
	return n
}

// Replies is how many messages were delivered as replies to messageID
// (card entities once settled, as in Sent).
func (s *Server) Replies(messageID string) int {
	return s.ReplyCounts()[messageID]
}

// ReplyCounts is delivered replies per replied-to message id (card entities
// once settled, as in Sent).
func (s *Server) ReplyCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.replies))
	for _, r := range s.reqs {
		if r.Delivered && r.Op == OpReply {
			if _, ok := s.settledLocked(r); ok {
				out[r.MessageID]++
			}
		}
	}
	return out
}

// Creates is how many new messages were delivered to chatID.
func (s *Server) Creates(chatID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates[chatID]
}

// Settled reports whether a card entity shows its final content: created
// without streaming, or updated whole after its streaming ended.
func (s *Server) Settled(cardID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.cards[cardID]
	return e != nil && e.settled
}

// Card is a card entity's current card JSON, decoded (nil in Lean mode),
// and whether it is streaming; ok is false for an unknown card.
func (s *Server) Card(cardID string) (card map[string]any, streaming, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.cards[cardID]
	if e == nil {
		return nil, false, false
	}
	if !s.Lean {
		_ = json.Unmarshal([]byte(e.raw), &card)
	}
	return card, e.streaming, true
}

// CardOps is every request about a card entity, in order: its creation,
// the message sending it, and its updates, failed ones included.
func (s *Server) CardOps(cardID string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.CardID == cardID {
			out = append(out, r)
		}
	}
	return out
}

// MaxCardRate is the most operations (text updates, full updates,
// settings) the card took within any one second; Feishu allows 10.
func (s *Server) MaxCardRate(cardID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.cards[cardID]
	if e == nil {
		return 0
	}
	best := 0
	for i, t := range e.ops {
		n := 0
		for _, u := range e.ops[i:] {
			if u.Sub(t) < time.Second {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fault takes one pending fault for op, if any. Callers hold s.mu.
func (s *Server) fault(op string) *Fault {
	for i, f := range s.faults {
		if f.Op == op || f.Op == "*" {
			f.Times--
			if f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			return f
		}
	}
	return nil
}

// failed writes f's error answer and records it.
func (s *Server) failed(w http.ResponseWriter, rec Request, f *Fault) {
	code := f.Code
	if code == 0 {
		code = 2200
		if f.Status == http.StatusTooManyRequests {
			code = 99991400
		}
	}
	if f.Status == http.StatusTooManyRequests {
		ra := f.RetryAfter
		if ra == "" {
			ra = "0"
		}
		w.Header().Set("Retry-After", ra)
	}
	s.reject(w, rec, f.Status, code, "feishufake: injected failure")
}

// succeed records rec as answered 200 and answers with body.
// The caller holds s.mu.
func (s *Server) succeed(w http.ResponseWriter, rec Request, body map[string]any) {
	rec.Status = 200
	s.reqs = append(s.reqs, rec)
	writeJSON(w, 200, body)
}

// reject records rec as answered with status and code, and answers so.
// The caller holds s.mu.
func (s *Server) reject(w http.ResponseWriter, rec Request, status, code int, msg string) {
	rec.Status, rec.Code = status, code
	s.reqs = append(s.reqs, rec)
	writeJSON(w, status, map[string]any{"code": code, "msg": msg})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var in struct {
		AppID     string `json:"app_id"`
		AppSecret string `json:"app_secret"`
	}
	_ = json.Unmarshal(body, &in)
	rec := Request{Op: OpToken, Method: r.Method, Path: r.URL.Path, Body: body}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fault(OpToken); f != nil {
		s.failed(w, rec, f)
		return
	}
	if in.AppID == "" || in.AppSecret == "" {
		s.reject(w, rec, 400, 10003, "invalid param: app_id and app_secret required")
		return
	}
	s.succeed(w, rec, map[string]any{"code": 0, "msg": "ok", "tenant_access_token": tokenFor(in.AppID), "app_access_token": "a-" + in.AppID, "expire": 7200})
}

func tokenFor(appID string) string { return "t-" + appID }

// authorized checks the bearer token is one the fake issued.
func authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer t-")
	return ok && tok != ""
}

func (s *Server) botInfo(w http.ResponseWriter, r *http.Request) {
	rec := Request{Op: OpBotInfo, Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization")}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fault(OpBotInfo); f != nil {
		s.failed(w, rec, f)
		return
	}
	if !authorized(r) {
		s.reject(w, rec, 401, 99991661, "missing access token")
		return
	}
	s.succeed(w, rec, map[string]any{"code": 0, "msg": "ok", "bot": map[string]any{
		"open_id": s.BotOpenID, "app_name": s.AppName, "activate_status": 2, "ip_white_list": []string{}}})
}

// send handles reply, create and patch: it checks the request the way the
// real API would (token, JSON content, card size and content, a card
// entity sent once) and records it.
func (s *Server) send(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in struct {
			ReceiveID     string `json:"receive_id"`
			MsgType       string `json:"msg_type"`
			Content       string `json:"content"`
			UUID          string `json:"uuid"`
			ReplyInThread bool   `json:"reply_in_thread"`
		}
		rec := Request{Op: op, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Auth: r.Header.Get("Authorization"),
			Body: body, MessageID: r.PathValue("message_id"), At: time.Now()}
		jsonErr := json.Unmarshal(body, &in)
		rec.ReceiveID, rec.MsgType, rec.Content, rec.UUID, rec.InThread = in.ReceiveID, in.MsgType, in.Content, in.UUID, in.ReplyInThread
		// Decode the card before taking the lock: it is the costly part.
		isCard := in.MsgType == "interactive" || op == OpPatch
		var cardErr error
		var ref struct {
			Type string `json:"type"`
			Data struct {
				CardID string `json:"card_id"`
			} `json:"data"`
		}
		switch {
		case !isCard:
		case s.Lean:
			rec.Body, rec.Content = nil, ""
			if !json.Valid([]byte(in.Content)) {
				cardErr = errors.New("invalid JSON")
			}
		default:
			cardErr = json.Unmarshal([]byte(in.Content), &rec.Card)
		}
		if isCard && cardErr == nil && op != OpPatch && strings.Contains(in.Content, `"card_id"`) {
			// {"type":"card","data":{"card_id":…}} sends a CardKit entity.
			if json.Unmarshal([]byte(in.Content), &ref) == nil && ref.Type == "card" {
				rec.CardID = ref.Data.CardID
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		f := s.fault(op)
		if f != nil && !f.Applied {
			s.failed(w, rec, f)
			return
		}
		if !authorized(r) {
			s.reject(w, rec, 401, 99991661, "missing access token")
			return
		}
		if jsonErr != nil {
			s.reject(w, rec, 400, 9499, "bad request body: "+jsonErr.Error())
			return
		}
		if op == OpCreate {
			if rt := r.URL.Query().Get("receive_id_type"); rt != "chat_id" && rt != "open_id" {
				s.reject(w, rec, 400, 99992402, "receive_id_type: want chat_id or open_id, got "+rt)
				return
			}
			if in.ReceiveID == "" {
				s.reject(w, rec, 400, 99992402, "receive_id is required")
				return
			}
		}
		if op != OpPatch && in.MsgType == "" {
			s.reject(w, rec, 400, 99992402, "msg_type is required")
			return
		}
		if n := sentLen(in.Content); n > MaxCardBytes && isCard {
			r := sizeRefusal(CodeMessageTooLarge, n)
			s.reject(w, rec, 400, r.code, r.msg)
			return
		}
		if isCard && cardErr != nil {
			s.reject(w, rec, 400, 230001, "content is not a JSON card: "+cardErr.Error())
			return
		}
		if isCard && rec.CardID == "" && !s.Lean {
			if r := s.checkContent(rec.Card); r != nil {
				s.reject(w, rec, 400, r.code, r.msg)
				return
			}
		}
		if op == OpPatch {
			s.patched[rec.MessageID] = in.Content
			rec.SentID = rec.MessageID
			if f != nil {
				s.failed(w, rec, f)
				return
			}
			s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{}})
			return
		}
		// "同一个 uuid 在 1 小时内最多只能成功发送一条消息": a uuid
		// dedupes for an hour (https://open.feishu.cn/document/server-docs/im-v1/message/create).
		// What a repeat returns is not documented; the fake answers with
		// the first message, and kbbot must not depend on that.
		use, dup := s.byUUID[in.UUID]
		dup = dup && s.now().Sub(use.at) < time.Hour
		id := use.id
		if !dup || in.UUID == "" {
			var entity *cardEntity
			if rec.CardID != "" {
				entity = s.cards[rec.CardID]
				switch {
				case entity == nil:
					s.reject(w, rec, 400, CodeCardNotFound, "card entity not found: "+rec.CardID)
					return
				case entity.sentAs != "":
					s.reject(w, rec, 400, CodeCardSentTwice, "feishufake: a card entity can be sent only once")
					return
				}
			}
			s.seq++
			id = fmt.Sprintf("om_fake_%d", s.seq)
			if in.UUID != "" {
				s.byUUID[in.UUID] = uuidUse{id: id, at: s.now()}
			}
			if entity != nil {
				entity.sentAs = id
			}
			rec.Delivered = true
			if op == OpReply {
				s.replies[rec.MessageID]++
			} else {
				s.creates[in.ReceiveID]++
			}
		}
		rec.SentID = id
		if f != nil {
			s.failed(w, rec, f)
			return
		}
		chat := in.ReceiveID
		s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{
			"message_id": id, "chat_id": chat, "msg_type": in.MsgType, "root_id": rec.MessageID, "parent_id": rec.MessageID}})
	}
}

// cardCreate makes a card entity from card JSON 2.0.
func (s *Server) cardCreate(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := Request{Op: OpCardCreate, Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body, At: time.Now()}
	var in struct {
		Type string `json:"type"`
		Data string `json:"data"`
	}
	jsonErr := json.Unmarshal(body, &in)
	streaming, cardErr := s.checkCard(in.Data, &rec)
	if s.Lean {
		rec.Body = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault(OpCardCreate)
	if f != nil && !f.Applied {
		s.failed(w, rec, f)
		return
	}
	switch {
	case !authorized(r):
		s.reject(w, rec, 401, 99991661, "missing access token")
		return
	case s.refusedScope(w, rec):
		return
	case jsonErr != nil:
		s.reject(w, rec, 400, 9499, "bad request body: "+jsonErr.Error())
		return
	case in.Type != "card_json":
		s.reject(w, rec, 400, 10002, `type: want "card_json", got `+in.Type)
		return
	case sentLen(in.Data) > MaxCardBytes:
		r := sizeRefusal(CodeCardTooLarge, sentLen(in.Data))
		s.reject(w, rec, 400, r.code, r.msg)
		return
	case cardErr != nil:
		s.reject(w, rec, 400, 200220, cardErr.Error())
		return
	}
	if !s.Lean {
		if r := s.checkContent(rec.Card); r != nil {
			s.reject(w, rec, 400, r.code, r.msg)
			return
		}
	}
	s.cardSeq++
	id := fmt.Sprintf("card_fake_%d", s.cardSeq)
	e := &cardEntity{streaming: streaming, settled: !streaming, uuids: map[string]int{}}
	if !s.Lean {
		e.raw = in.Data
	}
	s.cards[id] = e
	rec.CardID = id
	if f != nil {
		s.failed(w, rec, f)
		return
	}
	s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{"card_id": id}})
}

// cardIDOf answers which card entity a message sent.
func (s *Server) cardIDOf(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := Request{Op: OpCardIDOf, Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body, At: time.Now()}
	var in struct {
		MessageID string `json:"message_id"`
	}
	jsonErr := json.Unmarshal(body, &in)
	rec.MessageID = in.MessageID
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fault(OpCardIDOf); f != nil {
		s.failed(w, rec, f)
		return
	}
	switch {
	case !authorized(r):
		s.reject(w, rec, 401, 99991661, "missing access token")
		return
	case jsonErr != nil || in.MessageID == "":
		s.reject(w, rec, 400, 10002, "message_id is required")
		return
	}
	for id, e := range s.cards {
		if e.sentAs == in.MessageID {
			rec.Status, rec.CardID = 200, id
			s.reqs = append(s.reqs, rec)
			writeJSON(w, 200, map[string]any{"code": 0, "msg": "success", "data": map[string]any{"card_id": id}})
			return
		}
	}
	s.reject(w, rec, 400, CodeCardNotFound, "feishufake: no card entity was sent as "+in.MessageID)
}

// checkCard checks card JSON the way CardKit does (schema 2.0,
// update_multi) and reports its streaming_mode; rec.Card gets the card
// unless the fake is lean.
func (s *Server) checkCard(data string, rec *Request) (streaming bool, err error) {
	var c struct {
		Schema string `json:"schema"`
		Config struct {
			UpdateMulti   *bool `json:"update_multi"`
			StreamingMode bool  `json:"streaming_mode"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return false, fmt.Errorf("card data is not JSON: %v", err)
	}
	if c.Schema != "2.0" {
		return false, errors.New("CardKit takes card JSON 2.0 only")
	}
	if c.Config.UpdateMulti != nil && !*c.Config.UpdateMulti {
		return false, errors.New("update_multi must be true")
	}
	if !s.Lean {
		_ = json.Unmarshal([]byte(data), &rec.Card)
	}
	return c.Config.StreamingMode, nil
}

// cardOp handles the operations on an existing entity: text updates, full
// updates and settings. Each carries a sequence that must exceed the last
// one applied to the card; repeating an applied operation's uuid and
// sequence is answered with success and no effect, as Feishu's idempotency.
func (s *Server) cardOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := Request{Op: op, Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body,
			CardID: r.PathValue("card_id"), ElementID: r.PathValue("element_id"), At: time.Now()}
		var in struct {
			Content *string `json:"content"`
			Card    *struct {
				Type string `json:"type"`
				Data string `json:"data"`
			} `json:"card"`
			Settings *string `json:"settings"`
			Sequence int     `json:"sequence"`
			UUID     string  `json:"uuid"`
		}
		jsonErr := json.Unmarshal(body, &in)
		rec.Sequence, rec.UUID = in.Sequence, in.UUID
		var check error
		var refused *refusal // the card's content, as Feishu would refuse it
		var newStreaming *bool
		switch op {
		case OpCardContent:
			if in.Content == nil {
				check = errors.New("content is required")
			} else {
				rec.Content = *in.Content
			}
		case OpCardUpdate:
			switch {
			case in.Card == nil || in.Card.Type != "card_json":
				check = errors.New(`card: want {"type":"card_json","data":…}`)
			case sentLen(in.Card.Data) > MaxCardBytes:
				refused = sizeRefusal(CodeCardTooLarge, sentLen(in.Card.Data))
			default:
				var streaming bool
				streaming, check = s.checkCard(in.Card.Data, &rec)
				if strings.Contains(in.Card.Data, `"streaming_mode"`) {
					newStreaming = &streaming
				}
				if check == nil && !s.Lean {
					refused = s.checkContent(rec.Card)
				}
			}
		case OpCardSettings:
			var set struct {
				Config map[string]any `json:"config"`
			}
			switch {
			case in.Settings == nil:
				check = errors.New("settings is required")
			case json.Unmarshal([]byte(*in.Settings), &set) != nil:
				check = errors.New("settings is not a JSON object")
			default:
				_ = json.Unmarshal([]byte(*in.Settings), &rec.Settings)
				if v, ok := set.Config["streaming_mode"].(bool); ok {
					newStreaming = &v
				}
			}
		}
		if s.Lean {
			rec.Body, rec.Card = nil, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		f := s.fault(op)
		if f != nil && !f.Applied {
			s.failed(w, rec, f)
			return
		}
		e := s.cards[rec.CardID]
		switch {
		case !authorized(r):
			s.reject(w, rec, 401, 99991661, "missing access token")
			return
		case s.refusedScope(w, rec):
			return
		case jsonErr != nil:
			s.reject(w, rec, 400, 9499, "bad request body: "+jsonErr.Error())
			return
		case e == nil:
			s.reject(w, rec, 400, CodeCardNotFound, "card entity not found: "+rec.CardID)
			return
		case in.Sequence < 1:
			s.reject(w, rec, 400, 10002, "sequence must be a positive int32")
			return
		case check != nil:
			s.reject(w, rec, 400, 10002, check.Error())
			return
		case refused != nil:
			s.reject(w, rec, 400, refused.code, refused.msg)
			return
		}
		if prev, seen := e.uuids[in.UUID]; in.UUID != "" && seen {
			if prev != in.Sequence {
				s.reject(w, rec, 400, CodeUUIDConflict, "uuid already used with another sequence")
				return
			}
			rec.Replay, rec.Status = true, 200
			s.reqs = append(s.reqs, rec)
			writeJSON(w, 200, map[string]any{"code": 0, "msg": "success", "data": map[string]any{}})
			return
		}
		if in.Sequence <= e.seq {
			s.reject(w, rec, 400, CodeSequence, fmt.Sprintf("sequence %d is not above the card's last %d", in.Sequence, e.seq))
			return
		}
		switch op {
		case OpCardContent:
			if !e.streaming {
				s.reject(w, rec, 400, CodeStreamingOff, "streaming_mode is off; text updates need it on")
				return
			}
			if s.Lean {
				if n := sentLen(rec.Content); n > MaxCardBytes {
					r := sizeRefusal(CodeCardTooLarge, n)
					s.reject(w, rec, 400, r.code, r.msg)
					return
				}
				break
			}
			raw, err := setElementContent(e.raw, rec.ElementID, rec.Content)
			if err != nil {
				s.reject(w, rec, 400, 10002, err.Error())
				return
			}
			// The card with the new text must still be one Feishu takes.
			var card map[string]any
			_ = json.Unmarshal([]byte(raw), &card)
			r := s.checkContent(card)
			if n := sentLen(raw); n > MaxCardBytes {
				r = sizeRefusal(CodeCardTooLarge, n)
			}
			if r != nil {
				s.reject(w, rec, 400, r.code, r.msg)
				return
			}
			e.raw = raw
		case OpCardUpdate:
			if !s.Lean {
				e.raw = in.Card.Data
			}
		case OpCardSettings:
			if !s.Lean && rec.Settings != nil {
				e.raw = mergeConfig(e.raw, rec.Settings)
			}
		}
		if newStreaming != nil {
			e.streaming = *newStreaming
		}
		if op == OpCardUpdate && !e.streaming {
			e.settled = true
		}
		e.seq = in.Sequence
		if in.UUID != "" {
			e.uuids[in.UUID] = in.Sequence
		}
		e.ops = append(e.ops, rec.At)
		if f != nil {
			s.failed(w, rec, f)
			return
		}
		s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{}})
	}
}

// WalkCard calls visit with v and, depth first, everything inside it: the
// objects, arrays and values of a card decoded from JSON.
func WalkCard(v any, visit func(any)) {
	visit(v)
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			WalkCard(e, visit)
		}
	case []any:
		for _, e := range x {
			WalkCard(e, visit)
		}
	}
}

// setElementContent replaces the content of the markdown or plain_text
// element with id in card JSON.
func setElementContent(raw, id, content string) (string, error) {
	var card map[string]any
	if err := json.Unmarshal([]byte(raw), &card); err != nil {
		return "", err
	}
	found := false
	WalkCard(card, func(v any) {
		if x, ok := v.(map[string]any); ok && x["element_id"] == id && (x["tag"] == "markdown" || x["tag"] == "plain_text") {
			x["content"] = content
			found = true
		}
	})
	if !found {
		return "", fmt.Errorf("no markdown or plain_text element %q in the card", id)
	}
	// Without HTML escaping, as the bot writes cards, so that its size
	// stays what the bot would send.
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(card); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// mergeConfig applies settings' config keys to the card's config.
func mergeConfig(raw string, settings map[string]any) string {
	var card map[string]any
	if json.Unmarshal([]byte(raw), &card) != nil {
		return raw
	}
	cfg, _ := card["config"].(map[string]any)
	if cfg == nil {
		cfg = map[string]any{}
	}
	if set, ok := settings["config"].(map[string]any); ok {
		for k, v := range set {
			cfg[k] = v
		}
	}
	card["config"] = cfg
	b, err := json.Marshal(card)
	if err != nil {
		return raw
	}
	return string(b)
}

// CardText is every string in a decoded card, one per line, for content
// assertions.
func CardText(card map[string]any) string {
	var sb strings.Builder
	WalkCard(card, func(v any) {
		if s, ok := v.(string); ok {
			sb.WriteString(s)
			sb.WriteString("\n")
		}
	})
	return sb.String()
}

// Buttons is the callback value of every button in a decoded card, in the
// card's order.
func Buttons(card map[string]any) []map[string]any {
	var out []map[string]any
	visitButtons(card, func(v map[string]any) { out = append(out, v) })
	return out
}

// ButtonsWith is the callback values of the buttons whose action is action.
func ButtonsWith(card map[string]any, action string) []map[string]any {
	var out []map[string]any
	for _, b := range Buttons(card) {
		if b["action"] == action {
			out = append(out, b)
		}
	}
	return out
}

// visitButtons walks the card in order (WalkCard visits a map's entries in
// Go's random map order, which would shuffle the buttons).
func visitButtons(v any, visit func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		if x["tag"] == "button" {
			bs, _ := x["behaviors"].([]any)
			for _, b := range bs {
				if bm, ok := b.(map[string]any); ok {
					if val, ok := bm["value"].(map[string]any); ok {
						visit(val)
					}
				}
			}
			return
		}
		for _, k := range []string{"header", "body", "elements", "columns"} {
			if e, ok := x[k]; ok {
				visitButtons(e, visit)
			}
		}
	case []any:
		for _, e := range x {
			visitButtons(e, visit)
		}
	}
}
