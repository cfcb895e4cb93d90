package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	larkws "github.com/larksuite/oapi-sdk-go/v3/ws"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/store/state"
)

// wsGateway stands in for Feishu's long-connection service, on 127.0.0.1.
// Like Feishu it answers POST /callback/ws/endpoint (app id and secret in the
// JSON body) with a WebSocket URL and the client's configuration, accepts the
// WebSocket only with the ticket it handed out, and then speaks the SDK's
// pbbp2 protobuf frames: it answers every ping control frame with a pong
// carrying the configuration, pushes events and callbacks as data frames
// (headers type=event, message_id, sum=1, seq=0, trace_id), and collects the
// data frame the client sends back for each, matched on message_id.
type wsGateway struct {
	t         *testing.T
	appID     string
	secret    string
	serviceID int32
	srv       *httptest.Server

	seq atomic.Uint64

	mu        sync.Mutex
	tickets   map[string]bool
	conns     []*gatewayConn
	pending   map[string]chan wsAnswer // by frame message_id
	pings     []larkws.Frame
	endpoints int // POST /callback/ws/endpoint calls
}

type gatewayConn struct {
	ws      *websocket.Conn
	writeMu sync.Mutex
}

// wsAnswer is the client's response frame to one pushed frame.
type wsAnswer struct {
	Frame larkws.Frame
	Code  int    // the response payload's code: 200, or 500 when the handler failed
	Data  []byte // the handler's return value as JSON (a callback's toast); empty for events
}

// gatewayConfig is the ClientConfig the gateway hands out. Feishu sends a
// random first-reconnect delay of up to 30 s; 0 keeps the reconnect test
// fast.
var gatewayConfig = map[string]int{"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 120}

func newWSGateway(t *testing.T, appID, secret string) *wsGateway {
	t.Helper()
	g := &wsGateway{t: t, appID: appID, secret: secret, serviceID: 7, tickets: map[string]bool{}, pending: map[string]chan wsAnswer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /callback/ws/endpoint", g.endpoint)
	mux.HandleFunc("GET /ws/v2", g.accept)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		g.mu.Lock()
		for _, c := range g.conns {
			c.ws.Close()
		}
		g.mu.Unlock()
		g.srv.Close()
	})
	return g
}

