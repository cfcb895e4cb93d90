package wiki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"

	"kbbot/bot/openapi"
	"kbbot/rag"
	"kbbot/store/index"
)

// API is the Feishu Open API calls a sync makes (*openapi.Client), each one
// request, paced and retried by the client.
type API interface {
	ListSpaces(ctx context.Context, pageToken string) ([]openapi.Space, string, error)
	GetSpace(ctx context.Context, spaceID string) (openapi.Space, error)
	ListNodes(ctx context.Context, spaceID, parentToken, pageToken string) ([]openapi.Node, string, error)
	GetNode(ctx context.Context, token, objType string) (openapi.Node, error)
	GetDocument(ctx context.Context, documentID string) (openapi.Document, error)
	ListBlocks(ctx context.Context, documentID, pageToken string) ([]*larkdocx.Block, string, error)
}

// Index is where a sync writes (*rag.Engine).
type Index interface {
	StoredSources(ctx context.Context, prefix string) (map[string]rag.StoredSource, error)
	ReplaceSource(ctx context.Context, name string, docs []rag.SourceDoc, old []string) (rag.Summary, error)
	RemoveChunks(ctx context.Context, ids []string) error
}

// Config says what to sync.
type Config struct {
	// Spaces are wiki space ids; "all" means every space the app can read.
	Spaces []string
	// Roots, when set, are node tokens whose subtrees alone are synced.
	Roots []string
	// Docs are single documents, by URL (…/docx/ID, …/wiki/TOKEN) or
	// token.
	Docs []string
	// BaseURL is the tenant's document domain (https://tenant.feishu.cn),
	// the base of every link to a synced document.
	BaseURL string
	// Workers is how many documents are read at once; the Open API pace
	// (5 requests/s per docx API) is the real bound. Default 4.
	Workers int
}

// Skip is a document a sync did not read, and why.
type Skip struct {
	Title  string
	URL    string
	Reason string
}

// Report is what one sync did.
type Report struct {
	Started, Finished time.Time
	Spaces            int    // spaces walked
	Documents         int    // docx documents found
	Read              int    // read, because new or changed
	Unchanged         int    // stored at their current version: not read
	Removed           int    // deleted or moved out of the synced roots: chunks dropped
	Chunks            int    // chunks written
	Skipped           []Skip // not docx, shortcuts: by choice
	Failed            []Skip // could not be read (no access, errors); old chunks kept
}

// Source names: a wiki node's chunks carry its space, so a sync can tell
// which space a vanished node belonged to; a standalone docx its id.
const (
	wikiSourcePrefix = rag.FeishuSourcePrefix + "wiki/"
	docxSourcePrefix = rag.FeishuSourcePrefix + "docx/"
)

func wikiSource(spaceID, node string) string { return wikiSourcePrefix + spaceID + "/" + node }
func docxSource(documentID string) string    { return docxSourcePrefix + documentID }

// Syncer brings the index in line with the configured Feishu sources.
type Syncer struct {
	api API
	idx Index
	cfg Config
	log *slog.Logger
	// Progress, when set, is told about each document read or checked.
	Progress func(done, total int, title string)
}

