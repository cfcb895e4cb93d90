package feishufake

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// What Feishu refuses in a card's content, checked the way its pages
// describe it. The fake reads markdown on its own (roughly CommonMark: code
// fences and code spans are code and not checked), independently of
// kbbot's sanitizer, so the tests do not grade it with itself.
//
//   - An image whose key is not an uploaded image's (img_…): 230099 with
//     sub-code 200570 "card contains invalid image keys" in msg, HTTP 400
//     (send, reply and patch pages, "230099 子错误码":
//     https://open.feishu.cn/document/server-docs/im-v1/message/create).
//   - More than four tables in one markdown element: the rich-text page
//     (https://open.feishu.cn/document/feishu-cards/card-json-v2-components/content-components/rich-text)
//     allows four and names no error. The fake answers 230099 with the
//     "ErrCode: 11310; ErrMsg: card table number over limit" the official
//     plugin (larksuite/openclaw-lark, src/card/card-error.ts) saw from
//     Feishu; that plugin saw four fail too, and kbbot keeps three.
//   - <at id=all>: the rich-text page says the card fails to send unless
//     the group owner allowed @all, and gives no code; the fake answers
//     230099 unless AtAllAllowed.
//   - A link whose scheme is not http or https: the card FAQ
//     (https://open.feishu.cn/document/common-capabilities/message-card/message-card,
//     item 4) says sending fails ("链接 scheme 不在白名单"), with no code;
//     the fake answers 230099. tel: is let through, as the rich-text page
//     documents [电话](tel://…) for mobile.
//   - A bare URL followed at once by Chinese text: FAQ item 5 says sending
//     can fail, with no code; the fake answers 230099.
//   - Content over 30 KB: 230025 on send, reply and patch, 200860 on
//     CardKit (https://open.feishu.cn/document/cardkit-v1/card/create).
//     The pages do not say how it is measured; the fake measures the
//     content as it travels, a JSON string in the request body marshalled
//     the way the SDK does (encoding/json, < > & as \u003c).
//
// The CardKit pages document none of the markdown refusals; the official
// plugin got 230099 from CardKit calls, so the fake answers the same there.

// Content refusal codes.
const (
	CodeCardContent     = 230099 // the card's content cannot be built
	CodeMessageTooLarge = 230025 // send, reply, patch: content over 30 KB
)

type refusal struct {
	code int
	msg  string
}

// contentFailed is how Feishu words a 230099.
func contentFailed(sub string) *refusal {
	return &refusal{code: CodeCardContent, msg: "Failed to create card content, ext=" + sub + "; "}
}

// sentLen is how long s is inside a request body, as the SDK marshals it.
func sentLen(s string) int {
	b, err := json.Marshal(s)
	if err != nil {
		return len(s)
	}
	return len(b) - 2
}

// checkContent checks a decoded card's markdown elements.
func (s *Server) checkContent(card map[string]any) *refusal {
	for _, md := range Markdowns(card) {
		if r := checkMarkdown(md, s.AtAllAllowed); r != nil {
			return r
		}
	}
	return nil
}

// Markdowns is the content of every markdown element in a decoded card.
func Markdowns(card map[string]any) []string {
	var out []string
	WalkCard(card, func(v any) {
		if m, ok := v.(map[string]any); ok && m["tag"] == "markdown" {
			if c, ok := m["content"].(string); ok {
				out = append(out, c)
			}
		}
	})
	return out
}

var (
	fenceOpen   = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
	imageRe     = regexp.MustCompile(`!\[[^\]]*\]\(\s*<?([^)\s>]*)`)
	linkRe      = regexp.MustCompile(`\[([^\]]*)\]\(\s*<?([^)\s>]*)[^)]*\)`)
	tagURLRe    = regexp.MustCompile(`(?i)<(?:a|link)\b[^>]*?\b(?:href|url|pc_url|ios_url|android_url)\s*=\s*['"]?([^'"\s>]+)`)
	tagRe       = regexp.MustCompile(`<[^>]*>`)
	atAllRe     = regexp.MustCompile(`(?i)<at\s+id\s*=\s*['"]?all\b`)
	bareURLRe   = regexp.MustCompile(`(?i)(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)[!-;=?-~]*`)
	blankLine   = regexp.MustCompile(`\n[ \t\r]*\n`)
	delimiterRe = regexp.MustCompile(`^[\s>]*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$`)
)

// MarkdownRefusal is the code and message Feishu would refuse md with as
// the content of a markdown element in a chat without @all, or 0 and "".
func MarkdownRefusal(md string) (code int, msg string) {
	if r := checkMarkdown(md, false); r != nil {
		return r.code, r.msg
	}
	return 0, ""
}

