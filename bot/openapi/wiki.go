package openapi

// The Open API calls kbbot's wiki sync makes: listing wiki spaces and
// their node trees, and reading docx documents block by block. Each method
// is one call, paced under the API's documented per-app limit and retried
// by call; paging is the caller's loop, because the SDK's iterators stop
// at the first empty page although the wiki lists say an empty page may
// still have has_more true (see ListSpaces).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"kbbot/store/retry"

	larkcore "github.com/larksuite/oapi-sdk-go/v3/core"
	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
	larkwiki "github.com/larksuite/oapi-sdk-go/v3/service/wiki/v2"
	"golang.org/x/time/rate"
)

// Space is a wiki space the app can read.
type Space struct{ ID, Name string }

// Node is one node of a wiki space's tree: a document of ObjType
// (docx, doc, sheet, bitable, file, mindnote, slides) whose own token is
// ObjToken. NodeType is "origin" or "shortcut"; a shortcut points at
// OriginToken in OriginSpaceID, and its ObjType and ObjToken are the
// target's.
type Node struct {
	SpaceID, Token, ObjToken, ObjType, ParentToken, NodeType, OriginToken, OriginSpaceID, Title string
	HasChild                                                                                    bool
	// EditTime is obj_edit_time, the document's last edit; zero when the
	// answer has none.
	EditTime time.Time
}

// Document is a docx document's title and revision. Revision starts at 1
// and changes on every edit, and also on a comment
// (https://open.feishu.cn/document/docs/docs/data-structure/document).
type Document struct {
	ID, Title string
	Revision  int
}

// API names, the keys of SetPace: one per Open API call, because Feishu
// limits each API separately ("每个 API、每个应用、每个租户",
// https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control).
const (
	APIListSpaces  = "wiki spaces list"
	APIGetSpace    = "wiki space get"
	APIListNodes   = "wiki nodes list"
	APIGetNode     = "wiki get_node"
	APIGetDocument = "docx document get"
	APIListBlocks  = "docx blocks list"
)

// Page sizes: the most each list API allows.
const (
	// https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/list and
	// https://open.feishu.cn/document/server-docs/docs/wiki-v2/space-node/list:
	// page_size 最大值 50.
	wikiPageSize = 50
	// https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/list:
	// page_size 默认值 500, 最大值 500.
	blockPageSize = 500
)

// defaultPace is how fast each API is called when SetPace has not said
// otherwise. A token bucket of rate r and burst b lets through at most
// b + r·T calls in any window of T, so:
//   - each wiki API allows 100 calls a minute per app (the 接口频率限制 row of
//     https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/list,
//     .../space/get, .../space-node/list, .../space-node/get_node);
//     1.6/s with burst 1 makes at most 97 in any 60 s;
//   - each docx read API allows 5 a second per app ("单个应用调用频率上限为每秒
//     5 次" on https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/get
//     and .../document/list); 4/s with burst 1 makes at most 5 in any 1 s.
//
// The limits are per app, so two replicas of kbbot sharing an app could
// still exceed them together; call then retries after the wait Feishu
// names.
var defaultPace = map[string]struct {
	r     rate.Limit
	burst int
}{
	APIListSpaces:  {1.6, 1},
	APIGetSpace:    {1.6, 1},
	APIListNodes:   {1.6, 1},
	APIGetNode:     {1.6, 1},
	APIGetDocument: {4, 1},
	APIListBlocks:  {4, 1},
}

// pacer holds one limiter per API; its zero value paces at defaultPace.
type pacer struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (p *pacer) limiter(api string) *rate.Limiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.m[api]; ok {
		return l
	}
	d, ok := defaultPace[api]
	if !ok {
		d.r, d.burst = rate.Inf, 1
	}
	l := rate.NewLimiter(d.r, d.burst)
	if p.m == nil {
		p.m = map[string]*rate.Limiter{}
	}
	p.m[api] = l
	return l
}

