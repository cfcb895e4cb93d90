package config

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted stands in for what RedactURL removes. Letters only, so URL
// encoding leaves it readable.
const redacted = "REDACTED"

// RedactURL is raw fit to print: a password (or a user that may be a token)
// and every query value are replaced, the fragment dropped. OpenAI-style
// gateways take keys as ?api-key=…, Redis URLs carry passwords, and both
// end up in logs, doctor reports and error messages. Every place kbbot
// prints a URL goes through here (or RedactText).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		// Sentinel and cluster URLs list several hosts, which net/url
		// refuses; anything else unparseable is cut the same way.
		return redactLoose(raw)
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		} else {
			u.User = url.User(redacted)
		}
	}
	if u.RawQuery != "" || u.ForceQuery {
		q := u.Query()
		for k := range q {
			q[k] = []string{redacted}
		}
		u.RawQuery = q.Encode()
		if u.RawQuery == "" {
			u.RawQuery = redacted
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

var (
	looseUser  = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://)?[^/?#@]*@`)
	looseQuery = regexp.MustCompile(`[?#].*$`)
)

func redactLoose(raw string) string {
	s := looseQuery.ReplaceAllString(raw, "?"+redacted)
	return looseUser.ReplaceAllString(s, "${1}"+redacted+"@")
}

// urlInText finds URLs inside free text such as an error message: a
// scheme, "://", then anything up to a space or quote.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>` + "`" + `]+`)

// RedactText is s with RedactURL applied to every URL in it. Punctuation
// ending a URL, as in "(see https://x/?k=v)", is taken as the text's.
func RedactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(u string) string {
		trimmed := strings.TrimRight(u, ").,;:!]")
		return RedactURL(trimmed) + u[len(trimmed):]
	})
}
