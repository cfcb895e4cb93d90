package feishufake

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"kbbot/deploy/testkit"

	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
)

// answer is one decoded answer of the fake.
type answer struct {
	status int
	header http.Header
	Code   int             `json:"code"`
	Msg    string          `json:"msg"`
	Data   json.RawMessage `json:"data"`
	Error  struct {
		PermissionViolations []struct{ Type, Subject string } `json:"permission_violations"`
	} `json:"error"`
}

// get calls the fake as app appID would.
func get(t *testing.T, s *Server, appID, path string, q url.Values) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokenFor(appID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return a
}

type listData struct {
	Items     []map[string]any `json:"items"`
	PageToken *string          `json:"page_token"`
	HasMore   bool             `json:"has_more"`
}

func (a answer) list(t *testing.T) listData {
	t.Helper()
	if a.Code != 0 {
		t.Fatalf("HTTP %d, code %d: %s", a.status, a.Code, a.Msg)
	}
	var d listData
	if err := json.Unmarshal(a.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func newWiki(t *testing.T) *Server {
	s := New("ou_bot")
	t.Cleanup(s.Close)
	return s
}

// titles pages through a node list and returns the titles, and how many
// pages it took.
func titles(t *testing.T, s *Server, space, parent string, size int) ([]string, int) {
	t.Helper()
	var out []string
	q := url.Values{"page_size": {strconv.Itoa(size)}}
	if parent != "" {
		q.Set("parent_node_token", parent)
	}
	for pages := 1; pages < 100; pages++ {
		d := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/"+space+"/nodes", q).list(t)
		for _, it := range d.Items {
			out = append(out, it["title"].(string))
		}
		if !d.HasMore {
			if d.PageToken != nil {
				t.Error("page_token on the last page")
			}
			return out, pages
		}
		q.Set("page_token", *d.PageToken)
	}
	t.Fatal("the list never ended")
	return nil, 0
}

func TestWikiTreeEdits(t *testing.T) {
	s := newWiki(t)
	s.AddSpace("7001", "Eng")
	s.AddSpace("7002", "Ops")
	a, _ := s.AddDocx("7001", "", "A")
	b, bDoc := s.AddDocx("7001", "", "B")
	b1, b1Doc := s.AddDocx("7001", b, "B1")
	s.AddDocx("7001", b1, "B1a")
	s.AddNode("7001", a, "mindnote", "A map")

	if got, _ := titles(t, s, "7001", "", 50); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("top = %v", got)
	}
	s.MoveNode(b1, "7001", a)
	if got, _ := titles(t, s, "7001", a, 50); !slices.Equal(got, []string{"A map", "B1"}) {
		t.Errorf("children of A after the move = %v", got)
	}
	if got, _ := titles(t, s, "7001", b, 50); len(got) != 0 {
		t.Errorf("children of B after the move = %v", got)
	}
	s.MoveNode(b, "7002", "")
	if got, _ := titles(t, s, "7002", "", 50); !slices.Equal(got, []string{"B"}) {
		t.Errorf("Ops after moving B there = %v", got)
	}
	s.DeleteNode(a)
	if got, _ := titles(t, s, "7001", "", 50); len(got) != 0 {
		t.Errorf("Eng after deleting A = %v", got)
	}
	if a := get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+b1Doc, nil); a.status != 400 || a.Code != CodeDocxDeleted {
		t.Errorf("a document under a deleted node: HTTP %d code %d, want 400 %d", a.status, a.Code, CodeDocxDeleted)
	}
	if a := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/get_node", url.Values{"token": {b1}}); a.Code != CodeWikiNotFound {
		t.Errorf("get_node of a deleted node: code %d", a.Code)
	}
	if a := get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+bDoc, nil); a.Code != 0 {
		t.Errorf("the moved document: code %d", a.Code)
	}
}

