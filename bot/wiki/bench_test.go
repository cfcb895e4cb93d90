package wiki

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store/index"
	"kbbot/store/retry"
)

// BenchmarkSync1000 syncs a generated wiki of 1,000 documents (fan-out
// 10, 3 levels) against the fake Open API at Feishu's documented limits
// (each wiki API 100/min, each docx read API 5/s), with the client's own
// pacing as shipped, then syncs it again unchanged. It takes minutes: run
// it alone, once:
//
//	go test ./bot/wiki/ -run XXX -bench Sync1000 -benchtime 1x
//
// Reported: documents/s of the first sync (the docx blocks API's 5/s is
// the ceiling: one blocks page per document), the Open API calls of the
// unchanged re-sync (lists only), and the process's peak RSS.
func BenchmarkSync1000(b *testing.B) {
	for range b.N {
		fake := feishufake.New("ou_kbbot")
		feishufake.GenerateWiki(fake, feishufake.WikiSpec{SpaceID: testSpace, Name: "bench", Docs: 1000, FanOut: 10, Depth: 3, Seed: 1})
		log := testkit.Quiet()
		api := openapi.New(openapi.NewLarkClient(fmt.Sprintf("cli_bench_%d", time.Now().UnixNano()), "secret", fake.URL, log), log,
			retry.Policy{Attempts: 6, Base: 500 * time.Millisecond, Max: 65 * time.Second})
		idx, err := index.OpenEmbedded(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		eng, err := rag.New(rag.Options{Index: idx})
		if err != nil {
			b.Fatal(err)
		}
		s := New(api, eng, Config{Spaces: []string{testSpace}, BaseURL: testBase}, log)
		start := time.Now()
		rep, err := s.Run(b.Context())
		if err != nil || rep.Read != 1000 {
			b.Fatalf("first sync: %v, %+v", err, rep)
		}
		took := time.Since(start)
		calls := len(fake.Requests())
		again, err := s.Run(b.Context())
		if err != nil || again.Unchanged != 1000 {
			b.Fatalf("re-sync: %v, %+v", err, again)
		}
		resync := fake.Requests()[calls:]
		var blocks int
		for _, r := range resync {
			if r.Op == feishufake.OpDocxBlocks || r.Op == feishufake.OpDocxGet {
				blocks++
			}
		}
		if blocks != 0 {
			b.Errorf("the unchanged re-sync read %d documents", blocks)
		}
		limited := 0
		for _, r := range fake.Requests() {
			if r.Code == 99991400 {
				limited++
			}
		}
		b.ReportMetric(float64(rep.Read)/took.Seconds(), "docs/s")
		b.ReportMetric(took.Seconds(), "first-sync-s")
		b.ReportMetric(float64(len(resync)), "resync-calls")
		b.ReportMetric(again.Finished.Sub(again.Started).Seconds(), "resync-s")
		b.ReportMetric(float64(limited), "rate-limited-answers")
		b.ReportMetric(peakRSSMiB(), "peak-rss-MiB")
		fake.Close()
		idx.Close()
	}
}

// peakRSSMiB is the process's peak resident set (VmHWM), in MiB.
func peakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
