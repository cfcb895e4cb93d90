package bot

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"kbbot/rag"
	"kbbot/store/index"
)

func (b *Bot) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz reports whether this replica can take webhook requests: whether
// the state store answers, since claims and queued work live there. The
// knowledge store is checked too, but only reported (in the body and in
// kbbot_dependency_up): when the index is down every replica is, so failing
// readiness on it would take them all out of the load balancer together,
// and Feishu's events would go unacknowledged instead of being queued and
// answered, late or with an error card.
func (b *Bot) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), depCheckTimeout)
	defer cancel()
	stateErr, knowledgeErr := b.checkDependencies(ctx)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// Which dependency, not its error text: /readyz is unauthenticated and
	// errors carry internal addresses. The log has the detail.
	note := ""
	if knowledgeErr != nil {
		note = "knowledge store unavailable\n"
	}
	if stateErr != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: state store\n" + note))
		return
	}
	_, _ = w.Write([]byte("ready\n" + note))
}

// Dependency checks: each gets depCheckTimeout; the background check runs
// every depCheckInterval unless Config.DependencyInterval says otherwise.
const (
	depCheckTimeout  = 3 * time.Second
	depCheckInterval = 15 * time.Second
)

// Dependencies, the label values of kbbot_dependency_up.
const (
	depState     = "state"
	depKnowledge = "knowledge"
)

// checkDependencies pings the state store and the knowledge store at once,
// records the outcome in kbbot_dependency_up, and logs when one goes down
// or comes back (not at every probe).
func (b *Bot) checkDependencies(ctx context.Context) (stateErr, knowledgeErr error) {
	ready := b.cfg.Ready
	if ready == nil {
		ready = func(ctx context.Context) error {
			_, err := b.ans.StarterQuestions(ctx, 1)
			return err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		knowledgeErr = ready(ctx)
	}()
	stateErr = b.st.Ping(ctx)
	<-done // ready returns once ctx ends
	b.recordDependency(depState, stateErr)
	b.recordDependency(depKnowledge, knowledgeErr)
	return stateErr, knowledgeErr
}

func (b *Bot) recordDependency(name string, err error) {
	b.cfg.Metrics.dependencyUp(name, err == nil)
	down := &b.depDown[0]
	if name == depKnowledge {
		down = &b.depDown[1]
	}
	switch was := down.Swap(err != nil); {
	case err != nil && !was:
		b.log.Warn("dependency down", "dependency", name, "error", err)
	case err == nil && was:
		b.log.Info("dependency back", "dependency", name)
	}
}

// watchDependencies refreshes kbbot_dependency_up between probes, so a
// dashboard sees an index outage even where nothing polls /readyz.
// It runs until ctx is cancelled, which also cuts a running check short.
func (b *Bot) watchDependencies(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	every := b.cfg.DependencyInterval
	if every <= 0 {
		every = depCheckInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, depCheckTimeout)
		b.checkDependencies(cctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// The source page and the notices /kb answers with instead (expired link,
// no such document), as files of their own.
//
//go:embed templates/kb.html templates/notice.html
var pageFiles embed.FS

var (
	kbTemplate     = template.Must(template.ParseFS(pageFiles, "templates/kb.html"))
	noticeTemplate = template.Must(template.ParseFS(pageFiles, "templates/notice.html"))
)

// kbHeaders go on every /kb response, page or refusal. The pages hold
// knowledge that is not public: no cache or search engine keeps them, the
// full link (its signature) never leaks as a Referer, and nothing but the
// inline style runs or loads.
func kbHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "private, no-store")
		h.Set("X-Robots-Tag", "noindex")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// notice is a short page in place of a source page.
type notice struct{ Title, Text, English string }

var (
	noticeLink = notice{"链接已过期或无效", "这个链接已过期或无效。请回到飞书，再向机器人提问一次，获取新的链接。",
		"This link has expired or is invalid. Ask the bot again in Feishu for a fresh link."}
	noticeGone = notice{"没有这篇文档", "这篇文档已不在知识库中。请回到飞书，再向机器人提问一次。",
		"This document is no longer in the knowledge base. Ask the bot again in Feishu."}
	noticeFailed = notice{"暂时无法打开", "加载这篇文档时出错了，请稍后再试。",
		"The document could not be loaded. Please try again later."}
)

func writeNotice(w http.ResponseWriter, status int, n notice) {
	var buf bytes.Buffer
	_ = noticeTemplate.Execute(&buf, n) // fixed text: it cannot fail
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// kbPage shows one knowledge-base source, for cards linking sources that
// have no URL of their own, to whoever holds a valid link (kblink).
func (b *Bot) kbPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("doc_id")
	q := r.URL.Query()
	// The signature first: without a valid link nobody learns whether a
	// document exists.
	if err := b.links.Check(id, q.Get("exp"), q.Get("sig")); err != nil {
		b.log.Debug("source page refused", "doc_id", id, "reason", err)
		writeNotice(w, http.StatusForbidden, noticeLink)
		return
	}
	doc, err := b.ans.Document(r.Context(), id)
	if errors.Is(err, index.ErrNotFound) {
		writeNotice(w, http.StatusNotFound, noticeGone)
		return
	}
	if err != nil {
		b.log.Error("loading document failed", "doc_id", id, "error", err)
		writeNotice(w, http.StatusInternalServerError, noticeFailed)
		return
	}
	data := struct {
		rag.Document
		QA bool
	}{doc, doc.Kind == index.KindQA}
	if data.Title == "" {
		data.Title = doc.DocID
	}
	if !strings.HasPrefix(doc.URL, "http://") && !strings.HasPrefix(doc.URL, "https://") {
		data.URL = "" // html/template would neutralise other schemes; show none
	}
	var buf bytes.Buffer
	if err := kbTemplate.Execute(&buf, data); err != nil {
		b.log.Error("rendering document failed", "doc_id", id, "error", err)
		writeNotice(w, http.StatusInternalServerError, noticeFailed)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}