func TestWikiPagingAndEmptyPages(t *testing.T) {
	s := newWiki(t)
	s.AddSpace("7001", "Eng")
	for i := range 5 {
		s.AddDocx("7001", "", "doc"+strconv.Itoa(i))
	}
	want := []string{"doc0", "doc1", "doc2", "doc3", "doc4"}
	if got, pages := titles(t, s, "7001", "", 2); !slices.Equal(got, want) || pages != 3 {
		t.Errorf("page_size 2: %v in %d pages, want 3", got, pages)
	}
	s.Wiki.PageSize = 2
	if got, pages := titles(t, s, "7001", "", 50); !slices.Equal(got, want) || pages != 3 {
		t.Errorf("PageSize 2: %v in %d pages, want 3", got, pages)
	}
	s.Wiki.EmptyPages = 1
	if got, pages := titles(t, s, "7001", "", 50); !slices.Equal(got, want) || pages != 6 {
		t.Errorf("with empty pages: %v in %d pages, want 6", got, pages)
	}
	for _, tc := range []struct {
		q    url.Values
		code int
	}{
		{url.Values{"page_size": {"51"}}, CodeWikiParam},
		{url.Values{"page_size": {"0"}}, CodeWikiParam},
		{url.Values{"page_token": {"nonsense"}}, CodeWikiParam},
	} {
		if a := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/7001/nodes", tc.q); a.status != 400 || a.Code != tc.code {
			t.Errorf("%v: HTTP %d code %d, want 400 %d", tc.q, a.status, a.Code, tc.code)
		}
	}
	if a := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces", url.Values{"page_size": {"51"}}); a.status != 400 || a.Code != CodeWikiParam {
		t.Errorf("spaces page_size 51: HTTP %d code %d", a.status, a.Code)
	}
}

func TestNodeFields(t *testing.T) {
	s := newWiki(t)
	clock := testkit.NewClock(time.Unix(1642402428, 0))
	s.Now = clock.Now
	s.AddSpace("7001", "Eng")
	s.AddSpace("7002", "HR")
	node, doc := s.AddDocx("7001", "", "Guide")
	origin, originDoc := s.AddDocx("7002", "", "Handbook")
	s.AddShortcut("7001", "", origin)
	clock.Advance(time.Hour)
	s.EditDocx(doc, Text(Run("new")))

	items := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/7001/nodes", nil).list(t).Items
	if len(items) != 2 {
		t.Fatalf("items = %v", items)
	}
	g, sc := items[0], items[1]
	if g["node_token"] != node || g["obj_token"] != doc || g["obj_type"] != "docx" || g["node_type"] != "origin" ||
		g["obj_edit_time"] != "1642406028" || g["obj_create_time"] != "1642402428" || g["has_child"] != false {
		t.Errorf("origin node = %v", g)
	}
	if sc["node_type"] != "shortcut" || sc["origin_node_token"] != origin || sc["origin_space_id"] != "7002" ||
		sc["obj_token"] != originDoc || sc["title"] != "Handbook" {
		t.Errorf("shortcut = %v", sc)
	}
	var d struct {
		Document struct {
			RevisionID int `json:"revision_id"`
		} `json:"document"`
	}
	a := get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+doc, nil)
	if err := json.Unmarshal(a.Data, &d); err != nil || d.Document.RevisionID != 2 {
		t.Errorf("revision after one edit = %d (%v), want 2", d.Document.RevisionID, err)
	}
	for _, tc := range []struct {
		q    url.Values
		want string
		code int
	}{
		{url.Values{"token": {node}}, node, 0},
		{url.Values{"token": {node}, "obj_type": {"wiki"}}, node, 0},
		{url.Values{"token": {doc}, "obj_type": {"docx"}}, node, 0},
		{url.Values{"token": {doc}}, "", CodeWikiNotFound},
		{url.Values{"token": {"doxnotinthewiki"}, "obj_type": {"docx"}}, "", CodeWikiNotFound},
		{url.Values{"obj_type": {"wiki"}}, "", CodeWikiParam},
		{url.Values{"token": {node}, "obj_type": {"pdf"}}, "", CodeWikiParam},
	} {
		a := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/get_node", tc.q)
		if a.Code != tc.code {
			t.Errorf("get_node %v: code %d, want %d", tc.q, a.Code, tc.code)
			continue
		}
		var got struct {
			Node struct {
				NodeToken string `json:"node_token"`
			} `json:"node"`
		}
		_ = json.Unmarshal(a.Data, &got)
		if got.Node.NodeToken != tc.want {
			t.Errorf("get_node %v = %q, want %q", tc.q, got.Node.NodeToken, tc.want)
		}
	}
}

