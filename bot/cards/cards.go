// Package cards renders every card kbbot sends, as Feishu card JSON 2.0
// built from small typed structs: answers (with citations, references,
// follow-up and feedback buttons), the streaming "thinking" card, partial
// answers, errors, busy and rate-limit notices, help, welcome and reset.
// Every function here is pure: the same input gives the same bytes, which
// the golden files in testdata/ pin down.
package cards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"kbbot/rag"
)

// Feishu rejects unknown properties in card JSON 2.0, so each struct
// carries only what kbbot uses.

type card struct {
	Schema string      `json:"schema"`
	Config cardConfig  `json:"config"`
	Header *cardHeader `json:"header,omitempty"`
	Body   cardBody    `json:"body"`
}

type cardConfig struct {
	UpdateMulti bool `json:"update_multi"`
	// StreamingMode is only set on a CardKit card entity while its answer
	// is being written; Settings turns it off.
	StreamingMode bool `json:"streaming_mode,omitempty"`
	// StreamingConfig paces how the client types out streamed text.
	StreamingConfig *streamingConfig `json:"streaming_config,omitempty"`
	Summary         *cardSummary     `json:"summary,omitempty"`
}

// streamingConfig is how fast the client types out a streamed element.
// Feishu's defaults are one character every 70 ms
// (https://open.feishu.cn/document/cardkit-v1/streaming-updates-openapi-overview):
// about 14 characters a second, while kbbot sends the text so far every
// 300 ms and a model writes 30-100 characters a second, so the typing fell
// ever further behind the answer. Custom values need client 7.23; older
// clients keep the defaults.
type streamingConfig struct {
	PrintFrequencyMS perPlatform `json:"print_frequency_ms"`
	PrintStep        perPlatform `json:"print_step"`
	PrintStrategy    string      `json:"print_strategy"`
}

type perPlatform struct {
	Default int `json:"default"`
}

// typing types 3 characters every 25 ms (120 a second): the next update
// usually arrives before the last one is typed out.
var typing = &streamingConfig{PrintFrequencyMS: perPlatform{25}, PrintStep: perPlatform{3}, PrintStrategy: "fast"}

type cardSummary struct {
	Content string `json:"content"`
}

type cardHeader struct {
	Title    plainText `json:"title"`
	Template string    `json:"template,omitempty"`
}

type plainText struct {
	Tag     string `json:"tag"` // plain_text
	Content string `json:"content"`
	// A div's text may set these (the plain answer's notes); empty, they
	// are left out.
	TextSize  string `json:"text_size,omitempty"`
	TextColor string `json:"text_color,omitempty"`
}

type cardBody struct {
	Elements []any `json:"elements"`
}

type markdownEl struct {
	Tag       string `json:"tag"` // markdown
	ElementID string `json:"element_id,omitempty"`
	TextSize  string `json:"text_size,omitempty"`
	Content   string `json:"content"`
}

// divEl shows text as typed: what users wrote goes here, never into
// markdown, where "<at id=all></at>" or "[登录](https://…)" would render as
// the bot's own mention or link.
type divEl struct {
	Tag  string    `json:"tag"` // div
	Text plainText `json:"text"`
}

func plainDiv(s string) divEl {
	return divEl{Tag: "div", Text: plainText{Tag: "plain_text", Content: s}}
}

type hrEl struct {
	Tag string `json:"tag"` // hr
}

type buttonEl struct {
	Tag       string     `json:"tag"` // button
	Text      plainText  `json:"text"`
	Type      string     `json:"type,omitempty"`
	Size      string     `json:"size,omitempty"`
	Width     string     `json:"width,omitempty"`
	Behaviors []behavior `json:"behaviors"`
}

type behavior struct {
	Type  string `json:"type"` // callback
	Value Value  `json:"value"`
}

type columnSetEl struct {
	Tag               string     `json:"tag"` // column_set
	FlexMode          string     `json:"flex_mode,omitempty"`
	HorizontalSpacing string     `json:"horizontal_spacing,omitempty"`
	Columns           []columnEl `json:"columns"`
}

type columnEl struct {
	Tag      string `json:"tag"` // column
	Width    string `json:"width,omitempty"`
	Elements []any  `json:"elements"`
}