// checkMarkdown is why Feishu would refuse md in a markdown element, or nil.
func checkMarkdown(md string, atAllAllowed bool) *refusal {
	text := withoutCode(md)
	for _, m := range imageRe.FindAllStringSubmatch(text, -1) {
		if !strings.HasPrefix(m[1], "img_") {
			return contentFailed("ErrCode: 200570; ErrMsg: card contains invalid image keys; ErrorValue: image key " + m[1])
		}
	}
	if n := MarkdownTables(md); n > 4 {
		return contentFailed("ErrCode: 11310; ErrMsg: card table number over limit; ErrorValue: table")
	}
	if !atAllAllowed && atAllRe.MatchString(text) {
		return contentFailed("ErrMsg: feishufake: <at id=all> where the group owner has not allowed @all (the code is undocumented)")
	}
	for _, dest := range linkTargets(text) {
		u, err := url.Parse(dest)
		if s := strings.ToLower(schemeOf(u, err)); s != "http" && s != "https" && s != "tel" {
			return contentFailed("ErrMsg: feishufake: link scheme not in whitelist: " + dest + " (the code is undocumented)")
		}
	}
	b := bare(text)
	for _, loc := range bareURLRe.FindAllStringIndex(b, -1) {
		if r, _ := utf8.DecodeRuneInString(b[loc[1]:]); loc[1] < len(b) && r >= utf8.RuneSelf && strings.HasPrefix(strings.ToLower(b[loc[0]:]), "http") {
			return contentFailed("ErrMsg: feishufake: invalid link " + b[loc[0]:loc[1]] + ": a URL followed by Chinese text (card FAQ item 5; the code is undocumented)")
		}
	}
	return nil
}

func schemeOf(u *url.URL, err error) string {
	if err != nil {
		return ""
	}
	return u.Scheme
}

// linkTargets is the destination of every link in text (code removed):
// [label](dest), <a href=…>, <link url=…>.
func linkTargets(text string) []string {
	var out []string
	for _, m := range linkRe.FindAllStringSubmatchIndex(text, -1) {
		if m[0] == 0 || text[m[0]-1] != '!' {
			out = append(out, text[m[4]:m[5]])
		}
	}
	for _, m := range tagURLRe.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// bare is text (code removed) without its links, images and tags: what is
// left for Feishu to find bare URLs in. A link's label is its own text, not
// part of the text around it.
func bare(text string) string {
	text = imageRe.ReplaceAllString(text, " ")
	text = linkRe.ReplaceAllString(text, " $1 ")
	return tagRe.ReplaceAllString(text, " ")
}

// MarkdownLinks is every URL a reader of md could click: link
// destinations, tag URLs and bare URLs, outside code.
func MarkdownLinks(md string) []string {
	text := withoutCode(md)
	out := linkTargets(text)
	for _, m := range bareURLRe.FindAllString(bare(text), -1) {
		out = append(out, strings.TrimRight(m, ".,:;!?*_~)'\""))
	}
	return out
}

// MarkdownImages is the key (or URL) of every image in md, outside code.
func MarkdownImages(md string) []string {
	var out []string
	for _, m := range imageRe.FindAllStringSubmatch(withoutCode(md), -1) {
		out = append(out, m[1])
	}
	return out
}

// MarkdownTables counts md's tables outside code fences, roughly as GFM
// does: a delimiter row (|---|:--:|) under a line with a | starts one, and
// it goes on until a line without a |.
func MarkdownTables(md string) int {
	n := 0
	prev, inTable := "", false
	for _, line := range strings.Split(withoutFences(md), "\n") {
		switch {
		case !strings.Contains(line, "|"):
			inTable = false
		case !inTable && strings.Contains(prev, "|") && strings.Contains(line, "-") && delimiterRe.MatchString(line):
			n++
			inTable = true
		}
		prev = line
	}
	return n
}

// withoutFences blanks the lines of fenced code blocks.
func withoutFences(md string) string {
	lines := strings.Split(md, "\n")
	fence := ""
	for i, line := range lines {
		if fence != "" {
			t := strings.TrimLeft(line, " ")
			if len(line)-len(t) <= 3 && strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]+" \t\r") == "" {
				fence = ""
			}
			lines[i] = ""
			continue
		}
		if m := fenceOpen.FindStringSubmatch(line); m != nil && !(m[1][0] == '`' && strings.Contains(line[len(m[0]):], "`")) {
			fence = m[1]
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// withoutCode is md without fenced code blocks and code spans (CommonMark:
// a run of backticks pairs with the next run of the same length in its
// paragraph).
func withoutCode(md string) string {
	paras := blankLine.Split(withoutFences(md), -1)
	for i, p := range paras {
		var sb strings.Builder
		for j := 0; j < len(p); {
			if p[j] == '\\' && j+1 < len(p) {
				sb.WriteString(p[j : j+2])
				j += 2
				continue
			}
			if p[j] != '`' {
				sb.WriteByte(p[j])
				j++
				continue
			}
			n := 0
			for j+n < len(p) && p[j+n] == '`' {
				n++
			}
			close := -1
			for k := j + n; k < len(p); {
				if p[k] != '`' {
					k++
					continue
				}
				m := 0
				for k+m < len(p) && p[k+m] == '`' {
					m++
				}
				if m == n {
					close = k
					break
				}
				k += m
			}
			if close < 0 {
				sb.WriteString(p[j : j+n])
				j += n
				continue
			}
			sb.WriteString(" ")
			j = close + n
		}
		paras[i] = sb.String()
	}
	return strings.Join(paras, "\n\n")
}

// sizeRefusal is the answer to card content over 30 KB.
func sizeRefusal(code, n int) *refusal {
	return &refusal{code: code, msg: fmt.Sprintf("card content is %d bytes as sent, over the 30 KB limit", n)}
}