func (g *wsGateway) endpoint(w http.ResponseWriter, r *http.Request) {
	var req struct{ AppID, AppSecret string }
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"code":400,"msg":"bad request"}`)
		return
	}
	g.mu.Lock()
	g.endpoints++
	g.mu.Unlock()
	if req.AppID != g.appID || req.AppSecret != g.secret {
		// A client error code: the SDK gives up instead of reconnecting.
		_ = json.NewEncoder(w).Encode(map[string]any{"code": 10003, "msg": "invalid app_id or app_secret"})
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	ticket := hex.EncodeToString(b[:])
	g.mu.Lock()
	g.tickets[ticket] = true
	g.mu.Unlock()
	u := "ws" + strings.TrimPrefix(g.srv.URL, "http") + "/ws/v2?device_id=dev_" + ticket + "&service_id=" + strconv.Itoa(int(g.serviceID)) + "&ticket=" + ticket
	_ = json.NewEncoder(w).Encode(map[string]any{"code": 0, "msg": "ok", "data": map[string]any{"URL": u, "ClientConfig": gatewayConfig}})
}

func (g *wsGateway) accept(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	ok := g.tickets[r.URL.Query().Get("ticket")]
	g.mu.Unlock()
	if !ok {
		w.Header().Set("Handshake-Status", "403")
		w.Header().Set("Handshake-Msg", "unknown ticket")
		http.Error(w, "unknown ticket", http.StatusForbidden)
		return
	}
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gatewayConn{ws: ws}
	g.mu.Lock()
	g.conns = append(g.conns, c)
	g.mu.Unlock()
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if mt != websocket.BinaryMessage {
			g.t.Errorf("client sent WebSocket message type %d, want binary", mt)
			continue
		}
		var f larkws.Frame
		if err := f.Unmarshal(msg); err != nil {
			g.t.Errorf("client sent an undecodable frame: %v", err)
			continue
		}
		hs := larkws.Headers(f.Headers)
		switch larkws.FrameType(f.Method) {
		case larkws.FrameTypeControl:
			if hs.GetString(larkws.HeaderType) != string(larkws.MessageTypePing) {
				continue
			}
			g.mu.Lock()
			g.pings = append(g.pings, f)
			g.mu.Unlock()
			pong := larkws.Headers{}
			pong.Add(larkws.HeaderType, string(larkws.MessageTypePong))
			cfg, _ := json.Marshal(gatewayConfig)
			_ = c.write(larkws.Frame{Service: f.Service, Method: int32(larkws.FrameTypeControl), Headers: pong, Payload: cfg})
		case larkws.FrameTypeData:
			var p struct {
				Code int    `json:"code"`
				Data []byte `json:"data"`
			}
			if err := json.Unmarshal(f.Payload, &p); err != nil {
				g.t.Errorf("response frame payload is not JSON: %q", f.Payload)
				continue
			}
			id := hs.GetString(larkws.HeaderMessageID)
			g.mu.Lock()
			ch := g.pending[id]
			delete(g.pending, id)
			g.mu.Unlock()
			if ch == nil {
				g.t.Errorf("response frame for unknown message_id %q", id)
				continue
			}
			ch <- wsAnswer{Frame: f, Code: p.Code, Data: p.Data}
		}
	}
}

func (c *gatewayConn) write(f larkws.Frame) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// connections waits until the client has opened n WebSockets and returns
// the newest.
func (g *wsGateway) connections(n int) *gatewayConn {
	g.t.Helper()
	var c *gatewayConn
	waitFor(g.t, fmt.Sprintf("%d long connection(s)", n), func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.conns) < n {
			return false
		}
		c = g.conns[len(g.conns)-1]
		return true
	})
	return c
}

// deliver pushes payload (an event or callback JSON) on the newest
// connection as one data frame and waits for the client's response frame.
func (g *wsGateway) deliver(payload []byte) wsAnswer {
	g.t.Helper()
	c := g.connections(1)
	n := g.seq.Add(1)
	id := fmt.Sprintf("frame_%s_%d", g.appID, n)
	ch := make(chan wsAnswer, 1)
	g.mu.Lock()
	g.pending[id] = ch
	g.mu.Unlock()
	hs := larkws.Headers{}
	hs.Add(larkws.HeaderType, string(larkws.MessageTypeEvent))
	hs.Add(larkws.HeaderMessageID, id)
	hs.Add(larkws.HeaderSum, "1")
	hs.Add(larkws.HeaderSeq, "0")
	hs.Add(larkws.HeaderTraceID, fmt.Sprintf("trace_%d", n))
	hs.Add(larkws.HeaderTimestamp, strconv.FormatInt(time.Now().UnixMilli(), 10))
	f := larkws.Frame{SeqID: n, LogID: 1000 + n, Service: g.serviceID, Method: int32(larkws.FrameTypeData), Headers: hs, Payload: payload}
	if err := c.write(f); err != nil {
		g.t.Fatalf("pushing a frame: %v", err)
	}
	select {
	case a := <-ch:
		if got := larkws.Headers(a.Frame.Headers).GetString(larkws.HeaderBizRt); got == "" {
			g.t.Errorf("response frame has no %s header", larkws.HeaderBizRt)
		}
		if a.Frame.SeqID != f.SeqID || a.Frame.Service != f.Service {
			g.t.Errorf("response frame SeqID/service = %d/%d, want %d/%d", a.Frame.SeqID, a.Frame.Service, f.SeqID, f.Service)
		}
		return a
	case <-time.After(10 * time.Second):
		g.t.Fatalf("no response frame for %s", id)
		return wsAnswer{}
	}
}

// mustDeliver delivers payload and fails unless the client answered 200.
func (g *wsGateway) mustDeliver(payload []byte) wsAnswer {
	g.t.Helper()
	a := g.deliver(payload)
	if a.Code != http.StatusOK {
		g.t.Fatalf("response frame code %d (data %s), want 200", a.Code, a.Data)
	}
	return a
}

// drop closes the newest connection from the server side, as a Feishu
// node going away would.
func (g *wsGateway) drop() {
	g.t.Helper()
	c := g.connections(1)
	c.ws.Close()
}

// newWSHarness is a bot without an encrypt key (frames are plain) reading
// events from a gateway of its own through RunLongConnection. Cleanup
// cancels the connection and checks it stopped cleanly before the bot's
// workers are drained.
func newWSHarness(t *testing.T, o harnessOpts) (*harness, *wsGateway) {
	t.Helper()
	noKey := ""
	o.encryptKey = &noKey
	if o.appID == "" {
		o.appID = uniqueAppID()
	}
	h := newHarness(t, o)
	g := newWSGateway(t, o.appID, "secret")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.bot.RunLongConnection(ctx, o.appID, "secret", g.srv.URL) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunLongConnection after cancel = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("RunLongConnection did not return after cancel")
		}
	})
	return h, g
}

// wsSentinel is harness.sentinel over the long connection.
func wsSentinel(h *harness, g *wsGateway) {
	h.t.Helper()
	m := h.dm("sentinel question")
	g.mustDeliver(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
}

func TestWSDirectMessageAnsweredOnce(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		h, g := newWSHarness(t, harnessOpts{state: st, workers: 1})
		m := h.dm("长连接的问题")
		ev := h.signer.MessageEvent(m)
		a := g.mustDeliver(ev)
		if len(a.Data) != 0 {
			t.Errorf("event answered with data %s, want none", a.Data)
		}
		reply := h.replyTo(m.MessageID)
		if text := feishufake.CardText(reply.Card); !strings.Contains(text, "关于「长连接的问题」") {
			t.Errorf("reply card does not answer the question:\n%s", text)
		}

		// Feishu redelivers the event, and the message arrives again under
		// a new event id.
		g.mustDeliver(ev)
		m2 := m
		m2.EventID = h.id("ev")
		g.mustDeliver(h.signer.MessageEvent(m2))

		wsSentinel(h, g)
		if n := h.fake.Replies(m.MessageID); n != 1 {
			t.Errorf("%d replies, want 1", n)
		}
		if n := len(h.ans.Calls()); n != 2 { // the message and the sentinel
			t.Errorf("answerer asked %d times, want 2", n)
		}
		if n := h.events(evMessage, outcomeDuplicate); n != 2 {
			t.Errorf("%d duplicates counted, want the redelivery and the new event id", n)
		}

		g.mu.Lock()
		pings := append([]larkws.Frame(nil), g.pings...)
		g.mu.Unlock()
		if len(pings) == 0 || pings[0].Service != g.serviceID {
			t.Errorf("pings %+v, want one on service %d (from the endpoint URL)", pings, g.serviceID)
		}
	})
}

func TestWSCardActionToastThenAnswer(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{workers: 1})
	m := h.dm("第一个问题")
	g.mustDeliver(h.signer.MessageEvent(m))
	card := h.replyTo(m.MessageID)
	h.waitTurns("chat:"+m.ChatID, 1)
	fu := feishufake.ButtonsWith(card.Card, cards.ActionAsk)
	if len(fu) == 0 {
		t.Fatalf("answer card has no follow-up buttons: %v", card.Card)
	}

	click := feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: card.SentID, ChatID: m.ChatID, Value: fu[0]}
	a := g.mustDeliver(h.signer.CardActionEvent(click))
	var resp struct {
		Toast struct{ Type, Content string } `json:"toast"`
	}
	if err := json.Unmarshal(a.Data, &resp); err != nil || resp.Toast.Content != "正在回答…" || resp.Toast.Type != "info" {
		t.Errorf("click answered %s, want an info toast 正在回答…", a.Data)
	}

	waitFor(t, "the follow-up answer", func() bool { return h.fake.Creates(m.ChatID) > 0 })
	var created feishufake.Request
	for _, r := range h.fake.Sent() {
		if r.Op == feishufake.OpCreate {
			created = r
		}
	}
	if text := feishufake.CardText(created.Card); !strings.Contains(text, "<at id=ou_alice></at>") || !strings.Contains(text, "关于「如何开始？」") {
		t.Errorf("follow-up card does not name the asker or answer the question:\n%s", text)
	}

	// A redelivered click gets the toast again and no second answer.
	if a := g.mustDeliver(h.signer.CardActionEvent(click)); !strings.Contains(string(a.Data), "正在回答…") {
		t.Errorf("redelivered click answered %s", a.Data)
	}
	wsSentinel(h, g)
	if n := h.fake.Creates(m.ChatID); n != 1 {
		t.Errorf("%d follow-up answers, want 1", n)
	}
}

func TestWSWelcome(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{})
	chat := "oc_" + h.id("dm")
	g.mustDeliver(h.signer.ChatEnteredEvent(h.id("ev"), chat, "ou_alice"))
	g.mustDeliver(h.signer.ChatEnteredEvent(h.id("ev"), chat, "ou_alice"))
	// The second event was acknowledged after SeenChat said "seen", so
	// it queued nothing: one card now means one card for good.
	waitFor(t, "the welcome card", func() bool { return h.fake.Creates(chat) > 0 })
	wsSentinel(h, g)
	if n := createRequests(h.fake, chat); n != 1 {
		t.Errorf("%d welcome cards sent, want 1", n)
	}
}

// failingClaims is a state store whose de-duplication is down.
type failingClaims struct{ State }

func (failingClaims) Claim(context.Context, string, time.Duration) (bool, error) {
	return false, errors.New("store down")
}

func TestWSHandlerErrorAnswers500(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{state: failingClaims{State: state.NewMemory()}})
	m := h.dm("存储挂了")
	if a := g.deliver(h.signer.MessageEvent(m)); a.Code != http.StatusInternalServerError {
		t.Errorf("response frame code %d, want 500 so Feishu redelivers", a.Code)
	}
	if n := h.fake.Calls(feishufake.OpReply); n != 0 {
		t.Errorf("%d replies, want none", n)
	}
}

func TestWSReconnects(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{})
	g.connections(1)
	g.drop()
	g.connections(2)
	m := h.dm("断线之后")
	g.mustDeliver(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
	g.mu.Lock()
	endpoints := g.endpoints
	g.mu.Unlock()
	if endpoints != 2 {
		t.Errorf("%d endpoint requests, want 2 (the SDK asks again before redialling)", endpoints)
	}
}

func TestWSBadCredentialsIsFatal(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	g := newWSGateway(t, "cli_other", "other-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.bot.RunLongConnection(ctx, "cli_wrong", "secret", g.srv.URL)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("RunLongConnection = %v (ctx %v), want a prompt error", err, ctx.Err())
	}
	if _, ok := errors.AsType[*larkws.ClientError](err); !ok || !strings.Contains(err.Error(), "invalid app_id or app_secret") {
		t.Errorf("error %q (%T), want the endpoint's client error", err, err)
	}
}

// A base URL without the long-connection endpoint (here the fake Open API,
// which answers 404) fails at once instead of being retried forever.
func TestWSEndpointNotFoundIsFatal(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.bot.RunLongConnection(ctx, uniqueAppID(), "secret", h.fake.URL)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("RunLongConnection = %v (ctx %v), want a prompt error", err, ctx.Err())
	}
	if se, ok := errors.AsType[*larkws.ServerError](err); !ok || se.Code != http.StatusNotFound || !strings.Contains(err.Error(), h.fake.URL) {
		t.Errorf("error %q, want the endpoint's 404 naming the base URL", err)
	}
}