// New returns a syncer of cfg's sources from api into idx.
func New(api API, idx Index, cfg Config, log *slog.Logger) *Syncer {
	if cfg.Workers < 1 {
		cfg.Workers = 4
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if log == nil {
		log = slog.Default()
	}
	return &Syncer{api: api, idx: idx, cfg: cfg, log: log}
}

// doc is one docx document found by the walk, to read unless unchanged.
type doc struct {
	source  string
	title   string
	url     string // the document's link, without a section anchor
	space   string
	node    string
	docID   string
	version string
	date    string
}

// Run syncs once. It fails only when the sync cannot run at all: no
// credentials, an unknown space, the API down. A document that cannot be
// read is reported in Failed, keeps its old chunks, and the sync goes on.
// Nothing is removed from a space whose walk did not finish, so a failure
// half way never empties the index; and a document's old chunks stay
// until its new ones are written (rag.Engine.ReplaceSource), so an
// interrupted sync resumes, the next time, with the documents it had not
// finished: the others are stored at their current version.
func (s *Syncer) Run(ctx context.Context) (Report, error) {
	rep := Report{Started: time.Now()}
	stored, err := s.idx.StoredSources(ctx, rag.FeishuSourcePrefix)
	if err != nil {
		return rep, fmt.Errorf("sync: %w", err)
	}
	// The walk hands each document to the readers as it finds it, so
	// reading (paced by the docx APIs' 5/s) and walking (the wiki APIs'
	// 100/min) overlap instead of adding up.
	var mu sync.Mutex
	jobs := make(chan doc, 64)
	readers := s.read(ctx, jobs, stored, &rep, &mu)
	w := &walk{s: s, rep: &rep, mu: &mu, seen: map[string]bool{}, complete: map[string]bool{}, emit: func(d doc) {
		mu.Lock()
		rep.Documents++
		mu.Unlock()
		select {
		case jobs <- d:
		case <-ctx.Done():
		}
	}}
	err = w.sources(ctx)
	close(jobs)
	readers.Wait()
	if err != nil {
		return rep, err
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("sync interrupted: %w", err)
	}
	// What is stored but no longer there: removed only where the walk saw
	// everything (the space's tree, the configured documents).
	var stale []string
	for name, st := range stored {
		if w.seen[name] || !w.covers(name) {
			continue
		}
		stale = append(stale, st.Chunks...)
		rep.Removed++
	}
	if err := s.idx.RemoveChunks(ctx, stale); err != nil {
		return rep, fmt.Errorf("sync: %w", err)
	}
	rep.Finished = time.Now()
	return rep, nil
}

// walk finds the documents to sync and hands them to emit.
type walk struct {
	s    *Syncer
	rep  *Report
	mu   *sync.Mutex // guards rep, which the readers update too
	emit func(doc)
	seen map[string]bool // sources found (read or not)
	// complete marks the spaces walked to the end: what a vanished
	// source may be removed for (standalone docx: docsDone).
	complete map[string]bool
	spaces   map[string]bool // configured (or, with "all", listed) spaces
	docsDone bool
}

func (w *walk) skip(s Skip) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rep.Skipped = append(w.rep.Skipped, s)
}

func (w *walk) fail(s Skip) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rep.Failed = append(w.rep.Failed, s)
}

// covers reports whether a vanished source may be removed: its space was
// walked to the end, or it is not configured any more.
func (w *walk) covers(source string) bool {
	switch {
	case strings.HasPrefix(source, wikiSourcePrefix):
		space, _, _ := strings.Cut(strings.TrimPrefix(source, wikiSourcePrefix), "/")
		return w.complete[space] || (!w.spaces[space] && w.docsDone)
	case strings.HasPrefix(source, docxSourcePrefix):
		return w.docsDone
	}
	return false
}

func (w *walk) sources(ctx context.Context) error {
	s := w.s
	spaces, err := w.spaceList(ctx)
	if err != nil {
		return err
	}
	w.spaces = map[string]bool{}
	for _, sp := range spaces {
		w.spaces[sp] = true
	}
	roots := map[string][]openapi.Node{} // space → root nodes
	for _, tok := range s.cfg.Roots {
		n, err := s.api.GetNode(ctx, tok, "")
		if err != nil {
			return fmt.Errorf("sync: FEISHU_WIKI_ROOTS %s: %w", tok, explain(err))
		}
		if len(spaces) > 0 && !w.spaces[n.SpaceID] {
			return fmt.Errorf("sync: FEISHU_WIKI_ROOTS %s (%q) is in space %s, which FEISHU_WIKI_SPACES does not list", tok, n.Title, n.SpaceID)
		}
		roots[n.SpaceID] = append(roots[n.SpaceID], n)
	}
	if len(spaces) == 0 {
		for sp := range roots {
			spaces = append(spaces, sp)
			w.spaces[sp] = true
		}
		slices.Sort(spaces)
	}
	for _, sp := range spaces {
		w.mu.Lock()
		w.rep.Spaces++
		w.mu.Unlock()
		var err error
		if rs, ok := roots[sp]; ok {
			for _, r := range rs {
				if err = w.node(ctx, r); err != nil {
					break
				}
			}
		} else {
			err = w.children(ctx, sp, "")
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if err != nil {
			// Keep the rest: a space that cannot be walked is reported, and
			// its stored chunks stay.
			w.fail(Skip{Title: "space " + sp, Reason: "the walk stopped: " + explain(err).Error()})
			s.log.Warn("walking a wiki space failed; its documents keep their chunks", "space_id", sp, "error", err)
			continue
		}
		w.complete[sp] = true
	}
	w.docsDone = true
	for _, ref := range s.cfg.Docs {
		if err := w.single(ctx, ref); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.fail(Skip{Title: ref, Reason: explain(err).Error()})
			// A document that could not even be found out keeps whatever
			// is stored: nothing from FEISHU_DOCS is removed this time.
			w.docsDone = false
		}
	}
	return nil
}