// Value is every button's callback value. It must be an object: the SDK
// decodes it into a map and a plain string makes the callback fail.
type Value struct {
	Action string `json:"action"`         // ask | retry | feedback | reset
	Q      string `json:"q,omitempty"`    // ask, retry: the question
	Vote   string `json:"vote,omitempty"` // feedback: up | down
	QID    string `json:"qid,omitempty"`  // feedback: the answered turn
	Conv   string `json:"conv,omitempty"` // the conversation the card belongs to
}

// Button actions, the Action of a Value.
const (
	ActionAsk      = "ask"
	ActionRetry    = "retry"
	ActionFeedback = "feedback"
	ActionReset    = "reset"
)

// AINotice is the notice under every answer.
const AINotice = "内容由 AI 大模型生成，请仔细甄别"

// GeneralNotice is the note under an answer the model gave from its
// general knowledge (rag.ModeGeneral): the knowledge base has nothing on
// the question.
const GeneralNotice = "ℹ️ 这条回答不是来自知识库：知识库中没有相关内容，以上是模型的一般性回答。"

const (
	// MaxCardBytes is Feishu's limit on a card: "卡片消息…请求体最大不能超过
	// 30 KB" (https://open.feishu.cn/document/server-docs/im-v1/message/create,
	// error 230025; the same on reply and patch) and "卡片大小控制在 30KB 以内"
	// (https://open.feishu.cn/document/cardkit-v1/card/create, error 200860).
	// The pages do not say what is measured. kbbot measures the largest
	// reading: the card as it travels, a JSON string inside the request body
	// the SDK marshals (see quotedLen), with room to spare.
	MaxCardBytes = 30 * 1024
	cardBudget   = MaxCardBytes - 1024

	maxRefs        = 8
	maxTitleRunes  = 80
	maxURLBytes    = 1000
	maxFollowUps   = 5
	maxButtonRunes = 60 // Feishu shows at most 100 characters on a button
	// MaxQuestion is the most of a question a card shows or a button
	// carries.
	MaxQuestion = 300
)

func md(content string) markdownEl { return markdownEl{Tag: "markdown", Content: content} }

func note(content string) markdownEl {
	return markdownEl{Tag: "markdown", TextSize: "notation", Content: "<font color='grey'>" + content + "</font>"}
}

func button(label, typ string, v Value) buttonEl {
	return buttonEl{Tag: "button", Text: plainText{Tag: "plain_text", Content: label}, Type: typ, Size: "small",
		Behaviors: []behavior{{Type: "callback", Value: v}}}
}

func buttonRow(buttons ...buttonEl) columnSetEl {
	cs := columnSetEl{Tag: "column_set", FlexMode: "flow", HorizontalSpacing: "8px"}
	for _, b := range buttons {
		cs.Columns = append(cs.Columns, columnEl{Tag: "column", Width: "auto", Elements: []any{b}})
	}
	return cs
}

func newCard(title, template, summary string, elements ...any) card {
	c := card{
		Schema: "2.0",
		Config: cardConfig{UpdateMulti: true},
		Header: &cardHeader{Title: plainText{Tag: "plain_text", Content: title}, Template: template},
		Body:   cardBody{Elements: elements},
	}
	if summary != "" {
		c.Config.Summary = &cardSummary{Content: summary}
	}
	return c
}