func TestAccessAndScopes(t *testing.T) {
	s := newWiki(t)
	s.RateLimit(OpDocxGet, 0, 0)
	s.RateLimit(OpDocxBlocks, 0, 0)
	s.AddSpace("7001", "Eng")
	s.AddSpace("7002", "Secret")
	_, doc := s.AddDocx("7001", "", "Open")
	_, hidden := s.AddDocx("7001", "", "Hidden")
	_, secret := s.AddDocx("7002", "", "Plans")
	s.UnshareSpace("7002")
	s.UnshareDocument(hidden)

	spaces := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces", nil).list(t).Items
	if len(spaces) != 1 || spaces[0]["space_id"] != "7001" {
		t.Errorf("spaces = %v, want only the shared one", spaces)
	}
	for _, tc := range []struct {
		path   string
		status int
		code   int
	}{
		{"/open-apis/wiki/v2/spaces/7002", 400, CodeWikiNoAccess},
		{"/open-apis/wiki/v2/spaces/7002/nodes", 400, CodeWikiNoAccess},
		{"/open-apis/wiki/v2/spaces/7999", 400, CodeWikiNotFound},
		{"/open-apis/docx/v1/documents/" + secret, 403, CodeDocxNoAccess},
		{"/open-apis/docx/v1/documents/" + hidden, 403, CodeDocxNoAccess},
		{"/open-apis/docx/v1/documents/" + hidden + "/blocks", 403, CodeDocxNoAccess},
		{"/open-apis/docx/v1/documents/doxnosuch", 404, CodeDocxNotFound},
		{"/open-apis/docx/v1/documents/" + doc, 200, 0},
	} {
		if a := get(t, s, "cli_t", tc.path, nil); a.status != tc.status || a.Code != tc.code {
			t.Errorf("%s: HTTP %d code %d, want %d %d", tc.path, a.status, a.Code, tc.status, tc.code)
		}
	}

	s.MissingScope("docx:document:readonly")
	a := get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+doc+"/blocks", nil)
	want := "Access denied. One of the following scopes is required: [docx:document, docx:document:readonly]"
	if a.Code != CodeMissingScope || a.Msg != want || len(a.Error.PermissionViolations) != 2 ||
		a.Error.PermissionViolations[0].Subject != "docx:document" {
		t.Errorf("missing scope: code %d msg %q violations %v", a.Code, a.Msg, a.Error.PermissionViolations)
	}
	if a := get(t, s, "cli_t", "/open-apis/wiki/v2/spaces", nil); a.Code != 0 {
		t.Errorf("the wiki APIs need no docx scope: code %d", a.Code)
	}
	s.GrantScope("docx:document")
	if a := get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+doc, nil); a.Code != 0 {
		t.Errorf("any one scope will do: code %d", a.Code)
	}
}

