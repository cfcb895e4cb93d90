package feishufake

// The fake wiki and docx Open API: wiki spaces with trees of nodes, and
// docx documents made of blocks (docx.go builds them, wikigen.go makes
// whole spaces for benchmarks). The answers have the documented shapes,
// limits and error codes; where the docs are silent the fake says what it
// assumes.

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
)

// Wiki and docx operations, for Request.Op, Fault.Op, Calls and RateLimit.
const (
	OpWikiSpaces  = "wiki_spaces"   // GET wiki/v2/spaces
	OpWikiSpace   = "wiki_space"    // GET wiki/v2/spaces/:space_id
	OpWikiNodes   = "wiki_nodes"    // GET wiki/v2/spaces/:space_id/nodes
	OpWikiGetNode = "wiki_get_node" // GET wiki/v2/spaces/get_node
	OpDocxGet     = "docx_get"      // GET docx/v1/documents/:document_id
	OpDocxBlocks  = "docx_blocks"   // GET docx/v1/documents/:document_id/blocks
)

// Wiki and docx error codes the fake answers with, from the error tables
// of https://open.feishu.cn/document/server-docs/docs/wiki-v2/space-node/list
// (wiki, all HTTP 400) and
// https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/list
// (docx, with the HTTP status beside each).
const (
	CodeWikiParam     = 131002  // 400 param err
	CodeWikiNotFound  = 131005  // 400 not found: space, node, or a document not in the wiki
	CodeWikiNoAccess  = 131006  // 400 permission denied: the app is not a member of the space
	CodeDocxParam     = 1770001 // 400 invalid param
	CodeDocxNotFound  = 1770002 // 404 not found
	CodeDocxDeleted   = 1770003 // 400 resource deleted
	CodeDocxPageToken = 1770022 // 400 invalid page token
	CodeDocxNoAccess  = 1770032 // 403 forbidden: the app may not read the document

	// CodeRateLimit is the frequency limit
	// (https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control).
	CodeRateLimit = 99991400
	// CodeMissingScope is an API the app holds none of the scopes of
	// (https://open.feishu.cn/document/faq/trouble-shooting/how-to-fix-the-99991672-error).
	CodeMissingScope = 99991672
)

// WikiOptions shape the fake's wiki and docx answers. Set them before the
// first call.
type WikiOptions struct {
	// PageSize, when set, caps every wiki list page (spaces, nodes) below
	// the page_size asked for, so a test sees several pages at every level.
	PageSize int
	// BlockPageSize does the same for the blocks list.
	BlockPageSize int
	// EmptyPages is how many empty pages with has_more true each wiki list
	// answers before every page of items, as permission filtering makes the
	// real lists do.
	EmptyPages int
}

// Page sizes of the lists. The spaces list says 默认值 20, 最大值 50
// (https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/list);
// the nodes list says 最大值 50 and gives no default, so the fake assumes
// 20 as for spaces; blocks: 默认值 500, 最大值 500
// (https://open.feishu.cn/document/server-docs/docs/docx-v1/document/list).
const (
	wikiDefaultPage  = 20
	wikiMaxPage      = 50
	blockDefaultPage = 500
	blockMaxPage     = 500
)

// rateLimit is at most n accepted calls in any window of per.
type rateLimit struct {
	n   int
	per time.Duration
}

// documentedLimits are the per-app limits of each API: 100 次/分钟 on every
// wiki page's 接口频率限制 row, and "单个应用调用频率上限为每秒 5 次" on the docx
// read pages (https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/get).
// They are on unless a test changes them (RateLimit).
var documentedLimits = map[string]rateLimit{
	OpWikiSpaces:  {100, time.Minute},
	OpWikiSpace:   {100, time.Minute},
	OpWikiNodes:   {100, time.Minute},
	OpWikiGetNode: {100, time.Minute},
	OpDocxGet:     {5, time.Second},
	OpDocxBlocks:  {5, time.Second},
}