// spaceList resolves FEISHU_WIKI_SPACES: the listed ids, each checked, or
// with "all" every space the app is a member of.
func (w *walk) spaceList(ctx context.Context) ([]string, error) {
	s := w.s
	var out []string
	for _, id := range s.cfg.Spaces {
		if id != "all" {
			if _, err := s.api.GetSpace(ctx, id); err != nil {
				return nil, fmt.Errorf("sync: wiki space %s: %w", id, explain(err))
			}
			out = append(out, id)
			continue
		}
		for page := ""; ; {
			sps, next, err := s.api.ListSpaces(ctx, page)
			if err != nil {
				return nil, fmt.Errorf("sync: listing wiki spaces: %w", explain(err))
			}
			for _, sp := range sps {
				out = append(out, sp.ID)
			}
			if next == "" {
				break
			}
			page = next
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// children walks the nodes under parent ("" for the space's top level),
// every page and every level.
func (w *walk) children(ctx context.Context, space, parent string) error {
	for page := ""; ; {
		nodes, next, err := w.s.api.ListNodes(ctx, space, parent, page)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if err := w.node(ctx, n); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		page = next
	}
}

// node records one node and walks its children.
func (w *walk) node(ctx context.Context, n openapi.Node) error {
	link := w.s.cfg.BaseURL + "/wiki/" + n.Token
	switch {
	case n.NodeType == "shortcut":
		w.skip(Skip{Title: n.Title, URL: link, Reason: "a shortcut: its document is synced where it lives (" + n.OriginSpaceID + ")"})
	case n.ObjType != "docx":
		w.skip(Skip{Title: n.Title, URL: link, Reason: skipReason(n.ObjType)})
	case !w.emitNode(n):
		return nil // under two roots: walked once
	}
	if !n.HasChild {
		return nil
	}
	return w.children(ctx, n.SpaceID, n.Token)
}

// emitNode hands a docx node to emit, once: false when it was found
// before (under two roots, or also listed in FEISHU_DOCS).
func (w *walk) emitNode(n openapi.Node) bool {
	src := wikiSource(n.SpaceID, n.Token)
	if w.seen[src] {
		return false
	}
	w.seen[src] = true
	w.emit(doc{source: src, title: n.Title, url: w.s.cfg.BaseURL + "/wiki/" + n.Token, space: n.SpaceID, node: n.Token,
		docID: n.ObjToken, version: version(n.EditTime), date: date(n.EditTime)})
	return true
}

// single resolves one FEISHU_DOCS entry.
func (w *walk) single(ctx context.Context, ref string) error {
	kind, tok := parseDocRef(ref)
	s := w.s
	if kind == "wiki" {
		n, err := s.api.GetNode(ctx, tok, "")
		if err != nil {
			return err
		}
		if n.ObjType != "docx" {
			w.skip(Skip{Title: n.Title, URL: s.cfg.BaseURL + "/wiki/" + tok, Reason: skipReason(n.ObjType)})
			return nil
		}
		w.emitNode(n)
		return nil
	}
	d, err := s.api.GetDocument(ctx, tok)
	if err != nil {
		return err
	}
	src := docxSource(d.ID)
	w.seen[src] = true
	// A standalone document's listing carries no edit time: its revision
	// says whether it changed (a comment bumps it too, so an unchanged
	// text may be read again; the chunks then stay as they are).
	w.emit(doc{source: src, title: d.Title, url: s.cfg.BaseURL + "/docx/" + d.ID, docID: d.ID,
		version: "rev" + strconv.Itoa(d.Revision)})
	return nil
}

// parseDocRef reads a FEISHU_DOCS entry: a …/docx/ID or …/wiki/TOKEN URL,
// "docx:ID", "wiki:TOKEN", or a bare token, taken as a document id.
func parseDocRef(ref string) (kind, token string) {
	ref = strings.TrimSpace(ref)
	if u, err := url.Parse(ref); err == nil && u.Host != "" {
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		for i := 0; i+1 < len(parts); i++ {
			if parts[i] == "wiki" || parts[i] == "docx" {
				return parts[i], parts[i+1]
			}
		}
	}
	if k, t, ok := strings.Cut(ref, ":"); ok && (k == "wiki" || k == "docx") {
		return k, t
	}
	return "docx", ref
}

// read starts the readers: Workers goroutines reading the documents that
// arrive on jobs unless stored at their version, until jobs is closed.
// Wait on the result for them to finish.
func (s *Syncer) read(ctx context.Context, jobs <-chan doc, stored map[string]rag.StoredSource, rep *Report, mu *sync.Mutex) *sync.WaitGroup {
	done := 0
	progress := func(title string) {
		mu.Lock()
		done++
		n, total := done, rep.Documents
		mu.Unlock()
		if s.Progress != nil {
			s.Progress(n, total, title)
		}
	}
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			for d := range jobs {
				if ctx.Err() != nil {
					continue // drain: the walk may still be sending
				}
				st, ok := stored[d.source]
				if ok && st.Version == d.version && d.version != "" {
					mu.Lock()
					rep.Unchanged++
					mu.Unlock()
					progress(d.title)
					continue
				}
				n, err := s.readDoc(ctx, d, st.Chunks)
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						rep.Failed = append(rep.Failed, Skip{Title: d.title, URL: d.url, Reason: explain(err).Error()})
						s.log.Warn("reading a document failed; its old chunks stay", "title", d.title, "url", d.url, "error", err)
					}
				} else {
					rep.Read++
					rep.Chunks += n
				}
				mu.Unlock()
				progress(d.title)
			}
		})
	}
	return &wg
}