// render is the card's JSON, the Content of an interactive message.
func render(c card) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep <at> and <font> readable and small
	if err := enc.Encode(c); err != nil {
		panic(fmt.Sprintf("bot: card does not encode: %v", err)) // only plain structs and strings
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// AnswerView is what an answer card shows.
type AnswerView struct {
	Question string
	Asker    string // open_id of who clicked, named on cards answering a click
	Answer   rag.Answer
	QID      string // turn id, for feedback
	Conv     string
	// KBLink is the link to kbbot's page for a source without a URL of its
	// own (a signed, expiring /kb link the bot makes: the renderer reads no
	// clock or secret). Nil lists such sources without a link.
	KBLink func(docID string) string
	// LinkHosts are the hosts besides the answer's sources that links in
	// the answer may point to: the bot's (KBBOT_PUBLIC_URL) and the
	// tenant's documents (FEISHU_DOC_BASE_URL). See Sanitize.
	LinkHosts []string
}

// Answer renders an answer, its text sanitized (see Sanitize) and trimmed
// so the card stays under Feishu's size limit.
func Answer(v AnswerView) []byte {
	skeleton := render(buildAnswerCard(v, ""))
	return render(buildAnswerCard(v, answerBody(v, cardBudget-quotedLen(string(skeleton)))))
}

// answerBody is v's answer text, sanitized, in at most budget bytes.
func answerBody(v AnswerView, budget int) string {
	hosts := v.linkHosts()
	return fit(v.Answer.Text, budget, trimNote, func(t string) string { return sanitize(t, hosts, false) })
}

func buildAnswerCard(v AnswerView, text string) card {
	q := Truncate(v.Question, MaxQuestion)
	els := askerLine(v)
	if strings.TrimSpace(text) == "" {
		text = "（没有找到可以回答的内容）"
	}
	els = append(els, answerText(text))
	if v.Answer.Mode == rag.ModeGeneral {
		els = append(els, note(GeneralNotice))
	}
	els = append(els, note(AINotice))
	els = append(els, referenceList(v)...)
	if fus := followUpButtons(v); len(fus) > 0 {
		els = append(els, md("**其他人在问**"))
		els = append(els, fus...)
	}
	els = append(els, answerActions(v)...)
	return newCard(Truncate(q, 40), answerTemplate(v), Truncate(v.Question, 40), els...)
}

// followUpButtons ask the answer's follow-up questions, one a row.
func followUpButtons(v AnswerView) []any {
	fus := v.Answer.FollowUps
	var els []any
	for _, f := range fus[:min(len(fus), maxFollowUps)] {
		b := button(Truncate(f, maxButtonRunes), "default", Value{Action: ActionAsk, Q: Truncate(f, MaxQuestion), Conv: v.Conv})
		b.Width = "fill"
		els = append(els, b)
	}
	return els
}

// answerActions end every answer card: feedback votes and a new topic.
func answerActions(v AnswerView) []any {
	return []any{hrEl{Tag: "hr"}, buttonRow(
		button("👍 有帮助", "default", Value{Action: ActionFeedback, Vote: "up", QID: v.QID, Conv: v.Conv}),
		button("👎 没帮助", "default", Value{Action: ActionFeedback, Vote: "down", QID: v.QID, Conv: v.Conv}),
		button("🆕 新话题", "primary", Value{Action: ActionReset, Conv: v.Conv}),
	)}
}

// answerTemplate is the header colour: grey when the knowledge base did
// not cover the question.
func answerTemplate(v AnswerView) string {
	if !v.Answer.Covered {
		return "grey"
	}
	return "blue"
}

// AnswerElement is the element_id of an answer's text: streaming updates
// write into it.
const AnswerElement = "answer"

func answerText(text string) markdownEl {
	m := md(text)
	m.ElementID = AnswerElement
	return m
}

// askerLine names who asked, on cards answering a click.
func askerLine(v AnswerView) []any {
	if v.Asker == "" {
		return nil
	}
	return []any{md(fmt.Sprintf("<at id=%s></at> 问：", v.Asker)), plainDiv(Truncate(v.Question, MaxQuestion))}
}

func referenceList(v AnswerView) []any {
	refs := v.Answer.References
	if len(refs) == 0 || v.Answer.Mode == rag.ModeGeneral {
		return nil // a general answer is not from the knowledge base
	}
	var sb strings.Builder
	sb.WriteString("**参考资料**")
	hosts := v.linkHosts()
	for i, r := range refs[:min(len(refs), maxRefs)] {
		label := sanitizeLabel(linkText(r), hosts)
		if u := sourceURL(v.KBLink, r); u != "" {
			fmt.Fprintf(&sb, "\n%d. [%s](%s)", i+1, label, u)
		} else {
			fmt.Fprintf(&sb, "\n%d. %s", i+1, label)
		}
	}
	return []any{hrEl{Tag: "hr"}, md(sb.String())}
}

// ThinkingText is the placeholder a streaming card shows until the answer
// starts.
const ThinkingText = "正在查找资料并组织回答…"

// Thinking is the CardKit card an LLM answer streams into: the question, a
// placeholder where the answer will type itself out, and the AI notice.
// v.Answer is not used.
func Thinking(v AnswerView) []byte { return render(thinkingCard(v)) }

func thinkingCard(v AnswerView) card {
	els := append(askerLine(v), answerText(ThinkingText), note(AINotice))
	c := newCard(Truncate(Truncate(v.Question, MaxQuestion), 40), "blue", "正在生成回答…", els...)
	c.Config.StreamingMode = true
	c.Config.StreamingConfig = typing
	return c
}

// StreamBudget is how many bytes the streamed text may take in v's
// thinking card.
func StreamBudget(v AnswerView) int {
	return cardBudget - quotedLen(string(render(thinkingCard(v))))
}

// Ref is the content of a message that sends a CardKit card entity.
func Ref(cardID string) []byte {
	type data struct {
		CardID string `json:"card_id"`
	}
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		Data data   `json:"data"`
	}{"card", data{cardID}})
	return b
}

