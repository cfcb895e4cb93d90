package openapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/store/retry"

	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
	"golang.org/x/time/rate"
)

// allSpaces and allNodes are the loops a sync writes: on next, not on
// the length of a page.
func allSpaces(t *testing.T, c *Client) []Space {
	t.Helper()
	var out []Space
	tok := ""
	for range 1000 {
		page, next, err := c.ListSpaces(t.Context(), tok)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if tok = next; tok == "" {
			return out
		}
	}
	t.Fatal("the spaces list never ended")
	return nil
}

func allNodes(t *testing.T, c *Client, spaceID, parent string) []Node {
	t.Helper()
	var out []Node
	tok := ""
	for range 1000 {
		page, next, err := c.ListNodes(t.Context(), spaceID, parent, tok)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page {
			out = append(out, n)
			if n.HasChild {
				out = append(out, allNodes(t, c, spaceID, n.Token)...)
			}
		}
		if tok = next; tok == "" {
			return out
		}
	}
	t.Fatal("the nodes list never ended")
	return nil
}

func TestWikiListsPageThroughEmptyPages(t *testing.T) {
	fake := newFake(t)
	clock := testkit.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	fake.Wiki = feishufake.WikiOptions{PageSize: 2, EmptyPages: 2}
	fake.Now = clock.Now
	for i, name := range []string{"Eng", "Ops", "HR"} {
		fake.AddSpace([]string{"7001", "7002", "7003"}[i], name)
	}
	fake.UnshareSpace("7002")
	var want []string
	add := func(tok string) string { want = append(want, tok); return tok }
	a, _ := fake.AddDocx("7001", "", "A", feishufake.Text(feishufake.Run("a")))
	add(a)
	for _, title := range []string{"A1", "A2", "A3"} {
		n, _ := fake.AddDocx("7001", a, title)
		add(n)
	}
	a3 := want[len(want)-1]
	add(fake.AddNode("7001", a3, "sheet", "A3 sheet"))
	add(fake.AddNode("7001", "", "bitable", "B"))
	other, _ := fake.AddDocx("7003", "", "HR handbook")
	shortcut := add(fake.AddShortcut("7001", "", other))

	c := testClient(t, fake, "cli_wiki_paging", retry.Policy{Attempts: 1})
	spaces := allSpaces(t, c)
	if got := len(spaces); got != 2 || spaces[0] != (Space{"7001", "Eng"}) || spaces[1] != (Space{"7003", "HR"}) {
		t.Errorf("spaces = %v, want Eng and HR (Ops is not shared)", spaces)
	}
	nodes := allNodes(t, c, "7001", "")
	var got []string
	for _, n := range nodes {
		got = append(got, n.Token)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("nodes = %v, want %v", got, want)
	}
	for _, n := range nodes {
		switch n.Token {
		case a:
			if n.ObjType != "docx" || n.NodeType != "origin" || !n.HasChild || n.Title != "A" || n.SpaceID != "7001" || n.ObjToken == "" {
				t.Errorf("node A = %+v", n)
			}
			if !n.EditTime.Equal(clock.Now()) {
				t.Errorf("EditTime = %v, want %v", n.EditTime, clock.Now())
			}
		case shortcut:
			if n.NodeType != "shortcut" || n.OriginToken != other || n.OriginSpaceID != "7003" || n.Title != "HR handbook" || n.ObjType != "docx" {
				t.Errorf("shortcut = %+v", n)
			}
		}
	}
	for _, r := range fake.Requests() {
		if (r.Op == feishufake.OpWikiSpaces || r.Op == feishufake.OpWikiNodes) && r.Query.Get("page_size") != "50" {
			t.Errorf("%s asked page_size %q, want the maximum 50", r.Op, r.Query.Get("page_size"))
		}
	}
	// 2 shared spaces in pages of 2: one page of items after 2 empty
	// ones. A loop stopping at an empty page would have made 1 call.
	if n := fake.Calls(feishufake.OpWikiSpaces); n != 3 {
		t.Errorf("%d spaces calls, want 3", n)
	}
}

