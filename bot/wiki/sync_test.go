package wiki

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store/index"
	"kbbot/store/retry"
)

const (
	testSpace = "7034502641455497244"
	testBase  = "https://example.feishu.cn"
)

var appSeq atomic.Int64

// env is a fake Feishu with a wiki, the real Open API client pointed at
// it, and an engine over an embedded index in a temporary directory. The
// fake's clock is the test's; a retry's wait moves it on instead of
// sleeping, so rate-limit windows pass at once.
type env struct {
	t     *testing.T
	fake  *feishufake.Server
	api   *openapi.Client
	eng   *rag.Engine
	dir   string
	clock *testkit.Clock
	waits *atomicWaits
}

type atomicWaits struct{ testkit.Sleeps }

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, clock: testkit.NewClock(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)), dir: t.TempDir(), waits: &atomicWaits{}}
	e.fake = feishufake.New("ou_kbbot")
	t.Cleanup(e.fake.Close)
	e.fake.Now = e.clock.Now
	// Small pages, and an empty page before each (as permission filtering
	// makes the real lists do): every list is walked page by page.
	e.fake.Wiki = feishufake.WikiOptions{PageSize: 2, EmptyPages: 1, BlockPageSize: 3}
	log := testkit.Logger(t)
	p := retry.Policy{Attempts: 5, Base: 10 * time.Millisecond, Max: 2 * time.Minute, Sleep: func(ctx context.Context, d time.Duration) error {
		e.clock.Advance(d)
		return e.waits.Sleep(ctx, d)
	}}
	e.api = openapi.New(openapi.NewLarkClient(fmt.Sprintf("cli_wiki_%d", appSeq.Add(1)), "secret", e.fake.URL, log), log, p)
	for _, api := range []string{openapi.APIListSpaces, openapi.APIGetSpace, openapi.APIListNodes, openapi.APIGetNode, openapi.APIGetDocument, openapi.APIListBlocks} {
		e.api.SetPace(api, rate.Inf, 1) // the fake's own limits still hold
	}
	e.eng = e.openEngine()
	return e
}