// Partial shows an answer the model stopped writing: what it said, a note
// that it is unfinished, its sources, and a retry button.
func Partial(v AnswerView, stalled bool) []byte {
	skeleton := render(buildPartialCard(v, "", stalled))
	return render(buildPartialCard(v, answerBody(v, cardBudget-quotedLen(string(skeleton))), stalled))
}

func buildPartialCard(v AnswerView, text string, stalled bool) card {
	why := "回答中途出错，没有写完。"
	if stalled {
		why = "模型长时间没有响应，回答没有写完。"
	}
	els := askerLine(v)
	els = append(els, answerText(text), note("⚠️ "+why+"可以点击「重试」重新回答。"), note(AINotice))
	els = append(els, referenceList(v)...)
	els = append(els, hrEl{Tag: "hr"}, buttonRow(
		button("🔄 重试", "primary", Value{Action: ActionRetry, Q: Truncate(v.Question, MaxQuestion), Conv: v.Conv}),
		button("🆕 新话题", "default", Value{Action: ActionReset, Conv: v.Conv}),
	))
	return newCard(Truncate(Truncate(v.Question, MaxQuestion), 40), "orange", "回答未完成", els...)
}

// linkText is a source title for inside [...] of a markdown link, before
// sanitizing: brackets that would end the label early are full-width, and a
// backslash, which would escape the closing one, is the entity for one.
func linkText(r rag.Reference) string {
	t := strings.TrimSpace(r.Title)
	if t == "" {
		t = r.DocID
	}
	t = strings.NewReplacer("[", "【", "]", "】", "\n", " ", "\r", " ").Replace(t)
	return strings.ReplaceAll(Truncate(t, maxTitleRunes), "\\", "&#92;")
}

// sourceURL links a source: its own http(s) URL, or kbbot's page for it
// ("" when there is no way to make one).
func sourceURL(kbLink func(string) string, r rag.Reference) string {
	if u, err := url.Parse(r.URL); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && len(r.URL) <= maxURLBytes {
		return mdURL(r.URL)
	}
	if kbLink == nil {
		return ""
	}
	return mdURL(kbLink(r.DocID))
}

// mdURL keeps a URL whole inside a markdown link: parentheses and spaces
// would end it early.
func mdURL(u string) string {
	return strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29").Replace(u)
}

// Error tells the user answering failed, with a button to try again.
func Error(question, conv string) []byte {
	return render(newCard("出错了", "red", "回答失败",
		md("抱歉，回答这个问题时出了问题，请稍后重试。"),
		plainDiv("问题："+Truncate(question, MaxQuestion)),
		buttonRow(button("🔄 重试", "primary", Value{Action: ActionRetry, Q: Truncate(question, MaxQuestion), Conv: conv})),
	))
}

// Busy is sent when every worker is busy and the queue is full.
func Busy(question, conv string) []byte {
	return render(newCard("现在有点忙", "orange", "请稍后重试",
		md("提问的人太多了，暂时没能回答你的问题，请稍后点击重试。"),
		plainDiv("问题："+Truncate(question, MaxQuestion)),
		buttonRow(button("🔄 重试", "primary", Value{Action: ActionRetry, Q: Truncate(question, MaxQuestion), Conv: conv})),
	))
}

