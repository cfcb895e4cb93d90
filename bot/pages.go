package bot

import (
	"bytes"
	"context"
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

// readyz reports whether the state store and the knowledge store answer.
func (b *Bot) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var problems, failed []string
	if err := b.st.Ping(ctx); err != nil {
		problems = append(problems, "state store: "+err.Error())
		failed = append(failed, "state store")
	}
	ready := b.cfg.Ready
	if ready == nil {
		ready = func(ctx context.Context) error {
			_, err := b.ans.StarterQuestions(ctx, 1)
			return err
		}
	}
	if err := ready(ctx); err != nil {
		problems = append(problems, "knowledge store: "+err.Error())
		failed = append(failed, "knowledge store")
	}
	if len(problems) > 0 {
		b.log.Warn("not ready", "problems", problems)
		// Which dependency, not its error text: /readyz is unauthenticated
		// and errors carry internal addresses. The log has the detail.
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + strings.Join(failed, ", ") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

var kbTemplate = template.Must(template.New("kb").Parse(`<!doctype html>
<html lang="zh">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.7;color:#1f2329}
h1{font-size:1.5rem;line-height:1.4}
.meta{color:#646a73;font-size:.9rem}
.path{color:#646a73;font-size:.9rem;margin:.2rem 0 1rem}
.text{white-space:pre-wrap;word-wrap:break-word}
.qa dt{font-weight:600;margin-top:1rem}
.qa dd{margin:0;white-space:pre-wrap}
</style>
</head>
<body>
<article>
<h1>{{.Title}}</h1>
<p class="meta">{{if .Date}}<time>{{.Date}}</time>{{end}}{{if .URL}}{{if .Date}} · {{end}}<a href="{{.URL}}" rel="noopener noreferrer">原文链接</a>{{end}}</p>
{{if .Path}}<p class="path">{{range $i, $p := .Path}}{{if $i}} › {{end}}{{$p}}{{end}}</p>{{end}}
{{if .QA}}<dl class="qa"><dt>问题</dt><dd>{{.Title}}</dd><dt>回答</dt><dd>{{.Text}}</dd></dl>
{{else}}<div class="text">{{.Text}}</div>{{end}}
</article>
</body>
</html>
`))

// kbPage shows one knowledge-base source, for cards linking sources that
// have no URL of their own.
func (b *Bot) kbPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("doc_id")
	doc, err := b.ans.Document(r.Context(), id)
	if errors.Is(err, index.ErrNotFound) {
		http.Error(w, "no such document", http.StatusNotFound)
		return
	}
	if err != nil {
		b.log.Error("loading document failed", "doc_id", id, "error", err)
		http.Error(w, "could not load the document", http.StatusInternalServerError)
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
		http.Error(w, "could not render the document", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}
