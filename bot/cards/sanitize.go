package cards

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Text from outside kbbot — a model's answer, a curated answer, sentences
// of a document, a document's title — reaches card markdown only through
// sanitize. Feishu's markdown is richer than what such text may do in a
// card the bot signs (rich-text page,
// https://open.feishu.cn/document/feishu-cards/card-json-v2-components/content-components/rich-text):
//
//   - ![alt](x) must name an uploaded image key (img_…); anything else and
//     Feishu refuses the whole card (230099 / 200570 on
//     https://open.feishu.cn/document/server-docs/im-v1/message/create). A
//     model has no image keys: an image becomes its alt text, or a plain
//     link when its host is allowed, or nothing.
//   - One markdown element holds at most four tables (rich-text page); the
//     official plugin saw four fail (230099 / 11310 "card table number over
//     limit") and keeps three, and so does kbbot: later tables lose their
//     delimiter row and show as the lines of text they are. Tables in code
//     fences are code, not tables, and stay.
//   - Tags — <at id=all> (which fails unless the group owner allows @all),
//     <at id=…> (a mention the bot would make), <font>, <text_tag>, <link>,
//     <a> — are kbbot's to use, not the text's: every < outside code becomes
//     &#60;, the escape the rich-text page gives for showing one (a URL in
//     a tag so shown is then a bare URL like any other).
//   - Links must be http or https (rich-text page; the card FAQ,
//     https://open.feishu.cn/document/common-capabilities/message-card/message-card,
//     says other schemes are refused at send). Beyond that, a card from
//     the bot must not send people to places the answer did not come from:
//     [label](url) stays a link only to an allowed host (the answer's
//     sources, the bot's own pages, the tenant's documents); otherwise it
//     is its label. A bare URL to another host goes in a code span, where
//     it is not clickable; an allowed one followed by Chinese text gets a
//     space, as the FAQ asks (item 5: such a URL can make sending fail).
//
// Code spans and fenced code blocks keep their content: it renders as code.
//
// Feishu does not document its markdown parser. Where kbbot cannot be sure
// how it reads something, it chooses the reading under which the output is
// safe either way: a backtick that might open a code span Feishu does not
// see (unmatched, escaped, or spanning a table cell's |) makes kbbot trust
// no code span until the paragraph ends; a [ that does not start an allowed
// link becomes &#91; (citations like [1] excepted), so no parser can make
// a link or a reference definition of it. A card Feishu refuses anyway
// goes out as a plain card (PlainAnswer).

const (
	// maxTables is how many tables one markdown element may hold (see above).
	maxTables = 3
	// maxSpanBytes bounds how far a link label or code span is looked for,
	// so that a stray [ or ` does not hold a streamed answer back for long.
	maxSpanBytes = 500
)

// Sanitize makes text from outside kbbot safe in a card's markdown element
// (see above); links may point to hosts only.
func Sanitize(text string, hosts []string) string {
	return sanitize(text, hostSet(hosts), false)
}

// StreamText is text, the answer so far as a model writes it, as it may
// show in v's streaming card: sanitized, and cut to budget bytes (see
// FitText). While text only grows by appending, so does StreamText until
// it is cut: what more text could still change (an unfinished link, code
// span, URL or fence line) is held back.
func StreamText(v AnswerView, text string, budget int) string {
	hosts := v.linkHosts()
	if out := sanitize(text, hosts, true); quotedCost(out) <= budget {
		return out
	}
	return fit(text, budget, trimNote, func(t string) string { return sanitize(t, hosts, false) })
}

// linkHosts is where links in v's answer may point: the configured hosts
// and the answer's sources.
func (v AnswerView) linkHosts() map[string]bool {
	set := hostSet(v.LinkHosts)
	for _, r := range v.Answer.References {
		if h := webHost(r.URL); h != "" {
			set[h] = true
		}
	}
	return set
}

// hostSet is hosts (or URLs, whose host counts) as a set, lower case.
func hostSet(hosts []string) map[string]bool {
	set := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if strings.Contains(h, "://") {
			h = webHost(h)
		}
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			set[h] = true
		}
	}
	return set
}

