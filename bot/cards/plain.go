package cards

import (
	"fmt"
	"strings"

	"kbbot/rag"
)

// PlainAnswer is v's answer with no markdown element at all, for when
// Feishu refuses the answer card for its content (openapi.IsContentRefused):
// the answer text as the model wrote it, its sources with their links
// written out, and the same follow-up and feedback buttons. plain_text
// shows its content as typed, so none of the markdown rules that can refuse
// a card apply to it (rich-text and plain-text pages,
// https://open.feishu.cn/document/feishu-cards/card-json-v2-components/content-components/plain-text);
// the size limit still does, and the text is cut to fit.
//
// Whether Feishu makes URLs in plain text clickable is not documented, so
// the text is made plain the way the markdown is sanitized: an image is
// its alt text, a link its label (followed by its URL when that may be
// linked), and a URL to a host not allowed loses its "://" (written "：//")
// so that nothing can take it for one.
func PlainAnswer(v AnswerView) []byte {
	skeleton := render(buildPlainCard(v, ""))
	hosts := v.linkHosts()
	return render(buildPlainCard(v, fit(v.Answer.Text, cardBudget-quotedLen(string(skeleton)), plainTrimNote,
		func(t string) string { return unmark(t, hosts) })))
}

// unmark is markdown text as plain text whose links go only to hosts.
func unmark(text string, hosts map[string]bool) string {
	s := &sanitizer{hosts: hosts}
	var sb strings.Builder
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '!' && i+1 < len(text) && text[i+1] == '[':
			if label, _, end, ok, _ := parseLink(text, i+1); ok {
				sb.WriteString(unmark(label, hosts))
				i = end
				continue
			}
			sb.WriteByte(c)
			i++
		case c == '[':
			if label, dest, end, ok, _ := parseLink(text, i); ok {
				sb.WriteString(unmark(label, hosts))
				if s.allowed(dest) {
					sb.WriteString(" " + dest + " ")
				}
				i = end
				continue
			}
			sb.WriteByte(c)
			i++
		case isSchemeChar(c) && (i == 0 || !isSchemeChar(text[i-1])):
			j := i
			for j < len(text) && isSchemeChar(text[j]) {
				j++
			}
			e := j
			for e < len(text) && isURLChar(text[e]) {
				e++
			}
			// As in sanitize: from the scheme's first letter, or a www.;
			// and allowed only if it ends where any autolinker would.
			u := i + max(0, strings.IndexFunc(text[i:j], isLetter))
			ends := e == len(text) || text[e] <= ' ' || text[e] >= 0x80
			switch k := wwwAt(text[i:j]); {
			case strings.HasPrefix(text[j:], "://") && !(ends && s.allowed(text[u:e])):
				sb.WriteString(text[i:j] + "：//" + text[j+3:e])
			case !strings.HasPrefix(text[j:], "://") && k >= 0 && !(ends && s.allowedBare(text[i+k:e])):
				sb.WriteString(text[i:i+k] + "www．" + text[i+k+4:e])
			default:
				sb.WriteString(text[i:e])
			}
			i = e
		default:
			sb.WriteByte(c)
			i++
		}
	}
	return sb.String()
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

const plainTrimNote = "…\n\n（回答过长，已截断）"

// plainNote is a div of grey, small plain text, for the notes markdown
// would otherwise show in grey.
func plainNote(s string) divEl {
	return divEl{Tag: "div", Text: plainText{Tag: "plain_text", Content: s, TextSize: "notation", TextColor: "grey"}}
}

func buildPlainCard(v AnswerView, text string) card {
	var els []any
	if v.Asker != "" {
		els = append(els, plainDiv("问："+Truncate(v.Question, MaxQuestion)))
	}
	if strings.TrimSpace(text) == "" {
		text = "（没有找到可以回答的内容）"
	}
	els = append(els, plainDiv(text), plainNote(AINotice))
	if refs := v.Answer.References; len(refs) > 0 && v.Answer.Mode != rag.ModeGeneral {
		var sb strings.Builder
		sb.WriteString("参考资料")
		for i, r := range refs[:min(len(refs), maxRefs)] {
			fmt.Fprintf(&sb, "\n%d. %s", i+1, plainTitle(r))
			if u := sourceURL(v.KBLink, r); u != "" {
				sb.WriteString(" " + u)
			}
		}
		els = append(els, hrEl{Tag: "hr"}, plainDiv(sb.String()))
	}
	if fus := followUpButtons(v); len(fus) > 0 {
		els = append(els, plainDiv("其他人在问"))
		els = append(els, fus...)
	}
	els = append(els, answerActions(v)...)
	return newCard(Truncate(Truncate(v.Question, MaxQuestion), 40), answerTemplate(v), Truncate(v.Question, 40), els...)
}

// plainTitle is a source's title on one line.
func plainTitle(r rag.Reference) string {
	t := strings.TrimSpace(r.Title)
	if t == "" {
		t = r.DocID
	}
	return Truncate(strings.NewReplacer("\n", " ", "\r", " ").Replace(t), maxTitleRunes)
}