// scopesOf is each API's scopes, any one of which lets the app call it
// (the 权限要求 rows of the wiki and docx pages). The fake's app starts with
// the read-only pair; MissingScope takes one away.
var scopesOf = map[string][]string{
	OpWikiSpaces:  {"wiki:space:retrieve", "wiki:wiki", "wiki:wiki:readonly"},
	OpWikiSpace:   {"wiki:space:read", "wiki:wiki", "wiki:wiki:readonly"},
	OpWikiNodes:   {"wiki:node:retrieve", "wiki:wiki", "wiki:wiki:readonly"},
	OpWikiGetNode: {"wiki:node:read", "wiki:wiki", "wiki:wiki:readonly"},
	OpDocxGet:     {"docx:document", "docx:document:readonly"},
	OpDocxBlocks:  {"docx:document", "docx:document:readonly"},
	// Creating, updating and streaming into a card entity
	// (https://open.feishu.cn/document/cardkit-v1/card/create and the
	// update, settings and element content pages).
	OpCardCreate:   {"cardkit:card:write"},
	OpCardContent:  {"cardkit:card:write"},
	OpCardUpdate:   {"cardkit:card:write"},
	OpCardSettings: {"cardkit:card:write"},
}

// wikiState is the fake's wiki; Server.mu guards it.
type wikiState struct {
	spaces  []*wikiSpace // in the order they were added
	spaceBy map[string]*wikiSpace
	nodes   map[string]*wikiNode
	docs    map[string]*wikiDoc
	scopes  map[string]bool
	limits  map[string]rateLimit
	calls   map[string][]time.Time // app and op → accepted calls still in the window
	seq     int
}

type wikiSpace struct {
	id, name string
	unshared bool
	top      []string // top-level node tokens, in order
}

type wikiNode struct {
	space, token, parent, title string
	objType, objToken           string
	shortcutOf                  string // the origin node of a shortcut
	children                    []string
	created, edited             time.Time
}

type wikiDoc struct {
	id, title  string
	node       string // the docx node holding it
	revision   int
	blocks     []*larkdocx.Block
	nextBlock  int // the number of the next block id
	unreadable bool
	deleted    bool
}

// wikiRoutes serves the wiki and docx APIs on mux.
func (s *Server) wikiRoutes(mux *http.ServeMux) {
	s.wiki = wikiState{spaceBy: map[string]*wikiSpace{}, nodes: map[string]*wikiNode{}, docs: map[string]*wikiDoc{},
		scopes: map[string]bool{"wiki:wiki:readonly": true, "docx:document:readonly": true, "cardkit:card:write": true},
		limits: map[string]rateLimit{}, calls: map[string][]time.Time{}}
	for op, l := range documentedLimits {
		s.wiki.limits[op] = l
	}
	mux.HandleFunc("GET /open-apis/wiki/v2/spaces", s.wikiCall(OpWikiSpaces, s.wikiSpaces))
	mux.HandleFunc("GET /open-apis/wiki/v2/spaces/get_node", s.wikiCall(OpWikiGetNode, s.wikiGetNode))
	mux.HandleFunc("GET /open-apis/wiki/v2/spaces/{space_id}", s.wikiCall(OpWikiSpace, s.wikiSpace))
	mux.HandleFunc("GET /open-apis/wiki/v2/spaces/{space_id}/nodes", s.wikiCall(OpWikiNodes, s.wikiNodes))
	mux.HandleFunc("GET /open-apis/docx/v1/documents/{document_id}", s.wikiCall(OpDocxGet, s.docxGet))
	mux.HandleFunc("GET /open-apis/docx/v1/documents/{document_id}/blocks", s.wikiCall(OpDocxBlocks, s.docxBlocks))
}

// wikiCall records a wiki or docx call as op and, under the server's lock,
// passes it to h once admit lets it through (fault, token, rate limit,
// scope).
func (s *Server) wikiCall(op string, h func(w http.ResponseWriter, r *http.Request, rec Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := wikiRequest(op, r)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.admit(w, r, rec) {
			h(w, r, rec)
		}
	}
}

// AddSpace adds a wiki space shared with the app. id is the space_id
// (Feishu's are 19 digits).
func (s *Server) AddSpace(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wiki.spaceBy[id] != nil {
		panic("feishufake: space " + id + " added twice")
	}
	sp := &wikiSpace{id: id, name: name}
	s.wiki.spaces = append(s.wiki.spaces, sp)
	s.wiki.spaceBy[id] = sp
}