// webHost is the lower-case host of an http or https URL, "" for anything
// else: another scheme, no host, user info (https://kb.example.com@evil/
// goes to evil), a backslash (which browsers read as /), or a space.
func webHost(raw string) string {
	if raw == "" || len(raw) > maxURLBytes || strings.ContainsAny(raw, "\\ \t\r\n") {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return ""
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// cleanURL writes an allowed link's URL so that no markdown reading can end
// it early or split it at a table cell: such bytes are percent-encoded (the
// card FAQ, item 6, asks for special characters to be).
func cleanURL(raw string) string {
	var sb strings.Builder
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte("\"'<>`()[]{}|\\^", b) >= 0 {
			sb.WriteByte('%')
			sb.WriteByte("0123456789ABCDEF"[b>>4])
			sb.WriteByte("0123456789ABCDEF"[b&15])
			continue
		}
		sb.WriteByte(b)
	}
	return sb.String()
}

// sanitizer is one pass over a text.
type sanitizer struct {
	hosts map[string]bool
	out   strings.Builder

	fence    string // the open code fence's marker (``` or ~~~~…), "" outside one
	tables   int    // tables kept so far
	header   bool   // the previous line could head a table
	poisoned bool   // code spans are not trusted until the paragraph ends
	maxRun   int    // longest backtick run in the paragraph so far
}

type inlineMode int

const (
	modeText  inlineMode = iota
	modeLabel            // a link label, alt text or source title: no links inside
)

func sanitize(text string, hosts map[string]bool, stream bool) string {
	s := &sanitizer{hosts: hosts}
	if stream {
		text = trimPartialRune(text)
	}
	s.out.Grow(len(text) + len(text)/8)
	for rest := text; rest != ""; {
		line, nl := rest, ""
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, nl, rest = rest[:i], "\n", rest[i+1:]
		} else {
			rest = ""
		}
		if !s.line(line, nl, stream && nl == "") {
			break
		}
	}
	if !stream && s.fence != "" {
		// An unclosed fence would swallow what follows the text in the
		// element (the note of a cut answer).
		if !strings.HasSuffix(text, "\n") {
			s.out.WriteByte('\n')
		}
		s.out.WriteString(s.fence)
	}
	return s.out.String()
}

// sanitizeLabel is text for inside [...] of a link kbbot makes.
func sanitizeLabel(text string, hosts map[string]bool) string {
	s := &sanitizer{hosts: hosts}
	s.inline(&s.out, text, false, modeLabel)
	return s.out.String()
}

// trimPartialRune drops an unfinished UTF-8 sequence from the end of s: the
// rest of it is still on its way.
func trimPartialRune(s string) string {
	for k := 1; k < utf8.UTFMax && k <= len(s); k++ {
		b := s[len(s)-k]
		switch {
		case b < 0x80:
			return s
		case b >= 0xC0:
			need := 2
			if b >= 0xF0 {
				need = 4
			} else if b >= 0xE0 {
				need = 3
			}
			if need > k {
				return s[:len(s)-k]
			}
			return s
		}
	}
	return s
}

// line handles one line and its newline nl; partial means it may still
// grow. It reports false when it held (part of) the line back.
func (s *sanitizer) line(line, nl string, partial bool) bool {
	if s.fence != "" {
		// Fenced code as is. An unfinished line is as is either way: code,
		// or the closing fence.
		s.out.WriteString(line)
		s.out.WriteString(nl)
		if !partial && closesFence(line, s.fence) {
			s.fence = ""
			s.paragraphEnds()
		}
		return true
	}
	if strings.TrimSpace(line) == "" {
		s.out.WriteString(line)
		s.out.WriteString(nl)
		s.paragraphEnds()
		return true
	}
	if partial && mayOpenFence(line) {
		return false
	}
	if indent, marker, info, ok := opensFence(line); ok {
		// Only the language word of the info string: the rest is nobody's
		// business and would be text outside the code.
		s.out.WriteString(indent + marker + infoWord(info))
		s.out.WriteString(nl)
		s.fence = marker
		s.paragraphEnds()
		return true
	}
	if s.header && partial && s.tables >= maxTables && strings.Trim(line, " \t>|-:") == "" {
		return false // it may still turn into a delimiter row to drop
	}
	if s.header && !partial && isDelimiterRow(line) {
		s.header = false
		if s.tables >= maxTables {
			return true // the table shows as its lines of text
		}
		s.tables++
		s.out.WriteString(line)
		s.out.WriteString(nl)
		return true
	}
	s.header = true
	if !s.inline(&s.out, line, partial, modeText) {
		return false
	}
	s.out.WriteString(nl)
	return true
}

