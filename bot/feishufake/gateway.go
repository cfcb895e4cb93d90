package feishufake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

	"kbbot/deploy/testkit"
)

// Gateway stands in for Feishu's long-connection service, on 127.0.0.1.
// Like Feishu it answers POST /callback/ws/endpoint (app id and secret in the
// JSON body) with a WebSocket URL and the client's configuration, accepts the
// WebSocket only with the ticket it handed out, and then speaks the SDK's
// pbbp2 protobuf frames: it answers every ping control frame with a pong
// carrying the configuration, pushes events and callbacks as data frames
// (headers type=event, message_id, sum=1, seq=0, trace_id), and collects the
// data frame the client sends back for each, matched on message_id.
type Gateway struct {
	t         testing.TB
	appID     string
	secret    string
	serviceID int32
	srv       *httptest.Server
	// URL is the gateway's base, the long connection's "domain".
	URL string

	seq atomic.Uint64

	mu        sync.Mutex
	tickets   map[string]bool
	conns     []*gatewayConn
	pending   map[string]chan Answer // by frame message_id
	pings     []larkws.Frame
	endpoints int // POST /callback/ws/endpoint calls
}

type gatewayConn struct {
	ws      *websocket.Conn
	writeMu sync.Mutex
}

// Answer is the client's response frame to one pushed frame.
type Answer struct {
	Frame larkws.Frame
	Code  int    // the response payload's code: 200, or 500 when the handler failed
	Data  []byte // the handler's return value as JSON (a callback's toast); empty for events
}

// GatewayConfig is the ClientConfig the gateway hands out. Feishu sends a
// random first-reconnect delay of up to 30 s; 0 keeps the reconnect test
// fast.
var GatewayConfig = map[string]int{"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 120}

// NewGateway starts a gateway on 127.0.0.1 for the app appID with its
// secret; it closes when the test ends. Point the SDK's long-connection
// client at URL (larkws.WithDomain).
func NewGateway(t testing.TB, appID, secret string) *Gateway {
	t.Helper()
	g := &Gateway{t: t, appID: appID, secret: secret, serviceID: 7, tickets: map[string]bool{}, pending: map[string]chan Answer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /callback/ws/endpoint", g.endpoint)
	mux.HandleFunc("GET /ws/v2", g.accept)
	g.srv = httptest.NewServer(mux)
	g.URL = g.srv.URL
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

func (g *Gateway) endpoint(w http.ResponseWriter, r *http.Request) {
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
	_ = json.NewEncoder(w).Encode(map[string]any{"code": 0, "msg": "ok", "data": map[string]any{"URL": u, "ClientConfig": GatewayConfig}})
}

func (g *Gateway) accept(w http.ResponseWriter, r *http.Request) {
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
			cfg, _ := json.Marshal(GatewayConfig)
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
			ch <- Answer{Frame: f, Code: p.Code, Data: p.Data}
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

// Connections waits until the client has opened n WebSockets and returns
// the newest.
func (g *Gateway) Connections(n int) *gatewayConn {
	g.t.Helper()
	var c *gatewayConn
	testkit.Eventually(g.t, fmt.Sprintf("%d long connection(s)", n), func() bool {
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

// Deliver pushes payload (an event or callback JSON) on the newest
// connection as one data frame and waits for the client's response frame.
func (g *Gateway) Deliver(payload []byte) Answer {
	g.t.Helper()
	c := g.Connections(1)
	n := g.seq.Add(1)
	id := fmt.Sprintf("frame_%s_%d", g.appID, n)
	ch := make(chan Answer, 1)
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
		return Answer{}
	}
}

// MustDeliver delivers payload and fails unless the client answered 200.
func (g *Gateway) MustDeliver(payload []byte) Answer {
	g.t.Helper()
	a := g.Deliver(payload)
	if a.Code != http.StatusOK {
		g.t.Fatalf("response frame code %d (data %s), want 200", a.Code, a.Data)
	}
	return a
}

// Drop closes the newest connection from the server side, as a Feishu
// node going away would.
func (g *Gateway) Drop() {
	g.t.Helper()
	c := g.Connections(1)
	c.ws.Close()
}

// Pings is every ping control frame the client sent.
func (g *Gateway) Pings() []larkws.Frame {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]larkws.Frame(nil), g.pings...)
}

// Endpoints is how many times the client asked for a connection URL.
func (g *Gateway) Endpoints() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.endpoints
}

// ServiceID is the service id the gateway puts in its connection URLs.
func (g *Gateway) ServiceID() int32 { return g.serviceID }