func (e *env) openEngine() *rag.Engine {
	idx, err := index.OpenEmbedded(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := rag.New(rag.Options{Index: idx})
	if err != nil {
		e.t.Fatal(err)
	}
	return eng
}

func (e *env) syncer(cfg Config) *Syncer {
	cfg.BaseURL = testBase
	return New(e.api, e.eng, cfg, testkit.Logger(e.t))
}

func (e *env) run(cfg Config) Report {
	e.t.Helper()
	rep, err := e.syncer(cfg).Run(e.t.Context())
	if err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	return rep
}

// reads counts the document content the fake served: blocks pages, per
// document.
func (e *env) reads() map[string]int {
	out := map[string]int{}
	for _, r := range e.fake.Requests() {
		if r.Op == feishufake.OpDocxBlocks && r.Status == 200 {
			out[strings.TrimSuffix(strings.TrimPrefix(r.Path, "/open-apis/docx/v1/documents/"), "/blocks")]++
		}
	}
	return out
}

func (e *env) calls(op string) int { return e.fake.Calls(op) }

// answer asks the engine and returns the reference URLs.
func (e *env) refs(question string) []string {
	e.t.Helper()
	ans, err := e.eng.Ask(e.t.Context(), question, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range ans.References {
		out = append(out, r.URL)
	}
	return out
}

type tree struct {
	onboarding, week, devices, overfit string // node tokens
	devicesDoc, overfitDoc             string // document ids
}

// wiki is a space three levels deep, with other kinds of node beside.
func (e *env) wiki() tree {
	f := e.fake
	var tr tree
	f.AddSpace(testSpace, "产品知识库")
	tr.onboarding, _ = f.AddDocx(testSpace, "", "入职指南", feishufake.Heading(1, feishufake.Run("第一天")), feishufake.Text(feishufake.Run("入职第一天到前台报到，领取工牌。")))
	tr.week, _ = f.AddDocx(testSpace, tr.onboarding, "第一周", feishufake.Text(feishufake.Run("第一周参加新人培训。")))
	tr.devices, tr.devicesDoc = f.AddDocx(testSpace, tr.week, "IT 设备",
		feishufake.Heading(2, feishufake.Run("笔记本电脑")), feishufake.Text(feishufake.Run("笔记本电脑在 IT 服务台领取，需要带上工牌。")),
		feishufake.Heading(2, feishufake.Run("显示器")), feishufake.Text(feishufake.Run("显示器按工位配发。")))
	tr.overfit, tr.overfitDoc = f.AddDocx(testSpace, "", "机器学习基础", feishufake.Heading(1, feishufake.Run("过拟合")),
		feishufake.Text(feishufake.Run("过拟合是模型在训练集上表现很好，在新数据上表现很差。正则化和早停可以缓解过拟合。")))
	f.AddNode(testSpace, tr.onboarding, "sheet", "报销表")
	f.AddNode(testSpace, "", "doc", "旧版文档")
	f.AddShortcut(testSpace, "", tr.week)
	return tr
}

func TestSyncReadsTheWholeTree(t *testing.T) {
	e := newEnv(t)
	tr := e.wiki()
	rep := e.run(Config{Spaces: []string{testSpace}})
	if rep.Documents != 4 || rep.Read != 4 || rep.Unchanged != 0 || len(rep.Failed) != 0 {
		t.Errorf("report %+v, want 4 documents read", rep)
	}
	if len(rep.Skipped) != 3 {
		t.Errorf("skipped %+v, want the sheet, the old doc and the shortcut, each with a reason", rep.Skipped)
	}
	for _, s := range rep.Skipped {
		if s.Reason == "" || !strings.HasPrefix(s.URL, testBase+"/wiki/") {
			t.Errorf("skip without a reason or link: %+v", s)
		}
	}
	// The deepest document is answerable, cited to its section.
	refs := e.refs("笔记本电脑在哪里领取？")
	want := testBase + "/wiki/" + tr.devices + "#"
	if len(refs) == 0 || !strings.HasPrefix(refs[0], want) {
		t.Errorf("references %v, want the first to link %s<block id>", refs, want)
	}
	if n := e.reads()[tr.devicesDoc]; n < 2 {
		t.Errorf("the document's blocks were read in %d pages, want several (page size 3)", n)
	}
}

func TestSyncAgainReadsOnlyWhatChanged(t *testing.T) {
	e := newEnv(t)
	tr := e.wiki()
	cfg := Config{Spaces: []string{testSpace}}
	e.run(cfg)
	before := e.reads()

	// Nothing changed: only lists, no document content.
	rep := e.run(cfg)
	if rep.Read != 0 || rep.Unchanged != 4 || rep.Removed != 0 {
		t.Errorf("unchanged sync: %+v", rep)
	}
	if after := e.reads(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("an unchanged sync read document content: %v, was %v", after, before)
	}
	if n := e.calls(feishufake.OpDocxGet); n != 0 {
		t.Errorf("%d document get calls; the node lists carry the edit time", n)
	}

	// One edit: that document alone is read again, and its new text is
	// what the index holds.
	e.clock.Advance(time.Minute)
	e.fake.EditDocx(tr.devicesDoc, feishufake.Heading(2, feishufake.Run("笔记本电脑")), feishufake.Text(feishufake.Run("笔记本电脑改在三楼自助柜领取。")))
	rep = e.run(cfg)
	if rep.Read != 1 || rep.Unchanged != 3 {
		t.Errorf("after one edit: %+v, want 1 read and 3 unchanged", rep)
	}
	after := e.reads()
	for doc, n := range after {
		if n != before[doc] && doc != tr.devicesDoc {
			t.Errorf("document %s read again although it did not change", doc)
		}
	}
	if after[tr.devicesDoc] == before[tr.devicesDoc] {
		t.Error("the edited document was not read again")
	}
	if refs := e.refs("自助柜在几楼？"); len(refs) == 0 || !strings.Contains(refs[0], tr.devices) {
		t.Errorf("the new text is not answerable: %v", refs)
	}
	if refs := e.refs("显示器怎么配发？"); len(refs) != 0 {
		t.Errorf("the edit's removed section still answers: %v", refs)
	}

	// A deleted node (with its subtree) loses its chunks.
	e.fake.DeleteNode(tr.overfit)
	rep = e.run(cfg)
	if rep.Removed != 1 {
		t.Errorf("after deleting a node: %+v, want 1 removed", rep)
	}
	if refs := e.refs("什么是过拟合？"); len(refs) != 0 {
		t.Errorf("a deleted node still answers: %v", refs)
	}
}

// Synced roots: only their subtrees; a node moved out of them goes.
func TestSyncRoots(t *testing.T) {
	e := newEnv(t)
	tr := e.wiki()
	cfg := Config{Roots: []string{tr.onboarding}}
	rep := e.run(cfg)
	if rep.Read != 3 || rep.Spaces != 1 {
		t.Errorf("roots sync: %+v, want the 3 documents under the root", rep)
	}
	if refs := e.refs("什么是过拟合？"); len(refs) != 0 {
		t.Errorf("a document outside the roots was synced: %v", refs)
	}
	e.fake.MoveNode(tr.week, testSpace, "") // out of the root, with IT 设备 under it
	rep = e.run(cfg)
	if rep.Removed != 2 || rep.Documents != 1 {
		t.Errorf("after moving a subtree out: %+v, want 2 removed", rep)
	}
	if refs := e.refs("笔记本电脑在哪里领取？"); len(refs) != 0 {
		t.Errorf("a moved-out document still answers: %v", refs)
	}
}

// A document the app may not read is reported and keeps its old chunks;
// the sync goes on and completes.
func TestSyncSkipsWhatItCannotRead(t *testing.T) {
	e := newEnv(t)
	tr := e.wiki()
	cfg := Config{Spaces: []string{testSpace}}
	e.run(cfg)
	e.clock.Advance(time.Minute)
	e.fake.EditDocx(tr.overfitDoc, feishufake.Text(feishufake.Run("改过的内容。")))
	e.fake.UnshareDocument(tr.overfitDoc)
	rep := e.run(cfg)
	if len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0].URL, tr.overfit) || !strings.Contains(rep.Failed[0].Reason, "add") {
		t.Fatalf("failed %+v, want the unreadable document with what to do", rep.Failed)
	}
	if rep.Unchanged != 3 || rep.Removed != 0 {
		t.Errorf("report %+v", rep)
	}
	if refs := e.refs("什么是过拟合？"); len(refs) == 0 {
		t.Error("the unreadable document's old chunks were dropped")
	}
}