func (s *sanitizer) paragraphEnds() {
	s.header, s.poisoned, s.maxRun = false, false, 0
}

// opensFence reports whether line opens a fenced code block (CommonMark:
// at most three spaces, then three or more ` or ~; a backtick fence's info
// string has no backtick).
func opensFence(line string) (indent, marker, info string, ok bool) {
	rest := strings.TrimLeft(line, " ")
	if len(line)-len(rest) > 3 || rest == "" || (rest[0] != '`' && rest[0] != '~') {
		return "", "", "", false
	}
	n := runLen(rest, 0)
	if n < 3 || (rest[0] == '`' && strings.IndexByte(rest[n:], '`') >= 0) {
		return "", "", "", false
	}
	return line[:len(line)-len(rest)], rest[:n], rest[n:], true
}

// mayOpenFence reports whether an unfinished line opens, or may yet open,
// a code fence.
func mayOpenFence(line string) bool {
	if _, _, _, ok := opensFence(line); ok {
		return true
	}
	rest := strings.TrimLeft(line, " ")
	return len(line)-len(rest) <= 3 && rest != "" && (rest[0] == '`' || rest[0] == '~') && runLen(rest, 0) == len(rest)
}

// closesFence reports whether line closes the fence opened with marker.
func closesFence(line, marker string) bool {
	rest := strings.TrimLeft(line, " ")
	if len(line)-len(rest) > 3 || rest == "" || rest[0] != marker[0] {
		return false
	}
	n := runLen(rest, 0)
	return n >= len(marker) && strings.TrimRight(rest[n:], " \t\r") == ""
}

func infoWord(info string) string {
	info = strings.TrimSpace(info)
	for i := 0; i < len(info); i++ {
		c := info[i]
		if !(isAlnum(c) || strings.IndexByte("_+.#-", c) >= 0) {
			return info[:i]
		}
	}
	return info
}

// isDelimiterRow reports whether line could be the delimiter row under a
// table's header (|---|:--:|), counting generously: a row counted that
// Feishu would not take for one costs nothing.
func isDelimiterRow(line string) bool {
	line = strings.TrimLeft(line, " \t>")
	dash, sep := false, false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '-':
			dash = true
		case '|', ':':
			sep = true
		case ' ', '\t', '\r':
		default:
			return false
		}
	}
	return dash && sep
}

