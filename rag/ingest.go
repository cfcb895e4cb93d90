package rag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"kbbot/store/index"
)

// Summary reports what one ingestion changed.
type Summary struct {
	Files     int     // files read successfully
	Documents int     // documents found in them
	Chunks    int     // chunks they make
	Added     int     // chunks new to the index
	Updated   int     // chunks whose position existed with other content
	Removed   int     // chunks dropped: their file or position is gone
	Unchanged int     // chunks already stored as they are
	Failed    []error // one *ParseError (or read error) per file that was skipped
}

// IngestProgress is told about each file as it is read.
type IngestProgress func(done, total int, file string)

// Ingest reads every knowledge file under paths and brings the index in line
// with them: unchanged chunks are not written, changed ones replace their old
// versions, and chunks of files deleted from under an ingested folder are
// removed. A file that fails to parse is reported in Summary.Failed and its
// previously stored chunks are kept.
func (e *Engine) Ingest(ctx context.Context, paths []string, progress IngestProgress) (Summary, error) {
	var sum Summary
	files, roots, err := listFiles(paths)
	if err != nil {
		return sum, err
	}
	var chunks []index.Chunk
	failed := map[string]bool{}
	for i, f := range files {
		if progress != nil {
			progress(i, len(files), f)
		}
		docs, err := readFile(f)
		if err != nil {
			sum.Failed = append(sum.Failed, err)
			failed[f] = true
			continue
		}
		sum.Files++
		sum.Documents += len(docs)
		chunks = append(chunks, buildChunks(docs, e.tok, e.salt())...)
	}
	if progress != nil {
		progress(len(files), len(files), "")
	}
	sum.Chunks = len(chunks)

	existing, err := e.index.Refs(ctx)
	if err != nil {
		return sum, fmt.Errorf("ingest: list stored chunks: %w", err)
	}
	haveID := map[string]bool{}
	haveKey := map[string]bool{}
	for _, r := range existing {
		haveID[r.ID] = true
		haveKey[r.Key] = true
	}
	newID := map[string]bool{}
	newKey := map[string]bool{}
	var write []index.Chunk
	for _, c := range chunks {
		newID[c.ID] = true
		newKey[c.Key] = true
		switch {
		case haveID[c.ID]:
			sum.Unchanged++
		case haveKey[c.Key]:
			sum.Updated++
			write = append(write, c)
		default:
			sum.Added++
			write = append(write, c)
		}
	}
	var stale []string
	for _, r := range existing {
		if newID[r.ID] || failed[r.Source] || !inScope(r.Source, roots) {
			continue
		}
		stale = append(stale, r.ID)
		if !newKey[r.Key] {
			sum.Removed++
		}
	}
	if err := e.embedChunks(ctx, write); err != nil {
		return sum, fmt.Errorf("ingest: %w", err)
	}
	if err := e.index.Upsert(ctx, write); err != nil {
		return sum, fmt.Errorf("ingest: store chunks: %w", err)
	}
	if err := e.index.Delete(ctx, stale); err != nil {
		return sum, fmt.Errorf("ingest: remove stale chunks: %w", err)
	}
	return sum, nil
}

func readFile(name string) ([]SourceDoc, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, &ParseError{File: name, Msg: err.Error()}
	}
	return ParseFile(name, data)
}

// sourceName is how a file is named in chunks: slash-separated and relative
// to the working directory when inside it, so "seeds/x.txt" and "./seeds/x.txt"
// are the same source.
func sourceName(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
				p = rel
			}
		}
	}
	return filepath.ToSlash(filepath.Clean(p))
}

// listFiles expands folders into the knowledge files under them, sorted.
// Hidden files and folders are skipped. roots are the source names the
// ingestion covers: a stored chunk from under a root whose file is gone is
// stale.
func listFiles(paths []string) (files, roots []string, err error) {
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("ingest: %w", err)
		}
		roots = append(roots, sourceName(p))
		if !st.IsDir() {
			files = append(files, sourceName(p))
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() {
				files = append(files, sourceName(path))
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("ingest: %w", err)
		}
	}
	sort.Strings(files)
	return files, roots, nil
}

// FeishuSourcePrefix starts the Source of every chunk read from Feishu
// ("feishu:wiki/…", "feishu:docx/…"). File ingestion never counts such a
// chunk as its own, so `kbbot ingest .` cannot delete what a sync wrote.
const FeishuSourcePrefix = "feishu:"