func TestGetNodeAndDocument(t *testing.T) {
	fake := newFake(t)
	fake.AddSpace("7001", "Eng")
	node, doc := fake.AddDocx("7001", "", "Runbook", feishufake.Heading(1, feishufake.Run("Start")))
	fake.EditDocx(doc, feishufake.Text(feishufake.Run("v2")))
	c := testClient(t, fake, "cli_wiki_get", retry.Policy{Attempts: 1})
	ctx := t.Context()

	sp, err := c.GetSpace(ctx, "7001")
	if err != nil || sp != (Space{"7001", "Eng"}) {
		t.Errorf("GetSpace = %+v, %v", sp, err)
	}
	byNode, err := c.GetNode(ctx, node, "")
	if err != nil || byNode.Token != node || byNode.ObjToken != doc {
		t.Errorf("GetNode(node) = %+v, %v", byNode, err)
	}
	byDoc, err := c.GetNode(ctx, doc, "docx")
	if err != nil || byDoc.Token != node {
		t.Errorf("GetNode(document, docx) = %+v, %v", byDoc, err)
	}
	d, err := c.GetDocument(ctx, doc)
	if err != nil || d != (Document{ID: doc, Title: "Runbook", Revision: 2}) {
		t.Errorf("GetDocument = %+v, %v", d, err)
	}
	for _, r := range fake.Requests() {
		if r.Op == feishufake.OpWikiGetNode && r.Query.Get("token") == node && r.Query.Has("obj_type") {
			t.Errorf("a node token was sent with obj_type %q; the default is wiki", r.Query.Get("obj_type"))
		}
	}
}

func TestListBlocksPages(t *testing.T) {
	fake := newFake(t)
	fake.Wiki.BlockPageSize = 3
	fake.AddSpace("7001", "Eng")
	var body []feishufake.Block
	for i := range 7 {
		body = append(body, feishufake.Text(feishufake.Run(strings.Repeat("x", i+1))))
	}
	_, doc := fake.AddDocx("7001", "", "Long", body...)
	c := testClient(t, fake, "cli_wiki_blocks", retry.Policy{Attempts: 1})

	var all []*larkdocx.Block
	tok := ""
	for range 100 {
		page, next, err := c.ListBlocks(t.Context(), doc, tok)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if tok = next; tok == "" {
			break
		}
	}
	if len(all) != 8 || *all[0].BlockId != doc || *all[0].BlockType != 1 {
		t.Fatalf("got %d blocks (first %v), want the page block and 7 paragraphs", len(all), all[0].BlockId)
	}
	if n := fake.Calls(feishufake.OpDocxBlocks); n != 3 {
		t.Errorf("%d blocks calls, want 3 pages of 3", n)
	}
	for _, r := range fake.Requests() {
		if r.Op == feishufake.OpDocxBlocks && (r.Query.Get("page_size") != "500" || r.Query.Get("document_revision_id") != "-1") {
			t.Errorf("blocks asked %v, want page_size 500 and document_revision_id -1", r.Query)
		}
	}
}

// advancingSleeps records a retry's waits and moves the fake's clock on
// by each, as if the time had passed.
type advancingSleeps struct {
	mu    sync.Mutex
	clock *testkit.Clock
	waits []time.Duration
}

func (s *advancingSleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	s.clock.Advance(d)
	return ctx.Err()
}

func TestRateLimitedCallsWaitForTheReset(t *testing.T) {
	for _, tc := range []struct {
		name       string
		op         string
		per        time.Duration
		call       func(ctx context.Context, c *Client, doc string) error
		wantStatus int
	}{
		{"wiki answers 429", feishufake.OpWikiSpaces, 10 * time.Second, func(ctx context.Context, c *Client, _ string) error {
			_, _, err := c.ListSpaces(ctx, "")
			return err
		}, 429},
		{"docx answers 400", feishufake.OpDocxGet, time.Second, func(ctx context.Context, c *Client, doc string) error {
			_, err := c.GetDocument(ctx, doc)
			return err
		}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			clock := testkit.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
			fake.Now = clock.Now
			fake.RateLimit(tc.op, 1, tc.per)
			fake.AddSpace("7001", "Eng")
			_, doc := fake.AddDocx("7001", "", "Doc")
			sleeps := &advancingSleeps{clock: clock}
			c := testClient(t, fake, "cli_wiki_limit_"+tc.op, retry.Policy{Attempts: 3, Base: time.Millisecond, Sleep: sleeps.Sleep})
			ctx := t.Context()
			if err := tc.call(ctx, c, doc); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tc.per / 4)
			if err := tc.call(ctx, c, doc); err != nil {
				t.Fatalf("the throttled call was not retried to success: %v", err)
			}
			reqs := fake.Requests()
			var statuses []int
			for _, r := range reqs {
				if r.Op == tc.op {
					statuses = append(statuses, r.Status)
				}
			}
			if want := []int{200, tc.wantStatus, 200}; !slices.Equal(statuses, want) {
				t.Errorf("answers %v, want %v", statuses, want)
			}
			// The window opens (per - per/4) after the throttled call;
			// x-ogw-ratelimit-reset rounds that up to whole seconds.
			want := (tc.per - tc.per/4 + time.Second - 1).Truncate(time.Second)
			if !slices.Equal(sleeps.waits, []time.Duration{want}) {
				t.Errorf("waits %v, want one of %v (the reset header)", sleeps.waits, want)
			}
		})
	}
}

func TestRefusalsAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(fake *feishufake.Server, doc, node string)
		call     func(ctx context.Context, c *Client, doc, node string) error
		op       string
		code     int
		noAccess bool
		notFound bool
		scopes   []string
	}{
		{"space not shared", func(f *feishufake.Server, _, _ string) { f.UnshareSpace("7001") },
			func(ctx context.Context, c *Client, _, _ string) error {
				_, _, err := c.ListNodes(ctx, "7001", "", "")
				return err
			}, feishufake.OpWikiNodes, 131006, true, false, nil},
		{"space not shared, get", func(f *feishufake.Server, _, _ string) { f.UnshareSpace("7001") },
			func(ctx context.Context, c *Client, _, _ string) error { _, err := c.GetSpace(ctx, "7001"); return err },
			feishufake.OpWikiSpace, 131006, true, false, nil},
		{"document not shared", func(f *feishufake.Server, doc, _ string) { f.UnshareDocument(doc) },
			func(ctx context.Context, c *Client, doc, _ string) error {
				_, err := c.GetDocument(ctx, doc)
				return err
			},
			feishufake.OpDocxGet, 1770032, true, false, nil},
		{"blocks of a document in an unshared space", func(f *feishufake.Server, _, _ string) { f.UnshareSpace("7001") },
			func(ctx context.Context, c *Client, doc, _ string) error {
				_, _, err := c.ListBlocks(ctx, doc, "")
				return err
			}, feishufake.OpDocxBlocks, 1770032, true, false, nil},
		{"docx scope missing", func(f *feishufake.Server, _, _ string) { f.MissingScope("docx:document:readonly") },
			func(ctx context.Context, c *Client, doc, _ string) error {
				_, err := c.GetDocument(ctx, doc)
				return err
			},
			feishufake.OpDocxGet, 99991672, false, false, []string{"docx:document", "docx:document:readonly"}},
		{"wiki scope missing", func(f *feishufake.Server, _, _ string) { f.MissingScope("wiki:wiki:readonly") },
			func(ctx context.Context, c *Client, _, _ string) error {
				_, _, err := c.ListSpaces(ctx, "")
				return err
			}, feishufake.OpWikiSpaces, 99991672, false, false, []string{"wiki:space:retrieve", "wiki:wiki", "wiki:wiki:readonly"}},
		{"node deleted", func(f *feishufake.Server, _, node string) { f.DeleteNode(node) },
			func(ctx context.Context, c *Client, _, node string) error {
				_, err := c.GetNode(ctx, node, "")
				return err
			},
			feishufake.OpWikiGetNode, 131005, false, true, nil},
		{"document deleted", func(f *feishufake.Server, _, node string) { f.DeleteNode(node) },
			func(ctx context.Context, c *Client, doc, _ string) error {
				_, err := c.GetDocument(ctx, doc)
				return err
			},
			feishufake.OpDocxGet, 1770003, false, true, nil},
		{"no such document", nil,
			func(ctx context.Context, c *Client, _, _ string) error {
				_, err := c.GetDocument(ctx, "doxnosuchdocument0000000000")
				return err
			}, feishufake.OpDocxGet, 1770002, false, true, nil},
		{"document not in the wiki", nil,
			func(ctx context.Context, c *Client, _, _ string) error {
				_, err := c.GetNode(ctx, "doxnosuchdocument0000000000", "docx")
				return err
			}, feishufake.OpWikiGetNode, 131005, false, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			fake.AddSpace("7001", "Eng")
			node, doc := fake.AddDocx("7001", "", "Doc")
			if tc.setup != nil {
				tc.setup(fake, doc, node)
			}
			var sleeps testkit.Sleeps
			c := testClient(t, fake, "cli_refusal_"+strings.ReplaceAll(tc.name, " ", "_"), retry.Policy{Attempts: 3, Base: time.Millisecond, Sleep: sleeps.Sleep})
			err := tc.call(t.Context(), c, doc, node)
			e, ok := errors.AsType[*Error](err)
			if !ok || e.Code != tc.code {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if n := fake.Calls(tc.op); n != 1 {
				t.Errorf("%d calls, want 1: a refusal is not retried", n)
			}
			if IsNoAccess(err) != tc.noAccess || IsNotFound(err) != tc.notFound {
				t.Errorf("IsNoAccess %v, IsNotFound %v; want %v, %v", IsNoAccess(err), IsNotFound(err), tc.noAccess, tc.notFound)
			}
			if got := MissingScopes(err); !slices.Equal(got, tc.scopes) {
				t.Errorf("MissingScopes = %q, want %q", got, tc.scopes)
			}
		})
	}
}

