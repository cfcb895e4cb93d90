package rag

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"kbbot/store/index"
)

// Chunk size bounds, in characters (runes): about a paragraph, small enough
// that a handful fit an LLM prompt, with an overlap so a sentence cut at a
// boundary is still found whole in one of the two chunks.
const (
	chunkMaxRunes     = 600
	chunkOverlapRunes = 80
)

// sentences splits text after Chinese and English sentence punctuation and at
// line breaks, keeping the punctuation with its sentence.
func sentences(text string) []string {
	var out []string
	var b strings.Builder
	runes := []rune(text)
	flush := func() {
		if s := strings.TrimSpace(b.String()); s != "" {
			out = append(out, s)
		}
		b.Reset()
	}
	for i, r := range runes {
		if r == '\n' {
			flush()
			continue
		}
		b.WriteRune(r)
		switch r {
		case '。', '！', '？', '；', '!', '?', ';', '…':
			flush()
		case '.':
			// "1. step" is a list marker, not a sentence end.
			if (i+1 == len(runes) || runes[i+1] == ' ' || runes[i+1] == '\n') && (i == 0 || !unicode.IsDigit(runes[i-1])) {
				flush()
			}
		}
	}
	flush()
	return out
}

// splitText packs sentences into chunks of at most max runes, starting each
// chunk after the first with up to overlap runes of trailing sentences from
// the previous one. A sentence longer than max is cut hard.
func splitText(text string, max, overlap int) []string {
	var pieces []string
	for _, s := range sentences(text) {
		for utf8.RuneCountInString(s) > max {
			r := []rune(s)
			pieces = append(pieces, string(r[:max]))
			s = string(r[max:])
		}
		pieces = append(pieces, s)
	}
	var chunks []string
	var cur []string
	size := 0 // runes in joinSentences(cur), the spaces it adds included
	for _, p := range pieces {
		n := utf8.RuneCountInString(p)
		if len(cur) > 0 && size+gap(cur[len(cur)-1], p)+n > max {
			chunks = append(chunks, joinSentences(cur))
			// Carry the tail sentences that fit the overlap.
			var tail []string
			t := 0
			for i := len(cur) - 1; i >= 0; i-- {
				m := utf8.RuneCountInString(cur[i])
				if len(tail) > 0 {
					m += gap(cur[i], tail[0])
				}
				if t+m > overlap || t+m+gap(cur[len(cur)-1], p)+n > max {
					break
				}
				tail = append([]string{cur[i]}, tail...)
				t += m
			}
			cur, size = tail, t
		}
		if len(cur) > 0 {
			size += gap(cur[len(cur)-1], p)
		}
		cur = append(cur, p)
		size += n
	}
	if len(cur) > 0 {
		chunks = append(chunks, joinSentences(cur))
	}
	return chunks
}

// joinSentences keeps Chinese text unspaced and puts a space after a Latin
// sentence.
func joinSentences(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 && gap(parts[i-1], p) == 1 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	return b.String()
}

// gap is the runes joinSentences puts between two sentences: a space
// between Latin ones, none next to Chinese text or after Chinese
// punctuation. splitText counts it, so a chunk of Latin sentences stays
// within the limit.
func gap(prev, next string) int {
	last, _ := utf8.DecodeLastRuneInString(prev)
	first, _ := utf8.DecodeRuneInString(next)
	if unicode.Is(unicode.Han, last) || unicode.Is(unicode.Han, first) || strings.ContainsRune("。！？；，：", last) {
		return 0
	}
	return 1
}

// docID is stable across edits of a document's text: it depends on where the
// document is, not on what it says, so /kb links keep working.
func docID(d SourceDoc, ordinal int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%d", d.Source, d.Kind, d.Title, ordinal)))
	return hex.EncodeToString(h[:8])
}

// buildChunks turns a file's documents into chunks with content-hash ids.
// salt carries what else changes a chunk's vectors (tokenizer, embedding
// model), so changing either re-indexes everything.
func buildChunks(docs []SourceDoc, tok Tokenizer, salt string) []index.Chunk {
	ids := make([]string, len(docs))
	seen := map[string]int{}
	for i, d := range docs {
		key := d.Kind + "\x00" + d.Title
		ids[i] = docID(d, seen[key])
		seen[key]++
	}
	var out []index.Chunk
	for i, d := range docs {
		var refs []string
		for _, r := range d.Refs {
			refs = append(refs, ids[r])
		}
		texts := splitText(d.Text, chunkMaxRunes, chunkOverlapRunes)
		for j, text := range texts {
			c := index.Chunk{
				Key:    fmt.Sprintf("%s#%s#%04d", d.Source, ids[i], j),
				DocID:  ids[i],
				Kind:   d.Kind,
				Title:  d.Title,
				URL:    d.URL,
				Path:   d.Path,
				Date:   d.Date,
				Source: d.Source,
				Text:   text,
				Refs:   refs,

				SpaceID:    d.SpaceID,
				NodeToken:  d.NodeToken,
				DocumentID: d.DocumentID,
				Anchor:     d.Anchor,
				Version:    d.Version,
			}
			if d.Kind == index.KindQA {
				c.Answer = d.Text
			}
			c.Sparse = DocVector(tok.Tokens(indexText(c)))
			c.ID = chunkID(c, salt)
			out = append(out, c)
		}
	}
	return out
}

// indexText is what a chunk is searched by: its title and heading path as
// well as its text, so a question naming the topic finds it.
func indexText(c index.Chunk) string {
	return c.Title + "\n" + strings.Join(c.Path, " / ") + "\n" + c.Text
}

func chunkID(c index.Chunk, salt string) string {
	h := sha256.New()
	parts := []string{salt, c.Key, c.Kind, c.Title, c.URL, strings.Join(c.Path, "\x1f"), c.Date, c.Text, c.Answer, strings.Join(c.Refs, ",")}
	// Only chunks from Feishu have an origin: leaving it out otherwise keeps
	// the ids of file chunks what they were before it existed, so an
	// upgrade does not re-index every file.
	if origin := []string{c.SpaceID, c.NodeToken, c.DocumentID, c.Anchor, c.Version}; strings.Join(origin, "") != "" {
		parts = append(parts, origin...)
	}
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
