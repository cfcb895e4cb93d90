package cards

import (
	"strings"
	"testing"
)

// FuzzSanitize checks, for any text, that what Sanitize makes of it is
// safe by the fake Feishu's reading, and that every cut of it streams as a
// prefix of the whole.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{
		hostileAnswer,
		"[a](https://docs.example.com/x) `b` ![c](https://evil.example/d) <at id=all>",
		"| a | `b|c` |\n|---|---|\n| https://evil.example | [x](https://evil.example) |",
		"a `b\n`c` https://evil.example `d`",
		"```\n<x>\n````\n~~~ a\n```\n~~~",
		"\\`https://evil.example` \\<x> \\[y](z)",
		"[https](x)://evil.example abc![](y)://evil.example [`a`](x)`` <at id=all> ``",
	} {
		f.Add(s)
	}
	hosts := hostSet(testHosts)
	f.Fuzz(func(t *testing.T, text string) {
		whole := sanitize(text, hosts, false)
		checkSafe(t, whole)
		step := max(1, len(text)/300) // every cut of a short text, 300 of a long one
		for i := 0; i <= len(text); i += step {
			got := sanitize(text[:i], hosts, true)
			if !strings.HasPrefix(whole, got) {
				t.Fatalf("cut at %d of %q:\n%q\nis not a prefix of\n%q", i, text, got, whole)
			}
		}
	})
}