// AddDocx adds a docx node titled title under parent ("" for the top
// level) with a document made of body, and returns the node token and the
// document id (the node's obj_token).
func (s *Server) AddDocx(spaceID, parent, title string, body ...Block) (node, documentID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.addNodeLocked(spaceID, parent, "docx", title)
	d := &wikiDoc{id: n.objToken, title: title, revision: 1, node: n.token}
	d.blocks, d.nextBlock = flatten(d.id, title, 1, body)
	s.wiki.docs[d.id] = d
	return n.token, d.id
}

// AddNode adds a node of another obj_type — doc, sheet, bitable, file,
// mindnote or slides — and returns its token. The fake serves no content
// for them.
func (s *Server) AddNode(spaceID, parent, objType, title string) string {
	switch objType {
	case "doc", "sheet", "bitable", "file", "mindnote", "slides":
	default:
		panic("feishufake: AddNode takes doc, sheet, bitable, file, mindnote or slides, not " + objType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addNodeLocked(spaceID, parent, objType, title).token
}

// AddShortcut adds under parent a shortcut to the node origin, which may
// be in another space, and returns the shortcut's token. The list shows
// it with node_type shortcut, the origin's obj_token, obj_type and title,
// and origin_node_token / origin_space_id naming the origin.
func (s *Server) AddShortcut(spaceID, parent, origin string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.wiki.nodes[origin]
	if o == nil {
		panic("feishufake: no node " + origin)
	}
	n := s.addNodeLocked(spaceID, parent, o.objType, o.title)
	n.objToken, n.shortcutOf = o.objToken, origin
	return n.token
}

var objPrefix = map[string]string{"docx": "doxfake", "doc": "docfake", "sheet": "shtfake", "bitable": "bscfake",
	"file": "boxfake", "mindnote": "bmnfake", "slides": "sldfake"}

// addNodeLocked makes a node; its tokens are 27 characters like
// Feishu's.
func (s *Server) addNodeLocked(spaceID, parent, objType, title string) *wikiNode {
	sp := s.wiki.spaceBy[spaceID]
	if sp == nil {
		panic("feishufake: no space " + spaceID)
	}
	s.wiki.seq++
	now := s.now()
	n := &wikiNode{space: spaceID, token: fmt.Sprintf("wikfake%020d", s.wiki.seq), parent: parent, title: title,
		objType: objType, objToken: fmt.Sprintf("%s%020d", objPrefix[objType], s.wiki.seq), created: now, edited: now}
	s.linkLocked(n, sp, parent)
	s.wiki.nodes[n.token] = n
	return n
}

// linkLocked puts n last among parent's children in sp.
func (s *Server) linkLocked(n *wikiNode, sp *wikiSpace, parent string) {
	n.space, n.parent = sp.id, parent
	if parent == "" {
		sp.top = append(sp.top, n.token)
		return
	}
	p := s.wiki.nodes[parent]
	if p == nil || p.space != sp.id {
		panic("feishufake: no node " + parent + " in space " + sp.id)
	}
	p.children = append(p.children, n.token)
}

// EditDocx replaces a document's blocks with body, as an edit does: the
// revision goes up by one and obj_edit_time becomes Now. The new blocks
// get new ids.
func (s *Server) EditDocx(documentID string, body ...Block) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.wiki.docs[documentID]
	if d == nil || d.deleted {
		panic("feishufake: no document " + documentID)
	}
	d.revision++
	d.blocks, d.nextBlock = flatten(d.id, d.title, d.nextBlock, body)
	s.wiki.nodes[d.node].edited = s.now()
}

// DeleteNode removes a node and its subtree; their documents answer
// "resource deleted" from then on.
func (s *Server) DeleteNode(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.wiki.nodes[token]
	if n == nil {
		panic("feishufake: no node " + token)
	}
	s.unlinkLocked(n)
	var drop func(string)
	drop = func(t string) {
		m := s.wiki.nodes[t]
		for _, c := range m.children {
			drop(c)
		}
		if d := s.wiki.docs[m.objToken]; d != nil && m.shortcutOf == "" {
			d.deleted = true
		}
		delete(s.wiki.nodes, t)
	}
	drop(token)
}

// MoveNode moves a node, with its subtree, to be the last child of parent
// ("" for the top level) in space spaceID, which may be another space.
func (s *Server) MoveNode(token, spaceID, parent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.wiki.nodes[token]
	sp := s.wiki.spaceBy[spaceID]
	if n == nil || sp == nil {
		panic("feishufake: no node " + token + " or space " + spaceID)
	}
	for p := parent; p != ""; p = s.wiki.nodes[p].parent {
		if p == token {
			panic("feishufake: cannot move " + token + " under itself")
		}
	}
	s.unlinkLocked(n)
	s.linkLocked(n, sp, parent)
	var move func(*wikiNode)
	move = func(m *wikiNode) {
		m.space = spaceID
		for _, c := range m.children {
			move(s.wiki.nodes[c])
		}
	}
	move(n)
}

func (s *Server) unlinkLocked(n *wikiNode) {
	if n.parent == "" {
		sp := s.wiki.spaceBy[n.space]
		sp.top = slices.DeleteFunc(sp.top, func(t string) bool { return t == n.token })
		return
	}
	p := s.wiki.nodes[n.parent]
	p.children = slices.DeleteFunc(p.children, func(t string) bool { return t == n.token })
}

// UnshareSpace takes the app out of a space: the spaces list leaves it
// out, its wiki APIs answer 131006 and its documents 1770032.
func (s *Server) UnshareSpace(spaceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.wiki.spaceBy[spaceID]
	if sp == nil {
		panic("feishufake: no space " + spaceID)
	}
	sp.unshared = true
}

// UnshareDocument makes one document unreadable to the app: the docx
// APIs answer HTTP 403 with 1770032. Its node stays listed.
func (s *Server) UnshareDocument(documentID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.wiki.docs[documentID]
	if d == nil {
		panic("feishufake: no document " + documentID)
	}
	d.unreadable = true
}

// MissingScope takes a scope away from the app: every API none of whose
// scopes the app still holds answers 99991672 naming them. The app starts
// with wiki:wiki:readonly and docx:document:readonly.
func (s *Server) MissingScope(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.wiki.scopes, scope)
}