func runLen(s string, i int) int {
	n := 0
	for i+n < len(s) && s[i+n] == s[i] {
		n++
	}
	return n
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isSchemeChar(c byte) bool { return isAlnum(c) || c == '+' || c == '.' || c == '-' }

// isURLChar is what a bare URL is made of: ASCII, without space and the
// characters that end one in markdown or in a table cell.
func isURLChar(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte("<>\"`\\|[]{}", c) < 0
}

// inline sanitizes one line (or a label) into w. With partial it stops
// before the first construct more text could change and reports false.
func (s *sanitizer) inline(w *strings.Builder, line string, partial bool, mode inlineMode) bool {
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == '`':
			n := runLen(line, i)
			s.maxRun = max(s.maxRun, n)
			if s.poisoned {
				w.WriteString(line[i : i+n])
				i += n
				continue
			}
			j := closingRun(line, i+n, n)
			if partial && (j < 0 && len(line)-i <= maxSpanBytes || j >= 0 && j+n == len(line)) {
				return false // no closer yet, or one that may still grow
			}
			if j < 0 {
				// Unmatched here, but it might pair with a backtick on a
				// later line of the paragraph: trust no span from here.
				s.poisoned = true
				w.WriteString(line[i : i+n])
				i += n
				continue
			}
			if strings.IndexByte(line[i+n:j], '|') >= 0 {
				// In a table row the | splits the span between two cells:
				// as for an unmatched run, trust no span from here (the
				// closing run is then just backticks too).
				s.poisoned = true
				w.WriteString(line[i : i+n])
				i += n
				continue
			}
			w.WriteString(line[i : j+n]) // code: as is
			i = j + n
		case c == '\\':
			if i+1 == len(line) {
				if partial {
					return false
				}
				w.WriteByte(c)
				i++
				continue
			}
			switch d := line[i+1]; {
			case d == '<':
				w.WriteString("&#60;")
				i += 2
			case d == '[':
				w.WriteString("&#91;")
				i += 2
			case d == '`':
				// Escaped for CommonMark, but a parser that ignores the
				// escape would open a code span here.
				s.poisoned = true
				s.maxRun = max(s.maxRun, 1)
				w.WriteString("\\`")
				i += 2
			case d < 0x80 && !isAlnum(d) && d > ' ':
				w.WriteString(line[i : i+2])
				i += 2
			default:
				w.WriteByte(c)
				i++
			}
		case c == '<':
			w.WriteString("&#60;")
			i++
		case c == '!' && i+1 < len(line) && line[i+1] == '[':
			label, dest, end, ok, pending := parseLink(line, i+1)
			if pending && partial {
				return false
			}
			if !ok {
				w.WriteByte('!')
				i++
				continue
			}
			if end == len(line) && partial {
				return false // what follows decides how the alt text joins it
			}
			alt := sanitizeLabelIn(s, label)
			if mode == modeText && s.allowed(dest) {
				if strings.TrimSpace(alt) == "" {
					alt = "图片"
				}
				w.WriteString("[" + alt + "](" + cleanURL(dest) + ")")
			} else {
				writeApart(w, alt, line, end)
			}
			i = end
		case c == '!' && i+1 == len(line) && partial:
			return false
		case c == '[':
			label, dest, end, ok, pending := parseLink(line, i)
			if pending && partial {
				return false
			}
			if ok {
				if end == len(line) && partial {
					return false // what follows decides how the label joins it
				}
				text := sanitizeLabelIn(s, label)
				if mode == modeText && s.allowed(dest) {
					if strings.TrimSpace(text) == "" {
						text = webHost(dest)
					}
					w.WriteString("[" + text + "](" + cleanURL(dest) + ")")
				} else {
					writeApart(w, text, line, end) // a link in a label is its label
				}
				i = end
				continue
			}
			if mode == modeText {
				if n, ok, pending := citation(line, i); pending && partial {
					return false
				} else if ok {
					w.WriteString(line[i : i+n])
					i += n
					continue
				}
			}
			w.WriteString("&#91;")
			i++
		case c == ']' && mode == modeLabel:
			w.WriteString("&#93;") // it would end the label kbbot puts it in
			i++
		case isSchemeChar(c):
			j := i
			for j < len(line) && isSchemeChar(line[j]) {
				j++
			}
			rest := line[j:]
			// The URL starts at the scheme's first letter (GFM would want a
			// word boundary; a looser parser might not) or at a www. that
			// follows no letter or digit.
			u := -1
			if strings.HasPrefix(rest, "://") {
				for u = i; !(line[u] >= 'a' && line[u] <= 'z' || line[u] >= 'A' && line[u] <= 'Z') && u < j-1; u++ {
				}
			} else if k := wwwAt(line[i:j]); k >= 0 {
				u = i + k
			}
			if u < 0 {
				if partial && strings.HasPrefix("://", rest) {
					return false // it may still become a URL (https:/, www)
				}
				w.WriteString(line[i:j])
				i = j
				continue
			}
			e := j
			for e < len(line) && isURLChar(line[e]) {
				e++
			}
			if e == len(line) && partial {
				return false // the URL may go on
			}
			w.WriteString(line[i:u])
			end := trimURL(line[u:e]) + u
			// A looser autolinker may read on past where kbbot stops
			// (https://docs.example.com]@evil.example goes to evil, and so
			// does …com<@evil.example once the < is &#60;): only a URL that
			// ends at a space or a non-ASCII letter stays clickable.
			ends := e == len(line) || line[e] <= ' ' || line[e] >= 0x80
			allowed := ends && s.allowedBare(line[u:end])
			s.bareURL(w, line[u:end], allowed, end < len(line) && line[end] == '`')
			if allowed && e < len(line) && line[e] >= 0x80 {
				// FAQ item 5: a URL followed by Chinese text can fail; end it.
				w.WriteString(line[end:e])
				w.WriteByte(' ')
				i = e
				continue
			}
			i = end
		default:
			_, size := utf8.DecodeRuneInString(line[i:])
			w.WriteString(line[i : i+size])
			i += size
		}
	}
	return true
}