func TestRateLimitsAsDocumented(t *testing.T) {
	s := newWiki(t)
	clock := testkit.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	s.Now = clock.Now
	s.AddSpace("7001", "Eng")
	_, doc := s.AddDocx("7001", "", "Doc")
	spaces, blocks := "/open-apis/wiki/v2/spaces", "/open-apis/docx/v1/documents/"+doc+"/blocks"

	// 100 wiki calls spread over the first 30 s pass; the 101st is refused
	// until 60 s after the first.
	for i := range 100 {
		if a := get(t, s, "cli_a", spaces, nil); a.Code != 0 {
			t.Fatalf("call %d: HTTP %d code %d", i+1, a.status, a.Code)
		}
		clock.Advance(300 * time.Millisecond)
	}
	clock.Advance(250 * time.Millisecond) // 29.75 s before the window opens: reset rounds up
	a := get(t, s, "cli_a", spaces, nil)
	if a.status != 429 || a.Code != CodeRateLimit || a.Msg != "request trigger frequency limit" ||
		a.header.Get("x-ogw-ratelimit-limit") != "100" || a.header.Get("x-ogw-ratelimit-reset") != "30" {
		t.Errorf("101st wiki call: HTTP %d code %d %q, limit %q reset %q; want 429 99991400, 100, 30",
			a.status, a.Code, a.Msg, a.header.Get("x-ogw-ratelimit-limit"), a.header.Get("x-ogw-ratelimit-reset"))
	}
	if a := get(t, s, "cli_a", "/open-apis/wiki/v2/spaces/7001", nil); a.Code != 0 {
		t.Errorf("another wiki API has a window of its own: code %d", a.Code)
	}
	if a := get(t, s, "cli_b", spaces, nil); a.Code != 0 {
		t.Errorf("another app has a window of its own: code %d", a.Code)
	}
	clock.Advance(29*time.Second + 750*time.Millisecond) // 60 s after the first call
	if a := get(t, s, "cli_a", spaces, nil); a.Code != 0 {
		t.Errorf("after the reset: HTTP %d code %d", a.status, a.Code)
	}

	for i := range 5 {
		if a := get(t, s, "cli_a", blocks, nil); a.Code != 0 {
			t.Fatalf("docx call %d: code %d", i+1, a.Code)
		}
	}
	a = get(t, s, "cli_a", blocks, nil)
	if a.status != 400 || a.Code != CodeRateLimit || a.header.Get("x-ogw-ratelimit-reset") != "1" {
		t.Errorf("6th docx call in a second: HTTP %d code %d reset %q, want 400 99991400 1", a.status, a.Code, a.header.Get("x-ogw-ratelimit-reset"))
	}
	clock.Advance(time.Second)
	if a := get(t, s, "cli_a", blocks, nil); a.Code != 0 {
		t.Errorf("a second later: code %d", a.Code)
	}
	s.RateLimit(OpDocxBlocks, 0, 0)
	for range 10 {
		if a := get(t, s, "cli_a", blocks, nil); a.Code != 0 {
			t.Fatalf("limit off: code %d", a.Code)
		}
	}
}

func TestBlocksList(t *testing.T) {
	s := newWiki(t)
	s.RateLimit(OpDocxBlocks, 0, 0)
	s.AddSpace("7001", "Eng")
	body := []Block{Heading(1, Run("h")), Bullet(Run("a")).With(Bullet(Run("a.1"))), Table(2, TextCells("1", "2", "3", "4")...)}
	_, doc := s.AddDocx("7001", "", "Doc", body...)
	path := "/open-apis/docx/v1/documents/" + doc + "/blocks"

	var all []*larkdocx.Block
	q := url.Values{"page_size": {"3"}}
	for range 20 {
		d := get(t, s, "cli_t", path, q)
		var page struct {
			Items     []*larkdocx.Block `json:"items"`
			PageToken string            `json:"page_token"`
			HasMore   bool              `json:"has_more"`
		}
		if err := json.Unmarshal(d.Data, &page); err != nil || d.Code != 0 {
			t.Fatalf("code %d: %v", d.Code, err)
		}
		all = append(all, page.Items...)
		if !page.HasMore {
			break
		}
		q.Set("page_token", page.PageToken)
	}
	// page, heading, bullet, nested bullet, table, 4 cells with a paragraph each.
	if len(all) != 13 {
		t.Fatalf("%d blocks, want 13", len(all))
	}
	byID := map[string]*larkdocx.Block{}
	for _, b := range all {
		byID[*b.BlockId] = b
	}
	root := all[0]
	if *root.BlockId != doc || len(root.Children) != 3 {
		t.Fatalf("root = %+v", root)
	}
	for _, b := range all[1:] {
		p := byID[*b.ParentId]
		if p == nil || !slices.Contains(p.Children, *b.BlockId) {
			t.Errorf("block %s is not among its parent's children", *b.BlockId)
		}
	}
	table := byID[root.Children[2]]
	if !slices.Equal(table.Table.Cells, table.Children) || *table.Table.Property.RowSize != 2 {
		t.Errorf("table cells %v, children %v, rows %d", table.Table.Cells, table.Children, *table.Table.Property.RowSize)
	}

	for _, tc := range []struct {
		q      url.Values
		status int
		code   int
	}{
		{url.Values{"page_size": {"501"}}, 400, CodeDocxParam},
		{url.Values{"page_token": {"bogus"}}, 400, CodeDocxPageToken},
		{url.Values{"document_revision_id": {"0"}}, 400, CodeDocxParam},
		{url.Values{"document_revision_id": {"2"}}, 400, CodeDocxParam},
		{url.Values{"document_revision_id": {"1"}}, 200, 0},
		{url.Values{"document_revision_id": {"-1"}, "page_size": {"500"}}, 200, 0},
	} {
		if a := get(t, s, "cli_t", path, tc.q); a.status != tc.status || a.Code != tc.code {
			t.Errorf("%v: HTTP %d code %d, want %d %d", tc.q, a.status, a.Code, tc.status, tc.code)
		}
	}
	s.EditDocx(doc, Text(Run("v2")))
	if a := get(t, s, "cli_t", path, url.Values{"document_revision_id": {"1"}}); a.status != 403 || a.Code != CodeDocxNoAccess {
		t.Errorf("an old revision: HTTP %d code %d, want 403 %d", a.status, a.Code, CodeDocxNoAccess)
	}
	s.Wiki.BlockPageSize = 1
	d := get(t, s, "cli_t", path, nil).list(t)
	if len(d.Items) != 1 || !d.HasMore {
		t.Errorf("BlockPageSize 1: %d items, has_more %v", len(d.Items), d.HasMore)
	}
}