// An interrupted sync resumes where it stopped: the documents it finished
// are not read again.
func TestSyncResumes(t *testing.T) {
	e := newEnv(t)
	e.wiki()
	cfg := Config{Spaces: []string{testSpace}, Workers: 1}
	s := e.syncer(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	s.Progress = func(done, total int, title string) {
		if done == 2 {
			cancel()
		}
	}
	if _, err := s.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted sync: %v, want its cancellation", err)
	}
	first := e.reads()
	if len(first) != 2 {
		t.Fatalf("%d documents read before the interruption, want 2", len(first))
	}
	rep := e.run(cfg)
	if rep.Read != 2 || rep.Unchanged != 2 {
		t.Errorf("resumed sync: %+v, want the 2 left read and the 2 done unchanged", rep)
	}
	for doc, n := range e.reads() {
		if first[doc] > 0 && n != first[doc] {
			t.Errorf("document %s, finished before the interruption, was read again", doc)
		}
	}
}

// Feishu's limits: a wiki list over its limit answers 429, a docx read
// 400 with 99991400, both with x-ogw-ratelimit-reset; the sync waits what
// they say and finishes.
func TestSyncHonoursRateLimits(t *testing.T) {
	e := newEnv(t)
	e.wiki()
	e.fake.RateLimit(feishufake.OpWikiNodes, 4, time.Minute)
	e.fake.RateLimit(feishufake.OpDocxBlocks, 2, time.Second)
	rep := e.run(Config{Spaces: []string{testSpace}})
	if rep.Read != 4 || len(rep.Failed) != 0 {
		t.Fatalf("report %+v", rep)
	}
	var s429, s400 int
	for _, r := range e.fake.Requests() {
		switch {
		case r.Op == feishufake.OpWikiNodes && r.Status == 429:
			s429++
		case r.Op == feishufake.OpDocxBlocks && r.Status == 400 && r.Code == 99991400:
			s400++
		}
	}
	if s429 == 0 || s400 == 0 {
		t.Fatalf("the limits did not bite (%d wiki 429s, %d docx 400s): the test proves nothing", s429, s400)
	}
	waits := e.waits.Waits()
	if len(waits) < s429+s400 || e.waits.Longest() < 10*time.Second {
		t.Errorf("waits %v for %d refusals: want one per refusal, the wiki's of many seconds (its reset)", waits, s429+s400)
	}
}

// What stops a sync from running is an error, not a report.
func TestSyncCannotRun(t *testing.T) {
	e := newEnv(t)
	e.wiki()
	if _, err := e.syncer(Config{Spaces: []string{"7000000000000000000"}}).Run(t.Context()); err == nil || !strings.Contains(err.Error(), "7000000000000000000") {
		t.Errorf("unknown space: %v", err)
	}
	e.fake.MissingScope("wiki:wiki:readonly")
	_, err := e.syncer(Config{Spaces: []string{testSpace}}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "wiki:wiki:readonly") {
		t.Errorf("missing scope: %v, want the scope named", err)
	}
}

// Another process's engine on the same embedded index answers from what
// a sync wrote, without a restart.
func TestSyncedContentReachesOtherReaders(t *testing.T) {
	e := newEnv(t)
	e.wiki()
	other := e.openEngine()
	e.run(Config{Spaces: []string{testSpace}})
	testkit.Eventually(t, "the other reader to see the synced content", func() bool {
		ans, err := other.Ask(t.Context(), "笔记本电脑在哪里领取？", nil)
		return err == nil && len(ans.References) > 0
	})
}

// A walk that fails half way removes nothing of its space: what was not
// seen may only be not listed yet.
func TestSyncFailedWalkRemovesNothing(t *testing.T) {
	e := newEnv(t)
	e.wiki()
	cfg := Config{Spaces: []string{testSpace}}
	e.run(cfg)
	e.fake.Fail(feishufake.Fault{Op: feishufake.OpWikiNodes, Times: 1000, Status: 500})
	rep := e.run(cfg)
	if rep.Removed != 0 || len(rep.Failed) == 0 {
		t.Errorf("report %+v, want the walk's failure reported and nothing removed", rep)
	}
	if refs := e.refs("笔记本电脑在哪里领取？"); len(refs) == 0 {
		t.Error("a failed walk emptied the space's documents")
	}
}