// writeApart writes text, which replaces a link or image that ended at
// line[end], so that it does not run into what is around it: "https" from
// [https](x) before "://evil.example" would make a URL, and a backtick
// beside a backtick a run that pairs differently. A space goes between
// where one would.
func writeApart(w *strings.Builder, text, line string, end int) {
	if out := w.String(); out != "" {
		first := byte(0)
		if text != "" {
			first = text[0]
		} else if end < len(line) {
			first = line[end]
		}
		if first != 0 && runsInto(out[len(out)-1], first) {
			w.WriteByte(' ')
		}
	}
	w.WriteString(text)
	if text != "" && end < len(line) && runsInto(text[len(text)-1], line[end]) {
		w.WriteByte(' ')
	}
}

// runsInto reports whether a next to b could be read as one thing: a
// backtick run, or a URL or its scheme.
func runsInto(a, b byte) bool {
	urlish := func(c byte) bool { return isSchemeChar(c) || c == ':' || c == '/' }
	return a == '`' && b == '`' || urlish(a) && urlish(b)
}

// sanitizeLabelIn sanitizes a label found in s's text, sharing its state:
// a backtick in the label counts for the paragraph.
func sanitizeLabelIn(s *sanitizer, label string) string {
	var sb strings.Builder
	s.inline(&sb, label, false, modeLabel)
	return sb.String()
}

// bareURL writes a bare URL: as is when allowed, else in a code
// span that cannot pair with a backtick before it (Feishu would otherwise
// still read a clickable URL between two code spans) nor merge with one
// beside it (backtick is whether one follows), nor be escaped.
func (s *sanitizer) bareURL(w *strings.Builder, u string, allowed, backtick bool) {
	if allowed {
		w.WriteString(u)
		return
	}
	n := 1
	if s.poisoned {
		n = s.maxRun + 1
	}
	s.maxRun = max(s.maxRun, n)
	fence := strings.Repeat("`", n)
	if out := w.String(); strings.HasSuffix(out, "`") || strings.HasSuffix(out, "\\") {
		w.WriteByte(' ') // a backslash would escape the opening backtick
	}
	w.WriteString(fence + u + fence)
	if backtick {
		w.WriteByte(' ')
	}
}

func (s *sanitizer) allowedBare(u string) bool {
	if hasPrefixFold(u, "www.") {
		u = "http://" + u
	}
	return s.allowed(u)
}

func (s *sanitizer) allowed(u string) bool {
	h := webHost(u)
	return h != "" && s.hosts[h]
}

