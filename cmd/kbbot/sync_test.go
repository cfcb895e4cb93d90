package main

import (
	"maps"
	"strings"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/store/redistest"
)

const (
	syncSpace = "7034502641455497244"
	syncBase  = "https://example.feishu.cn"
)

// syncWiki fills fake with a small wiki: a document two levels down.
func syncWiki(fake *feishufake.Server) (node string) {
	fake.AddSpace(syncSpace, "产品知识库")
	top, _ := fake.AddDocx(syncSpace, "", "入职指南", feishufake.Text(feishufake.Run("欢迎加入。")))
	node, _ = fake.AddDocx(syncSpace, top, "IT 设备",
		feishufake.Heading(2, feishufake.Run("笔记本电脑")), feishufake.Text(feishufake.Run("笔记本电脑在三楼 IT 服务台领取，需要带上工牌。")))
	return node
}

// serve syncs the wiki in the background as it starts, answers from it at
// once without a restart, and its cards cite the wiki page's section.
func TestServeSyncsTheWikiAndCitesIt(t *testing.T) {
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	node := syncWiki(fake)
	env := e2eEnv(t, fake)
	env["FEISHU_WIKI_SPACES"] = syncSpace
	env["FEISHU_DOC_BASE_URL"] = syncBase
	env["KBBOT_ADMINS"] = "ou_admin"
	srv := startServe(t, env)
	defer srv.stop()
	testkit.Eventually(t, "the first sync to read the document", func() bool { return fake.Calls(feishufake.OpDocxBlocks) >= 2 })

	signer := feishufake.Signer{EncryptKey: e2eKey, Token: e2eToken}
	var card feishufake.Request
	testkit.Eventually(t, "an answer citing the wiki", func() bool {
		m := feishufake.Message{EventID: "ev_" + t.Name() + time.Now().Format("150405.000000"), MessageID: "om_" + time.Now().Format("150405.000000"),
			ChatID: "oc_sync", Sender: "ou_alice", Text: "笔记本电脑在哪里领取？"}
		postEvent(t, srv.url, signer, signer.MessageEvent(m))
		card = waitReply(t, fake, m.MessageID)
		return strings.Contains(strings.Join(cardStrings(card.Card), "\n"), syncBase+"/wiki/"+node+"#")
	})
	text := strings.Join(cardStrings(card.Card), "\n")
	if !strings.Contains(text, "IT 设备 › 笔记本电脑") {
		t.Errorf("the reference is not titled by its node and section:\n%s", text)
	}

	// /sync from an admin: a card that it started, then its result.
	m := feishufake.Message{EventID: "ev_sync_admin", MessageID: "om_sync_admin", ChatID: "oc_admin", Sender: "ou_admin", Text: "/sync"}
	postEvent(t, srv.url, signer, signer.MessageEvent(m))
	testkit.Eventually(t, "the sync result card", func() bool { return fake.Replies(m.MessageID) == 2 })
	var result string
	for _, r := range fake.Sent() {
		if r.MessageID == m.MessageID {
			result = strings.Join(cardStrings(r.Card), "\n")
		}
	}
	if !strings.Contains(result, "同步完成") || !strings.Contains(result, "unchanged 2") {
		t.Errorf("the admin's sync card says:\n%s", result)
	}
	// Anyone else gets the help card.
	m = feishufake.Message{EventID: "ev_sync_other", MessageID: "om_sync_other", ChatID: "oc_other", Sender: "ou_bob", Text: "/sync"}
	postEvent(t, srv.url, signer, signer.MessageEvent(m))
	if other := strings.Join(cardStrings(waitReply(t, fake, m.MessageID).Card), "\n"); !strings.Contains(other, "使用说明") {
		t.Errorf("a non-admin's /sync got:\n%s", other)
	}
}

// kbbot sync: one sync, a summary, and exit status 0 even with a document
// it could not read; non-zero when it cannot run.
func TestSyncCommand(t *testing.T) {
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	syncWiki(fake)
	_, secret := fake.AddDocx(syncSpace, "", "机密", feishufake.Text(feishufake.Run("不给看。")))
	fake.UnshareDocument(secret)
	fake.AddNode(syncSpace, "", "sheet", "预算表")
	env := e2eEnv(t, fake)
	env["FEISHU_WIKI_SPACES"] = syncSpace
	env["FEISHU_DOC_BASE_URL"] = syncBase
	out, stderr, err := runCLI(t, env, "sync")
	if err != nil {
		t.Fatalf("sync: %v\n%s\n%s", err, out, stderr)
	}
	for _, want := range []string{"3 documents in 1 spaces: read 2, unchanged 0, removed 0, failed 1, skipped 1", "failed:  机密", "skipped: 预算表"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCLI(t, env, "sync")
	if err != nil || !strings.Contains(out, "read 0, unchanged 2") {
		t.Errorf("second sync: %v\n%s", err, out)
	}
	env["FEISHU_WIKI_SPACES"] = "7000000000000000001"
	if _, _, err := runCLI(t, env, "sync"); err == nil || !strings.Contains(err.Error(), "7000000000000000001") {
		t.Errorf("sync of an unknown space: %v, want a failure naming it", err)
	}
	delete(env, "FEISHU_WIKI_SPACES")
	if _, _, err := runCLI(t, env, "sync"); err == nil || !strings.Contains(err.Error(), "FEISHU_WIKI_SPACES") {
		t.Errorf("sync with nothing configured: %v", err)
	}
}

// An events replica takes and queues events and answers none; an answers
// replica answers the queue and takes no events; together, on one Redis,
// they answer each message once.
func TestServeRoles(t *testing.T) {
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	base := e2eEnv(t, fake)
	base["REDIS_URL"] = url
	base["KBBOT_REDIS_PREFIX"] = prefix
	events, answers := maps.Clone(base), maps.Clone(base)
	events["KBBOT_ROLE"], answers["KBBOT_ROLE"] = "events", "answers"
	answers["KBBOT_DATA_DIR"] = events["KBBOT_DATA_DIR"]
	in := startServe(t, events)
	defer in.stop()
	signer := feishufake.Signer{EncryptKey: e2eKey, Token: e2eToken}
	m := feishufake.Message{EventID: "ev_roles", MessageID: "om_roles", ChatID: "oc_roles", Sender: "ou_alice", Text: "模型训练的底层原理是什么？"}
	if status, body := postEvent(t, in.url, signer, signer.MessageEvent(m)); status != 200 {
		t.Fatalf("events replica answered %d %s", status, body)
	}
	time.Sleep(300 * time.Millisecond) // long enough for a worker, were there one
	if n := fake.Calls(feishufake.OpReply); n != 0 {
		t.Fatalf("the events replica answered (%d replies)", n)
	}
	out := startServe(t, answers)
	defer out.stop()
	waitReply(t, fake, m.MessageID)
	if status, _ := postEvent(t, out.url, signer, signer.MessageEvent(m)); status != 404 && status != 405 {
		t.Errorf("the answers replica took an event: status %d", status)
	}
	if n := fake.Replies(m.MessageID); n != 1 {
		t.Errorf("%d replies, want 1", n)
	}
}