// readDoc reads one document's blocks and replaces its chunks.
func (s *Syncer) readDoc(ctx context.Context, d doc, old []string) (chunks int, err error) {
	var blocks []*larkdocx.Block
	for page := ""; ; {
		bs, next, err := s.api.ListBlocks(ctx, d.docID, page)
		if err != nil {
			return 0, err
		}
		blocks = append(blocks, bs...)
		if next == "" {
			break
		}
		page = next
	}
	_, sections, _ := Sections(blocks)
	docs := make([]rag.SourceDoc, 0, len(sections))
	for _, sec := range sections {
		link := d.url
		if sec.Anchor != "" {
			// Undocumented, and an assumption: Feishu's own links to a block
			// are the document URL with "#<block_id>" (the docs' example
			// links and the official CLI's block links are so; no spec page
			// defines it). If it is wrong, the link still opens the
			// document: a browser ignores a fragment that names nothing.
			link += "#" + sec.Anchor
		}
		docs = append(docs, rag.SourceDoc{Kind: index.KindPassage, Title: d.title, URL: link, Date: d.date, Path: sec.Path,
			Text: sec.Text, Source: d.source, SpaceID: d.space, NodeToken: d.node, DocumentID: d.docID, Anchor: sec.Anchor, Version: d.version})
	}
	sum, err := s.idx.ReplaceSource(ctx, d.source, docs, old)
	if err != nil {
		return 0, err
	}
	return sum.Added, nil
}

func version(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.Unix(), 10)
}

func date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02")
}

// skipReason says why a node of another kind than docx is not read.
func skipReason(objType string) string {
	switch objType {
	case "doc":
		return "an old-style document (doc): kbbot reads docx; upgrade it in Feishu to sync it"
	case "sheet":
		return "a spreadsheet: not read"
	case "bitable":
		return "a Base (bitable): not read"
	case "file":
		return "an uploaded file: not read"
	case "mindnote":
		return "a mind map: not read"
	case "slides":
		return "slides: not read"
	}
	return "a " + objType + " node: not read"
}

// explain adds what to do to the errors an admin can fix.
func explain(err error) error {
	if scopes := openapi.MissingScopes(err); len(scopes) > 0 {
		return fmt.Errorf("%w (grant the app one of the scopes %s and publish a new version)", err, strings.Join(scopes, ", "))
	}
	if openapi.IsNoAccess(err) {
		return fmt.Errorf("%w (the app cannot read it: add a group with the bot to the space's members, or add the app to the document)", err)
	}
	if openapi.IsNotFound(err) {
		return fmt.Errorf("%w (no such space, node or document: check the id)", err)
	}
	return err
}

// Summary is the report in one line.
func (r Report) Summary() string {
	took := r.Finished.Sub(r.Started).Round(100 * time.Millisecond)
	return fmt.Sprintf("%d documents in %d spaces: read %d, unchanged %d, removed %d, failed %d, skipped %d (%d chunks written, %v)",
		r.Documents, r.Spaces, r.Read, r.Unchanged, r.Removed, len(r.Failed), len(r.Skipped), r.Chunks, took)
}