// wwwAt is where in a run of scheme characters a www. domain starts, or -1.
func wwwAt(run string) int {
	for k := 0; k+4 <= len(run); k++ {
		if (k == 0 || !isAlnum(run[k-1])) && hasPrefixFold(run[k:], "www.") {
			return k
		}
	}
	return -1
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// trimURL is how much of a run of URL characters is the URL: trailing
// punctuation and an unbalanced ) are the sentence's (GFM's rule).
func trimURL(u string) int {
	end := len(u)
	for end > 0 {
		c := u[end-1]
		if strings.IndexByte("?!.,:;*_~'", c) >= 0 {
			end--
			continue
		}
		if c == ')' && strings.Count(u[:end], "(") < strings.Count(u[:end], ")") {
			end--
			continue
		}
		break
	}
	return end
}

// closingRun is where the run of exactly n backticks closing a code span
// opened before from is, or -1.
func closingRun(line string, from, n int) int {
	for j := from; j < len(line) && j-from <= maxSpanBytes; {
		if line[j] != '`' {
			j++
			continue
		}
		m := runLen(line, j)
		if m == n {
			return j
		}
		j += m
	}
	return -1
}

// citation reports whether line[i:] starts with a citation marker like
// [1] that no parser can take for a link: no (, [ or : after it.
func citation(line string, i int) (n int, ok, pending bool) {
	j := i + 1
	for j < len(line) && j-i <= 4 && line[j] >= '0' && line[j] <= '9' {
		j++
	}
	if j == len(line) {
		return 0, false, j-i <= 4
	}
	if j == i+1 || j-i > 4 || line[j] != ']' {
		return 0, false, false
	}
	j++
	if j == len(line) {
		return j - i, true, true
	}
	if strings.IndexByte("([:", line[j]) >= 0 {
		return 0, false, false
	}
	return j - i, true, false
}

// parseLink reads an inline link [label](dest "title") at line[i] == '['
// the way CommonMark does, within the line. pending means the line ended
// before it could tell.
func parseLink(line string, i int) (label, dest string, end int, ok, pending bool) {
	depth := 0
	j := i
	for ; ; j++ {
		if j-i > maxSpanBytes {
			return "", "", 0, false, false
		}
		if j == len(line) {
			return "", "", 0, false, true
		}
		switch line[j] {
		case '\\':
			j++
			if j == len(line) {
				return "", "", 0, false, true
			}
			continue
		case '`':
			n := runLen(line, j)
			k := closingRun(line, j+n, n)
			if k < 0 {
				return "", "", 0, false, len(line)-j <= maxSpanBytes
			}
			j = k + n - 1
			continue
		case '[':
			depth++
		case ']':
			depth--
		}
		if depth == 0 {
			break
		}
	}
	label = line[i+1 : j]
	k := j + 1
	if k == len(line) {
		return "", "", 0, false, true
	}
	if line[k] != '(' {
		return "", "", 0, false, false
	}
	k = skipSpace(line, k+1)
	if k == len(line) {
		return "", "", 0, false, true
	}
	start := k
	if line[k] == '<' {
		for k++; ; k++ {
			if k-start > maxURLBytes {
				return "", "", 0, false, false
			}
			if k >= len(line) {
				return "", "", 0, false, true
			}
			if line[k] == '\\' {
				k++
				continue
			}
			if line[k] == '<' {
				return "", "", 0, false, false
			}
			if line[k] == '>' {
				break
			}
		}
		dest = line[start+1 : k]
		k++
	} else {
		parens := 0
		for ; k < len(line) && line[k] > ' ' && line[k] != 0x7f && k-start <= maxURLBytes; k++ {
			if line[k] == '\\' {
				k++
				continue
			}
			if line[k] == '(' {
				parens++
			}
			if line[k] == ')' {
				if parens == 0 {
					break
				}
				parens--
			}
		}
		if k-start > maxURLBytes {
			return "", "", 0, false, false
		}
		if k >= len(line) {
			return "", "", 0, false, true
		}
		dest = line[start:k]
	}
	afterDest := k
	k = skipSpace(line, k)
	if k == len(line) {
		return "", "", 0, false, true
	}
	if q := line[k]; (q == '"' || q == '\'' || q == '(') && k > afterDest {
		closer := q
		if q == '(' {
			closer = ')'
		}
		title := k
		for k++; ; k++ {
			if k-title > maxSpanBytes {
				return "", "", 0, false, false
			}
			if k >= len(line) {
				return "", "", 0, false, true
			}
			if line[k] == '\\' {
				k++
				continue
			}
			if line[k] == closer {
				break
			}
		}
		k = skipSpace(line, k+1)
		if k == len(line) {
			return "", "", 0, false, true
		}
	}
	if line[k] != ')' {
		return "", "", 0, false, false
	}
	return label, dest, k + 1, true, false
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}