func TestMissingScopes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"the documented example", &Error{Code: 99991672, Msg: "Access denied. One of the following scopes is required: [contact:user.id:readonly]"},
			[]string{"contact:user.id:readonly"}},
		{"several, a period and more text", &Error{Code: 99991672,
			Msg: "Access denied. One of the following scopes is required: [docx:document, docx:document:readonly].应用尚未开通所需的应用身份权限：[docx:document, docx:document:readonly]，点击链接申请"},
			[]string{"docx:document", "docx:document:readonly"}},
		{"wrapped", fmtWrap(&Error{Code: 99991672, Msg: "One of the following scopes is required: [wiki:wiki]"}), []string{"wiki:wiki"}},
		{"no list", &Error{Code: 99991672, Msg: "Access denied"}, []string{}},
		{"another code", &Error{Code: 131006, Msg: "required: [a]"}, nil},
		{"not an API error", errors.New("One of the following scopes is required: [a]"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := MissingScopes(tc.err)
			if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("MissingScopes = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("sync"), err) }

func TestDefaultPaceStaysUnderTheLimits(t *testing.T) {
	// The documented per-app limits (see defaultPace).
	limits := map[string]struct {
		n   float64
		per time.Duration
	}{
		APIListSpaces: {100, time.Minute}, APIGetSpace: {100, time.Minute}, APIListNodes: {100, time.Minute},
		APIGetNode: {100, time.Minute}, APIGetDocument: {5, time.Second}, APIListBlocks: {5, time.Second},
	}
	for api, l := range limits {
		p, ok := defaultPace[api]
		if !ok {
			t.Errorf("%s has no default pace", api)
			continue
		}
		// A token bucket lets burst + r·T through in any window of T.
		if most := float64(p.burst) + float64(p.r)*l.per.Seconds(); most > l.n {
			t.Errorf("%s: up to %.1f calls in %v, over the limit of %.0f", api, most, l.per, l.n)
		}
	}
}

func TestCallsArePaced(t *testing.T) {
	fake := newFake(t)
	fake.RateLimit(feishufake.OpDocxGet, 0, 0)
	fake.AddSpace("7001", "Eng")
	_, doc := fake.AddDocx("7001", "", "Doc")
	c := testClient(t, fake, "cli_paced", retry.Policy{Attempts: 1})
	c.SetPace(APIGetDocument, 20, 1)
	start := time.Now()
	for range 5 {
		if _, err := c.GetDocument(t.Context(), doc); err != nil {
			t.Fatal(err)
		}
	}
	// 5 calls at 20/s after a burst of 1: 4 waits of 50 ms at least.
	if took := time.Since(start); took < 190*time.Millisecond {
		t.Errorf("5 calls took %v, want at least 200ms at 20/s", took)
	}
}

// TestPageEnds checks the end of a list is read from has_more, whatever
// the answer says besides, against answers the fake would not give.
func TestPageEnds(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"more", `{"items":[],"has_more":true,"page_token":"p2"}`, "p2"},
		{"no more, a token anyway", `{"items":[{"space_id":"1"}],"has_more":false,"page_token":"p2"}`, ""},
		{"more but no token", `{"items":[],"has_more":true}`, ""},
		{"more with an empty token", `{"items":[],"has_more":true,"page_token":""}`, ""},
		{"no has_more", `{"items":[{"space_id":"1"}],"page_token":"p2"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if strings.HasSuffix(r.URL.Path, "/tenant_access_token/internal") {
					_, _ = io.WriteString(w, `{"code":0,"msg":"ok","tenant_access_token":"t-x","expire":7200}`)
					return
				}
				_, _ = io.WriteString(w, `{"code":0,"msg":"success","data":`+tc.data+`}`)
			}))
			t.Cleanup(srv.Close)
			log := testkit.Logger(t)
			c := New(NewLarkClient("cli_page_ends_"+strings.ReplaceAll(tc.name, " ", "_"), "secret", srv.URL, log), log, retry.Policy{Attempts: 1})
			c.SetPace(APIListSpaces, rate.Inf, 1)
			_, next, err := c.ListSpaces(t.Context(), "p1")
			if err != nil || next != tc.want {
				t.Errorf("next = %q, %v; want %q", next, err, tc.want)
			}
		})
	}
}