// GrantScope gives the app a scope.
func (s *Server) GrantScope(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wiki.scopes[scope] = true
}

// RateLimit sets op's limit to n accepted calls per app in any window of
// per; n of 0 turns it off. Every wiki and docx op starts at its
// documented limit.
func (s *Server) RateLimit(op string, n int, per time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wiki.limits[op] = rateLimit{n, per}
}

// DocumentBlocks is a document's blocks as the blocks list answers them,
// in pre-order with the page block first.
func (s *Server) DocumentBlocks(documentID string) []*larkdocx.Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.wiki.docs[documentID]; d != nil {
		return slices.Clone(d.blocks)
	}
	return nil
}

// wikiRequest is the record of one wiki or docx call.
func wikiRequest(op string, r *http.Request) Request {
	return Request{Op: op, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Auth: r.Header.Get("Authorization"), At: time.Now()}
}

// admit answers whatever stops a call before the API looks at it: an
// injected fault, a missing token, the rate limit, a missing scope. It
// returns false when it answered. The caller holds s.mu.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, rec Request) bool {
	if f := s.fault(rec.Op); f != nil {
		s.failed(w, rec, f)
		return false
	}
	if !authorized(r) {
		s.reject(w, rec, 401, 99991661, "missing access token")
		return false
	}
	if s.throttled(w, rec) {
		return false
	}
	return !s.refusedScope(w, rec)
}

// refusedScope answers 99991672 when the app holds none of rec.Op's
// scopes. The caller holds s.mu.
func (s *Server) refusedScope(w http.ResponseWriter, rec Request) bool {
	need := scopesOf[rec.Op]
	if len(need) == 0 || slices.ContainsFunc(need, func(sc string) bool { return s.wiki.scopes[sc] }) {
		return false
	}
	// The shape of https://open.feishu.cn/document/faq/trouble-shooting/how-to-fix-the-99991672-error.
	// That page shows no HTTP status; 400 is an assumption.
	list := strings.Join(need, ", ")
	var violations []map[string]any
	for _, sc := range need {
		violations = append(violations, map[string]any{"type": "action_scope_required", "subject": sc})
	}
	rec.Status, rec.Code = 400, CodeMissingScope
	s.reqs = append(s.reqs, rec)
	writeJSON(w, 400, map[string]any{"code": CodeMissingScope,
		"msg": "Access denied. One of the following scopes is required: [" + list + "]",
		"error": map[string]any{"log_id": "feishufake", "permission_violations": violations,
			"helps": []map[string]any{{"url": "https://open.feishu.cn/app/cli_fake/auth?q=" + strings.Join(need, ","),
				"description": "Learn more about scopes and how to add them: [" + list + "]"}}}})
	return true
}