// SetPace replaces the pace of one API (an API… constant): at most r calls
// a second after a burst of burst. rate.Inf turns pacing off, for tests.
func (f *Client) SetPace(api string, r rate.Limit, burst int) {
	f.pace.mu.Lock()
	defer f.pace.mu.Unlock()
	if f.pace.m == nil {
		f.pace.m = map[string]*rate.Limiter{}
	}
	f.pace.m[api] = rate.NewLimiter(r, burst)
}

// paced runs one call of api under call's retry policy, every attempt
// waiting for the API's pace first: a retried call counts against the
// limit like any other.
func (f *Client) paced(ctx context.Context, api string, fn func(context.Context) (*larkcore.ApiResp, int, string, error)) error {
	l := f.pace.limiter(api)
	return f.call(ctx, f.log, api, 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		if err := l.Wait(ctx); err != nil {
			// The context ended, or its deadline comes before our turn.
			return nil, 0, "", retry.Permanent(err)
		}
		return fn(ctx)
	})
}

// ListSpaces lists one page of the wiki spaces shared with the app, from
// pageToken ("" for the first page). next is "" after the last page. A
// page may be empty while more follow: the list is filtered by permission
// after paging ("由于权限过滤，可能返回列表为空，但当分页标记（has_more）为 true
// 时，可以继续分页请求", https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/list),
// so loop on next, not on len(spaces). A space that is not shared with the
// app is left out of the list without an error (same page).
func (f *Client) ListSpaces(ctx context.Context, pageToken string) (spaces []Space, next string, err error) {
	err = f.paced(ctx, APIListSpaces, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		b := larkwiki.NewListSpaceReqBuilder().PageSize(wikiPageSize)
		if pageToken != "" {
			b = b.PageToken(pageToken)
		}
		resp, err := f.lark.Wiki.V2.Space.List(ctx, b.Build())
		if err != nil {
			return nil, 0, "", err
		}
		spaces, next = nil, ""
		if resp.Success() && resp.Data != nil {
			for _, s := range resp.Data.Items {
				if s != nil {
					spaces = append(spaces, Space{ID: larkcore.StringValue(s.SpaceId), Name: larkcore.StringValue(s.Name)})
				}
			}
			next = nextToken(resp.Data.HasMore, resp.Data.PageToken)
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	return spaces, next, err
}

// GetSpace reads one space; the app must be a member of it ("请确保应用或用户
// 为知识空间的成员或管理员", https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/get),
// else the answer is 131006 (IsNoAccess).
func (f *Client) GetSpace(ctx context.Context, spaceID string) (Space, error) {
	var sp Space
	err := f.paced(ctx, APIGetSpace, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Wiki.V2.Space.Get(ctx, larkwiki.NewGetSpaceReqBuilder().SpaceId(spaceID).Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.Space != nil {
			sp = Space{ID: larkcore.StringValue(resp.Data.Space.SpaceId), Name: larkcore.StringValue(resp.Data.Space.Name)}
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	if err == nil && sp.ID == "" {
		err = fmt.Errorf("%s %s: the answer has no space", APIGetSpace, spaceID)
	}
	return sp, err
}

// ListNodes lists one page of the children of parentToken in a space (""
// for the top level), from pageToken. As with ListSpaces, a page may be
// empty while next is not ("由于权限过滤，可能返回列表为空，但分页标记（has_more）
// 为true，可以继续分页请求", https://open.feishu.cn/document/server-docs/docs/wiki-v2/space-node/list).
func (f *Client) ListNodes(ctx context.Context, spaceID, parentToken, pageToken string) (nodes []Node, next string, err error) {
	err = f.paced(ctx, APIListNodes, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		b := larkwiki.NewListSpaceNodeReqBuilder().SpaceId(spaceID).PageSize(wikiPageSize)
		if parentToken != "" {
			b = b.ParentNodeToken(parentToken)
		}
		if pageToken != "" {
			b = b.PageToken(pageToken)
		}
		resp, err := f.lark.Wiki.V2.SpaceNode.List(ctx, b.Build())
		if err != nil {
			return nil, 0, "", err
		}
		nodes, next = nil, ""
		if resp.Success() && resp.Data != nil {
			for _, n := range resp.Data.Items {
				if n != nil {
					nodes = append(nodes, nodeOf(n))
				}
			}
			next = nextToken(resp.Data.HasMore, resp.Data.PageToken)
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	return nodes, next, err
}

// GetNode reads one node by its node token (objType "", meaning wiki), or
// the node holding a document when token is the document's own token and
// objType its type ("使用云文档 token 查询时，需要对 obj_type 参数传入文档对应的类型",
// https://open.feishu.cn/document/server-docs/docs/wiki-v2/space-node/get_node).
// A document outside the wiki answers 131005 (IsNotFound).
func (f *Client) GetNode(ctx context.Context, token, objType string) (Node, error) {
	var node Node
	found := false
	err := f.paced(ctx, APIGetNode, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		b := larkwiki.NewGetNodeSpaceReqBuilder().Token(token)
		if objType != "" {
			b = b.ObjType(objType)
		}
		resp, err := f.lark.Wiki.V2.Space.GetNode(ctx, b.Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.Node != nil {
			node, found = nodeOf(resp.Data.Node), true
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%s %s: the answer has no node", APIGetNode, token)
	}
	return node, err
}

// GetDocument reads a docx document's title and latest revision. A wiki
// node's document id is its ObjToken, not its node token
// (https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/get).
func (f *Client) GetDocument(ctx context.Context, documentID string) (Document, error) {
	var doc Document
	found := false
	err := f.paced(ctx, APIGetDocument, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Docx.V1.Document.Get(ctx, larkdocx.NewGetDocumentReqBuilder().DocumentId(documentID).Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.Document != nil {
			d := resp.Data.Document
			doc, found = Document{ID: larkcore.StringValue(d.DocumentId), Title: larkcore.StringValue(d.Title)}, true
			if d.RevisionId != nil {
				doc.Revision = *d.RevisionId
			}
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%s %s: the answer has no document", APIGetDocument, documentID)
	}
	return doc, err
}

// ListBlocks lists one page of a docx document's blocks at its latest
// revision (document_revision_id -1), from pageToken. Across pages the
// blocks come in pre-order, the page block first ("数组中元素的次序按文档内容
// 先序遍历结果进行排列，其中索引为 0 的元素是文档根节点",
// https://open.feishu.cn/document/docs/docs/faq).
func (f *Client) ListBlocks(ctx context.Context, documentID, pageToken string) (blocks []*larkdocx.Block, next string, err error) {
	err = f.paced(ctx, APIListBlocks, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		// -1 is the latest revision, which needs only read permission
		// (https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/list).
		b := larkdocx.NewListDocumentBlockReqBuilder().DocumentId(documentID).PageSize(blockPageSize).DocumentRevisionId(-1)
		if pageToken != "" {
			b = b.PageToken(pageToken)
		}
		resp, err := f.lark.Docx.V1.DocumentBlock.List(ctx, b.Build())
		if err != nil {
			return nil, 0, "", err
		}
		blocks, next = nil, ""
		if resp.Success() && resp.Data != nil {
			for _, bl := range resp.Data.Items {
				if bl != nil {
					blocks = append(blocks, bl)
				}
			}
			next = nextToken(resp.Data.HasMore, resp.Data.PageToken)
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	return blocks, next, err
}

// nextToken is the token of the next page, "" after the last. The list
// pages say page_token comes "当 has_more 为 true 时" (and not otherwise);
// has_more true with no token would re-read the first page for ever, so it
// ends the list too.
func nextToken(hasMore *bool, token *string) string {
	if !larkcore.BoolValue(hasMore) {
		return ""
	}
	return larkcore.StringValue(token)
}

func nodeOf(n *larkwiki.Node) Node {
	return Node{
		SpaceID:       larkcore.StringValue(n.SpaceId),
		Token:         larkcore.StringValue(n.NodeToken),
		ObjToken:      larkcore.StringValue(n.ObjToken),
		ObjType:       larkcore.StringValue(n.ObjType),
		ParentToken:   larkcore.StringValue(n.ParentNodeToken),
		NodeType:      larkcore.StringValue(n.NodeType),
		OriginToken:   larkcore.StringValue(n.OriginNodeToken),
		OriginSpaceID: larkcore.StringValue(n.OriginSpaceId),
		Title:         larkcore.StringValue(n.Title),
		HasChild:      larkcore.BoolValue(n.HasChild),
		EditTime:      unixTime(larkcore.StringValue(n.ObjEditTime)),
	}
}

// unixTime reads obj_edit_time. The node pages type it as a string and
// give no unit; every example is 10 digits ("1642402428"), i.e. Unix
// seconds — an assumption. A 13-digit value is taken as milliseconds, so
// the other reading still gives the right time; anything unparsable is
// the zero time, which a sync treats as "unknown, look at the revision".
func unixTime(s string) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	if n >= 1e11 { // later than year 5138 in seconds: it must be milliseconds
		return time.UnixMilli(n)
	}
	return time.Unix(n, 0)
}

// Open API codes for a missing scope, a refused resource and a missing
// one.
const (
	// CodeMissingScope: the app has not been granted any of the API's
	// scopes ("Access denied. One of the following scopes is required",
	// https://open.feishu.cn/document/server-docs/api-call-guide/generic-error-code).
	CodeMissingScope = 99991672
)

// noAccessCodes mean the app may call the API but may not read this
// space, node or document: it must be made a member of the space or a
// collaborator of the document.
var noAccessCodes = map[int]bool{
	// wiki: "permission denied", 知识库/节点权限鉴权不通过 (the error tables of
	// https://open.feishu.cn/document/server-docs/docs/wiki-v2/space-node/list,
	// .../space-node/get_node and .../space/get).
	131006: true,
	// docx: "forbidden", 当前应用没有文档权限 (HTTP 403 on
	// https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/get
	// and .../document/list).
	1770032: true,
	// generic: "FORBIDDEN", 当前调用身份没有云文档的阅读、编辑或管理等权限
	// (https://open.feishu.cn/document/server-docs/api-call-guide/generic-error-code).
	91403: true,
}

// notFoundCodes mean the space, node or document is gone.
var notFoundCodes = map[int]bool{
	// wiki: "not found" — space / node / document not found, or "document
	// is not in wiki" from get_node (the wiki error tables above).
	131005: true,
	// docx: "not found" (HTTP 404) and "resource deleted" (the docx error
	// tables above).
	1770002: true,
	1770003: true,
}

// IsNoAccess reports whether err is Feishu refusing the app this space,
// node or document (not the API as a whole: see MissingScopes).
func IsNoAccess(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && noAccessCodes[e.Code]
}

// IsNotFound reports whether err says the space, node or document does
// not exist (any more).
func IsNotFound(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && notFoundCodes[e.Code]
}

// MissingScopes is the scopes Feishu says the app lacks when err is a
// missing-scope answer (99991672), any one of which would do; nil for any
// other error. The raw message stays in the *Error's Msg. Feishu names them
// in the message, "Access denied. One of the following scopes is required:
// [contact:user.id:readonly]" (the example on
// https://open.feishu.cn/document/faq/trouble-shooting/how-to-fix-the-99991672-error);
// a message with no list still counts, as an empty, non-nil slice.
func MissingScopes(err error) []string {
	e, ok := errors.AsType[*Error](err)
	if !ok || e.Code != CodeMissingScope {
		return nil
	}
	scopes := []string{}
	msg := e.Msg
	if i := strings.Index(msg, "scopes is required"); i >= 0 {
		msg = msg[i:]
	}
	open := strings.IndexByte(msg, '[')
	if open < 0 {
		return scopes
	}
	end := strings.IndexByte(msg[open:], ']')
	if end < 0 {
		return scopes
	}
	for s := range strings.SplitSeq(msg[open+1:open+end], ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopes = append(scopes, s)
		}
	}
	return scopes
}
