// Package feishufake is a fake Feishu Open API for tests and the load tool:
// an HTTP server on 127.0.0.1 that issues tenant tokens, answers bot/v3/info,
// and accepts message reply, create and patch, recording every request with
// its decoded card. It can fail the next N calls with 5xx or 429. Signer
// (signer.go) makes webhook requests the way Feishu signs and encrypts them.
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
)

// Operations, for Request.Op and Fault.Op.
const (
	OpToken   = "token"
	OpBotInfo = "botinfo"
	OpReply   = "reply"
	OpCreate  = "create"
	OpPatch   = "patch"
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
}

// Fault makes the next Times calls of Op (or every op, for "*") fail.
type Fault struct {
	Op         string
	Times      int
	Status     int    // e.g. 500, 429
	Code       int    // Open API code in the body; default 2200 (5xx) or 99991400 (429)
	RetryAfter string // Retry-After header for 429s; default "0"
}

// Server is a running fake. Its zero value is not usable; call New.
type Server struct {
	URL       string
	BotOpenID string // what bot/v3/info answers
	AppName   string
	// Lean keeps the fake cheap under load: cards are only checked to be
	// JSON, not decoded into Request.Card, and request bodies are not kept.
	// The load tool sets it so the fake does not steal CPU from the bot.
	Lean bool

	srv *httptest.Server

	mu      sync.Mutex
	reqs    []Request
	faults  []*Fault
	byUUID  map[string]string // uuid → message id: Feishu sends a uuid once
	replies map[string]int    // replied-to message id → delivered replies
	creates map[string]int    // chat id → delivered new messages
	seq     int
}

// New starts a fake on 127.0.0.1 with bot open_id botOpenID. Close it when
// done.
func New(botOpenID string) *Server {
	s := &Server{BotOpenID: botOpenID, AppName: "kbbot", byUUID: map[string]string{},
		replies: map[string]int{}, creates: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /open-apis/auth/v3/tenant_access_token/internal", s.token)
	mux.HandleFunc("POST /open-apis/auth/v3/app_access_token/internal", s.token)
	mux.HandleFunc("GET /open-apis/bot/v3/info", s.botInfo)
	mux.HandleFunc("POST /open-apis/im/v1/messages/{message_id}/reply", s.send(OpReply))
	mux.HandleFunc("POST /open-apis/im/v1/messages", s.send(OpCreate))
	mux.HandleFunc("PATCH /open-apis/im/v1/messages/{message_id}", s.send(OpPatch))
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

// Sent is every delivered message (replies and creates), in order.
func (s *Server) Sent() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Delivered && (r.Op == OpReply || r.Op == OpCreate) {
			out = append(out, r)
		}
	}
	return out
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

// Replies is how many messages were delivered as replies to messageID.
func (s *Server) Replies(messageID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replies[messageID]
}

// ReplyCounts is delivered replies per replied-to message id.
func (s *Server) ReplyCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.replies))
	for k, v := range s.replies {
		out[k] = v
	}
	return out
}

// Creates is how many new messages were delivered to chatID.
func (s *Server) Creates(chatID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates[chatID]
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
	rec.Status, rec.Code = f.Status, code
	s.reqs = append(s.reqs, rec)
	writeJSON(w, f.Status, map[string]any{"code": code, "msg": "feishufake: injected failure"})
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
		rec.Status, rec.Code = 400, 10003
		s.reqs = append(s.reqs, rec)
		writeJSON(w, 400, map[string]any{"code": 10003, "msg": "invalid param: app_id and app_secret required"})
		return
	}
	rec.Status = 200
	s.reqs = append(s.reqs, rec)
	writeJSON(w, 200, map[string]any{"code": 0, "msg": "ok", "tenant_access_token": tokenFor(in.AppID), "app_access_token": "a-" + in.AppID, "expire": 7200})
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
		rec.Status, rec.Code = 401, 99991661
		s.reqs = append(s.reqs, rec)
		writeJSON(w, 401, map[string]any{"code": 99991661, "msg": "missing access token"})
		return
	}
	rec.Status = 200
	s.reqs = append(s.reqs, rec)
	writeJSON(w, 200, map[string]any{"code": 0, "msg": "ok", "bot": map[string]any{
		"open_id": s.BotOpenID, "app_name": s.AppName, "activate_status": 2, "ip_white_list": []string{}}})
}

// send handles reply, create and patch: it checks the request the way the
// real API would (token, JSON content, card size) and records it.
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
			Body: body, MessageID: r.PathValue("message_id")}
		bad := func(status, code int, msg string) {
			rec.Status, rec.Code = status, code
			s.reqs = append(s.reqs, rec)
			writeJSON(w, status, map[string]any{"code": code, "msg": msg})
		}
		jsonErr := json.Unmarshal(body, &in)
		rec.ReceiveID, rec.MsgType, rec.Content, rec.UUID, rec.InThread = in.ReceiveID, in.MsgType, in.Content, in.UUID, in.ReplyInThread
		// Decode the card before taking the lock: it is the costly part.
		isCard := in.MsgType == "interactive" || op == OpPatch
		var cardErr error
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
		s.mu.Lock()
		defer s.mu.Unlock()
		if f := s.fault(op); f != nil {
			s.failed(w, rec, f)
			return
		}
		if !authorized(r) {
			bad(401, 99991661, "missing access token")
			return
		}
		if jsonErr != nil {
			bad(400, 9499, "bad request body: "+jsonErr.Error())
			return
		}
		if op == OpCreate {
			if rt := r.URL.Query().Get("receive_id_type"); rt != "chat_id" && rt != "open_id" {
				bad(400, 99992402, "receive_id_type: want chat_id or open_id, got "+rt)
				return
			}
			if in.ReceiveID == "" {
				bad(400, 99992402, "receive_id is required")
				return
			}
		}
		if op != OpPatch && in.MsgType == "" {
			bad(400, 99992402, "msg_type is required")
			return
		}
		if len(in.Content) > MaxCardBytes && (in.MsgType == "interactive" || op == OpPatch) {
			bad(400, 230025, fmt.Sprintf("card content is %d bytes, over the 30 KB limit", len(in.Content)))
			return
		}
		if isCard && cardErr != nil {
			bad(400, 230001, "content is not a JSON card: "+cardErr.Error())
			return
		}
		if op == OpPatch {
			rec.Status, rec.SentID = 200, rec.MessageID
			s.reqs = append(s.reqs, rec)
			writeJSON(w, 200, map[string]any{"code": 0, "msg": "success", "data": map[string]any{}})
			return
		}
		id, dup := s.byUUID[in.UUID]
		if !dup || in.UUID == "" {
			s.seq++
			id = fmt.Sprintf("om_fake_%d", s.seq)
			if in.UUID != "" {
				s.byUUID[in.UUID] = id
			}
			rec.Delivered = true
			if op == OpReply {
				s.replies[rec.MessageID]++
			} else {
				s.creates[in.ReceiveID]++
			}
		}
		rec.Status, rec.SentID = 200, id
		s.reqs = append(s.reqs, rec)
		chat := in.ReceiveID
		writeJSON(w, 200, map[string]any{"code": 0, "msg": "success", "data": map[string]any{
			"message_id": id, "chat_id": chat, "msg_type": in.MsgType, "root_id": rec.MessageID, "parent_id": rec.MessageID}})
	}
}