// throttled answers a call over its op's limit, as the frequency-control
// page shows (https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control):
// code 99991400, msg "request trigger frequency limit", and the headers
// x-ogw-ratelimit-limit (the window's cap) and x-ogw-ratelimit-reset
// (seconds until the window lets a call through, rounded up). The wiki
// pages do not say which HTTP status they use; the fake answers the
// general rule's 429. The docx read pages say 400. Throttled calls do not
// count against the window (an assumption).
func (s *Server) throttled(w http.ResponseWriter, rec Request) bool {
	lim := s.wiki.limits[rec.Op]
	if lim.n <= 0 {
		return false
	}
	now := s.now()
	key := rec.Auth + " " + rec.Op
	calls := s.wiki.calls[key]
	i := 0
	for i < len(calls) && !calls[i].After(now.Add(-lim.per)) {
		i++
	}
	calls = calls[i:]
	if len(calls) < lim.n {
		s.wiki.calls[key] = append(calls, now)
		return false
	}
	s.wiki.calls[key] = calls
	reset := max(1, int(math.Ceil(calls[0].Add(lim.per).Sub(now).Seconds())))
	status := http.StatusTooManyRequests
	if strings.HasPrefix(rec.Op, "docx_") {
		status = http.StatusBadRequest
	}
	w.Header().Set("x-ogw-ratelimit-limit", strconv.Itoa(lim.n))
	w.Header().Set("x-ogw-ratelimit-reset", strconv.Itoa(reset))
	s.reject(w, rec, status, CodeRateLimit, "request trigger frequency limit")
	return true
}

// cursor is a position in a list: the offset of the next item and how
// many empty pages were answered there already. Its token form is the
// fake's own; any other token is refused.
type cursor struct{ off, empty int }

func (c cursor) token() string { return fmt.Sprintf("fakepage_%d_%d", c.off, c.empty) }

func parseCursor(tok string) (cursor, bool) {
	if tok == "" {
		return cursor{}, true
	}
	var c cursor
	if _, err := fmt.Sscanf(tok, "fakepage_%d_%d", &c.off, &c.empty); err != nil || c.off < 0 || c.empty < 0 || c.token() != tok {
		return cursor{}, false
	}
	return c, true
}

// paginate picks the page of a list of total items at token: items
// [lo, hi), and the next page's token, "" after the last. Before each
// page of items come empties empty pages.
func paginate(total int, tok string, size, empties int) (lo, hi int, next string, ok bool) {
	c, ok := parseCursor(tok)
	if !ok {
		return 0, 0, "", false
	}
	// The list may have shrunk since the token was made.
	c.off = min(c.off, total)
	if c.empty < empties {
		return c.off, c.off, cursor{c.off, c.empty + 1}.token(), true
	}
	hi = min(c.off+size, total)
	if hi < total {
		next = cursor{hi, 0}.token()
	}
	return c.off, hi, next, true
}