func inScope(source string, roots []string) bool {
	if strings.HasPrefix(source, FeishuSourcePrefix) {
		return false
	}
	for _, r := range roots {
		if source == r || r == "." || strings.HasPrefix(source, r+"/") {
			return true
		}
	}
	return false
}

// ErrEmptyIndex is returned when there is nothing to answer from.
var ErrEmptyIndex = errors.New("the knowledge base is empty: run `kbbot ingest`")

// EnsureSeeded ingests dir when the index holds nothing, so a newcomer's
// first `kbbot ask` works without a separate ingest step.
func (e *Engine) EnsureSeeded(ctx context.Context, dir string) (bool, error) {
	n, err := e.index.Count(ctx)
	if err != nil {
		return false, fmt.Errorf("count stored chunks: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return false, fmt.Errorf("%w (and the seeds folder %q is missing: %v)", ErrEmptyIndex, dir, err)
	}
	sum, err := e.Ingest(ctx, []string{dir}, nil)
	if err != nil {
		return false, err
	}
	if sum.Chunks == 0 {
		return false, fmt.Errorf("%w: %s holds no readable knowledge files", ErrEmptyIndex, dir)
	}
	return true, nil
}

// StoredSource is what the index holds of one source: the version it was
// read at and its chunks' ids.
type StoredSource struct {
	Version string
	Chunks  []string
}

// StoredSources lists the stored sources whose name starts with prefix,
// for a sync to tell unchanged, changed and vanished sources apart without
// reading any of them. A source whose chunks disagree on the version (a
// write cut short) reports the empty version, so it is read again.
func (e *Engine) StoredSources(ctx context.Context, prefix string) (map[string]StoredSource, error) {
	refs, err := e.index.Refs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list stored chunks: %w", err)
	}
	out := map[string]StoredSource{}
	for _, r := range refs {
		if !strings.HasPrefix(r.Source, prefix) {
			continue
		}
		s, seen := out[r.Source]
		switch {
		case !seen:
			s.Version = r.Version
		case s.Version != r.Version:
			s.Version = ""
		}
		s.Chunks = append(s.Chunks, r.ID)
		out[r.Source] = s
	}
	return out, nil
}

// ReplaceSource makes the index hold docs as source name's content: it
// writes the chunks not stored yet, then deletes those of old (the
// source's chunk ids before, from StoredSources) it no longer has. The
// order matters: until the new text is written, the old stays searchable,
// so an interrupted sync never leaves a document missing. Every doc's
// Source must be name.
func (e *Engine) ReplaceSource(ctx context.Context, name string, docs []SourceDoc, old []string) (Summary, error) {
	sum := Summary{Documents: len(docs)}
	for _, d := range docs {
		if d.Source != name {
			return sum, fmt.Errorf("replace source %q: a document of source %q", name, d.Source)
		}
	}
	chunks := buildChunks(docs, e.tok, e.salt())
	sum.Chunks = len(chunks)
	had := make(map[string]bool, len(old))
	for _, id := range old {
		had[id] = true
	}
	keep := map[string]bool{}
	var write []index.Chunk
	for _, c := range chunks {
		keep[c.ID] = true
		if had[c.ID] {
			sum.Unchanged++
			continue
		}
		sum.Added++
		write = append(write, c)
	}
	var stale []string
	for _, id := range old {
		if !keep[id] {
			stale = append(stale, id)
		}
	}
	sum.Removed = len(stale)
	if err := e.embedChunks(ctx, write); err != nil {
		return sum, fmt.Errorf("replace source %q: %w", name, err)
	}
	if err := e.index.Upsert(ctx, write); err != nil {
		return sum, fmt.Errorf("replace source %q: store chunks: %w", name, err)
	}
	if err := e.index.Delete(ctx, stale); err != nil {
		return sum, fmt.Errorf("replace source %q: remove old chunks: %w", name, err)
	}
	return sum, nil
}

// RemoveChunks deletes chunks by id: a vanished source's, from
// StoredSources.
func (e *Engine) RemoveChunks(ctx context.Context, ids []string) error {
	if err := e.index.Delete(ctx, ids); err != nil {
		return fmt.Errorf("remove chunks: %w", err)
	}
	return nil
}