func TestCallsAreRecorded(t *testing.T) {
	s := newWiki(t)
	s.AddSpace("7001", "Eng")
	_, doc := s.AddDocx("7001", "", "Doc")
	get(t, s, "cli_t", "/open-apis/wiki/v2/spaces", nil)
	get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/7001", nil)
	get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/7001/nodes", nil)
	get(t, s, "cli_t", "/open-apis/wiki/v2/spaces/get_node", url.Values{"token": {"x"}})
	get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+doc, nil)
	get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+doc+"/blocks", nil)
	s.Fail(Fault{Op: OpDocxGet, Times: 1, Status: 500})
	if a := get(t, s, "cli_t", "/open-apis/docx/v1/documents/"+doc, nil); a.status != 500 {
		t.Errorf("injected fault: HTTP %d", a.status)
	}
	for op, want := range map[string]int{OpWikiSpaces: 1, OpWikiSpace: 1, OpWikiNodes: 1, OpWikiGetNode: 1, OpDocxGet: 2, OpDocxBlocks: 1} {
		if got := s.Calls(op); got != want {
			t.Errorf("Calls(%s) = %d, want %d", op, got, want)
		}
	}
}

func TestDocumentBuilders(t *testing.T) {
	blocks := Document("doxA", "Title",
		Text(Link("site", "https://example.com/a b?q=1&r=(2)")),
		OrderedFrom("3", Run("three")),
		Table(2, TextCells("a", "b", "c", "d")...).Merge(0, 1, 2),
	)
	link := *blocks[1].Text.Elements[0].TextRun.TextElementStyle.Link.Url
	if link != "https%3A%2F%2Fexample.com%2Fa%20b%3Fq%3D1%26r%3D%282%29" {
		t.Errorf("link url = %q, want it encoded like encodeURIComponent", link)
	}
	if got, err := url.PathUnescape(link); err != nil || got != "https://example.com/a b?q=1&r=(2)" {
		t.Errorf("decoded = %q, %v", got, err)
	}
	if *blocks[2].Ordered.Style.Sequence != "3" {
		t.Error("sequence not set")
	}
	m := blocks[3].Table.Property.MergeInfo
	if *m[0].ColSpan != 2 || *m[1].ColSpan != 1 {
		t.Errorf("merge info %v", m)
	}
	// Building again gives the same ids: the builders keep no state.
	again := Document("doxA", "Title", Text(Run("x")))
	if *again[1].BlockId != "doxA_1" {
		t.Errorf("id %s", *again[1].BlockId)
	}
}