// pageSize reads page_size: def when absent, an error above max or
// below 1.
func pageSize(q string, def, most int) (int, bool) {
	if q == "" {
		return def, true
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > most {
		return 0, false
	}
	return n, true
}

// listPage answers one page of a list: items, has_more, and page_token
// when has_more is true ("当 has_more 为 true 时，会同时返回新的 page_token，否则不
// 返回 page_token", https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/list).
func listPage(items []any, next string) map[string]any {
	data := map[string]any{"items": items, "has_more": next != ""}
	if next != "" {
		data["page_token"] = next
	}
	return map[string]any{"code": 0, "msg": "success", "data": data}
}

// wikiPage pages a wiki list of total items; it answers a bad page_size or
// page_token itself and returns ok false.
func (s *Server) wikiPage(w http.ResponseWriter, r *http.Request, rec Request, total int) (lo, hi int, next string, ok bool) {
	size, ok := pageSize(r.URL.Query().Get("page_size"), wikiDefaultPage, wikiMaxPage)
	if !ok {
		s.reject(w, rec, 400, CodeWikiParam, fmt.Sprintf("param err: page_size must be 1 to %d", wikiMaxPage))
		return 0, 0, "", false
	}
	if s.Wiki.PageSize > 0 {
		size = min(size, s.Wiki.PageSize)
	}
	lo, hi, next, ok = paginate(total, r.URL.Query().Get("page_token"), size, s.Wiki.EmptyPages)
	if !ok {
		s.reject(w, rec, 400, CodeWikiParam, "param err: invalid page_token")
	}
	return lo, hi, next, ok
}

func (s *Server) wikiSpaces(w http.ResponseWriter, r *http.Request, rec Request) {
	// A space not shared with the app is not an error, it is left out
	// ("请确认应用或机器人拥有部分知识空间的访问权限，否则返回列表为空").
	var shared []*wikiSpace
	for _, sp := range s.wiki.spaces {
		if !sp.unshared {
			shared = append(shared, sp)
		}
	}
	lo, hi, next, ok := s.wikiPage(w, r, rec, len(shared))
	if !ok {
		return
	}
	items := []any{}
	for _, sp := range shared[lo:hi] {
		items = append(items, spaceJSON(sp))
	}
	s.succeed(w, rec, listPage(items, next))
}

func spaceJSON(sp *wikiSpace) map[string]any {
	return map[string]any{"space_id": sp.id, "name": sp.name, "description": "", "space_type": "team",
		"visibility": "private", "open_sharing": "closed"}
}

// readableSpace answers a space that is missing or not shared with the
// app and returns nil.
func (s *Server) readableSpace(w http.ResponseWriter, rec Request, id string) *wikiSpace {
	sp := s.wiki.spaceBy[id]
	switch {
	case sp == nil:
		s.reject(w, rec, 400, CodeWikiNotFound, "space not found")
		return nil
	case sp.unshared:
		s.reject(w, rec, 400, CodeWikiNoAccess, "wiki space permission denied")
		return nil
	}
	return sp
}

func (s *Server) wikiSpace(w http.ResponseWriter, r *http.Request, rec Request) {
	sp := s.readableSpace(w, rec, r.PathValue("space_id"))
	if sp == nil {
		return
	}
	s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{"space": spaceJSON(sp)}})
}

func (s *Server) wikiNodes(w http.ResponseWriter, r *http.Request, rec Request) {
	sp := s.readableSpace(w, rec, r.PathValue("space_id"))
	if sp == nil {
		return
	}
	children := sp.top
	if parent := r.URL.Query().Get("parent_node_token"); parent != "" {
		p := s.wiki.nodes[parent]
		if p == nil || p.space != sp.id {
			s.reject(w, rec, 400, CodeWikiNotFound, "node not found")
			return
		}
		children = p.children
	}
	lo, hi, next, ok := s.wikiPage(w, r, rec, len(children))
	if !ok {
		return
	}
	items := []any{}
	for _, t := range children[lo:hi] {
		items = append(items, s.nodeJSON(s.wiki.nodes[t]))
	}
	s.succeed(w, rec, listPage(items, next))
}

// nodeJSON is a node as the node APIs show it. An origin node names
// itself as origin_node_token, as the docs' example does; a shortcut
// shows its origin's document and title.
func (s *Server) nodeJSON(n *wikiNode) map[string]any {
	objToken, objType, title := n.objToken, n.objType, n.title
	nodeType, origin, originSpace := "origin", n.token, n.space
	if n.shortcutOf != "" {
		nodeType, origin = "shortcut", n.shortcutOf
		if o := s.wiki.nodes[n.shortcutOf]; o != nil {
			objToken, objType, title, originSpace = o.objToken, o.objType, o.title, o.space
		}
	}
	unix := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	return map[string]any{"space_id": n.space, "node_token": n.token, "obj_token": objToken, "obj_type": objType,
		"parent_node_token": n.parent, "node_type": nodeType, "origin_node_token": origin, "origin_space_id": originSpace,
		"has_child": len(n.children) > 0, "title": title,
		"obj_create_time": unix(n.created), "obj_edit_time": unix(n.edited), "node_create_time": unix(n.created),
		"creator": "ou_fake_author", "owner": "ou_fake_author", "node_creator": "ou_fake_author"}
}