// TooLate is sent instead of an answer to a question that waited in the
// queue longer than it may (a backlog, an outage): a stale answer could
// arrive after the asker moved on, so ask again.
func TooLate(question, conv string) []byte {
	return render(newCard("等待太久了", "orange", "请重新提问",
		md("这个问题排队等待的时间太长了，现在回答可能已经没有意义。如果还需要，请点击重试或重新提问。"),
		plainDiv("问题："+Truncate(question, MaxQuestion)),
		buttonRow(button("🔄 重试", "primary", Value{Action: ActionRetry, Q: Truncate(question, MaxQuestion), Conv: conv})),
	))
}

// SyncStarted tells an admin the sync they asked for is running.
func SyncStarted() []byte {
	return render(newCard("开始同步知识库", "blue", "同步中…",
		md("正在从飞书知识库同步文档，完成后会再发一张卡片说明结果。"),
	))
}

// SyncView is what a finished sync card says.
type SyncView struct {
	Busy    bool   // another sync was running: nothing done
	Error   string // the sync could not run
	Summary string
	Failed  []string // "title：why" per document not read
	Skipped []string
}

// maxSyncLines bounds the lists on a sync card; the log and `kbbot sync`
// have them all.
const maxSyncLines = 10

// Sync tells an admin how the sync they asked for went.
func Sync(v SyncView) []byte {
	switch {
	case v.Busy:
		return render(newCard("已有同步在进行", "grey", "已有同步在进行",
			md("另一个同步正在运行（可能在别的副本上），请稍后再试。")))
	case v.Error != "":
		return render(newCard("同步失败", "red", "同步失败",
			md("同步没能运行："), plainDiv(Truncate(v.Error, 500))))
	}
	els := []any{plainDiv(v.Summary)}
	list := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		els = append(els, md("**"+title+"**"))
		for _, l := range lines[:min(len(lines), maxSyncLines)] {
			els = append(els, plainDiv("· "+Truncate(l, 200)))
		}
		if n := len(lines) - maxSyncLines; n > 0 {
			els = append(els, note(fmt.Sprintf("还有 %d 条，见日志或 kbbot sync", n)))
		}
	}
	list("未能读取", v.Failed)
	list("已跳过", v.Skipped)
	template := "green"
	if len(v.Failed) > 0 {
		template = "orange"
	}
	return render(newCard("同步完成", template, "同步完成", els...))
}

const helpText = `我会根据知识库回答问题，并附上参考资料。

**怎么问**
- 私聊：直接发送问题
- 群聊：@我 并写上问题
- 支持文字和富文本消息；同一个会话（或话题）里的追问会结合上文回答

**命令**
- ` + "`/help`" + ` 或 ` + "`帮助`" + `：显示这条说明
- ` + "`/reset`" + ` 或 ` + "`新话题`" + `：清空本会话的上下文，开始新话题`

// Help explains how to ask and the commands.
func Help(conv string) []byte {
	return render(newCard("使用说明", "blue", "使用说明",
		md(helpText),
		buttonRow(button("🆕 新话题", "default", Value{Action: ActionReset, Conv: conv})),
	))
}

// Unsupported answers a message of a type kbbot cannot read.
func Unsupported(msgType string) []byte {
	return render(newCard("暂不支持这种消息", "grey", "暂不支持这种消息",
		md(fmt.Sprintf("我目前只能理解**文字**和**富文本**消息（收到的是 `%s`）。请用文字描述你的问题，或发送 `/help` 查看用法。", msgType)),
	))
}

// Reset confirms a new topic.
func Reset() []byte {
	return render(newCard("已开始新话题", "green", "已开始新话题",
		md("之前的对话不会再作为上下文，请提出新的问题。"),
	))
}

