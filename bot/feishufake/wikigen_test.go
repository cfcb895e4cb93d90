package feishufake

import (
	"encoding/json"
	"testing"
)

func TestGenerateWiki(t *testing.T) {
	build := func() ([]GeneratedDoc, *Server) {
		s := newWiki(t)
		return GenerateWiki(s, WikiSpec{SpaceID: "7100", Name: "Bench", Docs: 40, FanOut: 3, Depth: 3, Seed: 7}), s
	}
	docs, s := build()
	again, s2 := build()
	if len(docs) != 40 {
		t.Fatalf("%d documents", len(docs))
	}
	children := map[string]int{}
	for i, d := range docs {
		if d.Title != again[i].Title || d.Depth < 1 || d.Depth > 3 {
			t.Errorf("doc %d: %+v vs %+v", i, d, again[i])
		}
		a, b := s.DocumentBlocks(d.DocumentID), s2.DocumentBlocks(again[i].DocumentID)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) || len(a) < 5 {
			t.Errorf("doc %d: not the same %d blocks twice", i, len(a))
		}
	}
	s.mu.Lock()
	for _, n := range s.wiki.nodes {
		children[n.parent]++
	}
	s.mu.Unlock()
	for parent, n := range children {
		if parent != "" && n > 3 {
			t.Errorf("node %s has %d children, over the fan-out of 3", parent, n)
		}
	}
	if children[""] < 3 {
		t.Errorf("%d top-level nodes", children[""])
	}
}