func (s *Server) wikiGetNode(w http.ResponseWriter, r *http.Request, rec Request) {
	// https://open.feishu.cn/document/server-docs/docs/wiki-v2/space-node/get_node:
	// token is required; obj_type defaults to wiki.
	token, objType := r.URL.Query().Get("token"), r.URL.Query().Get("obj_type")
	var n *wikiNode
	switch objType {
	case "", "wiki":
		if token == "" {
			s.reject(w, rec, 400, CodeWikiParam, "param err: token is required")
			return
		}
		if n = s.wiki.nodes[token]; n == nil {
			s.reject(w, rec, 400, CodeWikiNotFound, "node not found")
			return
		}
	case "doc", "docx", "sheet", "mindnote", "bitable", "file", "slides":
		for _, m := range s.wiki.nodes {
			if m.objToken == token && m.objType == objType && m.shortcutOf == "" {
				n = m
			}
		}
		if n == nil {
			s.reject(w, rec, 400, CodeWikiNotFound, "document is not in wiki")
			return
		}
	default:
		s.reject(w, rec, 400, CodeWikiParam, "param err: obj_type "+objType)
		return
	}
	if s.readableSpace(w, rec, n.space) == nil {
		return
	}
	s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{"node": s.nodeJSON(n)}})
}

// readableDoc answers a document the app may not read and returns nil:
// unknown (404), deleted, refused to the app or in a space not shared
// with it (403: the app's access to a wiki document comes from the space).
func (s *Server) readableDoc(w http.ResponseWriter, rec Request, id string) *wikiDoc {
	d := s.wiki.docs[id]
	switch {
	case d == nil:
		s.reject(w, rec, 404, CodeDocxNotFound, "not found")
		return nil
	case d.deleted:
		s.reject(w, rec, 400, CodeDocxDeleted, "resource deleted")
		return nil
	case d.unreadable || s.wiki.spaceBy[s.wiki.nodes[d.node].space].unshared:
		s.reject(w, rec, 403, CodeDocxNoAccess, "forbidden")
		return nil
	}
	return d
}

func (s *Server) docxGet(w http.ResponseWriter, r *http.Request, rec Request) {
	d := s.readableDoc(w, rec, r.PathValue("document_id"))
	if d == nil {
		return
	}
	s.succeed(w, rec, map[string]any{"code": 0, "msg": "success", "data": map[string]any{"document": map[string]any{
		"document_id": d.id, "revision_id": d.revision, "title": d.title,
		"display_setting": map[string]any{"show_authors": true, "show_create_time": false, "show_pv": false,
			"show_uv": false, "show_like_count": false, "show_comment_count": false, "show_related_matters": false},
	}}})
}

func (s *Server) docxBlocks(w http.ResponseWriter, r *http.Request, rec Request) {
	q := r.URL.Query()
	size, ok := pageSize(q.Get("page_size"), blockDefaultPage, blockMaxPage)
	if !ok {
		s.reject(w, rec, 400, CodeDocxParam, fmt.Sprintf("invalid param: page_size must be 1 to %d", blockMaxPage))
		return
	}
	d := s.readableDoc(w, rec, r.PathValue("document_id"))
	if d == nil {
		return
	}
	// document_revision_id: -1 (the default) is the latest; "取值范围为：-1 或
	// 0 < revision_id <= 文档最新版本"
	// (https://open.feishu.cn/document/docs/docs/data-structure/document).
	// An older revision needs edit permission, which the fake's app lacks.
	rev := -1
	if v := q.Get("document_revision_id"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 || n < -1 || n > d.revision {
			s.reject(w, rec, 400, CodeDocxParam, "invalid param: document_revision_id "+v)
			return
		}
		rev = n
	}
	if rev != -1 && rev != d.revision {
		s.reject(w, rec, 403, CodeDocxNoAccess, "forbidden: an older revision needs edit permission")
		return
	}
	if s.Wiki.BlockPageSize > 0 {
		size = min(size, s.Wiki.BlockPageSize)
	}
	lo, hi, next, ok := paginate(len(d.blocks), q.Get("page_token"), size, 0)
	if !ok {
		s.reject(w, rec, 400, CodeDocxPageToken, "invalid page token")
		return
	}
	items := make([]any, 0, hi-lo)
	for _, b := range d.blocks[lo:hi] {
		items = append(items, b)
	}
	s.succeed(w, rec, listPage(items, next))
}