// Welcome greets a user opening a direct chat, with starter questions.
func Welcome(starters []string, conv string) []byte {
	els := []any{md("你好！我是知识库助手，可以回答知识库里的问题，并给出参考资料和链接。\n\n直接发送问题即可；发送 `/help` 查看用法。")}
	if len(starters) > 0 {
		els = append(els, md("**可以试试这样问**"))
		for _, s := range starters[:min(len(starters), maxFollowUps)] {
			b := button(Truncate(s, maxButtonRunes), "default", Value{Action: ActionAsk, Q: Truncate(s, MaxQuestion), Conv: conv})
			b.Width = "fill"
			els = append(els, b)
		}
	}
	return render(newCard("欢迎使用知识库助手", "blue", "欢迎使用知识库助手", els...))
}

// Truncate cuts s to at most n runes, marking the cut with an ellipsis.
func Truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

const trimNote = "…\n\n<font color='grey'>（回答过长，已截断）</font>"

// FitText cuts markdown text so that it costs at most budget bytes once the
// card is a JSON string inside the request, preferring a paragraph or
// sentence break near the end. The text is not sanitized: it must be
// kbbot's own, or sanitized already (StreamText does both).
func FitText(s string, budget int) string { return fit(s, budget, trimNote, nil) }

// fit is render(s) (s itself for a nil render) in at most budget bytes:
// when that is too long, the rendering of the longest prefix of s that
// fits with note after it, backed up to a natural break if one is close.
// Cutting s rather than what render made of it keeps the rendering whole:
// a cut through a code span or link kbbot made could leave a bare URL.
func fit(s string, budget int, note string, render func(string) string) string {
	if render == nil {
		render = func(s string) string { return s }
	}
	if out := render(s); quotedCost(out) <= budget {
		return out
	}
	budget -= quotedCost(note)
	fits := func(head string) bool { return quotedCost(render(head)) <= budget }
	// A longer prefix renders longer, give or take what a construct it
	// completes adds or removes, so a binary search finds a good cut.
	runeStart := func(i int) int {
		for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
			i--
		}
		return i
	}
	lo, hi := 0, len(s)
	for lo < hi {
		if mid := (lo + hi + 1) / 2; fits(s[:runeStart(mid)]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	head := s[:runeStart(lo)]
	// Back up to a natural break if one is close (the last fifth).
	floor := len(head) * 4 / 5
	for _, sep := range []string{"\n\n", "\n", "。", ". ", "！", "？", "；"} {
		if i := strings.LastIndex(head, sep); i >= floor && i > 0 {
			if h := strings.TrimRight(head[:i+len(sep)], " \n"); fits(h) {
				return render(h) + note
			}
			break
		}
	}
	return render(strings.TrimRight(head, " \n")) + note
}

// quotedLen is len(s) once written as a JSON string inside a request
// body: how much card JSON s costs as the content or data of a call. The
// SDK marshals request bodies with encoding/json
// (larkcore.DefaultSerialization), which escapes <, > and & as \u003c and
// so on, although kbbot writes the card itself without that escaping.
func quotedLen(s string) int {
	n := 2
	for _, r := range s {
		n += escCost(r)
	}
	return n
}

// quotedCost is what s adds to the request: escaped once in the card JSON
// (no HTML escaping, see render), and again, HTML escaping included, when
// the card becomes the content string of the request.
func quotedCost(s string) int {
	n := 0
	for _, r := range s {
		n += runeCost(r)
	}
	return n
}

func runeCost(r rune) int {
	switch {
	case r == '"' || r == '\\':
		return 4 // \" then \\\"
	case r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 3 // \n then \\n
	case r == '<' || r == '>' || r == '&':
		return 6 // as is, then \u003c
	case r < 0x20 || r == 0x2028 || r == 0x2029:
		return 7 // \u00XX then \\u00XX
	case r == utf8.RuneError:
		return 7 // invalid UTF-8 becomes \ufffd
	}
	return utf8.RuneLen(r)
}

// escCost is what one character of card JSON costs inside the request.
func escCost(r rune) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == 0x2028 || r == 0x2029 || r == '<' || r == '>' || r == '&':
		return 6
	case r == utf8.RuneError:
		return 6
	}
	return utf8.RuneLen(r)
}

// StreamingOff is the settings that end a card entity's streaming.
const StreamingOff = `{"config":{"streaming_mode":false}}`
